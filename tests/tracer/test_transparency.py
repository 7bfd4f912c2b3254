"""The tracer changes nothing the bridged code can see.

Each scenario runs twice, with switchtrace uninstalled and with it installed
and recording, and the two observations must be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import asgiref.sync
import pytest
from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async

from switchtrace import tracer

var: contextvars.ContextVar[str] = contextvars.ContextVar("app_var", default="unset")


def both(scenario: Callable[[], Any]) -> tuple[Any, Any]:
    """(without switchtrace, with switchtrace recording)."""
    tracer.uninstall()
    try:
        plain = scenario()
    finally:
        tracer.install()
    with tracer.recording() as record:
        traced = scenario()
    assert record.totals().context_switches > 0 or scenario.__name__ in NO_SWITCH
    return plain, traced


NO_SWITCH = {"a2s_in_loop", "s2a_of_async", "coroutine_detection", "raised_in_patches"}


def frames(exc: BaseException) -> list[tuple[str, str, str | None]]:
    """The traceback as the application sees it, minus switchtrace's and wrapt's frames."""
    return [
        (f.filename, f.name, f.line)
        for f in traceback.extract_tb(exc.__traceback__)
        if "/switchtrace/" not in f.filename and "/wrapt/" not in f.filename
    ]


class AppError(Exception):
    pass


def test_return_values_are_the_same_objects():
    sentinel = object()

    def sync_fn(x):
        return (x, sentinel)

    async def async_fn(x):
        return (x, sentinel)

    def returns():
        async def main():
            return await sync_to_async(sync_fn)(1)

        return asyncio.run(main()), async_to_sync(async_fn)(2)

    plain, traced = both(returns)
    assert plain == traced == ((1, sentinel), (2, sentinel))


def test_outside_a_request_calls_pass_through_unchanged():
    """Installed and recording nothing (start-up code, a management command,
    a task queue's worker): every call goes straight through the patches."""
    sentinel = object()

    def sync_fn(x):
        return (x, sentinel)

    async def async_fn(x):
        return (x, sentinel)

    def bridges_back(x):
        return async_to_sync(async_fn)(x)

    async def main():
        loop = asyncio.get_running_loop()
        return [
            await sync_to_async(sync_fn)(1),
            await sync_to_async(bridges_back)(2),
            await loop.run_in_executor(None, sync_fn, 3),
            await asyncio.to_thread(sync_fn, 4),
        ]

    assert tracer.patches.patcher.installed and tracer.current_record() is None
    assert asyncio.run(main()) == [(1, sentinel), (2, sentinel), (3, sentinel), (4, sentinel)]
    assert async_to_sync(async_fn)(5) == (5, sentinel)


def _caught(
    awaited: list[Callable[[], Awaitable[Any]]], called: list[Callable[[], Any]]
) -> list[AppError]:
    """The AppError each call raised: those in ``awaited`` awaited in turn in
    one event loop, then those in ``called`` called from here."""
    caught = []

    async def main():
        for call in awaited:
            try:
                await call()
            except AppError as exc:
                caught.append(exc)

    asyncio.run(main())
    for call in called:
        try:
            call()
        except AppError as exc:
            caught.append(exc)
    return caught


def test_exceptions_and_tracebacks_are_unchanged():
    def fail_sync():
        raise AppError("sync side")

    async def fail_async():
        raise AppError("async side")

    def raises():
        caught = _caught([sync_to_async(fail_sync)], [async_to_sync(fail_async)])
        return [(type(e), e.args, frames(e)) for e in caught]

    plain, traced = both(raises)
    assert plain == traced
    assert [args for _t, args, _f in traced] == [("sync side",), ("async side",)]


def test_djangos_debug_page_shows_the_same_frames():
    """Django's technical 500 page leaves out frames whose locals say
    ``__traceback_hide__`` (asgiref's say so): switchtrace's frames on the
    way from the code that raised to the caller are left out too, so the
    page shows what it shows without switchtrace."""
    from django.views.debug import ExceptionReporter

    def fail_sync(*args):
        raise AppError("sync side")

    async def fail_async():
        raise AppError("async side")

    def bridged_back():
        async_to_sync(fail_async)()

    def shown():
        caught = _caught(
            [
                sync_to_async(fail_sync),
                sync_to_async(bridged_back),
                lambda: asyncio.get_running_loop().run_in_executor(None, fail_sync),
                lambda: asyncio.to_thread(fail_sync),
            ],
            [async_to_sync(fail_async)],
        )
        return [
            [
                (frame["filename"], frame["function"], frame["context_line"])
                for frame in ExceptionReporter(
                    None, type(exc), exc, exc.__traceback__
                ).get_traceback_frames()
            ]
            for exc in caught
        ]

    plain, traced = both(shown)
    assert plain == traced
    assert len(traced) == 5
    assert all(frames[-1][1] in ("fail_sync", "fail_async") for frames in traced)


def _debug_page_frames(fail: Callable[[], Any]) -> list[tuple[str, str]]:
    from django.views.debug import ExceptionReporter

    try:
        fail()
    except Exception as exc:
        return [
            (os.path.basename(frame["filename"]), frame["function"])
            for frame in ExceptionReporter(
                None, type(exc), exc, exc.__traceback__
            ).get_traceback_frames()
        ]
    raise AssertionError("did not raise")


def test_djangos_debug_page_leaves_out_the_patches_whose_call_raised():
    """An error raised inside a patched call itself (an executor shut down,
    a thread started twice, a loop whose __init__ raises): the executors'
    submit, Thread.start and the loops' __init__ showed switchtrace's frame
    (wrapt's, Fast or not) on the page, between the caller's and the
    library's. Also a Runner's close, CurrentThreadExecutor's submit (with
    asgiref 3.8's fn= on Python 3.10's run), Future.cancel and main_wrap."""

    class HalfMade(asyncio.SelectorEventLoop):
        def __del__(self):  # (what a loop made in part has to close)
            for sock in (vars(self).get("_ssock"), vars(self).get("_csock")):
                if sock is not None:
                    sock.close()

    class FailingLoop(HalfMade):
        def set_debug(self, enabled):  # (called by BaseEventLoop.__init__)
            raise AppError("loop")

    class NoSelector:  # (the loop's self-pipe cannot be registered)
        pass

    def failing_runner():
        if sys.version_info < (3, 11):  # (asyncio.Runner is 3.11's)
            raise AppError("runner")

        def no_loop():
            raise AppError("runner")

        async def nothing():
            return None

        with asyncio.Runner(loop_factory=no_loop) as runner:
            runner.run(nothing())

    def failing_runner_close():
        if sys.version_info < (3, 11):
            raise AppError("runner close")

        class FailingClose(asyncio.SelectorEventLoop):
            def close(self):
                super().close()
                raise AppError("runner close")

        async def nothing():
            return None

        with asyncio.Runner(loop_factory=FailingClose) as runner:
            runner.run(nothing())

    def submitted_on_its_own_thread(by_keyword):
        own = CurrentThreadExecutor(
            *[None] * ("old_executor" in inspect.signature(CurrentThreadExecutor).parameters)
        )
        return own.submit(fn=str) if by_keyword else own.submit(str)

    def cancelled_without_its_lock():
        future: Future[None] = Future()
        future._condition = None  # type: ignore[assignment]
        future.cancel()

    def raised_in_patches():
        executor = ThreadPoolExecutor(1)
        executor.shutdown()

        async def offload():
            await asyncio.get_running_loop().run_in_executor(executor, str)

        started = threading.Thread(target=str)
        started.start()
        started.join()
        return [
            _debug_page_frames(fail)
            for fail in (
                lambda: asyncio.run(offload()),
                started.start,
                FailingLoop,
                lambda: HalfMade(NoSelector()),
                failing_runner,
                failing_runner_close,
                lambda: submitted_on_its_own_thread(by_keyword=False),
                lambda: submitted_on_its_own_thread(by_keyword=True),  # (asgiref 3.8's fn=)
                cancelled_without_its_lock,
                AsyncToSync(asyncio.sleep).main_wrap,  # (its arguments missing)
            )
        ]

    plain, traced = both(raised_in_patches)
    assert [[name for _file, name in frames] for frames in traced] == [
        [name for _file, name in frames] for frames in plain
    ]
    assert all("patches.py" not in file for frames in traced for file, _name in frames)


def test_contextvars_flow_both_ways_as_before():
    def set_in_sync():
        assert var.get() == "from async"
        var.set("from sync")

    async def set_in_async():
        assert var.get() == "from sync caller"
        var.set("from async callee")

    def flows():
        async def main():
            var.set("from async")
            await sync_to_async(set_in_sync)()
            return var.get()

        first = asyncio.run(main())
        ctx = contextvars.copy_context()

        def sync_caller():
            var.set("from sync caller")
            async_to_sync(set_in_async)()
            return var.get()

        return first, ctx.run(sync_caller)

    plain, traced = both(flows)
    assert plain == traced == ("from sync", "from async callee")


def test_thread_sensitive_code_runs_on_the_same_threads():
    def where():
        return threading.current_thread().name

    async def loop_side():
        return await sync_to_async(where)(), await sync_to_async(where, thread_sensitive=False)()

    def threads():
        out = {}

        def worker():
            out["caller"] = where()
            out["sensitive"], out["insensitive_is_caller"] = async_to_sync(loop_side)()
            out["insensitive_is_caller"] = out["insensitive_is_caller"] == out["caller"]

        # A new thread does not inherit contextvars: carry the request's context.
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(worker,), name="app-sync-thread")
        t.start()
        t.join()
        return out

    plain, traced = both(threads)
    assert plain == traced
    assert traced["sensitive"] == "app-sync-thread"
    assert traced["insensitive_is_caller"] is False


def test_the_task_running_async_to_syncs_code_holds_a_coroutine_named_as_asgirefs():
    """switchtrace's layer around AsyncToSync.main_wrap is the coroutine of
    the task that runs the awaited code (on the outer loop, or on the one
    asgiref makes): it was named _trace_main_wrap, in the task's repr and
    wherever an application names tasks after their coroutine."""

    async def named():
        coro = asyncio.current_task().get_coro()
        return coro.__name__, coro.__qualname__

    def from_a_thread_of_the_loop():
        async def outer():
            return await sync_to_async(async_to_sync(named))()

        return asyncio.run(outer())

    def on_a_new_loop():
        return async_to_sync(named)()

    plain, traced = both(from_a_thread_of_the_loop)
    assert plain == traced == ("main_wrap", "AsyncToSync.main_wrap")
    plain, traced = both(on_a_new_loop)  # asgiref 3.9 on: its new_loop_wrap's task
    assert plain == traced
    assert plain[1].startswith("AsyncToSync.")


def test_coroutine_detection_is_unchanged():
    def f():
        return 1

    async def g():
        return 1

    def coroutine_detection():
        s2a, a2s = sync_to_async(f), async_to_sync(g)
        return [
            inspect.iscoroutinefunction(s2a),
            asgiref.sync.iscoroutinefunction(s2a),
            inspect.iscoroutinefunction(s2a.__call__),
            inspect.iscoroutinefunction(a2s),
            inspect.iscoroutinefunction(SyncToAsync.__call__),
            # An internal method that nothing inspects; switchtrace replaces it
            # with a plain function marked as a coroutine function, which
            # inspect only recognises from Python 3.12.
            asgiref.sync.iscoroutinefunction(AsyncToSync.main_wrap),
            sys.version_info < (3, 12) or inspect.iscoroutinefunction(AsyncToSync.main_wrap),
            inspect.iscoroutinefunction(AsyncToSync.__call__),
            inspect.isfunction(SyncToAsync.__call__),
        ]

    plain, traced = both(coroutine_detection)
    assert plain == traced
    assert traced[1] is True


def test_asgiref_errors_are_unchanged():
    async def g():
        return 1

    def a2s_in_loop():
        async def main():
            try:
                async_to_sync(g)()
            except RuntimeError as exc:
                return str(exc)

        return asyncio.run(main())

    def s2a_of_async():
        try:
            sync_to_async(g)
        except TypeError as exc:
            return str(exc)

    for scenario in (a2s_in_loop, s2a_of_async):
        plain, traced = both(scenario)
        assert plain == traced
        assert traced is not None


def _submitted(executor_class: type, call: Callable[[Any], Any]) -> str:
    """What ``call(executor)`` (a submit) gives, as text: the result of the
    function it submits, or the error."""

    def g(*args, **kwargs):
        return f"g{args}{kwargs}"

    if executor_class is CurrentThreadExecutor:
        parameters = inspect.signature(CurrentThreadExecutor).parameters
        executor = CurrentThreadExecutor(*([None] if parameters else []))
    else:
        executor = executor_class(max_workers=1)
    outcome: dict[str, Any] = {}

    def submit():  # from another thread than a CurrentThreadExecutor's own
        try:
            outcome["future"] = call(executor, g)
        except Exception as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    # In a copy of this context: a recording here is current there too.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(submit,))
    thread.start()
    thread.join()
    try:
        if "error" in outcome:
            return outcome["error"]
        if executor_class is CurrentThreadExecutor:
            executor.run_until_future(outcome["future"])
        return outcome["future"].result(timeout=10)
    finally:
        if executor_class is not CurrentThreadExecutor:
            executor.shutdown()


@pytest.mark.parametrize("executor_class", [ThreadPoolExecutor, CurrentThreadExecutor])
@pytest.mark.parametrize("recording", [False, True])
def test_submit_takes_the_same_arguments(executor_class, recording):
    """The executors' submit takes what the original takes: ``fn=`` by
    keyword where the original allows it (asgiref 3.8's
    CurrentThreadExecutor), and passed on to the function where ``fn`` is
    positional-only (ThreadPoolExecutor)."""
    calls = [
        lambda executor, g: executor.submit(g, 1, k=2),
        lambda executor, g: executor.submit(fn=g),
        lambda executor, g: executor.submit(g, fn=3),
        lambda executor, g: executor.submit(),
    ]

    def outcomes():
        return [_submitted(executor_class, call) for call in calls]

    tracer.uninstall()
    try:
        plain = outcomes()
    finally:
        tracer.install()
    with tracer.recording() if recording else contextlib.nullcontext():
        traced = outcomes()
    assert plain == traced
    assert traced[0] == "g(1,){'k': 2}"


def test_a_submit_whose_signature_cannot_be_read_is_patched_as_positional_only():
    """An executor's submit whose signature inspect cannot read (a C
    method's, or a replacement's broken ``__signature__``) is still patched,
    and calls pass through it; its ``fn`` is taken as positional-only, as
    ThreadPoolExecutor's is, so ``fn=`` by keyword fails as it does there."""

    def original(self, fn, /, *args, **kwargs):
        return fn(*args, **kwargs)

    original.__signature__ = "unreadable"  # type: ignore[attr-defined]
    with pytest.raises((TypeError, ValueError)):  # (which one depends on the Python)
        inspect.signature(original)
    submit = tracer.patches._patch_submit(original)

    def g(*args, **kwargs):
        return args, kwargs

    assert submit(None, g, 1, k=2) == ((1,), {"k": 2})
    with pytest.raises(TypeError):
        original(None, fn=g)
    with pytest.raises(TypeError):
        submit(None, fn=g)


def test_a_submit_without_an_fn_parameter_is_patched():
    """An executor's submit replaced, before switchtrace installs, by a
    wrapper of someone else's that names no ``fn`` (``*args, **kwargs``,
    without functools.wraps) is still patched, and calls pass through it."""

    def original(self, *args, **kwargs):
        return args[0](*args[1:], **kwargs)

    submit = tracer.patches._patch_submit(original)

    def g(*args, **kwargs):
        return args, kwargs

    assert submit(None, g, 1, k=2) == ((1,), {"k": 2})


def test_django_async_unsafe_still_raises():
    from django.core.exceptions import SynchronousOnlyOperation
    from django.db import connection

    def async_unsafe():
        async def main():
            try:
                connection.cursor()
            except SynchronousOnlyOperation as exc:
                return str(exc)

        return asyncio.run(main())

    async_unsafe.__name__ = "a2s_in_loop"  # makes no switch
    plain, traced = both(async_unsafe)
    assert plain == traced
    assert "async context" in traced


def test_the_tracer_starts_no_thread_of_its_own():
    async def g():
        return None

    def counts():
        started = []
        original = threading.Thread.start
        # Put back what the class held: read as an attribute, switchtrace's
        # wrapt wrapper comes back bound (another object), and putting that
        # back would leave a wrapper that uninstall() does not recognise.
        saved = vars(threading.Thread)["start"]

        def spy(self, *a, **k):
            started.append(self.name.split("-")[0])
            return original(self, *a, **k)

        threading.Thread.start = spy
        try:
            async_to_sync(g)()

            async def main():
                await sync_to_async(lambda: None, thread_sensitive=False)()

            asyncio.run(main())
        finally:
            threading.Thread.start = saved
        return sorted(started)

    # The spy above replaces our own patch for the duration, so the count is
    # only asgiref's and asyncio's threads: equal with and without switchtrace.
    plain, traced = both(counts)
    assert plain == traced
    assert "ThreadPoolExecutor" in traced  # asgiref's thread for async_to_sync


@pytest.mark.parametrize("thread_sensitive", [True, False])
def test_cancellation_still_propagates(thread_sensitive):
    import time

    def slow():
        time.sleep(0.05)
        return "finished"

    def cancels():
        async def main():
            task = asyncio.ensure_future(sync_to_async(slow, thread_sensitive=thread_sensitive)())
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                return await task
            except asyncio.CancelledError:
                return "cancelled"

        return asyncio.run(main())

    plain, traced = both(cancels)
    assert plain == traced
