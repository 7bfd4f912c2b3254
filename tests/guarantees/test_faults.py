"""Faults and hostile input: what a request leaves behind, and what a client
cannot change."""

from __future__ import annotations

import functools
import gc
import types
from collections import Counter
from importlib.metadata import version

import pytest

from switchtrace import tracer
from switchtrace.example import run_in_server_loop
from switchtrace.tracer import patches

from ..django_app.test_middleware import project
from ..support import asgi_request, run_asgi, wsgi_request

ASGIREF = tuple(int(part) for part in version("asgiref").split(".")[:2])
PATHS = ["/sync/", "/async/", "/raise/", "/async-to-sync/", "/stream/", "/async-stream/"]
#: Paths on which Django bridges from inside an ``except`` block: asgiref then
#: re-raises the caught exception on the other side, and its traceback holds
#: the frames that hold it, a cycle of asgiref's whatever wraps the bridge.
IN_EXCEPT_BLOCK = {("asgi", "/stream/"), ("wsgi", "/async-stream/")}


#: The name given to the frame of switchtrace's patch on run_until_complete.
DRIVER_FRAME = "frame of switchtrace's run_until_complete patch"
_DRIVER_CODE = patches._patch_run_until_complete(lambda loop, future: None).__code__


def _name(obj) -> str:
    if isinstance(obj, types.FrameType):
        if obj.f_code is _DRIVER_CODE:
            return DRIVER_FRAME
        return f"frame {obj.f_code.co_name}"
    if isinstance(obj, functools.partial):
        return f"partial {getattr(obj.func, '__name__', type(obj.func).__name__)}"
    return type(obj).__qualname__


def garbage_after(serve) -> list:
    """asgiref's test_garbage_collection pattern: what one request leaves to the
    cycle collector."""
    serve()  # warm: first requests create caches
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        serve()
        gc.collect()
        return [_name(obj) for obj in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", PATHS)
def test_a_request_leaves_no_reference_cycle_of_switchtrace(server, path, records):
    """Requests through the full default stack, with switchtrace recording:
    nothing of switchtrace's goes to the cycle collector, and the request
    leaves no more cycles than it does without switchtrace."""

    def serve_one(handlers):
        asgi, wsgi = handlers
        return lambda: run_asgi(asgi, path) if server == "asgi" else wsgi_request(wsgi, path)

    with project(with_switchtrace_middleware=False) as handlers:
        tracer.uninstall()
        try:
            without = garbage_after(serve_one(handlers))
        finally:
            tracer.install()
    with project() as handlers:
        with_switchtrace = garbage_after(serve_one(handlers))
    assert records and all(r.finished for r in records)
    ours = {"RequestRecord", "Crossing", "Figures", "LoopCreation", "ThreadStart"}
    assert [name for name in with_switchtrace if name in ours] == []
    # Django's own request/response objects leave cycles either way (ticket
    # #36700); switchtrace adds none of its own. (Before 3.9, asgiref's Local
    # raises and catches an exception on lookups, and a frame caught in such a
    # traceback cycle keeps its callers' frames, ours among them, reachable only
    # from the cycle: those frames are not a cycle of ours.)
    if (server, path) not in IN_EXCEPT_BLOCK and ASGIREF >= (3, 9):
        # The test drives the server loop with run_until_complete, through
        # switchtrace's patch on it: when a cycle holds the loop's own
        # run_until_complete frame (Python 3.13, Django 6.1), its caller's
        # frame, the patch's, is reachable from it, as the test's own are.
        if DRIVER_FRAME in with_switchtrace:
            assert "frame run_until_complete" in with_switchtrace
            assert "frame run_until_complete" in without
            with_switchtrace.remove(DRIVER_FRAME)
        assert Counter(with_switchtrace) - Counter(without) == Counter()
    # Otherwise switchtrace's frames (the callable it hands the executor, its
    # main_wrap coroutine) are in asgiref's exception-traceback cycle, as
    # every frame between the bridge and the re-raise is: the same cycle, one
    # per such bridge, without switchtrace too.


HOSTILE = [
    (b"x-context-switches", b"0"),
    (b"x-switchtrace", b"off"),
    (b"x-switchtrace-show-headers", b"1"),
    (b"server-timing", b"switchtrace-switches;desc=0"),
]


def test_request_headers_cannot_turn_recording_or_headers_on_or_off(records):
    with project() as (asgi, wsgi):
        shown = run_in_server_loop(asgi_request(asgi, "/sync/", headers=HOSTILE))
        wsgi_shown = wsgi_request(
            wsgi, "/async/", HTTP_X_SWITCHTRACE="off", HTTP_X_CONTEXT_SWITCHES="0"
        )
    assert shown.figures() == (30, 30, 0, shown.figures()[3])
    assert wsgi_shown.figures() == (2, 2, 1, 1)
    with project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": False}) as (asgi, _wsgi):
        hidden = run_in_server_loop(asgi_request(asgi, "/sync/", headers=HOSTILE))
    assert hidden.figures() is None
    assert "Server-Timing" not in hidden.headers
    assert [r.context_switches for r in records] == [32, 2, 32]
