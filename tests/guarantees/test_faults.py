"""Faults and hostile input: what a request leaves behind, and what a client
cannot change."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import pytest
from asgiref.sync import async_to_sync, sync_to_async

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


class Payload:
    """What a task returns: freed with it, or kept by a cycle."""


async def _made() -> Payload:
    return Payload()


def _run(loop: asyncio.AbstractEventLoop, how: str) -> Payload:
    if how == "create_task":
        return loop.run_until_complete(loop.create_task(_made()))
    if how == "ensure_future":
        return loop.run_until_complete(asyncio.ensure_future(_made(), loop=loop))
    [made] = loop.run_until_complete(asyncio.gather(loop.create_task(_made())))
    return made


@pytest.mark.parametrize("how", ["create_task", "ensure_future", "gather"])
def test_a_task_run_until_complete_is_not_kept_in_a_cycle(how):
    """A task (a future gathering tasks) holds the copy of the context it
    was made in, where switchtrace's variable holds the record: the
    record's crossing kept the task, and the task's result and all it holds
    went to the cycle collector after the request, freed only when it ran.
    The crossing keeps the task's coroutine (named after it) instead."""
    import weakref

    def view():
        loop = asyncio.new_event_loop()
        try:
            return weakref.ref(_run(loop, how))
        finally:
            loop.close()

    gc.collect()
    gc.disable()
    try:
        with tracer.recording() as record:
            result = view()
        alive = result() is not None
    finally:
        gc.enable()
    assert alive is False
    assert [c.mechanism for c in record.crossings] == ["loop.run_until_complete"]


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


async def _echo(value):
    return value


def _bridges_back(value):
    return async_to_sync(_echo)(value)


async def _every_kind_of_call():
    """One call of each kind a request makes from its loop: what each returns."""
    loop = asyncio.get_running_loop()
    # One worker: a second offload finding the first worker not idle yet
    # would start another thread.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    return [
        await sync_to_async(str)(1),
        await loop.run_in_executor(None, str, 2),
        await asyncio.to_thread(str, 3),
        await sync_to_async(_bridges_back)(4),
    ]


def _broken(*args):
    raise ZeroDivisionError("broken")


def test_bookkeeping_failing_as_a_call_is_made_loses_its_crossing_not_the_call(
    swallowed, monkeypatch
):
    """An error of switchtrace's where a call is made (here: making its
    crossing) is swallowed there, said where, and the call goes on as
    without switchtrace."""

    async def main():
        with tracer.recording() as record:
            monkeypatch.setattr(patches, "Crossing", _broken)
            results = await _every_kind_of_call()
        return record, results

    record, results = asyncio.run(main())
    assert results == ["1", "2", "3", 4]
    assert record.crossings == []
    # A sync_to_async whose crossing failed hands its code to the executor
    # as the request's own offload would: that crossing fails too.
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("sync_to_async call", ZeroDivisionError),
        ("executor submit", ZeroDivisionError),
        ("executor submit", ZeroDivisionError),
        ("executor submit", ZeroDivisionError),
        ("sync_to_async call", ZeroDivisionError),
        ("executor submit", ZeroDivisionError),
        ("async_to_sync call", ZeroDivisionError),
    ]
    swallowed.clear()


def test_bookkeeping_failing_on_the_record_loses_the_figures_not_the_call(swallowed):
    """The record fails wherever it is written (its clock raises): each
    start, return and loop creation is swallowed where it happened, said
    where, and counted not at all (never half a crossing); the calls go on
    as without switchtrace."""

    async def main():
        # asgiref's one thread for thread-sensitive code outside
        # async_to_sync starts once a process, at its first call: started
        # here, before the request, so that the figures do not depend on
        # whether an earlier test started it.
        await sync_to_async(str)(0)
        with tracer.recording() as record:
            record.clock = _broken
            results = await _every_kind_of_call()
            asyncio.new_event_loop().close()
            record.clock = patches.clock  # (the record is finished by its clock)
        return record, results

    record, results = asyncio.run(main())
    assert results == ["1", "2", "3", 4]
    # Only the thread of the default executor (its start is timed by the
    # tracer's clock), which _every_kind_of_call made the loop's.
    assert record.totals() == tracer.Figures(0, 0, 0, 1)
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("sync_to_async start", ZeroDivisionError),
        ("sync_to_async return", ZeroDivisionError),
        ("run_in_executor start", ZeroDivisionError),
        ("offload return", ZeroDivisionError),
        ("asyncio.to_thread start", ZeroDivisionError),
        ("offload return", ZeroDivisionError),
        ("sync_to_async start", ZeroDivisionError),
        ("async_to_sync start", ZeroDivisionError),
        ("async_to_sync return", ZeroDivisionError),
        ("sync_to_async return", ZeroDivisionError),
        ("event loop creation", ZeroDivisionError),
    ]
    swallowed.clear()


def test_bookkeeping_failing_as_a_thread_starts_loses_its_count_not_the_thread(
    swallowed, monkeypatch
):
    """An error of switchtrace's as the request starts a thread (noting the
    start) is swallowed there, said where, and the thread runs as without
    switchtrace: started, and counted not at all."""
    ran = []

    with tracer.recording() as record:
        monkeypatch.setattr(tracer.RequestRecord, "thread_started", _broken)
        thread = threading.Thread(target=ran.append, args=("ran",))
        thread.start()
        thread.join()
        monkeypatch.undo()
    assert ran == ["ran"]
    assert (record.totals(), record.thread_starts) == (tracer.Figures(0, 0, 0, 0), [])
    assert [(where, type(exc)) for where, exc in swallowed] == [("thread start", ZeroDivisionError)]
    swallowed.clear()


def test_bookkeeping_failing_as_a_loop_is_run_from_sync_code_loses_its_crossing_not_the_run(
    swallowed, monkeypatch
):
    """asyncio.run and loop.run_until_complete called from a request's
    synchronous code: an error of switchtrace's making the crossing is
    swallowed there, said where, and the coroutine runs as without
    switchtrace (the loop asyncio.run makes is still counted)."""
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            monkeypatch.setattr(patches, "Crossing", _broken)
            results = [asyncio.run(_echo(1)), loop.run_until_complete(_echo(2))]
            monkeypatch.undo()
    finally:
        loop.close()
    assert results == [1, 2]
    assert record.crossings == []
    assert record.totals() == tracer.Figures(0, 0, 1, 0)
    # The run_until_complete that asyncio.run makes, no longer inside its
    # crossing, makes one of its own, which fails too; on Python 3.10, whose
    # asyncio.run is no Runner, so do the two it makes to shut the loop down.
    runs = 1 if hasattr(asyncio, "Runner") else 3
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("asyncio.run call", ZeroDivisionError),
        *[("run_until_complete call", ZeroDivisionError)] * runs,
        ("run_until_complete call", ZeroDivisionError),
    ]
    swallowed.clear()


def test_bookkeeping_failing_on_the_record_loses_a_sync_runs_figures_not_the_run(swallowed):
    """asyncio.run and loop.run_until_complete called from a request's
    synchronous code while the record fails (its clock raises): each start
    and return is swallowed where it happened, said where, and counted not
    at all; the coroutines run as without switchtrace."""
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            record.clock = _broken
            results = [asyncio.run(_echo(1)), loop.run_until_complete(_echo(2))]
            record.clock = patches.clock
    finally:
        loop.close()
    assert results == [1, 2]
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    # (Python 3.11+ makes asyncio.run's loop as its Runner is entered,
    # before the run; 3.10 in the run.)
    started = [("event loop creation", ZeroDivisionError), ("asyncio.run call", ZeroDivisionError)]
    assert [(where, type(exc)) for where, exc in swallowed] == [
        *(started if hasattr(asyncio, "Runner") else started[::-1]),
        ("asyncio.run return", ZeroDivisionError),
        ("run_until_complete call", ZeroDivisionError),
        ("loop.run_until_complete return", ZeroDivisionError),
    ]
    swallowed.clear()


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_bookkeeping_failing_as_a_runner_is_set_up_is_said_and_the_runner_runs(
    swallowed, monkeypatch
):
    """An error of switchtrace's as an asyncio.Runner is set up in a request
    (clearing its variable in the context the runner copied: here the
    variable cannot be looked up) is swallowed there and said where; the
    runner runs as without switchtrace, and its run is counted."""
    with tracer.recording() as record:
        monkeypatch.setattr(patches, "here", None)
        with asyncio.Runner() as runner:
            monkeypatch.undo()
            result = runner.run(_echo(1))
    assert result == 1
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("asyncio.Runner set-up", TypeError)
    ]
    swallowed.clear()


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="Python 3.12+")
def test_a_task_that_ran_eagerly_to_its_end_is_named_after_its_type():
    """Where its coroutine is gone (get_coro() is None: Python 3.12), after
    its coroutine else: the crossing was named 'None'."""
    from switchtrace.tracer.describe import qualified_name

    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        with tracer.recording() as record:
            loop.run_until_complete(loop.create_task(_made()))
    finally:
        loop.close()
    names = [qualified_name(c.func) for c in record.crossings]
    assert names in ([], ["Task"], ["_made"])  # (a finished task may be no switch at all)
    assert "None" not in names


#: Django's test Client reads a streaming body through a generator
#: (closing_iterator_wrapper) that calls response.close() when the body
#: ends, and close() closes that same generator, still running (Django
#: swallows the ValueError). CPython 3.11 and 3.12 then read the call's
#: inline cache as if the generator were paused in a ``yield from``: a
#: call it cannot specialize (a wrapt proxy's: switchtrace's close was one)
#: keeps changing its cache, and once it looks like the instruction
#: ``yield from`` resumes at, the interpreter takes a stale stack slot for
#: the iterator it delegates to, and crashes.
STREAMED_BY_THE_TEST_CLIENT = """
import os, sys
sys.path.insert(0, {example!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
import django
django.setup()
from django.test import Client
client = Client()
for _ in range(2000):
    assert b"".join(client.get("/stream/").streaming_content)
print("read")
"""


def test_the_test_client_reading_streaming_bodies_does_not_crash_the_interpreter(tmp_path):
    import subprocess
    import sys

    from ..conftest import EXAMPLE, ROOT

    out = subprocess.run(
        [sys.executable, "-c", STREAMED_BY_THE_TEST_CLIENT.format(example=str(EXAMPLE))],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT / "src"),  # (the switchtrace under test)
            "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "t.jsonl"),
            "SWITCHTRACE_EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
            "SWITCHTRACE_EXAMPLE_MIDDLEWARE": "none",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (out.returncode, out.stdout) == (0, "read\n"), out.stderr


def _echo_headers(request):
    from django.http import HttpResponse

    return HttpResponse(f"{request.headers.get('Host')} {request.headers.get('X-A')}")


def _urls():
    from django.urls import path

    return [path("echo/", _echo_headers)]


class _EchoUrls:
    """A URLconf of the echo view alone."""

    urlpatterns = property(lambda self: _urls())


def test_headers_a_server_gives_as_a_generator_reach_the_application():
    """The ASGI specification allows the scope's headers to be any iterable:
    one that is read once is Django's to read, not switchtrace's (it read
    them first, and the view got none: no Host, no cookies)."""

    def with_generator_headers(application):
        async def app(scope, receive, send):
            headers = scope["headers"]
            scope = {**scope, "headers": (item for item in headers)}
            await application(scope, receive, send)

        return app

    with project(ROOT_URLCONF=_EchoUrls()) as (asgi, _wsgi):
        result = run_in_server_loop(
            asgi_request(
                with_generator_headers(asgi),
                "/echo/",
                headers=[(b"host", b"example.com"), (b"x-a", b"1")],
            )
        )
    assert (result.status, result.body) == (200, b"example.com 1")
