"""``switchtrace bench``: the sync-vs-async hello-world benchmark the Django
tickets asked for (#31224's forum thread, #37177's table).

Matrix: WSGI and ASGI, endpoints, middleware variants, concurrency levels. For
each cell: sequential µs per request (concurrency 1), requests per second at
each higher concurrency, peak threads, and the switches, loops and threads
per request that switchtrace counted. Every cell is measured in each of
``--rounds`` rounds, the variants interleaved within a round, and reported as
the median with min-max over the rounds.

Drivers: in-process (Django's ASGIHandler / WSGIHandler driven directly, as
the ticket did; the default) and ``--server`` (real uvicorn and gunicorn on
loopback, driven over HTTP by an asyncio load generator with keep-alive
connections).

The matrix exports no spans (the served project's EXPORTER is "none"): its
figures are switches and latency, and a default run's 33,000 requests would
otherwise append hundreds of MB to the project's traces file.
``--overhead`` measures instead the same request with switchtrace disabled,
headers only, and full spans, interleaved, as ratios to disabled: served
back to back, the spans' export included (wall and CPU time per request),
and one at a time at an idle server (latency: until the client has the whole
response; the span thread's work comes after it, between requests); its
spans go to a temporary file (or to the OTLP collector the settings name).
With ``--driver server`` each mode is served by a uvicorn or gunicorn process
of its own, its settings changed by a module written for the run
(:func:`overhead_settings`), and driven over HTTP.
``--compare BASELINE.json`` flags every cell slower than the baseline in every
round (beyond both runs' own spread) and exits 1; it says how many cells it
compared, and a run that shares no cell with the baseline is bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stat import S_ISDIR, S_ISFIFO, S_ISREG
from typing import TYPE_CHECKING, Any, TextIO

from . import example, text
from .plural import count

if TYPE_CHECKING:
    from .exporters import ExportOptions

ENDPOINTS = ("/sync/", "/async/", "/async-io/")
SERVERS = ("wsgi", "asgi")
#: What serves each (the command run by ``--driver server``).
PROGRAMS = {"asgi": "uvicorn", "wsgi": "gunicorn"}
OVERHEAD_VARIANTS = ("disabled", "headers only", "full spans")
FORMAT_VERSION = 1
DEFAULT_CONCURRENCY = (1, 50, 200)
DEFAULT_TOLERANCE = 0.1


# -- arguments ---------------------------------------------------------------


def _choices(allowed: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        # Each once, in the order given: a cell listed twice would be measured
        # twice a round, and its spread would no longer be over rounds.
        items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; "
                f"allowed: {', '.join(allowed)}"
            )
        return items

    return parse


#: The highest concurrency level: each in-flight request is a task (ASGI) or a
#: thread (WSGI) of this process.
MAX_CONCURRENCY = 1000


def _concurrency(text: str) -> list[int]:
    try:
        levels = [int(item) for item in text.split(",")]
    except ValueError:
        levels = []
    if not levels or any(not 1 <= level <= MAX_CONCURRENCY for level in levels):
        raise argparse.ArgumentTypeError(
            f"invalid concurrency {text!r}; allowed: integers from 1 to {MAX_CONCURRENCY} "
            "separated by commas, e.g. 1,50,200"
        )
    return sorted(set(levels))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed: a positive integer")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}; allowed: 0 or a positive integer"
        )
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(
            f"invalid tolerance {text!r}; allowed: a number from 0 to 10 (0.1 = 10 %)"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    all_endpoints = tuple(e for e, _ in _demo_endpoints())
    parser.add_argument(
        "--servers", type=_choices(SERVERS, "server"), default=list(SERVERS),
        help="wsgi,asgi (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--endpoints", type=_choices(all_endpoints, "endpoint"), default=list(ENDPOINTS),
        help=f"comma-separated (default: {','.join(ENDPOINTS)}; "
        f"allowed: {', '.join(all_endpoints)})",
    )  # fmt: skip
    # --variants, --concurrency and --tolerance default to None, so that run()
    # can tell them given where they do not apply.
    parser.add_argument(
        "--variants", type=_choices(example.VARIANTS, "middleware variant"),
        help="shipped,sync-only,none (default: all; with --overhead: shipped)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=_concurrency,
        help="levels; 1 gives the sequential figure; none above --requests (default: "
        "1,50,200; --overhead serves one request at a time)",
    )  # fmt: skip
    parser.add_argument(
        "--requests", type=_positive, default=200, help="per cell and round (default: 200)"
    )
    parser.add_argument(
        "--rounds", type=_positive, default=3,
        help="every cell is measured once a round, the cells interleaved (default: 3)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=_non_negative, default=20,
        help="requests per cell before measuring (default: 20)",
    )  # fmt: skip
    parser.add_argument(
        "--driver", choices=("in-process", "server"), default="in-process",
        help="in-process (Django's handlers driven directly) or server (uvicorn and "
        "gunicorn on loopback, over HTTP) (default: in-process)",
    )  # fmt: skip
    parser.add_argument(
        "--server", action="store_const", dest="driver", const="server",
        help="the same as --driver server",
    )  # fmt: skip
    parser.add_argument(
        "--overhead", action="store_true",
        help="switchtrace disabled vs headers only vs full spans, as ratios",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--compare", metavar="BASELINE.json",
        help="a result of --json to compare with: says (on stderr) how many cells were "
        "compared and which are slower, and exits 1 if any is",
    )  # fmt: skip
    parser.add_argument(
        "--tolerance", type=_fraction,
        help="with --compare: a cell counts as slower only beyond this fraction "
        "(default: 0.1)",
    )  # fmt: skip
    parser.add_argument("--project", type=example.project_argument, help=example.PROJECT_HELP)


def _demo_endpoints() -> tuple[tuple[str, str], ...]:
    from .demo import ENDPOINTS as ALL

    return ALL


class ServerFailed(RuntimeError):
    """A server under ``--driver server`` did not start, or answered with an
    error status (400 or more)."""


#: Seconds without a single response after which a server that keeps its
#: connections open (a view waiting for ever, a stopped process) counts as
#: no longer answering, rather than the command waiting for it for ever.
STALL = 60.0


class Stalled(Exception):
    """No response came in for a whole ``stall`` (see :data:`STALL`)."""


# -- statistics ----------------------------------------------------------------


def spread(samples: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


# -- progress --------------------------------------------------------------------


class Progress:
    """One updating line on a terminal, nothing when the output is not one."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        # Standard error as it is now (None when closed: 2>&-), not when the
        # module was imported. A terminal that cannot move its cursor back
        # (TERM=dumb) gets no line either.
        self.stream: Any = sys.stderr if stream is None else stream
        self.live = (
            self.stream is not None and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        )
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.live:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = f"[{self.done}/{self.total}] {label}  (~{eta:.0f} s left)"
        # Cut to the terminal's width: a line that wraps is not cleared by \r.
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        width = (columns or shutil.get_terminal_size().columns) - 1  # (0: a size never set)
        self.stream.write(f"\r\x1b[K{line[:width]}")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# -- in-process driver --------------------------------------------------------------


class InProcess:
    name = "in-process"

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Any, Any]] = {}
        self._contexts: list[Any] = []

    def open(self, variant: str) -> None:
        context = example.handlers(variant)
        self._handlers[variant] = context.__enter__()
        self._contexts.append(context)

    def close(self) -> None:
        while self._contexts:
            self._contexts.pop().__exit__(None, None, None)

    def run(self, server: str, variant: str, endpoint: str, requests: int, concurrency: int):
        """(elapsed s, per-request latencies s, peak threads, responses' figures).

        Each variant's handlers were built under its own MIDDLEWARE and
        async_capable flag, which their middleware chain keeps."""
        asgi, wsgi = self._handlers[variant]
        if server == "asgi":
            # In a context of its own, as an ASGI server's loop is: nothing
            # of the WSGI requests served in this thread. asgiref before 3.9
            # keeps what its Local holds (AsyncToSync's executors) in one
            # dict that its context variable shares with every copy: set
            # by a WSGI request's async_to_sync here, concurrent ASGI
            # requests took each other's executor (a RuntimeError, or a hang).
            return contextvars.Context().run(
                example.run_in_server_loop,
                _asgi_load(asgi, endpoint, requests, concurrency, variant),
            )
        return _wsgi_load(wsgi, endpoint, requests, concurrency, variant)


def _threads() -> int:
    """Threads of this process, less the command line's own (its Ctrl-C
    watcher): the served project's and the load generator's."""
    from .cli import own_threads

    return threading.active_count() - own_threads()


async def _asgi_load(handler: Any, endpoint: str, requests: int, concurrency: int, variant: str):
    remaining = requests
    latencies: list[float] = []
    peak = _threads()
    figures: list[Any] = []

    async def worker() -> None:
        nonlocal remaining, peak
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                result = await example.asgi_request(handler, endpoint)
                latencies.append(time.perf_counter() - start)
                example.answered(result, "asgi", endpoint, variant)
            except BaseException:
                remaining = 0  # the others end with the request they serve
                raise
            figures.append(result.figures())
            peak = max(peak, _threads())

    start = time.perf_counter()
    # Every worker waited for: one that raised leaves no other's request
    # pending in the loop (each a traceback at the command's exit).
    ended = await asyncio.gather(*(worker() for _ in range(concurrency)), return_exceptions=True)
    for each in ended:
        if isinstance(each, BaseException):
            raise each
    return time.perf_counter() - start, latencies, peak, figures


def _wsgi_load(handler: Any, endpoint: str, requests: int, concurrency: int, variant: str):
    lock = threading.Lock()
    remaining = [requests]
    latencies: list[float] = []
    figures: list[Any] = []
    peak = [_threads()]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            result = example.wsgi_request(handler, endpoint)
            elapsed = time.perf_counter() - start
            example.answered(result, "wsgi", endpoint, variant)
            with lock:
                latencies.append(elapsed)
                figures.append(result.figures())
                peak[0] = max(peak[0], _threads())

    start = time.perf_counter()
    if concurrency == 1:
        worker()
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            workers = [pool.submit(worker) for _ in range(concurrency)]
        for each in workers:
            each.result()  # raises what a request raised, as one at a time does
    return time.perf_counter() - start, latencies, peak[0], figures


# -- server driver ----------------------------------------------------------------


class Servers:
    """Real servers on loopback: uvicorn for ASGI, gunicorn (gthread) for WSGI,
    one per variant and server measured, started once; each answers a first
    request of ``endpoint`` before it counts as started."""

    name = "server"
    #: Seconds a server has to answer its first request.
    start_timeout = 30.0

    def __init__(
        self,
        project: Path,
        concurrency: int,
        servers: Sequence[str] = SERVERS,
        endpoint: str = "/sync/",
    ) -> None:
        self.project = project
        self.threads = max(concurrency, 1)
        self.servers = servers
        self.endpoint = endpoint
        self._servers: dict[tuple[str, str], tuple[subprocess.Popen[bytes], int]] = {}

    def open(self, variant: str) -> None:
        for server in self.servers:
            self._servers[server, variant] = self._start(server, variant)

    def _environ(self, server: str, key: str) -> dict[str, str]:
        """The environment of ``server`` for ``key`` (a middleware variant)."""
        # No spans (conf: OTEL_SDK_DISABLED=true means none are made), as in-process.
        env = {**os.environ, "SWITCHTRACE_EXAMPLE_MIDDLEWARE": key, "OTEL_SDK_DISABLED": "true"}
        # As in-process (example.ignore_streaming_warnings).
        ignore = f"ignore:{example.STREAMING_WARNING}"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), ignore]))
        env["PYTHONPATH"] = os.pathsep.join([str(self.project), env.get("PYTHONPATH", "")])
        return env

    def _start(self, server: str, key: str) -> tuple[subprocess.Popen[bytes], int]:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = self._environ(server, key)
        command = self._command(server, port)
        from .cli import disown, kill, start

        # Adopted: ended with the command if a signal ends it.
        process = start(command, cwd=self.project, env=env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                disown(process)
                raise ServerFailed(
                    f"{self._name(server, key)} exited with status "
                    f"{process.returncode} before answering (its own output is above)"
                )
            try:
                # A server that takes the connection and never answers is
                # waited for until the deadline, not for ever.
                left = max(deadline - time.monotonic(), 0.1)
                asyncio.run(_http_load("127.0.0.1", port, self.endpoint, 1, 1, stall=left))
                return process, port
            except OSError:  # not listening yet
                time.sleep(0.1)
            except Stalled:
                break
            except Exception as exc:
                # It answered, but not as a server to measure (an error
                # status, 400 or more): stopped
                # here, it was left running after the command, which the
                # rounds' close() does not know of.
                process.send_signal(self._stop_signal(server))
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    kill(process)
                disown(process)
                if isinstance(exc, ServerFailed):
                    answered = str(exc).removeprefix("server answered ")
                    raise ServerFailed(
                        f"{self._name(server, key)} answered its first request with {answered}"
                    ) from None
                raise
        kill(process)
        disown(process)
        raise ServerFailed(
            f"{self._name(server, key)} did not answer within {self.start_timeout:g} s"
        )

    def _command(self, server: str, port: int) -> list[str]:
        """The command line of ``server`` listening on ``port``."""
        if server == "asgi":
            return [sys.executable, "-m", "uvicorn", "project.asgi:application",
                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                    "--no-access-log"]  # fmt: skip
        return [sys.executable, "-m", "gunicorn", "project.wsgi:application",
                "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "gthread", "--threads", str(self.threads),
                "--log-level", "warning"]  # fmt: skip

    def _name(self, server: str, key: str) -> str:
        """The server as the error lines name it."""
        return f"the {server.upper()} server ({PROGRAMS[server]})"

    def _stop_signal(self, server: str) -> int:
        return signal.SIGTERM

    def close(self) -> None:
        from .cli import disown, kill

        for (server, _key), (process, _port) in self._servers.items():
            process.send_signal(self._stop_signal(server))
        for process, _port in self._servers.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                kill(process)
            disown(process)
        self._servers.clear()

    def run(self, server: str, variant: str, endpoint: str, requests: int, concurrency: int):
        process = self._servers[server, variant][0]
        stop = threading.Event()
        peak = [0]

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _threads_of(process.pid))
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            elapsed, latencies, figures = self.load(
                server, variant, endpoint, requests, concurrency
            )
        finally:
            stop.set()
            sampler.join()
        return elapsed, latencies, peak[0], figures

    def load(
        self,
        server: str,
        key: str,
        endpoint: str,
        requests: int,
        concurrency: int,
        pause: Callable[[], None] | None = None,
    ) -> tuple[float, list[float], list[Any]]:
        """:func:`_http_load` on a started server; a failure names the
        server and the request: an error status, or no answer (a server
        killed, a worker gone: it named asyncio's streams.py)."""
        process, port = self._servers[server, key]
        try:
            return asyncio.run(
                _http_load("127.0.0.1", port, endpoint, requests, concurrency, pause, STALL)
            )
        except ServerFailed as exc:  # an error status
            answered = str(exc).removeprefix("server answered ")
            raise ServerFailed(
                f"{self._name(server, key)} answered GET {endpoint} with {answered}"
            ) from None
        except (ConnectionError, asyncio.IncompleteReadError, Stalled) as exc:
            # Not any OSError: the command's own (too many open files) is no
            # server's failure.
            if isinstance(exc, Stalled):
                why = f"no response came in {STALL:g} s"
            elif isinstance(exc, asyncio.IncompleteReadError):
                why = "it closed the connection"
            else:
                why = exc.strerror or text.message(exc) or type(exc).__name__
            try:  # a killed server's connections close as it exits
                status = process.wait(1)
            except subprocess.TimeoutExpired:  # alive (gunicorn's master)
                status = None
            if status is not None and status < 0:
                why += f"; it was killed by {signal.Signals(-status).name}"
            elif status is not None:
                why += f"; it exited with status {status}"
            raise ServerFailed(
                f"{self._name(server, key)} did not answer GET {endpoint}: {why}"
            ) from None


def _family(pid: int) -> list[int]:
    """A server process and its children (gunicorn's workers)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    return pids


def _threads_of(pid: int) -> int:
    """Threads of a server process and its children (gunicorn's workers)."""
    total = 0
    for each in _family(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _cpu_of(pid: int) -> float | None:
    """CPU seconds a server process and its children have used, every thread
    (ended ones too), to the nanosecond; None where the system cannot say
    (the figure is then left out)."""
    if not sys.platform.startswith("linux"):
        return None
    total = 0.0
    try:
        for each in _family(pid):
            # The process's CPU-time clock, as clock_getcpuclockid(3) makes it
            # on Linux (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)); Python
            # has no clock_getcpuclockid.
            total += time.clock_gettime(((~each) << 3) | 2)
    except OSError:  # the process is gone
        return None
    return total


async def _http_load(
    host: str,
    port: int,
    path: str,
    requests: int,
    concurrency: int,
    pause: Callable[[], None] | None = None,
    stall: float | None = None,
):
    """A minimal HTTP/1.1 keep-alive load generator: ``concurrency``
    connections; each sends its requests one after the other, after
    ``pause()`` (untimed, blocking: for one connection) if given.
    :class:`Stalled` if no response comes in for ``stall`` seconds."""
    remaining = requests
    latencies: list[float] = []
    figures: list[Any] = []
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                if pause is not None:
                    pause()
                start = time.perf_counter()
                writer.write(request)
                _status, headers = await read_response(reader)
                latencies.append(time.perf_counter() - start)
                figures.append(_figures(headers))
        finally:
            writer.close()
            # A connection the server reset leaves its error in the stream's
            # closed future too: retrieved here, or asyncio may print "Future
            # exception was never retrieved" when collecting it, as late as at
            # exit, after the bench's own error line.
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(connection()) for _ in range(min(concurrency, requests))]
    try:
        # Woken four times a ``stall`` (nothing added to a request): no
        # response for a whole ``stall`` is a stalled server.
        answered, since = 0, time.monotonic()
        while True:
            done, pending = await asyncio.wait(
                tasks,
                timeout=None if stall is None else stall / 4,
                return_when=asyncio.FIRST_EXCEPTION,
            )
            for task in done:
                failure = task.exception()
                if failure is not None:  # an error status, a connection reset
                    raise failure
            if not pending:
                break
            if len(latencies) != answered:
                answered, since = len(latencies), time.monotonic()
            elif stall is not None and time.monotonic() - since >= stall:
                raise Stalled(stall)
    finally:
        for task in tasks:
            task.cancel()
        # Each connection closed (its own finally) before the loop ends.
        await asyncio.gather(*tasks, return_exceptions=True)
    return time.perf_counter() - start, latencies, figures


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP/1.1 response (Content-Length or chunked body): status and
    lower-cased headers. An error status (400 or more: a 404, a 500) is an
    error: the benchmark must not time failures, nor a request the project
    does not serve."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    if status >= 400:
        raise ServerFailed(f"server answered {lines[0]}")
    return status, headers


def _figures(headers: dict[str, str]) -> tuple[int, int, int, int] | None:
    try:
        return (
            int(headers["x-context-switches"]),
            int(headers["x-thread-hops"]),
            int(headers["x-event-loops"]),
            int(headers["x-threads-started"]),
        )
    except KeyError:
        return None


# -- the matrix ---------------------------------------------------------------------


def measure(args: argparse.Namespace, driver: Any, progress: Progress) -> list[dict[str, Any]]:
    cells = planned_cells(args)
    seq: dict[Any, list[float]] = {cell: [] for cell in cells}
    rps: dict[Any, dict[int, list[float]]] = {
        cell: {c: [] for c in args.concurrency if c > 1} for cell in cells
    }
    peak: dict[Any, dict[int, int]] = {cell: {} for cell in cells}
    # Every response's figures, of every level and round: the switches are
    # the same at any concurrency, and a run may have no sequential level.
    counted: dict[Any, list[tuple[int, int, int, int]]] = {cell: [] for cell in cells}
    for server, endpoint, variant in cells:  # warm-up
        if args.warmup > 0:
            driver.run(server, variant, endpoint, requests=args.warmup, concurrency=1)
    for _round in range(args.rounds):
        for concurrency in args.concurrency:
            # Interleaved: every cell once per round and concurrency level.
            for cell in cells:
                server, endpoint, variant = cell
                elapsed, latencies, threads, figures = driver.run(
                    server, variant, endpoint, requests=args.requests, concurrency=concurrency
                )
                counted[cell].extend(f for f in figures if f is not None)
                if concurrency == 1:
                    seq[cell].append(statistics.median(latencies) * 1e6)
                else:
                    rps[cell][concurrency].append(len(latencies) / elapsed)
                peak[cell][concurrency] = max(peak[cell].get(concurrency, 0), threads)
                progress.step(f"{cell[0].upper()} {cell[1]} {cell[2]} c={concurrency}")
    results = []
    for cell in cells:
        server, endpoint, variant = cell
        figures = statistics.median_low(counted[cell] or [(0, 0, 0, 0)])
        results.append(
            {
                "server": server,
                "endpoint": endpoint,
                "variant": variant,
                "seq_us": spread(seq[cell]) if seq[cell] else None,
                "req_per_s": {str(c): spread(s) for c, s in rps[cell].items()},
                "peak_threads": {str(c): n for c, n in peak[cell].items()},
                "switches": figures[0],
                "hops": figures[1],
                "loops": figures[2],
                "threads_started": figures[3],
            }
        )
    return results


def render(results: dict[str, Any], out: TextIO) -> None:
    cells = results["cells"]
    levels = sorted({int(c) for cell in cells for c in cell["req_per_s"]}) or [1]
    out.write(
        f"switchtrace bench ({results['driver']}; {count(results['rounds'], 'round')} of "
        f"{count(results['requests'], 'request')}; no spans exported; medians, min-max over "
        "rounds)\n"
        f"Python {results['python']}, Django {results['django']}, asgiref {results['asgiref']}\n"
    )
    header = ("", "seq us/req", "conc req/s", "peak thr", "switches", "loops", "threads")
    for level in levels:
        rows = [(f"c={level}", *header[1:])]
        for cell in cells:
            rows.append(
                (
                    f"{cell['server'].upper()} {cell['variant']} {cell['endpoint']}",
                    _fmt(cell["seq_us"], 1),
                    _fmt(cell["req_per_s"].get(str(level)), 0),
                    str(cell["peak_threads"].get(str(level), "-")),
                    str(cell["switches"]),
                    str(cell["loops"]),
                    str(cell["threads_started"]),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out.write("\n")
        for row in rows:
            out.write(
                row[0].ljust(widths[0])
                + "".join("  " + cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:]))
                + "\n"
            )


def _fmt(stat: dict[str, float] | None, digits: int) -> str:
    if not stat:
        return "-"
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


# -- comparison ---------------------------------------------------------------------


class BadBaseline(Exception):
    pass


class NotAFileOrPipe(OSError):
    """A device or a socket, given as a baseline."""


#: More than this is no ``--json`` result (a pipe that never ends).
MAX_BASELINE_BYTES = 64 * 1024 * 1024


def _file_or_pipe_opener(path: str, flags: int) -> int:
    """Opens ``path`` for reading if it is a file or a pipe (``<(...)``, a
    named pipe, which waits for its writer as ``cat`` would: Ctrl-C ends the
    wait); not a device (/dev/zero filled memory) or a socket."""
    mode = os.stat(path).st_mode
    if S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not (S_ISREG(mode) or S_ISFIFO(mode)):
        raise NotAFileOrPipe(path)
    return os.open(path, flags)


def load_baseline(path: str) -> dict[str, Any]:
    """The baseline of ``--compare``, checked whole (every field the comparison
    reads, with its type) before anything is measured; BadBaseline names the
    file, the cell and the field."""
    given = text.argument(path)
    try:
        with open(path, "rb", opener=_file_or_pipe_opener) as f:
            content = f.read(MAX_BASELINE_BYTES + 1)
        if len(content) > MAX_BASELINE_BYTES:
            raise BadBaseline(
                f"--compare: {given} is larger than {MAX_BASELINE_BYTES // 2**20} MiB; allowed: a "
                "file written by 'switchtrace bench --json'"
            )
        data = json.loads(content)
    except NotAFileOrPipe:
        raise BadBaseline(
            f"--compare: {given} is a device or a socket; allowed: a file written by "
            "'switchtrace bench --json'"
        ) from None
    except FileNotFoundError:
        raise BadBaseline(
            f"--compare: {given} does not exist; allowed: a file written by "
            "'switchtrace bench --json'"
        ) from None
    except IsADirectoryError:
        raise BadBaseline(
            f"--compare: {given} is a directory; allowed: a file written by "
            "'switchtrace bench --json'"
        ) from None
    except OSError as exc:
        raise BadBaseline(f"--compare: {given} cannot be read ({exc.strerror or exc})") from None
    except RecursionError:
        raise BadBaseline(f"--compare: {given} is not a JSON file (nested too deeply)") from None
    except ValueError as exc:
        raise BadBaseline(f"--compare: {given} is not a JSON file ({exc})") from None
    if (
        not isinstance(data, dict)
        or type(data.get("format")) is not int  # not true, not 1.0
        or data.get("format") != FORMAT_VERSION
        or not isinstance(data.get("cells"), list)
        or data.get("mode") != "matrix"
    ):
        raise BadBaseline(
            f"--compare: {given} is not a result of 'switchtrace bench --json' "
            f"(expected an object with format {FORMAT_VERSION}, mode 'matrix' and a cells list)"
        )
    driver = data.get("driver", "in-process")  # (written by every bench --json)
    if driver not in ("in-process", "server"):
        raise BadBaseline(
            f"--compare: {given}: {_field(data, 'driver')}; allowed: 'in-process' or 'server'"
        )
    for index, cell in enumerate(data["cells"]):
        _check_cell(f"--compare: {given}: cell {index}", cell)
        # Its levels as a run writes them ("050" is 50), to be found by this run's.
        cell["req_per_s"] = {str(int(level)): stat for level, stat in cell["req_per_s"].items()}
    return data


STAT = "an object of numbers median, min and max"


def _check_cell(where: str, cell: Any) -> None:
    if not isinstance(cell, dict):
        raise BadBaseline(
            f"{where} is {_kind(cell)}; allowed: an object with server, endpoint, variant, "
            "seq_us and req_per_s"
        )
    for field in ("server", "endpoint", "variant"):
        if not isinstance(cell.get(field), str):
            raise BadBaseline(f"{where}: {_field(cell, field)}; allowed: a string")
    where += f" ({_part(cell['server'])} {_part(cell['variant'])} {_part(cell['endpoint'])})"
    if cell.get("seq_us") is not None or "seq_us" not in cell:
        _check_stat(where, cell, "seq_us", "null or " + STAT)
    if not isinstance(cell.get("req_per_s"), dict):
        raise BadBaseline(
            f"{where}: {_field(cell, 'req_per_s')}; allowed: an object of concurrency level: "
            + STAT
        )
    for level in cell["req_per_s"]:
        if not (level.isascii() and level.isdigit() and level.strip("0") and _converts(level)):
            shown = repr(level)
            if len(level) > 100:
                shown = f"{level[:20]!r}... ({len(level)} characters)"
            raise BadBaseline(
                f"{where}: req_per_s has the key {shown}; allowed: a concurrency level "
                "(a positive integer)"
            )
        _check_stat(where, cell["req_per_s"], level, STAT, f"req_per_s.{level}")


def _converts(digits: str) -> bool:
    """Whether int() takes ``digits``: not more than Python's limit on the
    digits it converts (4300 by default), which raised out of
    load_baseline, exit status 1, instead of naming the key."""
    try:
        int(digits)
    except ValueError:
        return False
    return True


def _check_stat(
    where: str, holder: dict[str, Any], key: str, allowed: str, name: str | None = None
) -> None:
    name = name or key
    stat = holder.get(key)
    if not isinstance(stat, dict):
        raise BadBaseline(f"{where}: {_field(holder, key, name)}; allowed: {allowed}")
    for part in ("median", "min", "max"):
        value = stat.get(part)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not _finite(value)
            or value < 0
        ):
            raise BadBaseline(
                f"{where}: {_field(stat, part, f'{name}.{part}')}; allowed: a number, finite "
                "and not negative"
            )


def _finite(value: float) -> bool:
    """Not NaN nor infinite, and an integer the comparison's floats hold (1
    and 400 zeros failed it, after the benchmark)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _field(holder: dict[str, Any], key: str, name: str | None = None) -> str:
    name = name or key
    if key not in holder:
        return f"field {name} is missing"
    return f"field {name} is {_kind(holder[key])}"


def _kind(value: Any) -> str:
    """A JSON value's kind, as the file says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int) and abs(value) >= 10**20:
        # (str() refuses more than 4300 digits.)
        return "an integer of more than 20 digits"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return "a list" if isinstance(value, list) else "an object"


def cell_key(cell: dict[str, Any]) -> tuple[str, str, str]:
    return cell["server"], cell["endpoint"], cell["variant"]


def cell_name(key: tuple[str, str, str]) -> str:
    server, endpoint, variant = key
    return f"{_part(server.upper())} {_part(variant)} {_part(endpoint)}"


def _part(value: str) -> str:
    """A cell's server, endpoint or variant in a one-line message: a
    baseline's are what its file says, a line break or 5000 characters."""
    shown = text.argument(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def compare(current: dict[str, Any], baseline: dict[str, Any], tolerance: float = 0.0) -> list[str]:
    """Cells slower than the baseline in every round: the current best is
    worse than the baseline's worst (beyond both runs' own spread), by more
    than ``tolerance`` (a fraction). One line per slower figure."""
    return [line for lines in slower_cells(current, baseline, tolerance).values() for line in lines]


def slower_cells(
    current: dict[str, Any], baseline: dict[str, Any], tolerance: float = 0.0
) -> dict[str, list[str]]:
    """:func:`compare`'s lines, by the name of the cell they are about."""
    before = {cell_key(cell): cell for cell in baseline["cells"] if isinstance(cell, dict)}
    slower: dict[str, list[str]] = {}
    for cell in current["cells"]:
        old = before.get(cell_key(cell))
        if old is None:
            continue
        name = cell_name(cell_key(cell))
        lines = []
        seq, was_seq = cell.get("seq_us"), old.get("seq_us")
        if seq and was_seq and seq["min"] > was_seq["max"] * (1 + tolerance):
            lines.append(
                f"{name}: seq {cell['seq_us']['median']:.1f} us/req, was "
                f"{old['seq_us']['median']:.1f} (every round slower than the baseline's slowest)"
            )
        for level, stat in cell.get("req_per_s", {}).items():
            was = old.get("req_per_s", {}).get(level)
            if was and stat["max"] * (1 + tolerance) < was["min"]:
                lines.append(
                    f"{name}: c={level} {stat['median']:.0f} req/s, was {was['median']:.0f} "
                    "(every round slower than the baseline's slowest)"
                )
        if lines:
            slower[name] = lines
    return slower


def planned_cells(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """The cells a matrix run measures, in its order: (server, endpoint, variant)."""
    return [
        (server, endpoint, variant)
        for server in args.servers
        for endpoint in args.endpoints
        for variant in args.variants
    ]


def no_shared_cell(args: argparse.Namespace, baseline: dict[str, Any]) -> str | None:
    """The error if the run would compare nothing with the baseline: it
    measures none of its cells, or, of those it shares, none of the figures
    the baseline has (sequential, concurrency 1; requests per second at a
    level above); else None."""
    theirs = [cell_key(cell) for cell in baseline["cells"]]
    ours = planned_cells(args)
    shared = set(ours) & set(theirs)
    if not shared:
        named = [cell_name(key) for key in theirs[:10]]
        if len(theirs) > 10:
            named.append(f"and {len(theirs) - 10} more")
        return (
            f"--compare: {text.argument(args.compare)} has none of the cells this run "
            f"measures, so nothing would be compared; its cells: {', '.join(named) or 'none'}; "
            f"this run's: {', '.join(map(cell_name, ours))}; allowed: the --servers, "
            "--endpoints and --variants of a run that shares a cell with it"
        )
    levels = sorted(set(args.concurrency or DEFAULT_CONCURRENCY))
    measured: set[int] = set()  # the levels the baseline has figures of, in those cells
    for cell in baseline["cells"]:
        if cell_key(cell) in shared:
            if cell.get("seq_us"):
                measured.add(1)
            measured.update(level for level in map(int, cell.get("req_per_s", {})) if level > 1)
    if measured & set(levels):
        return None
    return (
        f"--compare: {text.argument(args.compare)} has no figure at this run's concurrency "
        f"({', '.join(map(str, levels))}) for the cells the two share, so nothing would be "
        f"compared; its levels there: {', '.join(map(str, sorted(measured))) or 'none'}; "
        "allowed: a --concurrency with one of them"
    )


def comparison_summary(
    results: dict[str, Any], baseline: dict[str, Any], path: str, slower: int
) -> str:
    """What the comparison covered, and its outcome, in one line."""
    theirs = {cell_key(cell) for cell in baseline["cells"]}
    ours = [cell_key(cell) for cell in results["cells"]]
    shared = sum(key in theirs for key in ours)
    text = f"compared {count(shared, 'cell')} with {path}"
    if shared < len(ours):
        text += f" (of this run's {len(ours)}; the others are not in it)"
    return text + (f": {slower} slower" if slower else ": none slower")


# -- tracer overhead ------------------------------------------------------------------


def overhead(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """The same request with switchtrace disabled, headers only, and full
    spans, interleaved round by round; ratios to disabled."""
    from .cli import scratch_directory
    from .django_app import telemetry
    from .django_app.conf import get_config

    config = get_config()
    configured = config.export
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_directory("switchtrace-overhead-"))
        spans = overhead_export(configured, os.path.join(scratch, "spans.jsonl"))
        variant = args.variants[0]
        handlers = {}
        for mode in OVERHEAD_VARIANTS:
            handlers[mode] = stack.enter_context(
                example.handlers(variant, switchtrace_middleware=mode != "disabled")
            )
        otel = stack.enter_context(_otel_django(variant, scratch, args.servers))
        if otel is not None:
            handlers[OTEL_DJANGO] = otel.handlers
        # Back to what the settings say, whatever happens, before the handlers'
        # settings are restored and the temporary file goes (callbacks run last
        # in, first out): the temporary file's pipeline is shut down, its spans
        # flushed, by the configure.
        stack.callback(telemetry.configure, configured)
        stack.callback(telemetry.attach)
        stack.callback(_enter, "headers only" if config.enabled else "disabled")
        return _overhead_rounds(args, progress, handlers, otel, spans, variant)


def overhead_export(configured: ExportOptions | None, scratch_file: str) -> ExportOptions:
    """Where ``--overhead``'s full-spans mode sends its spans, and which.

    The spans' cost is measured, not kept: they go to ``scratch_file``, a
    temporary file removed after the run, unless the settings name an OTLP
    collector. Settings that export no spans (EXPORTER "none", "console" or
    "memory", OTEL_SDK_DISABLED) get the file too, and every request's spans
    are made whatever the settings sample (SAMPLE_RATE, OTEL_TRACES_SAMPLER)
    or leave out (OTEL_PYTHON_DJANGO_EXCLUDED_URLS): the full-spans mode
    would otherwise measure headers only, or some requests' spans, under its
    name."""
    from .exporters import ExportOptions

    spans = configured or ExportOptions()
    if spans.exporter != "otlp":
        spans = dataclasses.replace(spans, exporter="file", file_path=scratch_file)
    return dataclasses.replace(spans, sample_rate=1.0, excluded_urls=None)


def _enter(mode: str) -> None:
    """This process as ``--overhead``'s ``mode`` wants it: the patches
    installed or not, the span pipeline fed records or not."""
    from .django_app import integration, telemetry

    if mode == "full spans":
        telemetry.attach()
    else:
        telemetry.detach()
    if mode in ("disabled", OTEL_DJANGO):
        integration.uninstall()
    else:
        integration.install()


def _overhead_rounds(
    args: argparse.Namespace,
    progress: Progress,
    handlers: dict[str, tuple[Any, Any]],
    otel: _OtelDjango | None,
    spans: Any,
    variant: str,
) -> dict[str, Any]:
    from .django_app import telemetry

    modes = list(handlers)
    progress.total = args.rounds * len(args.servers) * len(args.endpoints) * len(modes)

    # One span pipeline for the whole run, fed records only in the full-spans
    # mode: a server's lives as long as the process (its thread, its caches).
    telemetry.configure(spans)

    def exported() -> tuple[int, int, int]:
        """What the mode entered has exported so far: (records the pipeline
        dealt with, spans delivered, spans not delivered); for
        opentelemetry-instrumentation-django, one span a request, (spans
        delivered, the same, 0)."""
        pipeline = telemetry.pipeline()
        if pipeline is not None:
            return pipeline.records, pipeline.exported, pipeline.failed
        delivered = otel.exporter.spans if otel is not None else 0
        return delivered, delivered, 0

    def written(mode: str) -> None:
        """Wait until the spans of the requests served are written, so that
        their whole cost counts in their own round (not in a later one's)."""
        pipeline = telemetry.pipeline()
        if pipeline is not None:
            pipeline.flush(60)
        if mode == OTEL_DJANGO and otel is not None:
            otel.provider.force_flush(60_000)

    samples: dict[tuple[str, str, str], list[float]] = {}
    # CPU time of the whole process (every thread, the pipeline's included):
    # steadier than wall time on a shared machine.
    cpu_samples: dict[tuple[str, str, str], list[float]] = {}
    # CPU time of switchtrace's span pipeline thread per request.
    pipeline_cpu: dict[tuple[str, str, str], list[float]] = {}
    # Requests whose spans were delivered in the round, per request served.
    exported_share: dict[tuple[str, str, str], list[float]] = {}
    # Latency: each request timed alone, at a server that is idle when it
    # arrives (the spans of the one before written, untimed); the round's
    # median.
    latencies: dict[tuple[str, str, str], list[float]] = {}

    def measure(server: str, endpoint: str, mode: str) -> None:
        _enter(mode)
        pipeline = telemetry.pipeline()
        counted = (pipeline.records, pipeline.cpu_ns) if pipeline else (0, 0)
        before = exported()
        start, cpu_start = time.perf_counter(), time.process_time()
        _serve(handlers[mode], server, endpoint, args.requests, variant)
        written(mode)
        per_request = (time.perf_counter() - start) / args.requests * 1e6
        cpu = (time.process_time() - cpu_start) / args.requests * 1e6
        if pipeline is not None:
            per_record = _cpu_us_per_record(counted, (pipeline.records, pipeline.cpu_ns))
            if per_record is not None:
                pipeline_cpu.setdefault((server, endpoint, mode), []).append(per_record)
        if mode in ("full spans", OTEL_DJANGO):
            exported_share.setdefault((server, endpoint, mode), []).append(
                _delivered(before, exported()) / args.requests
            )
        samples.setdefault((server, endpoint, mode), []).append(per_request)
        cpu_samples.setdefault((server, endpoint, mode), []).append(cpu)
        timed = _latencies(
            handlers[mode], server, endpoint, args.requests, variant, lambda: written(mode)
        )
        latencies.setdefault((server, endpoint, mode), []).append(statistics.median(timed) * 1e6)
        progress.step(f"{server.upper()} {endpoint} {mode}")

    for server in args.servers:
        for endpoint in args.endpoints:
            for mode in modes:
                _enter(mode)
                _serve(handlers[mode], server, endpoint, args.warmup, variant)
                written(mode)  # the warm-up's spans are not the first round's
    figures = {"us_per_request": samples, "cpu_us_per_request": cpu_samples}
    rows = _interleaved(args, variant, modes, measure, {**figures, "latency_us": latencies})
    for row in rows:
        server, endpoint, mode = row["server"], row["endpoint"], row["mode"]
        if (server, endpoint, mode) in pipeline_cpu:
            row["pipeline_cpu_us_per_request"] = spread(pipeline_cpu[server, endpoint, mode])
        if (server, endpoint, mode) in exported_share:
            row["exported_per_request"] = spread(exported_share[server, endpoint, mode])
    return {"rows": rows}


def _delivered(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """Requests whose spans were delivered between ``before`` and ``after``
    (each: records the span pipeline dealt with, spans delivered, spans not
    delivered): the records dealt with, in the share of their spans the
    exporter delivered (a request's spans are as many every time, and a
    round's exports are its own: it is flushed)."""
    records, spans, lost = (a - b for a, b in zip(after, before, strict=True))
    return records * spans / (spans + lost) if spans + lost else 0.0


def _cpu_us_per_record(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """CPU µs the span thread took per record it dealt with between
    ``before`` and ``after`` (each: records dealt with, its CPU time in ns);
    None if it dealt with none."""
    records, cpu_ns = after[0] - before[0], after[1] - before[1]
    return cpu_ns / records / 1e3 if records > 0 else None


#: The figures of --overhead's rows, and the names of their ratios to disabled.
RATIOS = {
    "us_per_request": "ratio",
    "cpu_us_per_request": "cpu_ratio",
    "latency_us": "latency_ratio",
}


def _interleaved(
    args: argparse.Namespace,
    variant: str,
    modes: Sequence[str],
    measure: Callable[[str, str, str], None],
    figures: dict[str, dict[tuple[str, str, str], list[float]]],
) -> list[dict[str, Any]]:
    """``measure(server, endpoint, mode)`` for every mode once a round, in an
    order shuffled every round (seeded: a run can be repeated), so that no
    mode always runs first after a reconfiguration; then a row for each
    server, endpoint and mode: the spread over the rounds of each figure
    ``measure`` added to ``figures``, and that of its ratios to disabled in
    the same rounds (a figure missing for the mode or for disabled is left
    out; a round where disabled measured 0 has no ratio)."""
    order = random.Random(0)
    for _round in range(args.rounds):
        for server in args.servers:
            for endpoint in args.endpoints:
                for mode in order.sample(list(modes), len(modes)):
                    measure(server, endpoint, mode)
    rows = []
    for server in args.servers:
        for endpoint in args.endpoints:
            for mode in modes:
                row: dict[str, Any] = {
                    "server": server, "endpoint": endpoint, "variant": variant, "mode": mode
                }  # fmt: skip
                for name, samples in figures.items():
                    mine = samples.get((server, endpoint, mode))
                    base = samples.get((server, endpoint, "disabled"))
                    if not mine or not base or len(mine) != len(base):
                        continue
                    row[name] = spread(mine)
                    ratios = [m / b for m, b in zip(mine, base, strict=True) if b]
                    if ratios:
                        row[RATIOS[name]] = spread(ratios)
                rows.append(row)
    return rows


# -- tracer overhead, through real servers ----------------------------------------------

#: The environment variable that tells a server of ``--overhead --driver
#: server`` its mode (one of OVERHEAD_VARIANTS), read by OVERLAY.
OVERHEAD_MODE = "SWITCHTRACE_BENCH_OVERHEAD"
#: Where the full-spans server writes its spans (unset: to the OTLP
#: collector the settings name).
OVERHEAD_SPANS = "SWITCHTRACE_BENCH_SPANS"
#: The settings module of those servers, written for the run into a
#: temporary folder put first on their path.
OVERLAY_MODULE = "switchtrace_bench_overhead"
OVERLAY = f'''"""Written by switchtrace bench --overhead --driver server, removed after
it: the example project's settings, changed for the mode ${OVERHEAD_MODE} names."""

from project.settings import *  # noqa: F403

from switchtrace.bench import overhead_settings as _overhead_settings

globals().update(_overhead_settings(globals()))
'''
#: Seconds a server's CPU clock must (almost) stand still for it to count
#: as idle: its span thread done with the spans of the requests before, as
#: in-process, where they are flushed (:func:`_wait_idle`).
QUIET = 0.002


def _wait_idle(pid: int, quiet: float = QUIET, timeout: float = 10.0) -> None:
    """Return once the server ``pid`` (its children too) has used less than a
    tenth of ``quiet`` seconds of CPU in ``quiet`` seconds, or after
    ``timeout`` seconds (at once where its CPU cannot be read)."""
    deadline = time.monotonic() + timeout
    last = _cpu_of(pid)
    while last is not None and time.monotonic() < deadline:
        time.sleep(quiet)
        now = _cpu_of(pid)
        if now is None or now - last < quiet / 10:
            return
        last = now


def overhead_settings(
    namespace: dict[str, Any], environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The settings a server of ``--overhead --driver server`` changes, for
    the mode ``environ[OVERHEAD_MODE]`` names, in the project's settings
    (``namespace``): switchtrace disabled (its middleware removed, as
    in-process), headers only (EXPORTER "none"), or full spans (every
    request's, to ``environ[OVERHEAD_SPANS]`` if set, a file never rotated,
    else to the OTLP collector of the settings: see :func:`overhead_export`)."""
    from .django_app.conf import MIDDLEWARE_PATH

    mode = environ.get(OVERHEAD_MODE)
    configured = namespace.get("SWITCHTRACE")
    configured = dict(configured) if isinstance(configured, dict) else {}
    if mode == "disabled":
        middleware = [name for name in namespace["MIDDLEWARE"] if name != MIDDLEWARE_PATH]
        return {"MIDDLEWARE": middleware, "SWITCHTRACE": {**configured, "ENABLED": False}}
    if mode == "headers only":
        return {"SWITCHTRACE": {**configured, "EXPORTER": "none"}}
    if mode == "full spans":
        spans = {**configured, "SAMPLE_RATE": 1.0}
        if environ.get(OVERHEAD_SPANS):
            spans.update(EXPORTER="file", FILE_PATH=environ[OVERHEAD_SPANS], FILE_MAX_BYTES=None)
        return {"SWITCHTRACE": spans}
    allowed = ", ".join(OVERHEAD_VARIANTS)
    raise ValueError(f"{OVERHEAD_MODE}={mode!r}; allowed: {allowed}")


class OverheadServers(Servers):
    """``--overhead --driver server``: for each server measured, one process
    per mode (switchtrace disabled, headers only, full spans), the same
    middleware variant, each serving one request at a time."""

    def __init__(
        self,
        project: Path,
        variant: str,
        folder: Path,
        to_file: bool = True,
        endpoint: str = "/sync/",
    ) -> None:
        super().__init__(project, 1, endpoint=endpoint)
        self.variant = variant
        self.folder = folder
        #: Where the full-spans server of each server writes (None: to the
        #: OTLP collector the settings name).
        self.files: dict[str, Path] | None = None
        if to_file:
            self.files = {server: folder / f"spans-{server}.jsonl" for server in SERVERS}
        (folder / f"{OVERLAY_MODULE}.py").write_text(OVERLAY)

    def open_modes(self, servers: Sequence[str]) -> None:
        for server in servers:
            for mode in OVERHEAD_VARIANTS:
                self._servers[server, mode] = self._start(server, mode)

    def _environ(self, server: str, key: str) -> dict[str, str]:
        env = super()._environ(server, self.variant)
        env[OVERHEAD_MODE] = key
        env["DJANGO_SETTINGS_MODULE"] = OVERLAY_MODULE
        env["PYTHONPATH"] = os.pathsep.join([str(self.folder), env["PYTHONPATH"]])
        if key == "full spans":
            # Every request's spans, whatever the environment samples or
            # switches off (as in-process: overhead_export).
            for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
                env.pop(name, None)
            if self.files is not None:
                env[OVERHEAD_SPANS] = str(self.files[server])
        return env

    def _name(self, server: str, key: str) -> str:
        return f"{super()._name(server, key)} with switchtrace {key}"

    def _stop_signal(self, server: str) -> int:
        # uvicorn raises SIGTERM again after its graceful shutdown, whose
        # default action skips the exit hooks: the spans of the last half
        # second would be lost (README, "Servers"). After SIGINT they run.
        # gunicorn's gthread workers exit through them on SIGTERM (SIGINT is
        # its quick shutdown).
        return signal.SIGINT if server == "asgi" else signal.SIGTERM

    def address(self, server: str, mode: str) -> tuple[int, int]:
        """(pid, port) of the server measuring ``mode``."""
        process, port = self._servers[server, mode]
        return process.pid, port


def overhead_through_servers(
    args: argparse.Namespace, progress: Progress, project: Path
) -> dict[str, Any]:
    """``--overhead --driver server``: the same modes as in-process, each
    served by its own uvicorn or gunicorn process on loopback and driven over
    HTTP, interleaved round by round; ratios to disabled. Back to back: wall
    time per request (the client's: the span thread's work after the last
    response is not waited for) and the server's CPU (its children's
    included, the span thread's work too: read once the server is idle);
    latency: each request alone, sent once the server is idle."""
    from .cli import scratch_directory
    from .django_app.conf import get_config

    variant = args.variants[0]
    if installed("opentelemetry.instrumentation.django"):
        print(
            f"switchtrace bench: note: no {OTEL_DJANGO} row: it is measured in-process only "
            "(without --driver server)",
            file=sys.stderr,
        )
    with scratch_directory("switchtrace-overhead-") as scratch:
        # As in-process, to a temporary file unless the settings name an OTLP collector.
        to_file = overhead_export(get_config().export, "").exporter == "file"
        driver = OverheadServers(project, variant, Path(scratch), to_file, args.endpoints[0])
        try:
            driver.open_modes(args.servers)
            rows = _overhead_server_rounds(args, progress, driver, variant)
        finally:
            driver.close()  # the full-spans servers write their last spans as they exit
        if driver.files is not None:
            found = {server: _request_spans(driver.files[server]) for server in args.servers}
            _exported_through_servers(args, rows, found)
        return {"rows": rows}


def _exported_through_servers(
    args: argparse.Namespace, rows: list[dict[str, Any]], found: dict[str, dict[str, int]]
) -> None:
    """Each full-spans row's exported_per_request: the request spans its
    server wrote for its endpoint (``found``: by server, then path) per
    request that server served there."""
    for row in rows:
        if row["mode"] == "full spans":
            spans = found[row["server"]].get(row["endpoint"], 0)
            # Its start-up probe (a request to the first endpoint), the
            # warm-up, and each round's requests back to back and alone.
            probe = 1 if row["endpoint"] == args.endpoints[0] else 0
            served = probe + args.warmup + 2 * args.rounds * args.requests
            row["exported_per_request"] = spread([spans / served])


def _overhead_server_rounds(
    args: argparse.Namespace, progress: Progress, driver: OverheadServers, variant: str
) -> list[dict[str, Any]]:
    modes = list(OVERHEAD_VARIANTS)
    progress.total = args.rounds * len(args.servers) * len(args.endpoints) * len(modes)
    wall: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    latencies: dict[tuple[str, str, str], list[float]] = {}

    def load(server: str, endpoint: str, mode: str, requests: int, alone: bool = False):
        pid, _port = driver.address(server, mode)
        pause = (lambda: _wait_idle(pid)) if alone else None
        return driver.load(server, mode, endpoint, requests, 1, pause)

    def measure(server: str, endpoint: str, mode: str) -> None:
        pid, _port = driver.address(server, mode)
        _wait_idle(pid)  # the spans of the requests before are no concern of these
        cpu_start = _cpu_of(pid)
        elapsed, _latencies, answers = load(server, endpoint, mode, args.requests)
        _check_mode(server, endpoint, mode, answers[-1])
        # The span thread's work for these requests, done by then, is theirs.
        _wait_idle(pid)
        cpu_end = _cpu_of(pid)
        wall.setdefault((server, endpoint, mode), []).append(elapsed / args.requests * 1e6)
        if cpu_start is not None and cpu_end is not None:
            cpu.setdefault((server, endpoint, mode), []).append(
                (cpu_end - cpu_start) / args.requests * 1e6
            )
        _elapsed, timed, _figures = load(server, endpoint, mode, args.requests, alone=True)
        latencies.setdefault((server, endpoint, mode), []).append(statistics.median(timed) * 1e6)
        progress.step(f"{server.upper()} {endpoint} {mode}")

    for server in args.servers:
        for endpoint in args.endpoints:
            for mode in modes:
                if args.warmup:
                    _elapsed, _latencies, answers = load(server, endpoint, mode, args.warmup)
                    _check_mode(server, endpoint, mode, answers[-1])
    figures = {"us_per_request": wall, "cpu_us_per_request": cpu, "latency_us": latencies}
    return _interleaved(args, variant, modes, measure, figures)


def _check_mode(server: str, endpoint: str, mode: str, figures: Any) -> None:
    """ServerFailed unless the server answers as its mode should: no
    switchtrace headers while disabled, its headers otherwise."""
    if mode == "disabled" and figures is not None:
        raise ServerFailed(
            f"the {server.upper()} server with switchtrace disabled sent its headers on {endpoint}"
        )
    if mode != "disabled" and figures is None:
        raise ServerFailed(
            f"the {server.upper()} server with switchtrace {mode} sent no X-Context-Switches "
            f"on {endpoint}"
        )


def _request_spans(path: Path) -> dict[str, int]:
    """Request spans (kind SERVER) in an OTLP/JSON file, by ``url.path``."""
    found: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        for resource in json.loads(line).get("resourceSpans", ()):
            for scope in resource.get("scopeSpans", ()):
                for span in scope.get("spans", ()):
                    if span.get("kind") != 2:  # SPAN_KIND_SERVER
                        continue
                    for attribute in span.get("attributes", ()):
                        if attribute["key"] == "url.path":
                            where = attribute["value"]["stringValue"]
                            found[where] = found.get(where, 0) + 1
    return found


OTEL_DJANGO = "opentelemetry-instrumentation-django"
OTEL_DJANGO_MIDDLEWARE = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)


@dataclasses.dataclass
class _OtelDjango:
    handlers: tuple[Any, Any]
    provider: Any
    #: Counts the spans it wrote in ``spans``.
    exporter: Any


@contextlib.contextmanager
def _otel_django(variant: str, folder: str, servers: Sequence[str]) -> Iterator[_OtelDjango | None]:
    """The same request under opentelemetry-instrumentation-django (one server
    span per request, batch-exported to a file in ``folder``), when it is
    installed and makes that span for every server measured (under ASGI only
    with opentelemetry-instrumentation-asgi: without it, it lets ASGI requests
    through untraced, and its row would compare a middleware that makes no
    span); uninstrumented and its provider shut down after."""
    try:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    except ImportError:
        yield None
        return
    if "asgi" in servers and not installed("opentelemetry.instrumentation.asgi"):
        print(
            f"switchtrace bench: note: no {OTEL_DJANGO} row: it makes no span for ASGI "
            "requests without opentelemetry-instrumentation-asgi (pip install "
            "opentelemetry-instrumentation-asgi, or --servers wsgi)",
            file=sys.stderr,
        )
        yield None
        return
    from django.conf import settings

    from .exporters import FileSpanExporter

    class Counting(FileSpanExporter):
        #: Spans written.
        spans = 0

        def export(self, spans: Any) -> Any:
            result = super().export(spans)
            if result is SpanExportResult.SUCCESS:
                self.spans += len(spans)
            return result

    exporter = Counting(Path(folder) / "otel-django.jsonl")
    # Every request's span, as switchtrace's full-spans mode, whatever
    # OTEL_TRACES_SAMPLER says.
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = DjangoInstrumentor()
    # And whatever OTEL_PYTHON_DJANGO_EXCLUDED_URLS leaves out (no URL here).
    instrumentor.instrument(tracer_provider=provider, excluded_urls="")
    try:
        middleware = list(settings.STARTPROJECT_MIDDLEWARE) if variant != "none" else []
        with example.handlers(
            variant, switchtrace_middleware=False, MIDDLEWARE=[OTEL_DJANGO_MIDDLEWARE, *middleware]
        ) as handlers:
            yield _OtelDjango(handlers, provider, exporter)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _serve(
    handler_pair: tuple[Any, Any], server: str, endpoint: str, requests: int, variant: str
) -> None:
    asgi, wsgi = handler_pair
    if server == "asgi":

        async def serve() -> None:
            for _ in range(requests):
                example.answered(
                    await example.asgi_request(asgi, endpoint), server, endpoint, variant
                )

        example.run_in_server_loop(serve())
    else:
        for _ in range(requests):
            example.answered(example.wsgi_request(wsgi, endpoint), server, endpoint, variant)


def _latencies(
    handler_pair: tuple[Any, Any],
    server: str,
    endpoint: str,
    requests: int,
    variant: str,
    between: Callable[[], None],
) -> list[float]:
    """Seconds each of ``requests`` requests took, from the handler's call
    until the client had the whole response (before Django closes it: its
    ``request_finished``, and switchtrace handing its record over, come
    after), with ``between()`` called untimed after each: what a client
    waits for at a server that is idle when its request arrives."""
    asgi, wsgi = handler_pair
    times: list[float] = []

    def timed(result: example.Result) -> None:
        example.answered(result, server, endpoint, variant)
        if result.received_at is None or result.called_at is None:
            raise RuntimeError(f"{endpoint}: the response was never complete")
        times.append(result.received_at - result.called_at)
        between()

    if server == "asgi":

        async def serve() -> None:
            for _ in range(requests):
                timed(await example.asgi_request(asgi, endpoint))

        example.run_in_server_loop(serve())
    else:
        for _ in range(requests):
            timed(example.wsgi_request(wsgi, endpoint))
    return times


def render_overhead(results: dict[str, Any], out: TextIO) -> None:
    rounds = f"{count(results['rounds'], 'interleaved round')} of "
    if results.get("driver") == "server":
        out.write(
            f"switchtrace bench --overhead --driver server ({rounds}"
            f"{count(results['requests'], 'request')} back to back and as many timed alone; "
            "medians (min-max) over rounds)\n"
            "  each mode served by its own uvicorn (ASGI) or gunicorn (WSGI) process on "
            "loopback, driven over HTTP\n"
            "  wall: µs per request, ratio to disabled | cpu: the server's CPU µs per "
            "request (its span thread's too), ratio to disabled\n"
            "  latency: µs until the client has the whole response, each request sent "
            f"alone once the server is idle (its CPU still for {QUIET * 1000:g} ms), ratio "
            "to disabled\n"
        )
    else:
        out.write(
            f"switchtrace bench --overhead ({rounds}"
            f"{count(results['requests'], 'request')} back to back, the spans' export "
            "included, and as many timed alone; medians (min-max) over rounds)\n"
            "  wall: µs per request, ratio to disabled | cpu: the process's CPU µs per "
            "request, ratio to disabled\n"
            "  latency: µs until a client has the whole response, at an idle server (each "
            "request alone, the spans of the one before written), ratio to disabled\n"
        )
    out.write(
        "  ratio: each round's figure over disabled's in that round; their median "
        "(min-max), not the medians' ratio\n"
    )
    for row in results["rows"]:
        us, ratio = row["us_per_request"], row["ratio"]
        cpu, cpu_ratio = row.get("cpu_us_per_request"), row.get("cpu_ratio")
        if cpu is None or cpu_ratio is None:
            cpu_text = f"cpu {'not measured':>26}"
        else:
            cpu_text = (
                f"cpu {_fmt(cpu, 1):>26}  x{cpu_ratio['median']:.3f} "
                f"({cpu_ratio['min']:.3f}-{cpu_ratio['max']:.3f})"
            )
        out.write(
            f"  {row['server'].upper()} {row['variant']} {row['endpoint']} {row['mode']}\n"
            f"      wall {_fmt(us, 1):>26}  x{ratio['median']:.3f} "
            f"({ratio['min']:.3f}-{ratio['max']:.3f})   {cpu_text}\n"
        )
        if "pipeline_cpu_us_per_request" in row:
            # Of the back-to-back figures above: the latency leaves the span
            # thread's work out (it comes between requests, untimed).
            out.write(
                "      of which switchtrace's span thread: "
                f"{_fmt(row['pipeline_cpu_us_per_request'], 1)} CPU µs per request\n"
            )
        latency, latency_ratio = row["latency_us"], row["latency_ratio"]
        out.write(
            f"      latency {_fmt(latency, 1):>23}  x{latency_ratio['median']:.3f} "
            f"({latency_ratio['min']:.3f}-{latency_ratio['max']:.3f})\n"
        )


# -- entry point ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """The bench command: its exit status; bad input is one line on stderr
    and exit status 2, checked before anything is measured."""
    baseline = None
    if args.compare == "":
        # --compare "$BASELINE" with the variable unset: taken for no
        # --compare, the run compared nothing and exited 0.
        return _bad_input(
            "--compare '' names no file; allowed: a file written by 'switchtrace bench --json'"
        )
    if args.overhead and args.concurrency not in (None, [1]):
        return _bad_input(
            f"--overhead serves one request at a time; --concurrency gave "
            f"{','.join(map(str, args.concurrency))}; allowed: 1, or no --concurrency"
        )
    if args.overhead and args.variants is not None and len(args.variants) > 1:
        return _bad_input(
            f"--overhead measures one middleware variant; --variants gave "
            f"{len(args.variants)} ({', '.join(args.variants)}); allowed: one of "
            f"{', '.join(example.VARIANTS)}"
        )
    if args.tolerance is not None and not args.compare:
        return _bad_input(
            "--tolerance goes with --compare, which it is the tolerance of; allowed: "
            "--tolerance with --compare FILE, or neither"
        )
    args.variants = args.variants or list(example.VARIANTS)
    if not args.overhead and max(args.concurrency or DEFAULT_CONCURRENCY) > args.requests:
        # As ab's -n and -c: the level would not be reached.
        level = max(args.concurrency or DEFAULT_CONCURRENCY)
        return _bad_input(
            f"--requests {args.requests} is fewer than the concurrency level {level}"
            f"{'' if args.concurrency else ' (a default one)'}: at most {args.requests} "
            f"would be in flight; allowed: --requests {level} or more, or --concurrency "
            f"levels up to {args.requests}"
        )
    args.concurrency = args.concurrency or list(DEFAULT_CONCURRENCY)
    args.tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if args.compare:
        if args.overhead:
            return _bad_input("--compare goes with the matrix, not with --overhead")
        try:
            baseline = load_baseline(args.compare)
        except BadBaseline as exc:
            return _bad_input(str(exc))
        measured_by = baseline.get("driver", "in-process")  # (checked: one of the two)
        if measured_by != args.driver:
            # Through a server a request takes twice as long as in-process:
            # every cell would be "slower", or every slowdown hidden.
            return _bad_input(
                f"--compare: {text.argument(args.compare)} was measured with --driver "
                f"{text.argument(measured_by)}, this run with --driver {args.driver}; allowed: "
                f"a baseline measured with --driver {args.driver}"
            )
        unshared = no_shared_cell(args, baseline)
        if unshared:
            return _bad_input(unshared)
    if args.driver == "server":
        missing = missing_servers()
        if missing:
            return _bad_input(
                f"--driver server needs uvicorn and gunicorn; missing: {', '.join(missing)} "
                "(pip install uvicorn gunicorn, or --driver in-process)"
            )
    project = example.find_project(args.project)
    example.ignore_streaming_warnings()
    # What the settings keep disabled is said below, for the settings the
    # run is served with (the matrix's export none); --overhead's full spans
    # need the exporter too.
    example.setup_unlogged(project)
    if args.overhead:
        example.require_enabled()
        example.require_spans()
    import django

    from . import __version__

    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "switchtrace": __version__,
        "python": platform.python_version(),
        "django": django.get_version(),
        "asgiref": _version("asgiref"),
        "rounds": args.rounds,
        "requests": args.requests,
    }
    if args.overhead:
        progress = Progress(0)  # its total is known once the variants are
        failure: ServerFailed | None = None
        try:
            if args.driver == "server":
                measured = overhead_through_servers(args, progress, project)
            else:
                with example.answering():
                    measured = overhead(args, progress)
        except ServerFailed as exc:  # a server that does not start, or answers an error
            failure = exc
        finally:
            progress.close()
        if failure is not None:
            print(f"switchtrace bench: error: {failure}", file=sys.stderr)
            return 1
        results = {**meta, "mode": "overhead", "driver": args.driver, **measured}
        _emit(results, args, render_overhead)
        return 0
    # A wrong setting would leave every figure 0; a project that does not
    # enable switchtrace is measured without it, as it asks. Judged as the
    # servers of --driver server read the settings, in processes of their own
    # that make no spans (in-process, EXPORTER "none" would hide a wrong one).
    example.require_enabled(disabled_ok=True, without_spans=True)
    cells = len(args.servers) * len(args.endpoints) * len(args.variants)
    progress = Progress(args.rounds * len(args.concurrency) * cells)
    if args.driver == "server":
        driver: Any = Servers(project, max(args.concurrency), args.servers, args.endpoints[0])
    else:
        driver = InProcess()
    failure = None
    # Restoring the settings after _no_spans applies them again: what that
    # logs about them is no concern of the matrix (see require_enabled).
    with example.unlogged(*example.settings_messages()), _no_spans(), example.answering():
        try:
            for variant in args.variants:
                driver.open(variant)
            results = {
                **meta,
                "mode": "matrix",
                "driver": driver.name,
                "cells": measure(args, driver, progress),
            }
        except ServerFailed as exc:  # a server that does not start, or answers an error
            failure = exc
        finally:
            progress.close()
            driver.close()
    if failure is not None:
        print(f"switchtrace bench: error: {failure}", file=sys.stderr)
        return 1
    _emit(results, args, render)
    if baseline is not None:
        # On stderr, as the slower lines: standard output may be --json's.
        slower = slower_cells(results, baseline, args.tolerance)
        for lines in slower.values():
            for line in lines:
                print(f"slower: {line}", file=sys.stderr)
        print(comparison_summary(results, baseline, args.compare, len(slower)), file=sys.stderr)
        if slower:
            return 1
    return 0


def _bad_input(message: str) -> int:
    print(f"switchtrace bench: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _no_spans() -> Iterator[None]:
    """The project served in this process with SWITCHTRACE's EXPORTER "none"
    (the servers of ``--driver server`` get OTEL_SDK_DISABLED, as they read
    the settings in their own processes): the matrix measures switches and
    latency, and exporting spans would add its cost to every figure and
    write wherever the project's FILE_PATH points (its checkout)."""
    from django.conf import settings
    from django.test.utils import override_settings

    configured = getattr(settings, "SWITCHTRACE", None)
    if not isinstance(configured, dict):  # switchtrace stays disabled: no spans
        yield
        return
    with override_settings(SWITCHTRACE={**configured, "EXPORTER": "none"}):
        yield


def missing_servers() -> list[str]:
    """The servers of ``--driver server`` that are not installed."""
    return [name for name in ("uvicorn", "gunicorn") if not installed(name)]


def installed(name: str) -> bool:
    """Whether the module ``name`` can be imported, without importing it
    (but its parent packages, as ``find_spec`` does: which raises when one
    of them is not installed)."""
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # a parent that raises as it is imported, a __spec__ of None
        return False


def _emit(results: dict[str, Any], args: argparse.Namespace, renderer: Any) -> None:
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        renderer(results, sys.stdout)


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
