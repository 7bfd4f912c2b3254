"""What the tracer records under asyncio features the Django stack does not
use itself: eager tasks (Python 3.12+), a TaskGroup cancelling a bridge in
flight, runners given a loop factory, and thread-sensitive re-entry through
two async_to_sync. Each figure is worked out from asgiref's and asyncio's
code in the test's docstring."""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from switchtrace import tracer

EAGER = hasattr(asyncio, "eager_task_factory")
needs_eager = pytest.mark.skipif(not EAGER, reason="asyncio.eager_task_factory: Python 3.12+")

variable: contextvars.ContextVar[str] = contextvars.ContextVar("newer_asyncio", default="unset")


def here() -> threading.Thread:
    return threading.current_thread()


@pytest.fixture(autouse=True)
def _warm_executors():
    """asgiref's single-thread executor and a loop's default executor start
    their threads on first use: started before recording."""

    async def warm():
        await sync_to_async(here)()

    asyncio.run(warm())


def eager_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    return loop


def mechanisms(record: tracer.RequestRecord) -> list[tuple[str, str | None]]:
    ordered = sorted(record.crossings, key=lambda c: c.call_ns)
    return [(c.mechanism, c.parent.mechanism if c.parent else None) for c in ordered]


@needs_eager
@pytest.mark.parametrize("eager", [False, True])
def test_eager_tasks_count_parent_and_carry_contextvars_as_lazy_ones(eager):
    """Tasks that start inside create_task (eager_task_factory) make the same
    crossings: a task's sync_to_async, two gathered, and a sync_to_async
    whose code calls async_to_sync back into this loop (which asgiref
    schedules with create_task, so it starts eagerly too): 2 + 4 + 4
    switches, all hops, no loop or thread; the async_to_sync is the child of
    the sync_to_async, and the variable the bridged code sets comes back."""

    async def back():
        return here()

    def calls_back():
        variable.set("bridged")
        return async_to_sync(back)()

    async def main():
        loop = asyncio.get_running_loop()
        if eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        with tracer.recording() as record:
            await asyncio.create_task(sync_to_async(here)())
            await asyncio.gather(sync_to_async(here)(), sync_to_async(here)())
            loop_side = await sync_to_async(calls_back)()
        return record, loop_side, variable.get()

    record, loop_side, seen = asyncio.run(main())
    assert record.totals() == tracer.Figures(10, 10, 0, 0)
    assert mechanisms(record) == [
        ("sync_to_async", None),
        ("sync_to_async", None),
        ("sync_to_async", None),
        ("sync_to_async", None),
        ("async_to_sync", "sync_to_async"),
    ]
    assert loop_side is threading.main_thread()
    assert seen == "bridged"


@pytest.mark.skipif(not hasattr(asyncio, "TaskGroup"), reason="asyncio.TaskGroup: Python 3.11+")
def test_a_task_group_cancelling_a_bridge_in_flight_counts_its_two_switches():
    """A sibling's failure cancels a sync_to_async whose code runs: the caller
    gets control back at once (asgiref cancels, and does not wait for the
    thread), so both switches count; the crossing is closed with the
    cancellation, and the code, left running, ends on its own afterwards
    (asyncio.run waits for it, shutting the loop's default executor down).
    That executor's thread, started by the call (a new loop's), is the one
    thread."""
    started, release = threading.Event(), threading.Event()
    finished = []

    def blocks():
        started.set()
        release.wait()
        finished.append(here())

    async def fails_once_it_runs():
        while not started.is_set():
            await asyncio.sleep(0)
        raise ValueError("sibling")

    async def main():
        with tracer.recording() as record:
            with pytest.raises(ExceptionGroup) as raised:  # noqa: F821 (a builtin from 3.11)
                async with asyncio.TaskGroup() as group:
                    group.create_task(sync_to_async(blocks, thread_sensitive=False)())
                    group.create_task(fails_once_it_runs())
            figures = record.totals()
        release.set()
        return record, figures, raised.value

    record, figures, group_error = asyncio.run(main())
    assert [type(e) for e in group_error.exceptions] == [ValueError]
    assert figures == tracer.Figures(2, 2, 0, 1)
    [crossing] = record.crossings
    assert crossing.exception == "asyncio.exceptions.CancelledError"
    assert crossing.return_ns is not None
    assert len(finished) == 1


@needs_eager
def test_runners_given_a_loop_factory_count_like_asyncio_run():
    """asyncio.run(..., loop_factory=) and a Runner given one: each run is
    two switches on the calling thread (no hop); the coroutine's
    sync_to_async(thread_sensitive=False) two more, hops, on the new loop's
    default executor, whose thread it starts, and closing the loop starts
    one more to shut that executor down: (4, 2, 1, 2) for asyncio.run; the
    runner runs twice on one loop, the second run crossing nothing else."""

    async def offloads():
        return await sync_to_async(here, thread_sensitive=False)()

    with tracer.recording() as run_record:
        asyncio.run(offloads(), loop_factory=eager_loop)  # type: ignore[call-arg]
    assert run_record.totals() == tracer.Figures(4, 2, 1, 2)
    assert mechanisms(run_record) == [("asyncio.run", None), ("sync_to_async", "asyncio.run")]

    with tracer.recording() as runner_record:
        with asyncio.Runner(loop_factory=eager_loop) as runner:
            runner.run(offloads())
            runner.run(asyncio.sleep(0))
    assert runner_record.totals() == tracer.Figures(6, 2, 1, 2)
    assert mechanisms(runner_record) == [
        ("asyncio.run", None),
        ("sync_to_async", "asyncio.run"),
        ("asyncio.run", None),
    ]


def test_thread_sensitive_code_comes_back_to_the_outer_thread_twice():
    """async_to_sync -> sync_to_async -> async_to_sync -> sync_to_async, from
    this thread: both thread-sensitive calls run here (the
    CurrentThreadExecutor of each async_to_sync), both async sides in the
    loop asgiref made in its new thread. Eight switches, eight hops, one
    loop, one thread (asgiref's executor's)."""
    ran_on = []

    def inner():
        ran_on.append(here())

    async def inner_async():
        await sync_to_async(inner)()

    def outer():
        ran_on.append(here())
        async_to_sync(inner_async)()

    async def outer_async():
        await sync_to_async(outer)()

    with tracer.recording() as record:
        async_to_sync(outer_async)()
    assert ran_on == [threading.main_thread()] * 2
    assert record.totals() == tracer.Figures(8, 8, 1, 1)
    assert mechanisms(record) == [
        ("async_to_sync", None),
        ("sync_to_async", "async_to_sync"),
        ("async_to_sync", "sync_to_async"),
        ("sync_to_async", "async_to_sync"),
    ]


class NotNative(collections.abc.Coroutine):
    """A coroutine that is not a native one (as Cython compiles them):
    asyncio.run and Runner.run take any collections.abc.Coroutine."""

    def __init__(self, coro):
        self.coro = coro

    def send(self, value):
        return self.coro.send(value)

    def throw(self, *args):
        return self.coro.throw(*args)

    def close(self):
        return self.coro.close()

    def __await__(self):
        return self.coro.__await__()


def test_a_coroutine_that_is_not_native_is_run_by_asyncio_run_as_any():
    """asyncio.run of a coroutine that is not native was counted (by the
    loop's run_until_complete) but recorded as that, not as asyncio.run, and
    the sync_to_async inside it had no parent. The same as a native one now:
    (4, 2, 1, 2), as in the test above."""

    async def offloads():
        return await sync_to_async(here, thread_sensitive=False)()

    with tracer.recording() as record:
        asyncio.run(NotNative(offloads()))
    assert record.totals() == tracer.Figures(4, 2, 1, 2)
    assert mechanisms(record) == [("asyncio.run", None), ("sync_to_async", "asyncio.run")]


class RaisingCode(NotNative):
    """A proxy whose attributes come from an object that raises (a lazy
    proxy's ``__getattr__``), ``cr_code`` among them."""

    @property
    def cr_code(self):
        raise RuntimeError("not loaded")


class OddCode(NotNative):
    """A coroutine-like object whose ``cr_code`` is not a code object."""

    cr_code = "wrapper"


@pytest.mark.parametrize("kind", [RaisingCode, OddCode])
def test_a_coroutine_whose_cr_code_is_odd_is_run_by_asyncio_run_as_any(kind):
    """Reading what a coroutine is named after (uvloop.run's wrapper is named
    after the coroutine given) looked at cr_code: one that raised, or was no
    code object, lost asyncio.run's crossing (a bookkeeping error, swallowed).
    Run off the main thread, as a sync view's is: on it, asyncio.run's
    SIGINT handling reprs the task, which reads cr_code too and fails."""

    async def offloads():
        return await sync_to_async(here, thread_sensitive=False)()

    coro = kind(offloads())
    records = []

    def sync_view():
        with tracer.recording() as record:
            asyncio.run(coro)
        records.append(record)

    worker = threading.Thread(target=sync_view)
    worker.start()
    worker.join()
    [record] = records
    assert record.totals() == tracer.Figures(4, 2, 1, 2)
    assert mechanisms(record) == [("asyncio.run", None), ("sync_to_async", "asyncio.run")]
    assert record.crossings[0].func is coro


@pytest.mark.skipif(
    not asyncio.iscoroutine((lambda: (yield))()),
    reason="asyncio takes a generator for a coroutine up to Python 3.11",
)
def test_a_generator_run_by_a_loop_is_a_switch_where_asyncio_takes_it():
    """Up to Python 3.11 asyncio takes a generator for a coroutine:
    asyncio.run of one was recorded as asyncio.run, and the loop's
    run_until_complete of one, which runs it in the loop as well, was no
    switch at all (it is not awaitable). Now as a native coroutine's:
    (2, 0, 1, 0); and asyncio.run's (4, 2, 1, 2 with an offload, its child)."""

    def steps():
        yield
        return here()

    def offloads():
        return (yield from asyncio.get_running_loop().run_in_executor(None, here))

    with tracer.recording() as record:
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(steps()) is here()
        finally:
            loop.close()
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    assert mechanisms(record) == [("loop.run_until_complete", None)]

    # The loop's default executor starts its thread for the offload, and
    # asyncio.run one to shut the executor down.
    with tracer.recording() as record:
        assert asyncio.run(offloads()) is not here()
    assert record.totals() == tracer.Figures(4, 2, 1, 2)
    assert mechanisms(record) == [("asyncio.run", None), ("run_in_executor", "asyncio.run")]


@pytest.mark.skipif(
    "context" not in asyncio.AbstractEventLoop.create_task.__code__.co_varnames,
    reason="create_task(context=): Python 3.11+",
)
def test_tasks_sharing_one_context_each_make_their_own_crossings():
    """Two tasks given one context (create_task(coro, context=ctx)), each
    calling sync_to_async while the other's call is in flight (the first
    returns while the second's code still runs); then a third there, and a
    fourth task's to_thread while the third's call is in flight: the
    crossing made current for one call's bridged code was read as the
    other's parent, and left in the context once both returned, the parent
    of every later crossing there. Each is now the request's own: 8
    switches, all hops; the calls run on an executor of two threads started
    beforehand, and the loop's default executor starts its thread for the
    to_thread. What the bridged code sets in the shared context is there
    afterwards, as without switchtrace."""
    first_returned, second_started, released = (threading.Event() for _ in range(3))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    both = threading.Barrier(2)
    list(pool.map(lambda _: both.wait(), range(2)))

    def first():
        second_started.wait()
        variable.set("first")

    def second():
        second_started.set()
        first_returned.wait()
        variable.set("second")

    async def main():
        loop = asyncio.get_running_loop()
        with tracer.recording() as record:
            shared = contextvars.copy_context()
            a = loop.create_task(
                sync_to_async(first, thread_sensitive=False, executor=pool)(), context=shared
            )
            b = loop.create_task(
                sync_to_async(second, thread_sensitive=False, executor=pool)(), context=shared
            )
            await a
            first_returned.set()
            await b
            third = sync_to_async(released.wait, thread_sensitive=False, executor=pool)()
            c = loop.create_task(third, context=shared)
            d = loop.create_task(asyncio.to_thread(released.set), context=shared)
            await asyncio.gather(c, d)
        return record, shared

    try:
        record, shared = asyncio.run(main())
    finally:
        pool.shutdown()
    assert record.totals() == tracer.Figures(8, 8, 0, 1)
    assert [(c.mechanism, c.parent) for c in sorted(record.crossings, key=lambda c: c.call_ns)] == [
        ("sync_to_async", None),
        ("sync_to_async", None),
        ("sync_to_async", None),
        ("asyncio.to_thread", None),
    ]
    assert shared.run(tracer.current_crossing) is None
    assert shared.run(variable.get) == "second"
