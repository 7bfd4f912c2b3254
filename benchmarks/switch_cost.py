"""What recording one context switch costs on the hot path.

Measurements interleaved round by round (the order turning each round):

1. *Bookkeeping per switch* (CPU time of the one thread it runs in):
   switchtrace's real patches (SyncToAsync.__call__ and run_in_executor;
   AsyncToSync.__call__ and main_wrap), applied from the same patch table,
   driven in one thread around minimal stand-ins for asgiref's own bodies,
   against the same stand-ins called directly. One thread and no executor:
   switchtrace's own work with nothing else around it, hot in the caches.
2. *End to end* (``--end-to-end-calls N``): real bridge calls with
   switchtrace uninstalled, installed with no request in flight, and
   installed and recording, interleaved round by round (the order turning
   each round) so that the machine's drift hits all three alike. Reports,
   per mechanism, the median wall time and process CPU time (every thread,
   the kernel's share included) per call of each variant, and the cost
   switchtrace adds per *switch* (a bridge call is two switches): the median
   of the per-round differences, halved. The CPU figure is the cost of
   recording on the real path: the bookkeeping of (1) plus what it costs
   there, across two threads and cold caches. Crossings are counted but not
   kept (``max_events=0``), as in (1): a request also keeps its crossings
   in a list until its spans are built.
3. *Bare patches*, a third end-to-end variant: the same patch points with
   switchtrace uninstalled and nothing recorded, only what their structure
   needs (a coroutine layer around ``SyncToAsync.__call__`` and
   ``AsyncToSync.main_wrap``, a function around ``AsyncToSync.__call__`` and
   the executors' ``submit``, one context variable set and reset per call
   and visible at the "request's" level, the executor's function wrapped in
   a ``functools.partial`` of a Python function that calls it). What it adds
   per switch is the floor of any recording done from these patch points in
   Python.
4. Two smaller floors, as end-to-end variants too: *layers only*, the bare
   patches without the ``submit`` wrapper and its partial (the coroutine
   layer, the function around ``AsyncToSync.__call__`` and the context
   variable set and reset per call: what would stay in Python if the
   ``submit`` wrapper, the callable that notes the start and the
   bookkeeping were written in C), and *context variable only*, nothing
   patched, one context variable set at the "request's" level (what
   asgiref's own handling of one more context variable costs).
5. With ``--compiled``, two more end-to-end variants: the same recording
   written in C (compiled_floor.c, built for the run; needs a C compiler),
   in switchtrace's design (*compiled recording*) and in one that never
   touches the caller's context (*compiled, copied context*): what a
   compiled hot path would cost, against switchtrace's in the same rounds.

    python benchmarks/switch_cost.py [--rounds 31] [--calls 20000] [--end-to-end-calls 0]
                                     [--compiled] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import (
    AsyncToSync,
    SyncToAsync,
    async_to_sync,
    markcoroutinefunction,
    sync_to_async,
)

from switchtrace import tracer
from switchtrace.tracer import patches


def noop():
    return None


async def anoop():
    return None


class _Clocks:
    """Wall time and process CPU time (all threads) of a block, per call."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __enter__(self) -> _Clocks:
        self.wall = time.perf_counter_ns()
        self.cpu = time.process_time_ns()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = (time.process_time_ns() - self.cpu) / self.calls
        self.wall = (time.perf_counter_ns() - self.wall) / self.calls


def measure_sync_to_async(calls: int, recording: bool) -> tuple[float, float]:
    """(wall, CPU) per call, in ns."""

    async def main():
        bridged = sync_to_async(noop)
        await bridged()  # the executor's thread is started outside the timing
        with contextlib.ExitStack() as stack:
            if recording:
                stack.enter_context(tracer.recording(max_events=0))
            with _Clocks(calls) as clocks:
                for _ in range(calls):
                    await bridged()
        return clocks.wall, clocks.cpu

    return asyncio.run(main())


def measure_async_to_sync_in_loop(calls: int, recording: bool) -> tuple[float, float]:
    """async_to_sync from a sync_to_async thread: scheduled on the outer loop
    (the ASGI case), no loop or thread created. (wall, CPU) per call, in ns."""

    def inner():
        bridged = async_to_sync(anoop)
        with _Clocks(calls) as clocks:
            for _ in range(calls):
                bridged()
        return clocks.wall, clocks.cpu

    async def main():
        if recording:
            with tracer.recording(max_events=0):
                return await sync_to_async(inner)()
        return await sync_to_async(inner)()

    return asyncio.run(main())


def _drive(coro) -> None:
    try:
        coro.send(None)
    except StopIteration:
        pass


class _Executor:
    """Stands in for an executor: runs the function at once."""

    def submit(self, fn, /, *args, **kwargs):
        return fn(*args, **kwargs)


class _SyncToAsync:
    """asgiref's SyncToAsync reduced to its submission to an executor (what
    loop.run_in_executor does once it has chosen the executor)."""

    _thread_sensitive = True

    def __init__(self, executor):
        self.func = noop
        self.executor = executor

    async def __call__(self):
        return self.executor.submit(self.thread_handler)

    def thread_handler(self):
        return self.func()


class _AsyncToSync:
    """asgiref's AsyncToSync reduced to building and running main_wrap."""

    def __init__(self):
        self.awaitable = anoop

    def __call__(self):
        _drive(self.main_wrap())

    async def main_wrap(self):
        return await self.awaitable()


def _stand_ins(traced: bool):
    """Fresh stand-in classes, patched when ``traced`` exactly as switchtrace
    patches asgiref's and asyncio's classes (same patch table, same factories)."""
    import wrapt

    executor_cls = type("ThreadPoolExecutor", (_Executor,), {})
    s2a_cls = type("SyncToAsync", (_SyncToAsync,), {})
    a2s_cls = type("AsyncToSync", (_AsyncToSync,), {})
    if traced:
        how = {(getattr(owner, "__name__", ""), name): h for owner, name, h in patches._targets()}
        for owner, real, name in (
            (executor_cls, "ThreadPoolExecutor", "submit"),
            (s2a_cls, "SyncToAsync", "__call__"),
            (a2s_cls, "AsyncToSync", "__call__"),
            (a2s_cls, "AsyncToSync", "main_wrap"),
        ):
            original = vars(owner.__mro__[1])[name]
            h = how[real, name]
            patched = (
                h.make(original)
                if isinstance(h, patches.Fast)
                else wrapt.FunctionWrapper(original, h)
            )
            setattr(owner, name, patched)
    return executor_cls, s2a_cls, a2s_cls


#: The bookkeeping runs in one thread: its CPU time is its cost, and unlike
#: wall time it does not count what other processes of a shared machine take.
_cpu_clock = time.thread_time_ns


def _timed(traced: bool, calls: int, body) -> float:
    if traced:
        with tracer.recording(max_events=0):
            start = _cpu_clock()
            body(calls)
            return (_cpu_clock() - start) / calls
    start = _cpu_clock()
    body(calls)
    return (_cpu_clock() - start) / calls


def bookkeeping_sync_to_async(calls: int, traced: bool) -> float:
    executor_cls, s2a_cls, _ = _stand_ins(traced)
    bridge = s2a_cls(executor_cls())
    loop = asyncio.new_event_loop()

    def body(n):
        # The submission happens on a thread with a running loop, as in life.
        asyncio.events._set_running_loop(loop)
        try:
            for _ in range(n):
                _drive(bridge())
        finally:
            asyncio.events._set_running_loop(None)

    try:
        return _timed(traced, calls, body)
    finally:
        loop.close()


def bookkeeping_async_to_sync(calls: int, traced: bool) -> float:
    _, _, a2s_cls = _stand_ins(traced)
    bridge = a2s_cls()

    def body(n):
        for _ in range(n):
            bridge()

    return _timed(traced, calls, body)


BOOKKEEPING = {
    "sync_to_async": bookkeeping_sync_to_async,
    "async_to_sync": bookkeeping_async_to_sync,
}


def run_bookkeeping(rounds: int, calls: int, measures: dict | None = None) -> dict:
    results: dict = {}
    for name, measure in (measures or BOOKKEEPING).items():
        measure(calls, True)  # warm-up
        measure(calls, False)
        plain, traced = [], []
        for i in range(rounds):
            # Plain first in even rounds, traced first in odd ones: neither
            # always runs right after the other's classes and loop.
            for is_traced in (False, True) if i % 2 == 0 else (True, False):
                (traced if is_traced else plain).append(measure(calls, is_traced))
        per_switch = [(t - p) / 2 for t, p in zip(traced, plain, strict=True)]
        results[name] = {
            "plain_per_call_ns": statistics.median(plain),
            "traced_per_call_ns": statistics.median(traced),
            "added_per_switch_ns": {
                "median": statistics.median(per_switch),
                "min": min(per_switch),
                "max": max(per_switch),
            },
        }
    return results


MECHANISMS = {
    "sync_to_async": measure_sync_to_async,
    "async_to_sync (outer loop)": measure_async_to_sync_in_loop,
}
VARIANTS = (
    "uninstalled",
    "installed, idle",
    "context variable only",
    "layers only",
    "bare patches",
    "recording",
)
#: Variants run with switchtrace uninstalled, and what each puts in its place.
FLOORS = ("context variable only", "layers only", "bare patches")
#: Variants of --compiled (compiled_floor.DESIGNS), switchtrace uninstalled.
COMPILED = ("compiled recording", "compiled, copied context")

#: The bare patches' context variable: set at the "request's" level, as
#: switchtrace's is, so that asgiref's context copies carry it too.
_bare = contextvars.ContextVar("switchtrace-bare", default=None)


def _bare_arrive(fn, /, *args, **kwargs):
    return fn(*args, **kwargs)


@contextlib.contextmanager
def bare_patches(variant: str = "bare patches"):
    """The patch points switchtrace uses for these bridges, recording nothing
    (see the module's docstring), or the smaller floors of ``FLOORS``;
    switchtrace must be uninstalled."""
    if variant == "context variable only":
        token = _bare.set((0, None))
        try:
            yield
        finally:
            _bare.reset(token)
        return
    s2a_call = vars(SyncToAsync)["__call__"]
    a2s_call = vars(AsyncToSync)["__call__"]
    main_wrap = vars(AsyncToSync)["main_wrap"]
    submits = [(cls, vars(cls)["submit"]) for cls in (ThreadPoolExecutor, CurrentThreadExecutor)]

    @functools.wraps(s2a_call)
    async def bare_s2a_call(self, *args, **kwargs):
        token = _bare.set((1, 2))
        try:
            return await s2a_call(self, *args, **kwargs)
        finally:
            _bare.reset(token)

    @functools.wraps(a2s_call)
    def bare_a2s_call(self, *args, **kwargs):
        token = _bare.set((1, 2))
        try:
            return a2s_call(self, *args, **kwargs)
        finally:
            _bare.reset(token)

    async def layer(call):
        return await call

    @functools.wraps(main_wrap)
    def bare_main_wrap(self, *args, **kwargs):
        return layer(main_wrap(self, *args, **kwargs))

    def bare_submit(original):
        @functools.wraps(original)
        def submit(self, fn, /, *args, **kwargs):
            if _bare.get() is not None:
                fn = functools.partial(_bare_arrive, fn)
            return original(self, fn, *args, **kwargs)

        return submit

    SyncToAsync.__call__ = bare_s2a_call
    AsyncToSync.__call__ = bare_a2s_call
    AsyncToSync.main_wrap = markcoroutinefunction(bare_main_wrap)
    if variant == "bare patches":
        for cls, original in submits:
            cls.submit = bare_submit(original)
    token = _bare.set((0, None))
    try:
        yield
    finally:
        _bare.reset(token)
        SyncToAsync.__call__ = s2a_call
        AsyncToSync.__call__ = a2s_call
        AsyncToSync.main_wrap = main_wrap
        for cls, original in submits:
            cls.submit = original


def run(rounds: int, calls: int, floor: Any = None) -> dict:
    """The end-to-end rounds; ``floor`` (a compiled_floor.Floor) adds the
    compiled variants."""
    variants = VARIANTS + (COMPILED if floor is not None else ())
    results: dict = {}
    for name, measure in MECHANISMS.items():
        samples: dict[str, dict[str, list[float]]] = {
            clock: {v: [] for v in variants} for clock in ("wall", "cpu")
        }
        for v in variants:  # warm-up
            _one(measure, v, max(calls // 4, 1), floor)
        for i in range(rounds):
            # The order turns round by round, so that no variant always runs
            # first (or last) after the previous one's loop and threads.
            turn = i % len(variants)
            for v in variants[turn:] + variants[:turn]:
                wall, cpu = _one(measure, v, calls, floor)
                samples["wall"][v].append(wall)
                samples["cpu"][v].append(cpu)
        results[name] = {clock: _summary(by_variant) for clock, by_variant in samples.items()}
    return results


def _added_per_switch(samples: dict[str, list[float]], variant: str) -> dict:
    """The median (and range) over rounds of what ``variant`` adds to a call
    with switchtrace uninstalled, halved: a call is two switches."""
    pairs = zip(samples[variant], samples["uninstalled"], strict=True)
    deltas = [(with_it - uninstalled) / 2 for with_it, uninstalled in pairs]
    return {"median": statistics.median(deltas), "min": min(deltas), "max": max(deltas)}


def _summary(samples: dict[str, list[float]]) -> dict:
    return {
        "per_call_ns": {
            v: {"median": statistics.median(s), "min": min(s), "max": max(s)}
            for v, s in samples.items()
        },
        "added_per_switch_ns": _added_per_switch(samples, "recording"),
        "floors_per_switch_ns": {v: _added_per_switch(samples, v) for v in FLOORS},
        "compiled_per_switch_ns": {
            v: _added_per_switch(samples, v) for v in COMPILED if v in samples
        },
        # The median of the rounds' ratios, as every ratio of the project's
        # benchmarks: a ratio of medians pairs figures of different rounds.
        "ratio_recording_to_uninstalled": statistics.median(
            r / u for r, u in zip(samples["recording"], samples["uninstalled"], strict=True)
        ),
    }


def _one(measure, variant: str, calls: int, floor: Any = None) -> tuple[float, float]:
    if variant in COMPILED:
        tracer.uninstall()
        try:
            with floor.recording(variant) as record:
                timed = measure(calls, recording=False)
            # Every call, and the one before the timing, recorded whole.
            if not record.started == record.returned == calls + 1:
                raise SystemExit(
                    f"switch_cost.py: {variant} recorded {record.started} starts and "
                    f"{record.returned} returns of {calls + 1} calls"
                )
            return timed
        finally:
            tracer.install()
    if variant == "uninstalled" or variant in FLOORS:
        tracer.uninstall()
    else:
        tracer.install()
    try:
        if variant in FLOORS:
            with bare_patches(variant):
                return measure(calls, recording=False)
        return measure(calls, recording=variant == "recording")
    finally:
        tracer.install()


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--calls", type=int, default=20000, help="calls per round (bookkeeping)")
    parser.add_argument(
        "--end-to-end-calls",
        type=int,
        default=0,
        help="also time real bridge calls, this many per round (noisy on a shared machine)",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also time the same recording compiled from C (with --end-to-end-calls)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1 or args.end_to_end_calls < 0:
        parser.error("--rounds and --calls must be at least 1, --end-to-end-calls at least 0")
    if args.compiled and not args.end_to_end_calls:
        parser.error("--compiled needs --end-to-end-calls (its variants are end to end)")
    floor = None
    if args.compiled:
        import compiled_floor  # this script's folder is on sys.path

        try:
            floor = compiled_floor.Floor(compiled_floor.build_and_load())
        except compiled_floor.Unavailable as exc:
            parser.error(str(exc))
    results = {"bookkeeping": run_bookkeeping(args.rounds, args.calls)}
    if args.end_to_end_calls:
        results["end_to_end"] = run(args.rounds, args.end_to_end_calls, floor)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(f"Bookkeeping: {args.rounds} interleaved rounds of {args.calls} calls")
    for name, r in results["bookkeeping"].items():
        d = r["added_per_switch_ns"]
        print(
            f"  {name:<14} added per switch: median {d['median'] / 1e3:.2f} µs "
            f"(min {d['min'] / 1e3:.2f}, max {d['max'] / 1e3:.2f})"
        )
    if "end_to_end" not in results:
        return 0
    print(f"\nEnd to end: {args.rounds} interleaved rounds of {args.end_to_end_calls} calls, µs")
    for name, by_clock in results["end_to_end"].items():
        print(f"  {name}")
        for clock, label in (("wall", "wall time"), ("cpu", "CPU time, all threads")):
            r = by_clock[clock]
            print(f"    {label}")
            for v, s in r["per_call_ns"].items():
                print(
                    f"      {v:<24} {s['median'] / 1e3:7.2f} per call "
                    f"({s['min'] / 1e3:.2f}-{s['max'] / 1e3:.2f})"
                )
            d = r["added_per_switch_ns"]
            print(
                f"      added per switch {d['median'] / 1e3:.2f} ({d['min'] / 1e3:.2f} to "
                f"{d['max'] / 1e3:.2f}), ratio {r['ratio_recording_to_uninstalled']:.3f}"
            )
            for v, d in r["floors_per_switch_ns"].items():
                print(
                    f"      {v} alone, per switch {d['median'] / 1e3:.2f} "
                    f"({d['min'] / 1e3:.2f} to {d['max'] / 1e3:.2f})"
                )
            for v, d in r["compiled_per_switch_ns"].items():
                print(
                    f"      {v}, per switch {d['median'] / 1e3:.2f} "
                    f"({d['min'] / 1e3:.2f} to {d['max'] / 1e3:.2f})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
