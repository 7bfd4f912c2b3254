"""Drive Django's real ASGI and WSGI handlers in-process, as a server would
(the drivers live in the package: the demo and the benchmark use them too)."""

from __future__ import annotations

import asyncio
from typing import Any

from switchtrace.example import Result, asgi_request, wsgi_request

__all__ = ["Result", "asgi_request", "run_asgi", "wsgi_request"]


def run_asgi(handler: Any, path: str) -> Result:
    return asyncio.run(asgi_request(handler, path))
