"""Bytecodes per request, by function: where the instructions that
``benchmarks/instructions.py`` counts go.

Runs the same request as ``instructions.py`` (the example project's ASGI
default-stack sync-view request, Django's ``ASGIHandler`` driven in-process,
after the same warm-up), one child process per mode, with the interpreter's
opcode trace events (``sys.settrace`` with ``frame.f_trace_opcodes``) on in
every thread while the measured requests run, and counts the bytecodes each
function executes. Reported: each mode's bytecodes per request, what it adds
to switchtrace disabled, and the functions that add the most.

Like valgrind's counts, and unlike times, the figures do not depend on the
machine's load (thread interleavings move them a little: an event loop that
waits once more runs its loop once more). They are not a cost: a bytecode
takes from tens to hundreds of machine instructions, and C functions (a
context variable's ``set``, ``perf_counter_ns``) execute none. The trace makes
the requests many times slower, so nothing here is timed.

    python benchmarks/bytecodes.py [--requests 50] [--top 15] [--modes MODE,...] [--json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import instructions  # this script's folder is on sys.path

ROOT = instructions.ROOT
MODES = instructions.MODES

#: Where the functions' files are named from, most specific first: the
#: checkout's sources, installed packages, the standard library.
_PLACES = sorted(
    {
        str(ROOT / "src"),
        *(sysconfig.get_paths()[name] for name in ("purelib", "platlib")),
        sysconfig.get_paths()["stdlib"],
    },
    key=len,
    reverse=True,
)


def _where(code: Any) -> str:
    """``file:line function``, the file named from where it was imported."""
    path = code.co_filename
    for place in _PLACES:
        if path.startswith(place + os.sep):
            path = path[len(place) + 1 :]
            break
    return f"{path}:{code.co_firstlineno} {code.co_name}"


class Counting:
    """Counts the bytecodes executed in every thread, by code object, while
    :attr:`on`. Installed before anything runs, so that every thread the
    process starts has it: a thread started earlier (the span pipeline's)
    could not be given a trace function later on Python 3.10 and 3.11. A
    frame entered while off (a thread's loop waiting in a queue) stays
    uncounted; what it calls is counted. Each thread counts in a counter of
    its own (an increment is several bytecodes, between which another
    thread may take the GIL)."""

    def __init__(self) -> None:
        self.on = False
        self._threads: list[collections.Counter[Any]] = []
        self._local = threading.local()
        sys.settrace(self._start)
        threading.settrace(self._start)

    @property
    def counts(self) -> collections.Counter[Any]:
        total: collections.Counter[Any] = collections.Counter()
        for counts in self._threads:
            total.update(counts)
        return total

    def _start(self, frame: Any, event: str, arg: Any) -> Any:
        # Each call, and each resumption of a generator or coroutine: the
        # frame counts in the thread it runs in now.
        if not self.on:
            return None
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        try:
            return self._local.opcode
        except AttributeError:
            pass
        counts: collections.Counter[Any] = collections.Counter()
        self._threads.append(counts)

        def opcode(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[frame.f_code] += 1
            return opcode

        self._local.opcode = opcode
        return opcode

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False


def child(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in MODES or not argv[1].isdigit():
        print(
            f"bytecodes.py: error: --child {' '.join(argv)!r}; "
            f"expected MODE COUNT TRACES, MODE one of: {', '.join(MODES)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    mode, requests, traces = argv[0], int(argv[1]), argv[2]
    counting = Counting()
    instructions.serve(mode, requests, traces, measured=counting.measuring)
    sys.settrace(None)
    by_place: collections.Counter[str] = collections.Counter()
    for code, executed in counting.counts.items():
        by_place[_where(code)] += executed
    print(json.dumps(dict(by_place)))
    sys.stdout.flush()
    os._exit(0)


def measure(mode: str, requests: int, traces: str) -> dict[str, float]:
    """Bytecodes per request of ``mode``, by function."""
    command = [sys.executable, __file__, "--child", mode, str(requests), traces]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bytecodes.py: the child for {mode!r} failed:\n{done.stderr[-2000:]}")
    counts = json.loads(done.stdout.splitlines()[-1])
    return {place: executed / requests for place, executed in counts.items()}


def _modes(text: str) -> list[str]:
    chosen = [mode.strip() for mode in text.split(",")]
    wrong = [mode for mode in chosen if mode not in MODES]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown mode {', '.join(map(repr, wrong))}; allowed: {', '.join(MODES)}"
        )
    if "disabled" not in chosen:
        chosen.insert(0, "disabled")  # what the others are compared with
    return chosen


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1:])
    parser = instructions.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=instructions.positive, default=50)
    parser.add_argument("--top", type=instructions.positive, default=15)
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help=f"comma-separated, of: {', '.join(MODES)} (disabled is always run)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        traces = str(Path(folder) / "traces.jsonl")
        by_mode = {mode: measure(mode, args.requests, traces) for mode in args.modes}
    base = by_mode["disabled"]
    added = {
        mode: {
            place: counts.get(place, 0.0) - base.get(place, 0.0)
            for place in set(counts) | set(base)
        }
        for mode, counts in by_mode.items()
        if mode != "disabled"
    }
    if args.json:
        results = {
            "requests": args.requests,
            "per_request": {mode: sum(counts.values()) for mode, counts in by_mode.items()},
            "functions": by_mode,
        }
        print(json.dumps(results))
        return 0
    print(f"Bytecodes per request, ASGI default stack, /sync/ ({args.requests} requests)")
    total = sum(base.values())
    for mode, counts in by_mode.items():
        mine = sum(counts.values())
        more = f"  {mine - total:+,.0f}" if mode != "disabled" else ""
        print(f"  {mode:<13} {mine:>10,.0f}{more}")
    if not added:
        return 0
    largest = {
        place: max(abs(changes.get(place, 0.0)) for changes in added.values())
        for place in set().union(*added.values())
    }
    top = sorted(largest, key=lambda place: (-largest[place], place))[: args.top]
    print(f"Added per request, by function (the {len(top)} that change most):")
    print("  " + "".join(f"{mode:>14}" for mode in added) + "  function")
    for place in top:
        columns = "".join(f"{changes.get(place, 0.0):>+14,.0f}" for changes in added.values())
        print(f"  {columns}  {place}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
