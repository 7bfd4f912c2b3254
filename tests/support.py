"""Drive Django's real ASGI and WSGI handlers in-process, as a server would."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test.client import RequestFactory


class Result:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def figures(self) -> tuple[int, int, int, int] | None:
        if "X-Context-Switches" not in self.headers:
            return None
        return tuple(  # type: ignore[return-value]
            int(self.headers[name])
            for name in (
                "X-Context-Switches",
                "X-Thread-Hops",
                "X-Event-Loops",
                "X-Threads-Started",
            )
        )


async def asgi_request(handler: ASGIHandler, path: str, headers: list | None = None) -> Result:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []
    delivered = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return Result(
        start["status"],
        {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]},
        body,
    )


def run_asgi(handler: ASGIHandler, path: str) -> Result:
    return asyncio.run(asgi_request(handler, path))


def wsgi_request(handler: WSGIHandler, path: str, **environ: Any) -> Result:
    env = RequestFactory()._base_environ(PATH_INFO=path, REQUEST_METHOD="GET", **environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    response = handler(env, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    return Result(captured["status"], captured["headers"], body)
