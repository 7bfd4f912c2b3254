"""What a wrapt FunctionWrapper costs per call of a patched method, against
a plain ``functools.wraps`` function doing the same (both calling the
original at once, nothing recorded), and against the method unpatched.

Why switchtrace's patches on the per-switch path (``SyncToAsync.__call__``,
``AsyncToSync.__call__`` and ``main_wrap``, the executors' ``submit``,
``run_until_complete``) are plain functions: a crossing goes through three
or four of them. Measured as switchtrace builds its wrapt patches (with an
``enabled`` switch), called through an instance as asgiref and asyncio call
them. Variants interleaved round by round, the order turning each round;
reports the median per call of each, and the differences' medians.

    python benchmarks/wrapt_dispatch.py [--rounds 21] [--calls 200000]
"""

from __future__ import annotations

import functools
import statistics
import sys
import time

import wrapt
from instructions import Parser, positive  # this script's folder is on sys.path


class Plain:
    def method(self, value):
        return value


def _by_function(original):
    @functools.wraps(original)
    def method(self, *args, **kwargs):
        return original(self, *args, **kwargs)

    return method


def _by_wrapt(original):
    switch = [True]

    def wrapper(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    return wrapt.FunctionWrapper(original, wrapper, enabled=functools.partial(bool, switch))


class ByFunction:
    method = _by_function(Plain.method)


class ByWrapt:
    method = _by_wrapt(Plain.method)


VARIANTS = {"unpatched": Plain(), "functools.wraps": ByFunction(), "wrapt": ByWrapt()}


def _per_call(target, calls: int) -> float:
    # (The method read off the instance at each call, as callers do.)
    start = time.perf_counter_ns()
    for _ in range(calls):
        target.method(1)
    return (time.perf_counter_ns() - start) / calls


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="wrapt_dispatch.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=21)
    parser.add_argument("--calls", type=positive, default=200_000)
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    results: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(args.rounds):
        order = names[turn % len(names) :] + names[: turn % len(names)]
        for name in order:
            results[name].append(_per_call(VARIANTS[name], args.calls))
    median = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"Python {sys.version.split()[0]}, wrapt {wrapt.__version__}"
        f"{'' if _has_c_extension() else ' (pure Python)'}; {args.rounds} rounds of "
        f"{args.calls} calls, medians per call"
    )
    for name in names:
        print(f"  {name:16} {median[name]:7.0f} ns")
    added = {
        name: statistics.median(
            b - a for a, b in zip(results["unpatched"], results[name], strict=True)
        )
        for name in ("functools.wraps", "wrapt")
    }
    for name, ns in added.items():
        print(f"  {name} adds {ns:.0f} ns a call (median of the rounds' differences)")
    if added["functools.wraps"] > 0:
        ratio = f"{added['wrapt'] / added['functools.wraps']:.1f}x"
    else:  # (too few calls to tell them apart)
        ratio = "not measurable"
    print(f"  what wrapt adds / what functools.wraps adds: {ratio} (of the medians above)")
    return 0


def _has_c_extension() -> bool:
    """Whether wrapt's proxies are its C extension's (a class of Python's
    own is defined in a module of wrapt's)."""
    return not wrapt.FunctionWrapper.__module__.startswith("wrapt.")


if __name__ == "__main__":
    sys.exit(main())
