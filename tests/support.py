"""Drive Django's real ASGI and WSGI handlers in-process, as a server would
(the drivers live in the package: the demo and the benchmark use them too)."""

from __future__ import annotations

import gc
import inspect
from typing import Any

from asgiref.sync import ThreadSensitiveContext

from switchtrace.example import Result, asgi_request, run_in_server_loop, wsgi_request

__all__ = [
    "ASGI_THREADS",
    "Result",
    "asgi_request",
    "collect_garbage",
    "run_asgi",
    "wsgi_request",
]

#: Threads an ASGI request starts in all: the per-request thread of Django's
#: ThreadSensitiveContext, and, from asgiref 3.12, the thread that joins it.
ASGI_THREADS = 2 if "Thread(" in inspect.getsource(ThreadSensitiveContext.__aexit__) else 1


def run_asgi(handler: Any, path: str) -> Result:
    """One request, in a loop that lives on between requests as a server's does."""
    return run_in_server_loop(asgi_request(handler, path))


def collect_garbage() -> None:
    """``gc.collect()`` once the test settings' span pipeline has made the
    spans of every record finished so far: its thread holds each record
    until then."""
    from switchtrace.django_app import telemetry

    pipeline = telemetry.pipeline()
    assert pipeline is None or pipeline.flush(10)
    gc.collect()
