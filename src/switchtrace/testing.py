"""Switch budgets for tests: record every request a block of code makes and
fail when one costs more context switches than allowed.

    from switchtrace.testing import assert_max_switches

    with assert_max_switches(12):
        client.get("/orders/")

Works with Django's test ``Client`` and ``AsyncClient`` and with raw ASGI/WSGI
calls, without the switchtrace middleware in MIDDLEWARE and without any
exporter: the patches are installed for the block if switchtrace is not
enabled. The pytest plugin (``switchtrace.pytest_plugin``) builds on this.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from . import tracer
from .plural import count

_lock = threading.Lock()
_users = 0


def check_budget(budget: Any, where: str = "the budget") -> int:
    """``budget`` as an int, or a ValueError naming what is wrong."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(
            f"{where} must be a non-negative integer (context switches per request), not {budget!r}"
        )
    return budget


@contextlib.contextmanager
def record_requests() -> Iterator[list[tracer.RequestRecord]]:
    """Every request record finished inside the block, in order."""
    global _users
    from .django_app import integration

    integration.hold()
    with _lock:
        client_patcher.install()
        _users += 1
    records: list[tracer.RequestRecord] = []
    tracer.add_listener(records.append)
    try:
        yield records
    finally:
        tracer.remove_listener(records.append)
        with _lock:
            _users -= 1
            if _users == 0:
                client_patcher.uninstall()
        integration.release()


def describe_requests(records: list[tracer.RequestRecord]) -> list[str]:
    from .django_app import components
    from .exporters.console import format_record

    return [format_record(record, components.resolve) for record in records]


def over_budget(records: list[tracer.RequestRecord], budget: int) -> str | None:
    """The failure message if any request exceeds ``budget``, else None."""
    over = [record for record in records if record.context_switches > budget]
    if not over:
        return None
    lines = describe_requests(over)
    return (
        f"{len(over)} of {count(len(records), 'request')} exceeded the budget of "
        f"{count(budget, 'context switch', 'context switches')} per request:\n"
        + "\n".join(f"  {line}" for line in lines)
    )


def assert_max_switches(budget: int) -> _Budget:
    """Fail (AssertionError) if a request made in the block has more than
    ``budget`` context switches (the whole request, work after the response
    headers included, but for the body of a streaming response, which the
    test clients return unread: reading and closing it happen in the test,
    outside the request). A context manager (the block's records as its
    value) and a decorator."""
    return _Budget(check_budget(budget))


class _Budget(contextlib.ContextDecorator):
    """:func:`assert_max_switches`' context manager: a class, not a
    generator, so that under pytest the failure points at the test's line
    (a generator's is raised in contextlib's ``__exit__``, which pytest
    shows as the failing frame)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._recording: contextlib.AbstractContextManager[list[tracer.RequestRecord]] | None
        self._recording = None
        self._records: list[tracer.RequestRecord] = []

    def _recreate_cm(self) -> _Budget:
        # As a decorator: a fresh one for each call.
        return _Budget(self.budget)

    def __enter__(self) -> list[tracer.RequestRecord]:
        self._recording = record_requests()
        self._records = self._recording.__enter__()
        return self._records

    def __exit__(self, *exc_info: Any) -> None:
        __tracebackhide__ = True  # under pytest, the failure points at the test's line
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.__exit__(*exc_info)
        if exc_info[0] is not None:  # the block raised: that is the failure
            return
        message = over_budget(self._records, self.budget)
        if message is not None:
            raise AssertionError(message)


# -- Django's test client handlers ----------------------------------------------


def _wrap_client_call(wrapped, instance, args, kwargs):
    # Django's test Client: the request runs and its response is closed inside
    # this call (streaming content excepted).
    record, token = tracer.start_request(tracer.WSGI)
    _attributes(record, args[0] if args else kwargs.get("environ", {}), wsgi=True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        tracer.finish_request(record, token)


def _wrap_async_client_call(wrapped, instance, args, kwargs):
    scope = args[0] if args else kwargs.get("scope", {})
    return _trace_async_client(wrapped(*args, **kwargs), scope)


#: Marks the records of the test AsyncClient's requests (record.extra).
ASYNC_CLIENT = "switchtrace.async_client"


async def _trace_async_client(call: Any, scope: Any) -> Any:
    # Django's test AsyncClient, in the test's event loop.
    record, token = tracer.start_request(tracer.ASGI)
    record.extra[ASYNC_CLIENT] = True
    _attributes(record, scope, wsgi=False)
    try:
        response = await call
        status = getattr(response, "status_code", None)
        if status is not None:
            record.attributes["http.response.status_code"] = status
        return response
    finally:
        tracer.finish_request(record, token)


def _wrap_get_response_async(wrapped, instance, args, kwargs):
    return _headers_after(wrapped(*args, **kwargs))


async def _headers_after(call: Any) -> Any:
    # The AsyncClient has no server to send headers: they would go out when
    # get_response_async returns, before it closes the response (which sends
    # request_finished), as the test Client's get_response does for WSGI.
    response = await call
    record = tracer.current_record()
    if (
        record is not None
        and record.extra.get(ASYNC_CLIENT)
        and record.at_headers is None
        and not record.finished
    ):
        try:
            from .django_app.integration import at_headers

            at_headers(record, response)
        except Exception:
            from .tracer.guard import swallow

            swallow("test client headers")
    return response


def _attributes(record: tracer.RequestRecord, source: Any, *, wsgi: bool) -> None:
    try:
        if wsgi:
            record.attributes["http.request.method"] = source.get("REQUEST_METHOD")
            record.attributes["url.path"] = source.get("PATH_INFO")
        else:
            record.attributes["http.request.method"] = source.get("method")
            record.attributes["url.path"] = source.get("path")
    except Exception:
        from .tracer.guard import swallow

        swallow("test client attributes")


def _client_targets() -> list[Any]:
    from django.core.handlers.base import BaseHandler
    from django.test.client import AsyncClientHandler, ClientHandler

    return [
        (ClientHandler, "__call__", _wrap_client_call),
        (AsyncClientHandler, "__call__", _wrap_async_client_call),
        (BaseHandler, "get_response_async", _wrap_get_response_async),
    ]


client_patcher = tracer.patches.Patcher(_client_targets, "Django test client")
