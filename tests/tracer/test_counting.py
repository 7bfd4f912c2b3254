"""What the tracer records for each mechanism, with exact figures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import inspect
import itertools
import operator
import os
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import asgiref.sync
import pytest
from asgiref.sync import AsyncToSync, ThreadSensitiveContext, async_to_sync, sync_to_async

from switchtrace import tracer
from switchtrace.tracer.record import RUN_UNTIL_COMPLETE

from ..support import collect_garbage, wait_for


def here() -> threading.Thread:
    return threading.current_thread()


async def anoop() -> None:
    return None


@pytest.fixture(autouse=True)
def _warm_executors():
    """asgiref's process-wide single-thread executor and the loop's default
    executor start their threads on first use; start them before recording."""

    async def warm():
        await sync_to_async(here)()
        await sync_to_async(here, thread_sensitive=False)()

    asyncio.run(warm())


def test_first_use_of_the_single_thread_executor_starts_its_thread():
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.shutdown()
    SyncToAsync.single_thread_executor = type(SyncToAsync.single_thread_executor)(max_workers=1)

    async def main():
        with tracer.recording() as record:
            first = await sync_to_async(here)()
            await sync_to_async(here)()
        return record, first

    record, first = asyncio.run(main())
    assert record.totals() == tracer.Figures(4, 4, 0, 1)
    assert record.thread_starts[0].thread is first
    assert record.thread_starts[0].crossing is record.crossings[0]


def test_sync_to_async_is_two_switches_and_two_hops():
    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            target = await sync_to_async(here)()
        return record, target, loop

    record, target, loop = asyncio.run(main())
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    [crossing] = record.crossings
    assert crossing.mechanism == "sync_to_async"
    assert crossing.direction == "async->sync"
    assert crossing.func is here
    assert crossing.thread_sensitive is True
    assert crossing.executor == "single_thread"
    assert crossing.source_thread is threading.main_thread()
    assert crossing.target_thread is target
    assert crossing.loop_id == id(loop)
    assert crossing.hop is True
    assert crossing.loop_created is False
    assert crossing.parent is None


def test_thread_sensitive_false_runs_on_the_loop_default_executor():
    async def main():
        with tracer.recording() as record:
            await sync_to_async(here, thread_sensitive=False)()
        return record

    record = asyncio.run(main())
    assert record.crossings[0].executor == "loop_default"
    assert record.crossings[0].thread_sensitive is False


def test_thread_sensitive_context_starts_one_thread_for_the_first_call():
    async def main():
        with tracer.recording() as record:
            async with ThreadSensitiveContext():
                first = await sync_to_async(here)()
                second = await sync_to_async(here)()
        return record, first, second

    record, first, second = asyncio.run(main())
    assert first is second
    assert [c.executor for c in record.crossings] == ["thread_sensitive_context"] * 2
    assert [c.threads_started for c in record.crossings] == [1, 0]
    # The executor's thread, then asgiref's joiner thread started on exit
    # (asgiref >= 3.12), which no crossing caused.
    assert record.thread_starts[0].thread is first
    assert record.thread_starts[0].crossing is record.crossings[0]
    assert all(start.crossing is None for start in record.thread_starts[1:])
    assert record.totals().context_switches == 4


@pytest.mark.skipif(
    "executor" not in inspect.signature(ThreadSensitiveContext).parameters,
    reason="ThreadSensitiveContext(executor=...) is asgiref 3.13's",
)
def test_thread_sensitive_context_given_an_executor_counts_its_calls():
    """asgiref 3.13's ThreadSensitiveContext(executor=...): a
    ThreadPoolExecutor's calls are counted as the context's own are; one of
    another kind (whose submit does not call ThreadPoolExecutor's) counts
    none, as a sync_to_async given one (README, "Limits")."""

    async def main(executor):
        with tracer.recording() as record:
            async with ThreadSensitiveContext(executor=executor):
                first = await sync_to_async(here)()
                second = await sync_to_async(here)()
        return record, first, second

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        record, first, second = asyncio.run(main(pool))
    finally:
        pool.shutdown()
    assert first is second
    assert record.totals() == tracer.Figures(4, 4, 0, 1)
    assert [c.mechanism for c in record.crossings] == ["sync_to_async"] * 2
    assert [c.threads_started for c in record.crossings] == [1, 0]
    record, first, second = asyncio.run(main(_OwnThreadExecutor()))
    assert record.totals() == tracer.Figures(0, 0, 0, 2)
    assert record.crossings == []


def test_async_to_sync_without_a_loop_creates_a_loop_and_a_thread():
    with tracer.recording() as record:
        async_to_sync(anoop)()
    assert record.totals() == tracer.Figures(2, 2, 1, 1)
    [crossing] = record.crossings
    assert crossing.mechanism == "async_to_sync"
    assert crossing.direction == "sync->async"
    assert crossing.loop_created is True
    assert crossing.threads_started == 1
    assert crossing.target_thread is record.thread_starts[0].thread
    assert record.loop_creations[0].crossing is crossing
    assert record.loop_creations[0].loop_id == crossing.loop_id


def test_a_loop_made_at_the_same_tick_as_the_async_to_sync_call_is_its_own():
    """asgiref makes the loop in its new thread, where no request is visible;
    the async_to_sync that runs in it claims it if it was made at or after
    the call. A clock too coarse to tell them apart (here, one that never
    moves) gives both the same time: the loop is still the crossing's."""
    tracer.install(clock=lambda: 7)  # installed already: only the clock changes
    try:
        with tracer.recording() as record:
            async_to_sync(anoop)()
    finally:
        tracer.install(clock=time.perf_counter_ns)
    assert record.totals() == tracer.Figures(2, 2, 1, 1)
    [crossing] = record.crossings
    assert crossing.loop_created is True
    assert [(c.crossing, c.at_ns) for c in record.loop_creations] == [(crossing, 7)]


def test_three_async_to_sync_calls_make_three_loops():
    with tracer.recording() as record:
        for _ in range(3):
            async_to_sync(anoop)()
    assert record.totals() == tracer.Figures(6, 6, 3, 3)
    # One new loop for each call (loop ids are id()s, which a later loop may reuse).
    assert [creation.crossing for creation in record.loop_creations] == record.crossings


@pytest.mark.skipif(not hasattr(asgiref.sync, "AsyncSingleThreadContext"), reason="asgiref 3.10+")
def test_async_to_sync_calls_in_one_single_thread_context_share_a_thread_not_a_loop():
    """Django ticket #36863: asgiref's AsyncSingleThreadContext runs the
    async_to_sync calls made in it in one thread, each still in a loop of
    its own (asyncio.run): three calls are 6 switches and 3 loops, as
    without it, and 1 thread started instead of 3 (by the first call)."""
    from asgiref.sync import AsyncSingleThreadContext

    threads = []

    async def where():
        threads.append(here())

    with tracer.recording() as record:
        with AsyncSingleThreadContext():
            for _ in range(3):
                async_to_sync(where)()
    assert record.totals() == tracer.Figures(6, 6, 3, 1)
    assert len(set(threads)) == 1
    assert [crossing.target_thread for crossing in record.crossings] == threads
    assert [creation.crossing for creation in record.loop_creations] == record.crossings
    [start] = record.thread_starts
    assert (start.thread, start.crossing) == (threads[0], record.crossings[0])


@pytest.mark.skipif(
    "force_new_loop" not in inspect.signature(AsyncToSync.__init__).parameters,
    reason="asgiref without async_to_sync(force_new_loop=)",
)
def test_async_to_sync_forced_to_a_new_loop_makes_one_where_it_would_go_back():
    """In code bridged by sync_to_async, async_to_sync goes back to the
    caller's loop (no loop, no thread made); with force_new_loop=True it
    runs in a loop of its own, in a thread of its own. Both are children of
    the sync_to_async: 6 switches, 6 hops, 1 loop, 1 thread."""

    def bridged():
        async_to_sync(anoop)()
        async_to_sync(anoop, force_new_loop=True)()

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            await sync_to_async(bridged)()
        return record, loop

    record, loop = asyncio.run(main())
    assert record.totals() == tracer.Figures(6, 6, 1, 1)
    outer, back, forced = sorted(record.crossings, key=lambda crossing: crossing.call_ns)
    assert (back.parent, forced.parent) == (outer, outer)
    assert back.loop_id == id(loop)
    assert (back.loop_created, forced.loop_created) == (False, True)
    assert (back.threads_started, forced.threads_started) == (0, 1)
    assert forced.target_thread is record.thread_starts[0].thread


#: Whether asgiref runs an async_to_sync without an outer loop in
#: asyncio.run (3.9+), which shuts the loop's default executor down in a
#: thread of its own; 3.8 runs the loop itself and leaves the executor be.
ASYNCIO_RUN_IN_ASYNC_TO_SYNC = "asyncio.run" in inspect.getsource(AsyncToSync.__call__)


def test_the_thread_that_shuts_down_an_async_to_sync_loops_executor_is_counted():
    """The default executor of the loop asgiref makes for an async_to_sync
    starts a thread for to_thread; asyncio.run, in asgiref's thread and
    outside the request's context, starts one more to shut it down (before
    the call returns: a thread started during the request). Nothing keeps
    the loop once the call has returned, and its entry in switchtrace's map
    of asgiref's loops goes with it."""
    loops = []

    async def offload():
        loop = asyncio.get_running_loop()
        loops.append((weakref.ref(loop), tracer.patches._crossing_loops.get(loop) is not None))
        return await asyncio.to_thread(here)

    with tracer.recording() as record:
        assert async_to_sync(offload)() is not threading.current_thread()
    shutdown = 1 if ASYNCIO_RUN_IN_ASYNC_TO_SYNC else 0
    assert record.totals() == tracer.Figures(4, 4, 1, 2 + shutdown)
    bridge, _offload = record.crossings
    if shutdown:
        assert record.thread_starts[-1].crossing is bridge
        assert record.thread_starts[-1].thread.name.endswith("(_do_shutdown)")
    [(loop, mapped)] = loops
    assert mapped is ASYNCIO_RUN_IN_ASYNC_TO_SYNC
    assert loop() is None  # and so its entry (a WeakIdentityMap's)


def test_threads_an_async_to_syncs_loop_starts_after_its_request_ended_are_not_counted():
    """An async_to_sync in a task the request left running, whose loop
    (asgiref's, in a thread of its own, outside the request's context)
    starts threads after the request ended: the default executor's worker
    for to_thread and asyncio.run's shutdown of that executor are not the
    request's."""
    go = threading.Event()

    async def bridged(entered):
        entered()
        go.wait(10)  # holds asgiref's loop, in its own thread, until the request ended
        return await asyncio.to_thread(here)

    def sync_side(entered):
        return async_to_sync(bridged, force_new_loop=True)(entered)

    async def main():
        loop = asyncio.get_running_loop()
        inside = loop.create_future()

        def entered():
            loop.call_soon_threadsafe(inside.set_result, None)

        with tracer.recording() as record:
            task = asyncio.ensure_future(sync_to_async(sync_side)(entered))
            await inside
            # The start of asgiref's thread is noted once its start returns,
            # which may be after the coroutine began in it.
            while not record.thread_starts:
                await asyncio.sleep(0)
        at_end = record.totals()
        go.set()
        assert await task is not threading.current_thread()
        return record, at_end

    record, at_end = asyncio.run(main())
    # The two calls in progress started; asgiref's loop and its thread.
    assert at_end == record.totals() == tracer.Figures(2, 2, 1, 1)
    assert len(record.thread_starts) == 1


def test_a_thread_an_executor_starts_for_an_offload_is_the_offloads():
    """A loop's default executor starts its first worker thread as
    asyncio.to_thread (or run_in_executor) submits the function: that start
    is the offload's, as the executor's thread for a sync_to_async is the
    sync_to_async's, not its caller's (here asyncio.run's). The thread that
    shuts the executor down starts as asyncio.run closes its runner, before
    it returns: asyncio.run's (on Python 3.11+ it was the request's, of no
    crossing, the call ended as Runner.run returned)."""

    async def main():
        await asyncio.to_thread(here)
        await asyncio.get_running_loop().run_in_executor(None, here)

    with tracer.recording() as record:
        asyncio.run(main())
    assert record.totals() == tracer.Figures(6, 4, 1, 2)
    run, to_thread, in_executor = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (run.mechanism, to_thread.mechanism, in_executor.mechanism) == (
        "asyncio.run",
        "asyncio.to_thread",
        "run_in_executor",
    )
    assert [start.crossing for start in record.thread_starts] == [to_thread, run]
    assert (to_thread.threads_started, in_executor.threads_started, run.threads_started) == (
        1,
        0,
        1,
    )


def test_anyios_own_offload_is_no_crossing_but_its_thread_is_counted():
    """anyio's to_thread.run_sync (Starlette's run_in_threadpool) runs the
    function in a worker thread of anyio's, not through asyncio's executor:
    no switch nor hop is seen (the README's Definitions say so), but the
    worker thread it starts is counted, asyncio.run's."""
    import anyio.to_thread

    ran_on = []

    async def main():
        await anyio.to_thread.run_sync(lambda: ran_on.append(threading.get_ident()))

    with tracer.recording() as record:
        asyncio.run(main())
    assert ran_on != [threading.get_ident()]
    assert record.totals() == tracer.Figures(2, 0, 1, 1)
    [run] = record.crossings
    assert (run.mechanism, run.threads_started) == ("asyncio.run", 1)


def test_asyncio_run_is_two_switches_without_a_hop():
    with tracer.recording() as record:
        asyncio.run(anoop())
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    [crossing] = record.crossings
    assert crossing.mechanism == "asyncio.run"
    assert crossing.loop_created is True
    assert crossing.target_thread is crossing.source_thread
    assert crossing.hop is False
    # Its code ends where the caller gets control back.
    assert crossing.end_ns == crossing.return_ns is not None


def test_asyncio_run_of_an_applications_wrapper_coroutine_names_that_coroutine():
    """Only uvloop.run's own wrapper is seen through to the coroutine it
    awaits: an application's coroutine that is also called ``wrapper`` and
    also closes over a ``main`` is the crossing's func itself."""

    def decorated(main):
        async def wrapper():
            return await main()

        return wrapper

    coro = decorated(anoop)()
    with tracer.recording() as record:
        asyncio.run(coro)
    [crossing] = record.crossings
    assert crossing.func is coro


def test_offloads_by_request_code_are_recorded():
    def work(x):
        return x * 2

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            assert await asyncio.to_thread(work, 2) == 4
            assert await loop.run_in_executor(None, work, 3) == 6
        return record, id(loop)

    record, loop_id = asyncio.run(main())
    assert [(c.mechanism, c.func, c.executor, c.loop_id) for c in record.crossings] == [
        ("asyncio.to_thread", work, "ThreadPoolExecutor", loop_id),
        ("run_in_executor", work, "ThreadPoolExecutor", loop_id),
    ]
    assert record.totals().context_switches == 4
    assert record.totals().thread_hops == 4


def test_an_exception_in_an_offload_still_counts_the_return():
    def boom():
        raise KeyError("x")

    async def main():
        loop = asyncio.get_running_loop()
        # One worker: a second offload finding the first worker not idle yet
        # would start another thread.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        with tracer.recording() as record:
            with pytest.raises(KeyError):
                await loop.run_in_executor(None, boom)
            with pytest.raises(KeyError):
                await asyncio.to_thread(boom)
        return record

    record = asyncio.run(main())
    # (the thread: the default executor's)
    assert record.totals() == tracer.Figures(4, 4, 0, 1)
    assert [(c.mechanism, c.exception) for c in record.crossings] == [
        ("run_in_executor", "KeyError"),
        ("asyncio.to_thread", "KeyError"),
    ]


def test_an_offload_leaves_the_callers_context_and_the_workers_as_they_were():
    """The offload is current where its function runs, and only there: the
    caller's next call is the request's own, and the worker thread, whose
    own context run_in_executor runs the function in, keeps nothing of the
    request once the function has returned."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            await loop.run_in_executor(pool, here)
            after_offload = tracer.current_crossing()
            await sync_to_async(here)()
        return record, after_offload

    try:
        record, after_offload = asyncio.run(main())
        on_the_worker = pool.submit(tracer.patches.here.get).result()
    finally:
        pool.shutdown(wait=True)
    assert (after_offload, on_the_worker) == (None, None)
    offload, bridge = record.crossings
    assert (offload.mechanism, bridge.mechanism, bridge.parent) == (
        "run_in_executor",
        "sync_to_async",
        None,
    )
    assert record.totals() == tracer.Figures(4, 4, 0, 1)


def test_an_offload_of_a_contexts_other_method_is_not_taken_for_to_thread():
    """asyncio.to_thread submits a partial of a context's run(); a partial of
    another of its methods is an ordinary function, run as given."""
    variable = contextvars.ContextVar("offloaded")
    context = contextvars.copy_context()

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            got = await loop.run_in_executor(None, functools.partial(context.get, variable, 7))
        return record, got

    record, got = asyncio.run(main())
    assert got == 7
    [offload] = record.crossings
    assert offload.mechanism == "run_in_executor"


def test_nested_crossings_know_their_parent_and_the_outer_thread():
    """sync_to_async -> async_to_sync -> sync_to_async: the innermost sync code
    goes back to the thread of the outer sync code (CurrentThreadExecutor)."""
    threads = {}

    async def middle():
        threads["loop_side"] = here()
        threads["inner"] = await sync_to_async(here)()

    def outer():
        threads["outer"] = here()
        async_to_sync(middle)()

    async def main():
        with tracer.recording() as record:
            await sync_to_async(outer)()
        return record

    record = asyncio.run(main())
    s2a_outer, a2s, s2a_inner = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (s2a_outer.mechanism, a2s.mechanism, s2a_inner.mechanism) == (
        "sync_to_async",
        "async_to_sync",
        "sync_to_async",
    )
    assert a2s.parent is s2a_outer
    assert s2a_inner.parent is a2s
    assert a2s.loop_created is False
    assert a2s.target_thread is threads["loop_side"] is threading.main_thread()
    assert s2a_inner.executor == "current_thread"
    assert s2a_inner.target_thread is threads["outer"] is threads["inner"]
    assert record.totals() == tracer.Figures(6, 6, 0, 0)


def test_a_coroutine_sent_back_to_the_loop_by_bridged_code_is_the_crossings():
    """sync code run by sync_to_async hands a coroutine back to the request's
    loop (asyncio.run_coroutine_threadsafe(...).result(), the pattern older
    than async_to_sync): the coroutine's task runs on the loop's thread in a
    copy of the bridged code's context, and what it does there is the
    crossing's. Its sync_to_async was given the request as its parent, and
    tracer.current_crossing() there said None (since the change for tasks
    sharing one context)."""

    async def sent_back():
        await sync_to_async(here, thread_sensitive=False)()
        return tracer.current_crossing()

    def bridged(loop):
        return asyncio.run_coroutine_threadsafe(sent_back(), loop).result()

    async def main():
        with tracer.recording() as record:
            seen = await sync_to_async(bridged)(asyncio.get_running_loop())
        return record, seen

    record, seen = asyncio.run(main())
    outer, inner = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (outer.parent, inner.parent, seen) == (None, outer, outer)
    # The inner call starts the new loop's default executor's thread.
    assert record.totals() == tracer.Figures(4, 4, 0, 1)
    assert record.thread_starts[0].crossing is inner


def test_an_offload_by_a_coroutine_sent_back_to_the_loop_is_its_own_crossing():
    """The coroutine sent back (above) runs on the thread that made the
    crossing, which is current there: an offload it makes is a crossing of
    its own, the bridge's child, not the bridge submitting its code again."""

    async def sent_back():
        return await asyncio.get_running_loop().run_in_executor(None, here)

    def bridged(loop):
        return asyncio.run_coroutine_threadsafe(sent_back(), loop).result()

    async def main():
        with tracer.recording() as record:
            await sync_to_async(bridged)(asyncio.get_running_loop())
        return record

    record = asyncio.run(main())
    outer, offload = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (offload.mechanism, offload.parent) == ("run_in_executor", outer)
    # The offload starts the new loop's default executor's thread.
    assert record.totals() == tracer.Figures(4, 4, 0, 1)


def test_a_failed_bridge_call_that_never_switched_counts_nothing():
    async def main():
        with tracer.recording() as record:
            with pytest.raises(RuntimeError, match="same thread as an async event loop"):
                async_to_sync(anoop)()
        return record

    record = asyncio.run(main())
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    assert record.crossings == []


def test_an_exception_in_bridged_code_still_counts_the_return():
    def boom():
        raise KeyError("x")

    async def main():
        with tracer.recording() as record:
            with pytest.raises(KeyError):
                await sync_to_async(boom)()
        return record

    record = asyncio.run(main())
    assert record.totals().context_switches == 2
    assert record.crossings[0].exception == "KeyError"


def test_an_exception_in_async_to_syncs_code_still_counts_the_return():
    async def boom():
        raise KeyError("x")

    with tracer.recording() as record:
        with pytest.raises(KeyError):
            async_to_sync(boom)()
    assert record.totals() == tracer.Figures(2, 2, 1, 1)
    assert record.crossings[0].exception == "KeyError"


def test_an_exception_in_asyncio_runs_code_still_counts_the_return():
    async def boom():
        raise KeyError("x")

    with tracer.recording() as record:
        with pytest.raises(KeyError):
            asyncio.run(boom())
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    [crossing] = record.crossings
    assert (crossing.mechanism, crossing.exception) == ("asyncio.run", "KeyError")
    assert crossing.end_ns == crossing.return_ns is not None


def test_figures_count_the_return_trip_of_a_call_in_progress():
    seen = {}

    def inside():
        record = tracer.current_record()
        seen["figures"] = record.figures(tracer.current_crossing())
        seen["totals"] = record.totals()

    async def main():
        with tracer.recording():
            await sync_to_async(inside)()

    asyncio.run(main())
    assert seen["figures"] == tracer.Figures(2, 2, 0, 0)
    assert seen["totals"] == tracer.Figures(1, 1, 0, 0)


def test_figures_read_in_a_task_that_outlived_its_crossing_count_no_return_trip():
    """A task the code of an async_to_sync (inside a sync_to_async) left
    running on the request's loop reads the figures once both crossings have
    returned: it is still in their context, but no return trip is ahead of
    it; both returns are counted already, once."""
    release = asyncio.Event()

    async def late():
        await release.wait()
        record = tracer.current_record()
        return record.figures(tracer.current_crossing()), tracer.current_crossing()

    async def spawn():
        return asyncio.create_task(late())

    def outer():
        return async_to_sync(spawn)()

    async def main():
        with tracer.recording() as record:
            task = await sync_to_async(outer)()
            release.set()
            figures, inside = await task
        return record, figures, inside

    record, figures, inside = asyncio.run(main())
    assert inside.mechanism == "async_to_sync"
    assert inside.return_ns is not None
    assert figures == record.totals() == tracer.Figures(4, 4, 0, 0)


def test_an_offload_left_running_counts_the_switch_it_made_and_no_more():
    """A fire-and-forget offload (run_in_executor not awaited, an email sent
    in the background) still running when the headers go out and when the
    request ends: one switch, there. Its return is not anticipated in the
    headers (they counted 2 while the record ended with 1), nor counted
    after the end (the listeners had seen 1; spans built later saw 2)."""
    started, release = threading.Event(), threading.Event()
    seen = []

    def send_mail():
        started.set()
        release.wait(10)

    async def main():
        with tracer.recording() as record:
            asyncio.get_running_loop().run_in_executor(None, send_mail)
            while not started.is_set():
                await asyncio.sleep(0)
            headers = record.mark_headers()
        seen.append(record.totals())
        release.set()
        await asyncio.sleep(0)  # (let the executor's done callback run)
        return record, headers

    tracer.add_listener(lambda record: seen.append(record.totals()))
    try:
        record, headers = asyncio.run(main())  # (shuts the default executor down: waits for it)
    finally:
        tracer.remove_listener(tracer._listeners[-1])
    # (the thread: this new loop's default executor's)
    assert headers == tracer.Figures(1, 1, 0, 1)
    assert seen == [tracer.Figures(1, 1, 0, 1)] * 2
    assert record.totals() == tracer.Figures(1, 1, 0, 1)
    [offload] = record.crossings
    assert offload.end_ns is not None  # timed all the same


def test_an_async_to_sync_whose_request_ends_before_its_code_starts_counts_nothing():
    """The request ends (on another thread, a server closing its response)
    between an async_to_sync's call and asgiref's main_wrap: the crossing
    never starts in the ended record, whose figures were handed on."""

    class EndsTheRequestFirst(AsyncToSync):
        def main_wrap(self, *args, **kwargs):
            record.finish()  # what the other thread does at this moment
            return super().main_wrap(*args, **kwargs)

    with tracer.recording() as record:
        EndsTheRequestFirst(anoop)()
    assert record.crossings == []
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


def test_a_bridge_call_returning_after_its_request_ended_leaves_the_figures_alone():
    """A task the request left running, in a sync_to_async when the request
    ends: the return comes later and is not counted. Nor is a call queued
    behind it, which the worker starts after the request ended: what runs
    then is not part of the request, neither a switch nor a crossing."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    inside, release = threading.Event(), threading.Event()

    def work():
        inside.set()
        release.wait(10)

    async def main():
        with tracer.recording() as record:
            task = asyncio.ensure_future(
                sync_to_async(work, thread_sensitive=False, executor=pool)()
            )
            while not inside.is_set():
                await asyncio.sleep(0)
            queued = asyncio.ensure_future(
                sync_to_async(here, thread_sensitive=False, executor=pool)()
            )
            await asyncio.sleep(0)  # (the queued call's task submits it to the pool)
            headers = record.mark_headers()
        at_end = record.totals()
        release.set()
        await task
        assert await queued is not threading.current_thread()  # (it ran, in the pool)
        return record, headers, at_end

    try:
        record, headers, at_end = asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    # The first call's start, and the pool's thread.
    assert headers == at_end == record.totals() == tracer.Figures(1, 1, 0, 1)
    assert [c.func for c in record.crossings] == [work]


def test_a_task_left_running_after_its_request_counts_no_thread_or_loop_it_makes():
    """A task the request started and left running still sees the request
    in its context: the threads and loops it makes after the request ended
    are not the request's."""
    go = asyncio.Event()

    async def left_running():
        await go.wait()
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        asyncio.new_event_loop().close()

    async def main():
        with tracer.recording() as record:
            task = asyncio.ensure_future(left_running())
            await asyncio.sleep(0)
        at_end = record.totals()
        go.set()
        await task
        return record, at_end

    record, at_end = asyncio.run(main())
    assert at_end == record.totals() == tracer.Figures(0, 0, 0, 0)
    assert (record.thread_starts, record.loop_creations) == ([], [])


def test_a_task_left_running_after_its_request_makes_no_crossing():
    """The bridges and offloads a task the request left running makes after
    the request ended are no crossings: the code they run sees the crossing
    that was current where the task was made (none, at the request's level)."""
    go = asyncio.Event()

    async def seen_in_async():
        return tracer.current_crossing()

    def seen_in_sync():
        return tracer.current_crossing(), async_to_sync(seen_in_async)()

    async def left_running():
        await go.wait()
        loop = asyncio.get_running_loop()
        return (
            await sync_to_async(seen_in_sync)(),
            await sync_to_async(seen_in_sync, thread_sensitive=False)(),
            await loop.run_in_executor(None, tracer.current_crossing),
            await asyncio.to_thread(tracer.current_crossing),
        )

    async def main():
        with tracer.recording() as record:
            task = asyncio.ensure_future(left_running())
            await asyncio.sleep(0)
        go.set()
        return record, await task

    record, seen = asyncio.run(main())
    assert seen == ((None, None), (None, None), None, None)
    assert record.crossings == []
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


def test_a_crossing_from_a_thread_threading_did_not_start_has_that_thread_as_source():
    """A loop run in a thread started with _thread (by C code, an embedding
    interpreter): threading knows the thread only once it is asked for it
    there. The crossing's source is the thread threading.current_thread()
    gives there, not None."""
    import _thread

    done = threading.Event()
    seen: dict[str, Any] = {}

    def body():
        try:
            loop = asyncio.new_event_loop()

            async def main():
                seen["known"] = _thread.get_ident() in threading._active  # type: ignore[attr-defined]
                with tracer.recording() as record:
                    seen["target"] = await sync_to_async(here, thread_sensitive=False)()
                return record

            try:
                seen["record"] = loop.run_until_complete(main())
            finally:
                loop.close()
            seen["thread"] = threading.current_thread()
        finally:
            done.set()

    _thread.start_new_thread(body, ())
    assert done.wait(10)
    assert seen["known"] is False
    [crossing] = seen["record"].crossings
    assert isinstance(seen["thread"], threading._DummyThread)  # type: ignore[attr-defined]
    assert crossing.source_thread is seen["thread"]
    assert crossing.target_thread is seen["target"] is not seen["thread"]
    assert seen["record"].totals() == tracer.Figures(2, 2, 0, 1)


def test_a_loop_run_in_a_requests_context_after_it_ended_counts_nothing():
    """Synchronous code that kept a copy of the request's context runs
    loops after the request ended: neither run is the request's."""
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            context = contextvars.copy_context()
        at_end = record.totals()
        assert context.run(loop.run_until_complete, anoop()) is None
        assert context.run(asyncio.run, anoop()) is None
    finally:
        loop.close()
    assert at_end == record.totals() == tracer.Figures(0, 0, 0, 0)
    assert (record.crossings, record.loop_creations) == ([], [])


def test_uninstall_forgets_the_loops_it_saw_made():
    """A loop made outside every request is remembered, with the time it
    was made, until an async_to_sync running in it looks whether it was
    made for that call. uninstall forgets it: installed again with a clock
    of other times, a loop made before is not taken for one made for an
    async_to_sync that goes back to it."""
    loop = asyncio.new_event_loop()
    tracer.uninstall()
    tracer.install(clock=itertools.count(1).__next__)

    async def main():
        with tracer.recording() as record:
            await sync_to_async(async_to_sync(anoop))()
        return record

    try:
        record = loop.run_until_complete(main())
    finally:
        loop.close()
        tracer.uninstall()
        tracer.install()
    assert record.totals() == tracer.Figures(4, 4, 0, 0)
    assert [c.loop_created for c in record.crossings] == [False, False]


def test_timestamps_come_from_the_injected_clock():
    ticks = itertools.count(1000)

    def sync_side():
        async_to_sync(anoop)()

    async def main():
        tracer.install(clock=lambda: next(ticks))  # installed already: only the clock changes
        try:
            with tracer.recording() as record:
                await sync_to_async(sync_side)()
        finally:
            tracer.install(clock=time.perf_counter_ns)
        return record

    record = asyncio.run(main())
    s2a, a2s = sorted(record.crossings, key=lambda c: c.call_ns)
    # begin, then one tick each, in that order: the sync_to_async's call and
    # start; the async_to_sync's call and start (in the loop); its end (in
    # the loop), its return and the sync_to_async's end (on the worker
    # thread, in that order); the sync_to_async's return; the record's end.
    # The end is timed once asgiref's main_wrap has handed the result to
    # the worker thread, which may take the GIL first: then the end is the
    # return's tick (see test_an_async_to_sync_never_ends_after_its_return),
    # and the one the loop thread took for it is lost.
    assert (
        record.begin_ns,
        (s2a.call_ns, s2a.start_ns),
        (a2s.call_ns, a2s.start_ns),
        s2a.return_ns,
        record.end_ns,
    ) == (1000, (1001, 1002), (1003, 1004), 1008, 1009)
    assert (a2s.end_ns, a2s.return_ns, s2a.end_ns) in {
        (1005, 1006, 1007),  # the end timed first
        (1005, 1005, 1006),  # the return noted first, then the sync_to_async's end
        (1005, 1005, 1007),  # the return noted first, then the end timed
    }
    assert s2a.queue_wait_ns == 1


def test_an_offloads_timestamps_come_from_the_injected_clock():
    """An offload's call is timed on the loop's thread, its start, end and
    return on the worker thread, in that order (no bridge of ours awaits
    it). One worker, started before the recording: no thread start reads
    the clock."""
    ticks = itertools.count(1000)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        await loop.run_in_executor(None, here)
        tracer.install(clock=lambda: next(ticks))  # installed already: only the clock changes
        try:
            with tracer.recording() as record:
                await asyncio.to_thread(here)
                await loop.run_in_executor(None, here)
        finally:
            tracer.install(clock=time.perf_counter_ns)
        return record

    try:
        record = asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    assert record.begin_ns == 1000
    assert [
        (c.mechanism, c.call_ns, c.start_ns, c.end_ns, c.return_ns) for c in record.crossings
    ] == [
        ("asyncio.to_thread", 1001, 1002, 1003, 1004),
        ("run_in_executor", 1005, 1006, 1007, 1008),
    ]
    assert record.end_ns == 1009
    assert record.totals() == tracer.Figures(4, 4, 0, 0)


@pytest.mark.parametrize(
    "order", ["return noted, then end timed", "end stored mid-return", "return stored mid-end"]
)
def test_an_async_to_sync_never_ends_after_its_return(order):
    """asgiref's main_wrap hands the result to the waiting thread before the
    async side's end is timed (after it, in the loop): that thread may note
    the return first, or read its clock for the return and store it only
    after the end is stored. Either way the end is not later than the
    return. The clock forces each order: the loop thread's first tick after
    the async_to_sync's start (the end's) waits for the worker thread's (the
    return's), which, in the second order, is given only once the end is
    stored. In the third, the end's tick comes first and is handed back
    only once the return is stored: the end, the earlier, is kept."""
    ticks = itertools.count(1000)
    main = threading.current_thread()
    given: list[int] = []
    firsts: set[str] = set()
    return_read = threading.Event()
    end_read, returned = threading.Event(), threading.Event()
    holder: list[tracer.RequestRecord] = []

    def ended() -> bool:
        return any(c.mechanism == tracer.ASYNC_TO_SYNC and c.end_ns for c in holder[0].crossings)

    def clock() -> int:
        after_start = len(given) >= 5  # 1000-1004: up to the async_to_sync's start
        on_main = threading.current_thread() is main
        if order == "return stored mid-end" and after_start:
            if on_main and "end" not in firsts:
                firsts.add("end")
                tick = next(ticks)
                given.append(tick)
                end_read.set()
                returned.wait(10)
                return tick
            if not on_main:
                end_read.wait(10)
        if after_start and on_main and "end" not in firsts:
            firsts.add("end")
            return_read.wait(10)
        tick = next(ticks)
        given.append(tick)
        if after_start and not on_main and "return" not in firsts:
            firsts.add("return")
            return_read.set()
            if order == "end stored mid-return":
                deadline = time.monotonic() + 10
                while not ended() and time.monotonic() < deadline:
                    time.sleep(0.001)
        return tick

    def sync_side():
        async_to_sync(anoop)()
        returned.set()

    async def run():
        tracer.install(clock=clock)  # installed already: only the clock changes
        try:
            with tracer.recording() as record:
                holder.append(record)
                await sync_to_async(sync_side)()
        finally:
            tracer.install(clock=time.perf_counter_ns)
        return record

    record = asyncio.run(run())
    [a2s] = [c for c in record.crossings if c.mechanism == tracer.ASYNC_TO_SYNC]
    if order == "return stored mid-end":
        assert (a2s.start_ns, a2s.return_ns, a2s.end_ns) == (1004, 1006, 1005)
    else:
        assert (a2s.start_ns, a2s.return_ns, a2s.end_ns) == (1004, 1005, 1005)


def test_a_thread_start_is_timed_before_the_thread_runs():
    """The new thread may run code before start() returns: its start is
    timed before the call. Here the new thread always takes a tick first
    once it exists (the clock waits for it there), as it may on a busy
    machine: a start timed after the call would come after that tick."""
    ticks = itertools.count(1000)
    ran = threading.Event()
    thread = threading.Thread(target=lambda: (next(ticks), ran.set()))

    def clock():
        if thread.ident is not None and threading.current_thread() is not thread:
            ran.wait(10)
        return next(ticks)

    tracer.install(clock=clock)  # installed already: only the clock changes
    try:
        with tracer.recording() as record:
            thread.start()
            thread.join()
    finally:
        tracer.install(clock=time.perf_counter_ns)
    [start] = record.thread_starts
    # begin, the start, the thread's own tick, the end.
    assert (record.begin_ns, start.at_ns, start.thread, record.end_ns) == (1000, 1001, thread, 1003)


def test_concurrent_requests_never_mix():
    async def one(n):
        with tracer.recording() as record:
            for _ in range(n):
                await sync_to_async(here, thread_sensitive=False)()
                await asyncio.sleep(0)
        return n, record

    async def main():
        return await asyncio.gather(*(one(n) for n in range(1, 21)))

    for n, record in asyncio.run(main()):
        assert record.totals().context_switches == 2 * n
        assert len(record.crossings) == n


def test_concurrent_threads_never_mix():
    results = {}

    def one(n):
        with tracer.recording() as record:
            for _ in range(n):
                async_to_sync(anoop)()
        results[n] = record

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, record in results.items():
        assert record.totals() == tracer.Figures(2 * n, 2 * n, n, n)


def test_the_record_is_bounded_and_counts_what_it_drops():
    async def main():
        with tracer.recording(max_events=5) as record:
            for _ in range(12):
                await sync_to_async(here, thread_sensitive=False)()
        return record

    record = asyncio.run(main())
    assert len(record.crossings) == 5
    assert record.dropped == 7
    assert record.totals().context_switches == 24


def test_the_record_bounds_every_list_it_keeps_and_counts_what_it_drops():
    """async_to_sync's crossing, its loop and its thread: each list keeps
    max_events of them, and the figures count all."""
    with tracer.recording(max_events=2) as record:
        for _ in range(3):
            async_to_sync(anoop)()
    assert record.totals() == tracer.Figures(6, 6, 3, 3)
    assert (len(record.crossings), len(record.loop_creations), len(record.thread_starts)) == (
        2,
        2,
        2,
    )
    assert record.dropped == 3


def test_nothing_is_recorded_outside_a_request():
    async def main():
        await sync_to_async(here)()

    asyncio.run(main())
    assert tracer.current_record() is None


def _switchtrace_variables() -> list[str]:
    return [var.name for var in contextvars.copy_context() if var.name.startswith("switchtrace")]


async def _variables_of_switchtrace() -> list[str]:
    return _switchtrace_variables()


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_a_runner_set_up_outside_a_request_gets_no_variable_of_switchtrace():
    """switchtrace clears its variable in the context an asyncio.Runner
    copies as it is set up in a request (a runner may be kept after it); a
    runner set up outside every request runs its coroutines in the context
    asyncio copied, with nothing of switchtrace's added. In a thread of its
    own, whose context starts empty."""
    seen = []

    def outside():
        with asyncio.Runner() as runner:
            seen.append(runner.run(_variables_of_switchtrace()))

    thread = threading.Thread(target=outside)
    thread.start()
    thread.join()
    assert seen == [[]]


def test_a_request_adds_one_context_variable_on_every_side():
    """asgiref visits every context variable twice per sync_to_async (its
    _restore_context): switchtrace keeps to one, at the request's level and
    inside bridged code on both sides."""
    seen = {}

    def sync_side():
        seen["sync"] = _switchtrace_variables()
        async_to_sync(async_side)()

    async def async_side():
        seen["async"] = _switchtrace_variables()

    async def main():
        with tracer.recording() as record:
            seen["request"] = _switchtrace_variables()
            await sync_to_async(sync_side)()
        return record

    record = asyncio.run(main())
    assert record.totals().context_switches == 4
    assert seen == {"request": ["switchtrace"], "sync": ["switchtrace"], "async": ["switchtrace"]}


def test_a_crossing_lets_go_of_what_it_ran_once_it_starts():
    """Crossings outlive the request (spans are built from them): the function
    handed to the executor (asgiref's partial, holding the bridged call's
    arguments) is not kept with them."""

    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)

    def use(obj):
        return type(obj).__name__

    async def main(obj):
        with tracer.recording() as record:
            assert await sync_to_async(use)(obj) == "Payload"
            assert await asyncio.to_thread(use, obj) == "Payload"
        return record

    record = asyncio.run(main(payload))
    del payload
    gc.collect()
    assert alive() is None
    assert [c.mechanism for c in record.crossings] == ["sync_to_async", "asyncio.to_thread"]


def test_a_thread_started_through_the_class_namespace_is_counted_as_itself():
    """``vars(Thread)["start"](thread)``, as code that saves and restores the
    method does, calls the patch unbound: the thread is its first argument."""
    with tracer.recording() as record:
        thread = threading.Thread(target=lambda: None)
        vars(threading.Thread)["start"](thread)
        thread.join()
    assert record.totals() == tracer.Figures(0, 0, 0, 1)
    assert [start.thread for start in record.thread_starts] == [thread]


# The rules of RequestRecord.start/close are written out on the sync_to_async
# path (patches._arrive and the SyncToAsync.__call__ patch); the tests below
# name the rules each copy must keep, for sync_to_async and for async_to_sync
# (which goes through the methods).


class _OwnThreadExecutor(concurrent.futures.Executor):
    """An executor switchtrace does not patch: runs the function in a thread
    of its own, so the crossing's start on the target is never seen."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()

        def run():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        threading.Thread(target=run).start()
        return future


def test_a_crossing_never_seen_to_start_counts_no_return():
    """A return is counted only for a crossing whose start was counted: an
    odd number of switches would be nonsense."""

    seen = []

    def inside():
        figures = tracer.current_record().figures(tracer.current_crossing())
        seen.append((figures.context_switches, figures.thread_hops))
        return here()

    async def main():
        with tracer.recording() as record:
            bridge = sync_to_async(inside, thread_sensitive=False, executor=_OwnThreadExecutor())
            assert await bridge()
        return record

    record = asyncio.run(main())
    # The executor's own thread is started on the request's behalf. The
    # code's figures anticipate no return for the call (the thread may run
    # it before its start is counted).
    assert record.totals() == tracer.Figures(0, 0, 0, 1)
    assert seen == [(0, 0)]
    assert record.crossings == []


def test_crossings_started_after_the_headers_are_marked_so():
    def sync_side():
        async_to_sync(anoop)()

    async def main():
        with tracer.recording() as record:
            await sync_to_async(here)()
            frozen = record.mark_headers()
            await sync_to_async(sync_side)()
        return record, frozen

    record, frozen = asyncio.run(main())
    assert frozen == tracer.Figures(2, 2, 0, 0)
    assert [(c.mechanism, c.before_headers) for c in record.crossings] == [
        ("sync_to_async", True),
        ("sync_to_async", False),
        ("async_to_sync", False),
    ]
    assert record.totals().context_switches == 6


def test_a_call_cancelled_before_it_ran_leaves_nothing_for_the_collector():
    """What switchtrace hands the executor refers to the crossing, never the
    other way round: a call cancelled while queued (its function never run)
    frees its arguments at once, without the cyclic garbage collector."""

    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    release = threading.Event()

    async def main(obj):
        with tracer.recording() as record:
            busy = asyncio.ensure_future(
                sync_to_async(release.wait, thread_sensitive=False, executor=pool)()
            )
            await asyncio.sleep(0.01)
            queued = asyncio.ensure_future(
                sync_to_async(type, thread_sensitive=False, executor=pool)(obj)
            )
            await asyncio.sleep(0.01)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            assert await busy is True
        return record

    gc.disable()
    try:
        record = asyncio.run(main(payload))
        pool.shutdown(wait=True)
        del payload
        assert alive() is None
    finally:
        gc.enable()
    assert [c.func for c in record.crossings] == [release.wait]


def test_an_executor_used_inside_code_bridged_elsewhere_claims_nothing():
    """sync_to_async through an executor switchtrace does not patch never
    shows its start; a ThreadPoolExecutor used by the bridged code, on another
    thread, is not that crossing's executor."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def uses_a_pool():
        return pool.submit(here).result()

    async def main():
        with tracer.recording() as record:
            executor = _OwnThreadExecutor()
            bridge = sync_to_async(uses_a_pool, thread_sensitive=False, executor=executor)
            assert await bridge() is not threading.current_thread()
        return record

    try:
        record = asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    # The two executors' threads are started on the request's behalf; no
    # crossing is seen to start.
    assert record.totals() == tracer.Figures(0, 0, 0, 2)
    assert record.crossings == []


def test_a_call_cancelled_after_a_worker_took_it_counts_nothing():
    """The caller gives up (its task is cancelled) while the call is queued;
    a worker takes it in the loop iteration before asyncio passes the
    cancellation on to the executor, so the bridged code runs anyway. The
    caller counted no return, so its start is not counted either."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    release, ran = threading.Event(), threading.Event()

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            first = asyncio.ensure_future(
                sync_to_async(release.wait, thread_sensitive=False, executor=pool)()
            )
            await asyncio.sleep(0.01)
            queued = asyncio.ensure_future(
                sync_to_async(ran.set, thread_sensitive=False, executor=pool)()
            )
            await asyncio.sleep(0.01)
            queued.cancel()

            def free_the_worker():  # runs before the cancellation reaches the pool
                release.set()
                assert ran.wait(5)

            loop.call_soon(free_the_worker)
            with pytest.raises(asyncio.CancelledError):
                await queued
            await first
        return record

    record = asyncio.run(main())
    pool.shutdown(wait=True)
    assert ran.is_set()
    # The first call, and the pool's thread; nothing of the cancelled one.
    assert record.totals() == tracer.Figures(2, 2, 0, 1)
    assert [c.func for c in record.crossings] == [release.wait]


@pytest.mark.parametrize("how", ["asyncio.to_thread", "run_in_executor"])
def test_an_offload_whose_caller_is_cancelled_returns_then(how):
    """The caller stops waiting (cancelled) while the function runs: it has
    control back at once, and the return is counted then, as a cancelled
    sync_to_async's, with the CancelledError; not when the function ends,
    which here is after the recording did (one switch of two, the crossing
    unfinished)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    started, release = threading.Event(), threading.Event()

    def blocks():
        started.set()
        release.wait(10)

    async def awaits(future):
        return await future

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            if how == "asyncio.to_thread":
                call = asyncio.ensure_future(asyncio.to_thread(blocks))
            else:  # awaited by a task (a view's) that is cancelled
                call = asyncio.ensure_future(awaits(loop.run_in_executor(pool, blocks)))
            await asyncio.sleep(0)  # the task awaits the future
            while not started.is_set():
                await asyncio.sleep(0.001)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            figures = record.totals()
        release.set()
        return record, figures

    try:
        record, figures = asyncio.run(main())
    finally:
        release.set()
        pool.shutdown(wait=True)
    # The thread of the loop's default executor, or of the pool.
    assert figures == record.totals() == tracer.Figures(2, 2, 0, 1)
    [crossing] = record.crossings
    assert (crossing.mechanism, crossing.func) == (how, blocks)
    assert crossing.exception == "asyncio.exceptions.CancelledError"
    assert not crossing.returned_late
    assert crossing.start_ns <= crossing.return_ns <= crossing.end_ns


CANCELLED_OFFLOAD = """
import asyncio, threading
from switchtrace import tracer
tracer.install()
started, release = threading.Event(), threading.Event()

def blocks():
    started.set()
    release.wait(10)

async def main():
    with tracer.recording() as record:
        call = asyncio.ensure_future(asyncio.to_thread(blocks))
        await asyncio.sleep(0)
        while not started.is_set():
            await asyncio.sleep(0.001)
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            pass
        figures = record.totals()
    release.set()
    return figures, [c.exception for c in record.crossings]

import sys
print(asyncio.run(main()), "wrapt._wrappers" in sys.modules)  # (its C extension)
"""


def test_an_offload_whose_caller_is_cancelled_returns_then_under_wraps_pure_python():
    """wrapt without its C extension (WRAPT_DISABLE_EXTENSIONS): its own
    frame is between asyncio's callback and switchtrace's wrapper, which
    took the cancel() for one the code made itself."""
    out = subprocess.run(
        [sys.executable, "-c", CANCELLED_OFFLOAD],
        env={**os.environ, "WRAPT_DISABLE_EXTENSIONS": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "(Figures(context_switches=2, thread_hops=2, event_loops_created=0, threads_started=1), "
        "['asyncio.exceptions.CancelledError']) False\n"
    )


def test_an_offloads_future_cancelled_from_no_python_frame_returns_quietly():
    """cancel() called with no Python frame under it (an exit hook): looking
    for asyncio's callback there raised ValueError ("call stack is not deep
    enough") out of cancel()."""
    script = """
import atexit, asyncio, concurrent.futures
from switchtrace import tracer
tracer.install()
pool = concurrent.futures.ThreadPoolExecutor(1)

async def main():
    with tracer.recording():
        return pool.submit(str)  # an offload's future, done: cancel() returns False

future = asyncio.run(main())
atexit.register(future.cancel)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")


def test_an_offload_that_ended_before_its_caller_was_cancelled_returns_once():
    """The function ended (its return counted) before the cancellation
    reached its future: the cancellation counts nothing more, and the
    crossing keeps what the function did."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pool.submit(str).result()  # the pool's thread started

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            call = loop.run_in_executor(pool, str)
            deadline = time.monotonic() + 10
            # The loop's thread held until the function has returned: the
            # future's result cannot reach the caller before the cancel.
            while record.totals().context_switches < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        return record

    try:
        record = asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    [crossing] = record.crossings
    assert crossing.exception is None


def test_an_offload_the_code_cancels_itself_and_waits_for_returns_as_its_function_ends():
    """cancel() called by the code on an executor's future whose function
    runs (it fails), the code then waiting for the result all the same:
    nobody was cancelled, and the return is the function's, not a
    CancelledError at the cancel() call."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    started, release = threading.Event(), threading.Event()

    def blocks():
        started.set()
        release.wait(10)
        return "done"

    async def main():
        with tracer.recording() as record:
            future = pool.submit(blocks)
            assert started.wait(10)
            refused = future.cancel()
            release.set()
            result = await asyncio.wrap_future(future)
        return record, refused, result

    try:
        record, refused, result = asyncio.run(main())
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert (refused, result) == (False, "done")
    assert record.totals() == tracer.Figures(2, 2, 0, 1)
    [crossing] = record.crossings
    assert crossing.exception is None
    assert crossing.return_ns >= crossing.end_ns


def test_an_offload_whose_future_the_code_keeps_keeps_no_record():
    """An object keeping the future of its own method, submitted from the
    loop: the crossing leads to the future (its function, the bound
    method), and what switchtrace keeps for the future's cancellation
    kept the record as long as the process."""

    class Job:
        def __init__(self, pool):
            self.future = pool.submit(self.run)

        def run(self):
            return 42

    async def request(pool):
        with tracer.recording() as record:
            job = Job(pool)
            assert await asyncio.wrap_future(job.future) == 42
        return weakref.ref(record), weakref.ref(job)

    async def main(pool):
        return [await request(pool) for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        refs = asyncio.run(main(pool))
    collect_garbage()
    assert [(record(), job()) for record, job in refs] == [(None, None)] * 3


def test_loop_run_until_complete_from_sync_code_is_two_switches_without_a_hop():
    with tracer.recording() as record:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(anoop())
        finally:
            loop.close()
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    [crossing] = record.crossings
    assert crossing.mechanism == "loop.run_until_complete"
    assert crossing.direction == "sync->async"
    assert crossing.loop_created is True
    assert crossing.loop_id == id(loop)
    # Made by the code before the call: an event where it happened (here,
    # of no crossing), before the call.
    [creation] = record.loop_creations
    assert creation.crossing is None
    assert creation.at_ns < crossing.call_ns


def _asyncio_run():
    asyncio.run(anoop())


def _runner_set_up_first():
    with asyncio.Runner() as runner:
        runner.run(anoop())


@pytest.mark.parametrize("run_it", [_asyncio_run, _runner_set_up_first])
def test_a_loop_made_ahead_of_its_run_is_an_event_where_it_was_made(run_it):
    """asyncio.run makes its loop as it sets its Runner up, before it calls
    the Runner's run(), which switchtrace patches (Python 3.11+): the call
    began before the loop was made, and the creation is the call's (the
    call was timed from run(): its span started after the event of the loop
    it made). ``with asyncio.Runner()``, then ``run()``: the loop was made by
    the code before the call, which still created a loop for the code it
    runs (loop.created); the creation is an event where it happened (here,
    of no crossing), not of a call that had not begun."""
    if run_it is _runner_set_up_first and not hasattr(asyncio, "Runner"):
        pytest.skip("asyncio.Runner: Python 3.11+")
    with tracer.recording() as record:
        run_it()
    [run] = record.crossings
    [creation] = record.loop_creations
    assert (run.mechanism, run.loop_created, run.loop_id) == ("asyncio.run", True, creation.loop_id)
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    if run_it is _asyncio_run:
        assert creation.crossing is run
        assert run.call_ns <= creation.at_ns <= run.return_ns
    else:
        assert creation.crossing is None
        assert creation.at_ns < run.call_ns


def test_asyncio_run_returns_once_its_runner_is_closed():
    """asyncio.run closes its runner before it returns: it cancels the tasks
    left (here a to_thread's, its function still sleeping in its thread)
    and shuts its default executor down, waiting for its threads and
    starting one to do so. All of it is the call's (Python 3.11+ ended the
    call as Runner.run returned: the offload ended after it, and the
    shutdown's thread was the caller's)."""

    async def main():
        asyncio.get_running_loop().create_task(asyncio.to_thread(time.sleep, 0.05))
        await asyncio.sleep(0)  # the task starts its offload

    with tracer.recording() as record:
        asyncio.run(main())
    run, offload = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (run.mechanism, offload.mechanism, offload.parent) == (
        "asyncio.run",
        "asyncio.to_thread",
        run,
    )
    assert offload.call_ns < offload.end_ns <= run.return_ns
    pool_worker, shutdown = record.thread_starts
    assert (pool_worker.crossing, shutdown.crossing) == (offload, run)
    assert run.call_ns <= shutdown.at_ns <= run.return_ns
    assert record.totals() == tracer.Figures(4, 2, 1, 2)


def test_asyncio_runs_call_raises_what_closing_its_runner_raised(monkeypatch):
    """Its caller gets what asyncio.run's close of the runner raised (here
    its default executor's shutdown): the call's exception too, as on
    Python 3.10 (on 3.11+ the call had returned with none)."""

    async def failing_shutdown(self, *args, **kwargs):
        raise RuntimeError("shutdown failed")

    monkeypatch.setattr(asyncio.BaseEventLoop, "shutdown_default_executor", failing_shutdown)
    with tracer.recording() as record:
        with pytest.raises(RuntimeError, match="shutdown failed"):
            asyncio.run(anoop())
    [run] = record.crossings
    assert (run.mechanism, run.exception) == ("asyncio.run", "RuntimeError")
    assert record.totals() == tracer.Figures(2, 0, 1, 0)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run's loop_factory: 3.12+")
def test_a_loop_made_earlier_that_asyncio_runs_loop_factory_returns_is_not_made_by_the_call():
    """asyncio.run given a loop_factory that returns a loop made before:
    the call created a loop for its code (loop.created), made where it was
    made (of no crossing here), and the call began when it was called, not
    then (its queue wait took in the time between)."""
    with tracer.recording() as record:
        loop = asyncio.new_event_loop()
        asyncio.run(anoop(), loop_factory=lambda: loop)
    [run] = record.crossings
    [creation] = record.loop_creations
    assert (run.mechanism, run.loop_created, run.loop_id) == ("asyncio.run", True, id(loop))
    assert creation.crossing is None
    assert creation.at_ns < run.call_ns
    assert record.totals() == tracer.Figures(2, 0, 1, 0)


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_a_runner_counts_its_own_run_until_complete_calls_once_per_run():
    """Runner.run, and Runner.close after the runs, call run_until_complete
    (asyncio.run on Python 3.10 too, which the test above covers): one
    crossing, two switches, per run."""
    with tracer.recording() as record:
        with asyncio.Runner() as runner:
            runner.run(anoop())
            runner.run(anoop())
    assert record.totals() == tracer.Figures(4, 0, 1, 0)
    assert [c.mechanism for c in record.crossings] == ["asyncio.run"] * 2


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
@pytest.mark.parametrize("empty", [False, True])
def test_a_runner_given_a_context_counts_what_runs_in_it(empty):
    """Runner.run(coro, context=...) runs the coroutine in that context, an
    empty one too (which is false): its crossings are counted."""
    context = contextvars.Context() if empty else contextvars.copy_context()

    async def main():
        await sync_to_async(lambda: None)()

    with tracer.recording() as record:
        with asyncio.Runner() as runner:
            runner.run(main(), context=context)
    assert record.totals().context_switches == 4
    run, s2a = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (run.mechanism, s2a.mechanism) == ("asyncio.run", "sync_to_async")
    assert s2a.parent is run


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_run_on_a_closed_runner_raises_at_once_and_is_no_switch():
    runner = asyncio.Runner()
    runner.run(anoop())
    runner.close()
    with tracer.recording() as record:
        coro = anoop()
        with pytest.raises(RuntimeError, match="Runner is closed"):
            runner.run(coro)
        coro.close()
        # The call that failed is no longer current: what follows is not
        # its child.
        asyncio.run(anoop())
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    assert [c.parent for c in record.crossings] == [None]


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_runner_run_refusing_what_it_is_given_raises_asyncios_error_and_is_no_switch():
    """Runner.run refuses what is not a coroutine, and a call from a running
    loop, before it sets itself up: the application gets asyncio's own
    exception, no loop is made and nothing is counted."""

    async def in_a_running_loop():
        with tracer.recording() as record:
            coro = anoop()
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                asyncio.Runner().run(coro)
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                asyncio.run(coro)
            coro.close()
        return record

    with tracer.recording() as record:
        with pytest.raises(ValueError, match="a coroutine was expected, got 42"):
            asyncio.Runner().run(42)
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    assert record.crossings == []
    record = asyncio.run(in_a_running_loop())
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    assert record.crossings == []


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_a_loop_factory_that_raises_is_called_once_and_is_no_switch():
    """Runner.run sets the runner up (calling its loop_factory) before any
    switch: a factory that raises is called once, as without switchtrace,
    its exception reaches the caller unchanged, and nothing is counted."""
    calls = []

    def factory():
        calls.append(None)
        raise OSError("no loop today")

    with tracer.recording() as record:
        coro = anoop()
        with pytest.raises(OSError, match="no loop today"):
            asyncio.Runner(loop_factory=factory).run(coro)
        coro.close()
    assert len(calls) == 1
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


def test_what_runs_in_run_in_executor_belongs_to_its_crossing():
    """loop.run_in_executor does not hand the caller's context to the
    worker: the crossing is made current there while the function runs."""

    def sync_side():
        async_to_sync(anoop)()

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            await loop.run_in_executor(None, sync_side)
        return record

    record = asyncio.run(main())
    offload, a2s = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (offload.mechanism, a2s.mechanism) == ("run_in_executor", "async_to_sync")
    assert a2s.parent is offload
    # Two switches each; the async_to_sync's loop and thread, and the
    # thread of this new loop's default executor.
    assert record.totals() == tracer.Figures(4, 4, 1, 2)
    assert record.loop_creations[0].crossing is a2s


def test_what_runs_in_to_thread_belongs_to_its_crossing():
    seen = []

    def sync_side():
        seen.append(contextvars.copy_context())
        async_to_sync(anoop)()

    async def main():
        with tracer.recording() as record:
            await asyncio.to_thread(sync_side)
        return record

    record = asyncio.run(main())
    to_thread, a2s = sorted(record.crossings, key=lambda c: c.call_ns)
    assert to_thread.mechanism == "asyncio.to_thread"
    assert a2s.parent is to_thread
    assert record.totals() == tracer.Figures(4, 4, 1, 2)  # as above
    # The function ran in the caller's copied context, as asyncio.to_thread
    # gives it, with the crossing current in it.
    [context] = seen
    assert dict(context)[tracer.patches.here] == (record, to_thread)


def test_asyncio_run_in_bridged_code_owns_the_loop_it_runs_in():
    """A sync view under ASGI calling asyncio.run: asyncio.Runner makes its
    loop before its run() starts the crossing; the loop is still the
    crossing's."""

    def sync_view():
        asyncio.run(anoop())

    async def main():
        with tracer.recording() as record:
            await sync_to_async(sync_view)()
        return record

    record = asyncio.run(main())
    s2a, run = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (run.mechanism, run.parent) == ("asyncio.run", s2a)
    assert record.totals() == tracer.Figures(4, 2, 1, 0)
    assert run.loop_created is True
    assert record.loop_creations[0].crossing is run


def test_a_loop_made_by_the_code_asyncio_run_runs_is_not_the_loop_it_runs_in():
    """The crossing of asyncio.run made the loop it runs in, and the one its
    code makes too (for a run_until_complete to come: that one claims it);
    the crossing's loop stays its own."""
    made = []

    async def makes_a_loop():
        made.append(asyncio.new_event_loop())  # (kept: its id is not reused)
        made[0].close()
        return id(asyncio.get_running_loop())

    with tracer.recording() as record:
        running = asyncio.run(makes_a_loop())
    [run] = record.crossings
    assert (run.mechanism, run.loop_created, run.loop_id) == ("asyncio.run", True, running)
    assert [(c.loop_id, c.crossing) for c in record.loop_creations] == [
        (running, run),
        (id(made[0]), run),
    ]
    assert record.totals() == tracer.Figures(2, 0, 2, 0)


def test_a_loop_made_by_the_code_async_to_sync_runs_is_not_the_loop_it_runs_in():
    """async_to_sync going back to the request's loop creates none; a loop
    its code makes is made ahead of the code that will run in it."""
    made = []

    async def makes_a_loop():
        made.append(asyncio.new_event_loop())  # (kept: its id is not reused)
        made[0].close()

    def sync_side():
        async_to_sync(makes_a_loop)()

    async def main():
        with tracer.recording() as record:
            await sync_to_async(sync_side)()
        return record, id(asyncio.get_running_loop())

    record, running = asyncio.run(main())
    _s2a, a2s = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (a2s.mechanism, a2s.loop_created, a2s.loop_id) == ("async_to_sync", False, running)
    assert [(c.loop_id, c.crossing) for c in record.loop_creations] == [(id(made[0]), a2s)]
    assert record.totals() == tracer.Figures(4, 4, 1, 0)


class _Client:
    """A per-request client with a loop of its own, run in a thread of its
    own, as some database and messaging clients have."""

    def connect(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.thread.start()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.mark.parametrize("offload", ["sync_to_async", "asyncio.to_thread", "run_in_executor"])
def test_a_loop_made_by_what_a_crossing_ran_is_freed_with_its_request(offload):
    """A loop created by a crossing's function, held by that function's
    object: nothing of switchtrace's keeps it once the request is over (the
    creation waiting to be claimed by code running in the loop is held
    weakly; holding it strongly kept every such loop for good)."""
    loops = []

    async def request():
        client = _Client()
        with tracer.recording() as record:
            if offload == "sync_to_async":
                await sync_to_async(client.connect)()
            elif offload == "asyncio.to_thread":
                await asyncio.to_thread(client.connect)
            else:
                await asyncio.get_running_loop().run_in_executor(None, client.connect)
            client.close()
        loops.append(weakref.ref(client.loop))
        return record

    for _ in range(20):
        record = asyncio.run(request())
        assert record.totals().event_loops_created == 1
        assert record.loop_creations[0].crossing is record.crossings[0]
    del record
    collect_garbage()
    assert [loop() for loop in loops] == [None] * 20
    assert len(tracer.patches._request_loops) == 0


_KEPT_WAYS = ["new_event_loop", "run_until_complete"]
if hasattr(asyncio, "Runner"):
    _KEPT_WAYS += ["Runner.__enter__", "Runner.get_loop", "Runner.run", "Runner.run raising"]


@pytest.mark.parametrize("way", _KEPT_WAYS)
def test_a_loop_kept_after_its_request_keeps_nothing_of_it(way):
    """A loop or asyncio.Runner made during a request and kept afterwards (a
    module global of synchronous views): asyncio copies the context into
    the loop's self-pipe reader, and the runner copies it to run coroutines
    in; neither copy keeps the request's record once the request is over.
    Reused in a later request, it counts that request's crossings, those
    made inside it too."""
    kept = []

    class Payload:
        pass

    async def boom():
        raise KeyError("x")

    def request():
        with tracer.recording() as record:
            record.extra["payload"] = Payload()
            if way.startswith("Runner"):
                runner = asyncio.Runner()
                kept.append(runner)
                if way == "Runner.__enter__":
                    runner.__enter__()
                elif way == "Runner.get_loop":
                    runner.get_loop()
                elif way == "Runner.run raising":
                    with pytest.raises(KeyError):
                        runner.run(boom())
                else:
                    assert runner.run(anoop()) is None
            else:
                loop = asyncio.new_event_loop()
                kept.append(loop)
                if way == "run_until_complete":
                    assert loop.run_until_complete(anoop()) is None
        return record

    record = request()
    ran = 2 if way in ("Runner.run", "Runner.run raising", "run_until_complete") else 0
    assert record.totals() == tracer.Figures(ran, 0, 1, 0)
    alive = weakref.ref(record.extra["payload"])
    del record
    collect_garbage()
    assert alive() is None
    [kept_one] = kept
    try:
        with tracer.recording() as later:
            run = kept_one.run if way.startswith("Runner") else kept_one.run_until_complete
            assert run(asyncio.to_thread(here)) is not threading.current_thread()
        # The loop's default executor starts its worker for the offload.
        assert later.totals() == tracer.Figures(4, 2, 0, 1)
        outer, offload = sorted(later.crossings, key=lambda c: c.call_ns)
        assert offload.parent is outer
    finally:
        kept_one.close()


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_asyncio_run_on_a_loop_class_of_its_own_is_still_two_switches():
    """A loop class overriding run_until_complete (calling the base class's)
    stands between asyncio's Runner and the patch: its calls are still the
    asyncio.run crossing's, and Runner.close's are no crossing's."""

    class OwnLoop(asyncio.SelectorEventLoop):
        def run_until_complete(self, future):
            return super().run_until_complete(future)

    with tracer.recording() as record:
        with asyncio.Runner(loop_factory=OwnLoop) as runner:
            runner.run(anoop())
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    assert [c.mechanism for c in record.crossings] == ["asyncio.run"]


def test_run_until_complete_that_raises_at_once_is_no_switch():
    loop = asyncio.new_event_loop()
    loop.close()
    with tracer.recording() as record:
        coro = anoop()
        with pytest.raises(RuntimeError, match="closed"):
            loop.run_until_complete(coro)
        coro.close()
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


def _refused(loop: asyncio.AbstractEventLoop, match: str) -> tracer.Figures:
    """The figures of a recording around ``loop.run_until_complete`` that
    raises RuntimeError matching ``match`` before running the coroutine."""
    with tracer.recording() as record:
        coro = anoop()
        with pytest.raises(RuntimeError, match=match):
            loop.run_until_complete(coro)
        coro.close()
    return record.totals()


def test_run_until_complete_on_a_loop_running_elsewhere_is_no_switch():
    """A loop running in another thread, or another loop running in this
    one: run_until_complete raises at once, and nothing switched."""
    loop = asyncio.new_event_loop()
    running = threading.Event()
    loop.call_soon(running.set)
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        assert running.wait(10)
        assert _refused(loop, "already running") == tracer.Figures(0, 0, 0, 0)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def main():
        other = asyncio.new_event_loop()
        try:
            return _refused(other, "another loop is running")
        finally:
            other.close()

    assert asyncio.run(main()) == tracer.Figures(0, 0, 0, 0)


@pytest.mark.skipif(not hasattr(asyncio, "Runner"), reason="asyncio.Runner: Python 3.11+")
def test_run_until_complete_in_a_copy_of_a_runs_context_is_a_switch():
    """A thread that Runner.run's coroutine starts in a copy of its context
    sees the run's crossing as current: its run_until_complete of another
    loop while the run is in progress, and of the runner's loop once the run
    has returned, are switches of their own, not the run's."""
    first_done, run_returned = threading.Event(), threading.Event()

    def in_thread(runner_loop):
        other = asyncio.new_event_loop()
        try:
            other.run_until_complete(anoop())
        finally:
            other.close()
        first_done.set()
        assert run_returned.wait(10)
        runner_loop.run_until_complete(anoop())

    async def main(runner_loop):
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(in_thread, runner_loop)
        )
        thread.start()
        assert first_done.wait(10)  # (blocks the loop: the run is in progress)
        return thread

    with tracer.recording() as record:
        with asyncio.Runner() as runner:
            thread = runner.run(main(runner.get_loop()))
            run_returned.set()
            thread.join()
    run, *others = sorted(record.crossings, key=lambda c: c.call_ns)
    assert run.mechanism == "asyncio.run"
    assert [(c.mechanism, c.parent) for c in others] == [(RUN_UNTIL_COMPLETE, run)] * 2
    assert record.totals().context_switches == 6


def test_run_until_complete_called_from_c_with_no_python_caller():
    """Called straight by a C function at the bottom of a new thread's
    stack (no Python frame below the patch): it runs, and counts."""
    import _thread

    with tracer.recording() as record:
        loop = asyncio.new_event_loop()
        done = threading.Event()
        context = contextvars.copy_context()

        def finished(future):
            done.set()

        task = loop.create_task(anoop())
        task.add_done_callback(finished)
        _thread.start_new_thread(context.run, (loop.run_until_complete, task))
        assert done.wait(5)
        # The thread returns from run_until_complete, its return counted.
        wait_for(lambda: not loop.is_running() and record.totals().context_switches >= 2, 5)
        loop.close()
    assert record.totals().context_switches == 2
    assert [c.mechanism for c in record.crossings] == ["loop.run_until_complete"]


def test_a_loop_made_in_one_request_and_run_in_another_is_neither_ones_crossings():
    with tracer.recording() as first:
        loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as second:
            loop.run_until_complete(anoop())
    finally:
        loop.close()
    assert first.totals() == tracer.Figures(0, 0, 1, 0)
    assert first.loop_creations[0].crossing is None
    assert second.totals() == tracer.Figures(2, 0, 0, 0)
    assert second.crossings[0].loop_created is False


def test_an_offloads_keyword_arguments_reach_the_function_whatever_their_names():
    def work(**kwargs):
        return kwargs

    async def main():
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            with tracer.recording() as record:
                future = pool.submit(work, fn=1, record=2, crossing=3, here=4, func=5)
                result = await asyncio.wrap_future(future)
        finally:
            pool.shutdown()
        return record, result

    record, result = asyncio.run(main())
    assert result == {"fn": 1, "record": 2, "crossing": 3, "here": 4, "func": 5}
    assert record.totals().context_switches == 2


def test_run_until_complete_with_another_loops_future_is_no_switch():
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            with pytest.raises(ValueError, match="different loop"):
                second.run_until_complete(first.create_future())
    finally:
        first.close()
        second.close()
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


def test_a_crossing_owns_its_loop_even_when_the_creation_was_not_kept():
    """max_events bounds the loop creations kept, not what they tell: the
    crossing that runs in a loop made for it still says it created one."""
    with tracer.recording(max_events=1) as record:
        kept = asyncio.new_event_loop()
        loop = asyncio.new_event_loop()  # counted, not kept
        try:
            loop.run_until_complete(anoop())
        finally:
            loop.close()
            kept.close()
    assert record.totals() == tracer.Figures(2, 0, 2, 0)
    assert record.dropped == 1
    [crossing] = record.crossings
    assert crossing.loop_created is True


class _FutureWithoutGetLoop:
    """A future as asyncio accepted them before get_loop() (it falls back to
    ``_loop``): a real future behind, its loop told only by ``_loop``."""

    _asyncio_future_blocking = False

    def __init__(self, loop):
        self._loop = loop
        self._inner = loop.create_future()

    def __getattr__(self, name):
        if name == "get_loop":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __await__(self):
        return self._inner.__await__()


def test_run_until_complete_with_a_future_without_get_loop_is_two_switches():
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            future = _FutureWithoutGetLoop(loop)
            loop.call_soon(future.set_result, 7)
            assert loop.run_until_complete(future) == 7
    finally:
        loop.close()
    assert record.totals() == tracer.Figures(2, 0, 0, 0)


def test_run_until_complete_with_a_future_of_no_loop_is_no_switch():
    """A future whose loop is None (no get_loop(), ``_loop`` None): asyncio
    takes it for another loop's and raises ValueError at once."""
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            future = _FutureWithoutGetLoop(loop)
            future._loop = None
            with pytest.raises(ValueError, match="different loop"):
                loop.run_until_complete(future)
    finally:
        loop.close()
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    assert record.crossings == []


def test_run_until_complete_with_a_future_whose_get_loop_raises_is_no_switch(swallowed):
    """asyncio asks the future for its loop before running it, and raises
    what get_loop() raises: no switch. switchtrace, asking the same, reports
    it as its own error (logged once in production) and lets the call through."""
    loop = asyncio.new_event_loop()
    try:
        with tracer.recording() as record:
            future = _FutureWithoutGetLoop(loop)
            future.get_loop = functools.partial(operator.truediv, 1, 0)
            with pytest.raises(ZeroDivisionError):
                loop.run_until_complete(future)
    finally:
        loop.close()
    assert record.totals() == tracer.Figures(0, 0, 0, 0)
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("run_until_complete call", ZeroDivisionError)
    ]
    swallowed.clear()


@pytest.mark.skipif(
    "context" not in inspect.signature(sync_to_async).parameters,
    reason="sync_to_async(context=): asgiref 3.11+",
)
@pytest.mark.parametrize("empty", [True, False])
def test_what_runs_in_a_context_given_to_sync_to_async_belongs_to_its_crossing(empty):
    """sync_to_async(func, context=...) runs func in that context rather
    than in a copy of the caller's: an async_to_sync made there was not
    recorded at all in an empty context, and had no parent in one copied in
    the request. It is the call's child now: four switches, four hops. The
    context holds afterwards what switchtrace's variable held before (not
    even the variable, in an empty one), and what the code set."""
    variable = contextvars.ContextVar("given", default="unset")

    def calls_back():
        variable.set("bridged")
        async_to_sync(anoop)()

    async def main():
        with tracer.recording() as record:
            context = contextvars.Context() if empty else contextvars.copy_context()
            before = dict(context)
            await sync_to_async(calls_back, context=context)()
        return record, context, before

    record, context, before = asyncio.run(main())
    assert record.totals() == tracer.Figures(4, 4, 0, 0)
    s2a, a2s = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (s2a.mechanism, a2s.mechanism, a2s.parent) == ("sync_to_async", "async_to_sync", s2a)
    assert context.get(tracer.patches.here) == before.get(tracer.patches.here)
    assert (tracer.patches.here in context) == (tracer.patches.here in before) == (not empty)
    assert context[variable] == "bridged"


def _destroyed_pending(make: Any) -> None:
    """Run ``make()``'s coroutine as a task on a loop until it waits on
    something that never comes back (its result is left queued in the loop),
    then close the loop: asyncio reports "Task was destroyed but it is
    pending!" when the garbage collector closes the task's coroutine, here
    in a context of its own, as a collection does wherever it happens to
    run."""
    loop = asyncio.new_event_loop()
    executor = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    tasks = [loop.create_task(make())]
    loop.run_until_complete(asyncio.sleep(0))
    executor.shutdown(wait=True)  # the bridged code has run; its result waits in the loop
    loop.close()

    def collect():
        tasks.clear()
        gc.collect()

    contextvars.Context().run(collect)


def test_a_bridge_call_whose_task_is_destroyed_pending_counts_no_return(caplog):
    """The caller of a sync_to_async is closed from another context than the
    one the call made its crossing current in (its task destroyed pending,
    its loop closed): nothing of that context is put back there, and no
    error is switchtrace's. The caller was never resumed: no switch back is
    counted. (It was, when the collector ran: 3 switches, then 4.)"""

    async def main():
        await sync_to_async(str, thread_sensitive=False)()

    with tracer.recording() as record:
        _destroyed_pending(main)
        assert record.totals() == tracer.Figures(3, 1, 1, 1)
    [run, bridge] = record.crossings
    assert (run.mechanism, bridge.mechanism) == (RUN_UNTIL_COMPLETE, tracer.SYNC_TO_ASYNC)
    assert bridge.exception == "GeneratorExit"
    assert "Task was destroyed but it is pending!" in caplog.text


@pytest.mark.parametrize("thread_sensitive", [False, True])
def test_a_generatorexit_the_bridged_code_raises_comes_back_as_any_exception(thread_sensitive):
    """The task resumed with it throws it into its outermost coroutine, and
    Python closes the coroutines it awaits as it goes: the bridge's caller
    sees itself closed, as one left pending and collected does, and the
    switch back went uncounted (1 switch, not 2). Closed by its own loop
    running, it was resumed: counted."""

    def raises():
        raise GeneratorExit("the bridged code's own")

    async def main():
        with tracer.recording() as record:
            with pytest.raises(GeneratorExit):
                await sync_to_async(raises, thread_sensitive=thread_sensitive)()
        return record

    record = asyncio.run(main())
    [bridge] = record.crossings
    assert (record.switches_of(bridge), bridge.exception) == (2, "GeneratorExit")
    assert record.totals().context_switches == 2


async def _request() -> str:
    """An ASGI request as the integration opens and ends it, offloading once."""
    record, token = tracer.start_request(tracer.ASGI)
    try:
        await asyncio.get_running_loop().run_in_executor(None, str)
    finally:
        tracer.finish_request(record, token)
    return "served"


def test_a_request_whose_task_is_destroyed_pending_is_finished_quietly(records):
    """An ASGI request's task destroyed pending (its loop closed under it):
    the integration's finish_request, given the token of a context the
    garbage collector does not run in, ends the record all the same."""
    _destroyed_pending(_request)
    [record] = records
    assert record.finished
    assert record.totals() == tracer.Figures(2, 2, 0, 1)


class _ClosedLoopExit:
    """What Django 6.1's handler's TaskGroup does as it is closed on a loop
    since closed: cancelling its tasks raises "Event loop is closed"."""

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: Any) -> None:
        raise RuntimeError("Event loop is closed")


@pytest.mark.parametrize("task_group", [False, True], ids=["django-5.2", "django-6.1"])
def test_a_django_request_closed_from_another_context_is_finished_quietly(records, task_group):
    """An ASGI request as Django's handler serves it, in asgiref's
    ThreadSensitiveContext, its coroutine closed from another context (what
    the garbage collector does to a task destroyed pending): the context
    manager's ``__aexit__`` fails first (asgiref's own token), so the
    GeneratorExit was one error further back from switchtrace's, which was
    logged as switchtrace's internal error (the suite's hook fails it); under
    Django 6.1, two further back (its TaskGroup's "Event loop is closed"
    first). The caller gets asgiref's error, as without switchtrace."""

    async def request() -> None:
        record, token = tracer.start_request(tracer.ASGI)
        try:
            async with ThreadSensitiveContext():
                async with _ClosedLoopExit() if task_group else contextlib.nullcontext():
                    await asyncio.sleep(3600)
        finally:
            tracer.finish_request(record, token)

    loop = asyncio.new_event_loop()
    try:
        coro = request()
        task = loop.create_task(coro)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert not task.done()  # the request waits
        with pytest.raises(ValueError, match="thread_sensitive_context"):
            contextvars.Context().run(coro.close)
    finally:
        loop.close()
    [record] = records
    assert record.finished
    assert record.totals() == tracer.Figures(0, 0, 0, 0)


async def _resumed_elsewhere(coro: Any) -> Any:
    """Drive ``coro`` by hand: its first step in this context, the rest, once
    what it waits for is done, in a copy of it (an application's own
    scheduler doing so). Its result, or its exception."""
    waited = coro.send(None)
    while not waited.done():
        await asyncio.sleep(0.001)
    try:
        contextvars.copy_context().run(coro.send, None)
    except StopIteration as stop:
        return stop.value
    except Exception as exc:
        return exc
    raise AssertionError("the bridge call waited twice")


@pytest.mark.parametrize("raises", [False, True], ids=["returns", "raises"])
def test_a_bridge_call_resumed_in_another_context_is_reported(raises, swallowed):
    """A sync_to_async call whose coroutine is resumed in another context
    than it started in cannot put back what its crossing made current in the
    first one: switchtrace's bookkeeping failed there, and says so (in a
    test, the error fails it), whether the call returned or raised; the
    return is counted all the same, and the call's outcome is unchanged. Only
    a coroutine closed from another context (a task destroyed pending, above)
    has nothing to put back."""
    failure = ValueError("bridged")

    def bridged():
        if raises:
            raise failure
        return "bridged"

    async def main():
        return await _resumed_elsewhere(sync_to_async(bridged)())

    with tracer.recording() as record:
        outcome = asyncio.run(main())
    assert outcome is failure if raises else outcome == "bridged"
    assert record.totals() == tracer.Figures(4, 2, 1, 0)
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("sync_to_async return", ValueError)
    ]
    swallowed.clear()


@pytest.mark.parametrize("cleanup", [KeyError, RuntimeError, ValueError])
def test_a_request_resumed_in_another_context_is_reported_whatever_the_error_carries(
    swallowed, cleanup
):
    """The same while the application's error passes through, one raised as
    a generator's cleanup failed (a GeneratorExit further back in its
    chain, not the request's close): taken for the close of a task
    destroyed pending, it was not reported."""

    def generator():
        try:
            yield
        finally:
            raise cleanup("cleanup failed")  # while its GeneratorExit is handled

    async def request():
        record, token = tracer.start_request(tracer.ASGI)
        try:
            await asyncio.sleep(0.001)
            closing = generator()
            next(closing)
            try:
                closing.close()
            except cleanup:
                raise RuntimeError("the application's") from None
        finally:
            tracer.finish_request(record, token)

    async def main():
        return await _resumed_elsewhere(request())

    raised = asyncio.run(main())
    assert (type(raised), str(raised)) == (RuntimeError, "the application's")
    assert isinstance(raised.__context__.__context__, GeneratorExit)
    assert [(where, type(exc)) for where, exc in swallowed] == [("finish request", ValueError)]
    swallowed.clear()


def test_a_request_resumed_in_another_context_is_reported(records, swallowed):
    """A request's coroutine resumed in another context than it started in:
    finish_request cannot put back the record it made current in the first
    one, and says so; the record is finished all the same."""

    async def main():
        return await _resumed_elsewhere(_request())

    assert asyncio.run(main()) == "served"
    [record] = records
    assert record.finished
    assert record.totals() == tracer.Figures(2, 2, 0, 1)
    assert [(where, type(exc)) for where, exc in swallowed] == [("finish request", ValueError)]
    swallowed.clear()


@pytest.mark.parametrize("thread_sensitive", [False, True])
def test_a_sync_to_async_returning_as_the_request_ends_is_counted_as_switches_of_says(
    thread_sensitive,
):
    """The request ends (on another thread) between the moment the call's
    return is timed and the moment it is counted: it is not counted, and
    switches_of, which the spans and the console line read, agrees (it
    counted the return, by its time before the end)."""
    loop_thread = []

    def bridged():
        loop_thread.append("armed")

    async def main():
        with tracer.recording() as record:
            own_clock = record.clock
            loop = threading.get_ident()

            def clock():
                now = own_clock()
                if loop_thread == ["armed"] and threading.get_ident() == loop:
                    loop_thread.append("ended")
                    record.finish()  # as another thread would, here
                return now

            record.clock = clock
            await sync_to_async(bridged, thread_sensitive=thread_sensitive)()
        return record

    record = asyncio.run(main())
    assert loop_thread == ["armed", "ended"]
    [bridge] = record.crossings
    assert bridge.returned_late
    assert record.switches_of(bridge) == record.context_switches == 1
