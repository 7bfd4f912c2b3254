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

``--driver server`` counts instead in the servers of ``switchtrace bench
--overhead --driver server`` (uvicorn for ASGI, gunicorn gthread for WSGI,
one process per mode: disabled, headers only, full spans), started with the
counting in place and driven over loopback: every process of the server
(gunicorn's worker and its arbiter), while the measured requests run and
until the full-spans server has written their spans.

    python benchmarks/bytecodes.py [--requests 50] [--top 15] [--modes MODE,...] [--json]
        [--driver in-process|server] [--servers asgi,wsgi]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import runpy
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import instructions  # this script's folder is on sys.path

from switchtrace import bench

ROOT = instructions.ROOT
MODES = instructions.MODES
#: Through real servers: bench --overhead --driver server's modes.
SERVER_MODES = bench.OVERHEAD_VARIANTS

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
    thread may take the GIL).

    Python 3.12 turns opcode events on only in a ``sys.settrace`` made after
    some frame has set ``f_trace_opcodes`` (the interpreter's
    ``f_opcode_trace_set``): frames setting it later get none until a thread
    starts, and sets the trace again, which gunicorn's gthread worker serving
    one request at a time does not after its first request (every WSGI
    figure was 0). So a frame sets it here, before the trace is set."""

    def __init__(self) -> None:
        self.on = False
        self._threads: list[collections.Counter[Any]] = []
        self._local = threading.local()
        here = sys._getframe()
        here.f_trace_opcodes = True
        here.f_trace_opcodes = False
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


def _by_place(counts: collections.Counter[Any]) -> dict[str, int]:
    by_place: collections.Counter[str] = collections.Counter()
    for code, executed in counts.items():
        by_place[_where(code)] += executed
    return dict(by_place)


#: What a counting server (--driver server) is told by signal: start
#: counting; stop, and write the counts (each of its processes to its own
#: file, ``COUNTS_OUT.<pid>``).
COUNT_ON = getattr(signal, "SIGRTMIN", 0) + 1
COUNT_OFF = getattr(signal, "SIGRTMIN", 0) + 2
#: The environment variable naming where a counting server writes.
COUNTS_OUT = "SWITCHTRACE_BYTECODES_OUT"


def server_child(argv: list[str]) -> None:
    """``--server-child -m MODULE ARGS...``: the server ``python -m MODULE
    ARGS...`` runs, counting from :data:`COUNT_ON` to :data:`COUNT_OFF`."""
    out = os.environ[COUNTS_OUT]
    counting = Counting()

    def on(signum: int, frame: Any) -> None:
        counting.on = True
        Path(f"{out}.{os.getpid()}.on").touch()

    def off(signum: int, frame: Any) -> None:
        counting.on = False
        # Written aside and renamed: the script reads the file as soon as it
        # exists, and write_text makes it empty before it writes.
        part = Path(f"{out}.{os.getpid()}.part")
        part.write_text(json.dumps(_by_place(counting.counts)))
        part.replace(f"{out}.{os.getpid()}")

    signal.signal(COUNT_ON, on)
    signal.signal(COUNT_OFF, off)
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    raise SystemExit(0)


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"bytecodes.py: {what} within {timeout:.0f} s")
        time.sleep(0.05)


def _signal_all(pids: list[int], signum: int, files: list[Path], what: str) -> None:
    """Send ``signum`` to each of ``pids`` and wait until each has written
    its file of ``files``."""
    for pid in pids:
        os.kill(pid, signum)
    _wait_for(what, lambda: all(path.exists() for path in files))


def measure_servers(
    servers: list[str], modes: list[str], requests: int, folder: Path
) -> dict[str, dict[str, dict[str, float]]]:
    """Bytecodes per request of each mode's server, by function, by server."""

    def out(server: str, mode: str) -> str:
        return str(folder / f"{server}-{mode.replace(' ', '-')}")

    class Counted(bench.OverheadServers):
        def _environ(self, server: str, key: str) -> dict[str, str]:
            env = super()._environ(server, key)
            env[COUNTS_OUT] = out(server, key)
            return env

        def _command(self, server: str, port: int) -> list[str]:
            command = super()._command(server, port)
            return [command[0], __file__, "--server-child", *command[1:]]

    def count(driver: Counted, server: str, mode: str) -> dict[str, float]:
        pid, port = driver.address(server, mode)
        named = f"the {bench.PROGRAMS[server]} server for {mode!r}"
        asyncio.run(bench._http_load("127.0.0.1", port, "/sync/", instructions.WARMUP, 1))
        bench._wait_idle(pid)
        family = bench._family(pid)  # gunicorn: its arbiter and worker
        on = [Path(f"{out(server, mode)}.{member}.on") for member in family]
        _signal_all(family, COUNT_ON, on, f"{named} did not start counting")
        asyncio.run(bench._http_load("127.0.0.1", port, "/sync/", requests, 1))
        if mode == "full spans" and driver.files is not None:
            served = 1 + instructions.WARMUP + requests  # its probe, the warm-up, these
            spans = driver.files[server]
            _wait_for(
                f"{named} did not write the spans of its {served} requests",
                lambda: bench._request_spans(spans).get("/sync/", 0) >= served,
            )
        bench._wait_idle(pid)
        written = [Path(f"{out(server, mode)}.{member}") for member in family]
        _signal_all(family, COUNT_OFF, written, f"{named} did not write its counts")
        total: collections.Counter[str] = collections.Counter()
        for path in written:
            total.update(json.loads(path.read_text()))
        return {place: executed / requests for place, executed in total.items()}

    results: dict[str, dict[str, dict[str, float]]] = {}
    for server in servers:
        driver = Counted(ROOT / "examples" / "project", "shipped", folder)
        try:
            driver.open_modes([server])
            results[server] = {mode: count(driver, server, mode) for mode in modes}
        finally:
            driver.close()
    return results


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
    print(json.dumps(_by_place(counting.counts)))
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


def _servers(text: str) -> list[str]:
    chosen = [server.strip() for server in text.split(",")]
    wrong = [server for server in chosen if server not in bench.PROGRAMS]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"unknown server {', '.join(map(repr, wrong))}; allowed: {', '.join(bench.PROGRAMS)}"
        )
    return list(dict.fromkeys(chosen))


def report(title: str, by_mode: dict[str, dict[str, float]], top: int) -> None:
    """The figures of one driver and server, as the README shows them."""
    print(title)
    base = by_mode["disabled"]
    total = sum(base.values())
    for mode, counts in by_mode.items():
        mine = sum(counts.values())
        more = f"  {mine - total:+,.0f}" if mode != "disabled" else ""
        print(f"  {mode:<13} {mine:>10,.0f}{more}")
    added = {
        mode: {
            place: counts.get(place, 0.0) - base.get(place, 0.0)
            for place in set(counts) | set(base)
        }
        for mode, counts in by_mode.items()
        if mode != "disabled"
    }
    if not added:
        return
    largest = {
        place: max(abs(changes.get(place, 0.0)) for changes in added.values())
        for place in set().union(*added.values())
    }
    chosen = sorted(largest, key=lambda place: (-largest[place], place))[:top]
    print(f"Added per request, by function (the {len(chosen)} that change most):")
    print("  " + "".join(f"{mode:>14}" for mode in added) + "  function")
    for place in chosen:
        columns = "".join(f"{changes.get(place, 0.0):>+14,.0f}" for changes in added.values())
        print(f"  {columns}  {place}")


def _figures(by_mode: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "per_request": {mode: sum(counts.values()) for mode, counts in by_mode.items()},
        "functions": by_mode,
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1:])
    if argv[:1] == ["--server-child"]:
        server_child(argv[1:])
    parser = instructions.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=instructions.positive, default=50)
    parser.add_argument("--top", type=instructions.positive, default=15)
    parser.add_argument(
        "--modes",
        type=_modes,
        help=f"comma-separated, of: {', '.join(MODES)} (disabled is always run; "
        f"through servers, all but installed)",
    )
    parser.add_argument("--driver", choices=("in-process", "server"), default="in-process")
    parser.add_argument(
        "--servers",
        type=_servers,
        default=list(bench.PROGRAMS),
        help="with --driver server: comma-separated, of: asgi (uvicorn), wsgi (gunicorn)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.driver == "in-process":
        modes = args.modes or list(MODES)
    else:
        modes = args.modes or list(SERVER_MODES)
        wrong = [mode for mode in modes if mode not in SERVER_MODES]
        if wrong:
            parser.error(
                f"argument --modes: {', '.join(map(repr, wrong))} is counted in-process only; "
                f"with --driver server: {', '.join(SERVER_MODES)}"
            )
        if not hasattr(signal, "SIGRTMIN"):
            parser.error("argument --driver: server needs Linux (its real-time signals)")
    with tempfile.TemporaryDirectory() as folder:
        if args.driver == "server":
            by_server = measure_servers(args.servers, modes, args.requests, Path(folder))
        else:
            traces = str(Path(folder) / "traces.jsonl")
            by_mode = {mode: measure(mode, args.requests, traces) for mode in modes}
    if args.driver == "in-process":
        if args.json:
            print(json.dumps({"requests": args.requests, **_figures(by_mode)}))
        else:
            title = "Bytecodes per request, ASGI default stack, /sync/"
            report(f"{title} ({args.requests} requests)", by_mode, args.top)
        return 0
    if args.json:
        servers = {server: _figures(by_mode) for server, by_mode in by_server.items()}
        print(json.dumps({"requests": args.requests, "servers": servers}))
        return 0
    for number, (server, by_mode) in enumerate(by_server.items()):
        if number:
            print()
        where = f"{server.upper()} default stack through {bench.PROGRAMS[server]}, /sync/"
        report(f"Bytecodes per request, {where} ({args.requests} requests)", by_mode, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
