"""Start real servers on loopback for the e2e tests: uvicorn, gunicorn (its
sync, gthread and gevent workers under WSGI, its own and uvicorn's worker
under ASGI), hypercorn, granian (ASGI and WSGI, in worker processes
multiprocessing forks), uWSGI (WSGI, in worker processes forked from C) and
waitress (WSGI, on threads).

Each server's output goes to ``server.log`` beside its records."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "project"


def uvicorn_worker_class() -> str:
    """uvicorn's worker for gunicorn: the uvicorn-worker package's, else the
    one older uvicorns still carry."""
    try:
        import uvicorn_worker  # noqa: F401
    except ImportError:
        return "uvicorn.workers.UvicornWorker"
    return "uvicorn_worker.UvicornWorker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self,
        kind: str,
        variant: str,
        records: Path,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
        threads: int = 8,
        extra_args: Sequence[str] = (),
        application: str = "project.asgi:application",
    ) -> None:
        self.kind = kind
        self.variant = variant
        self.records = records
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]
            ),
            "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
            "SWITCHTRACE_EXAMPLE_MIDDLEWARE": variant,
            "SWITCHTRACE_TEST_RECORDS": str(records),
            "SWITCHTRACE_EXAMPLE_TRACES": str(records.with_name("traces.jsonl")),
            **(extra_env or {}),
        }
        bindir = Path(sys.executable).parent
        if kind.startswith("uvicorn"):
            loop = "uvloop" if kind == "uvicorn-uvloop" else "asyncio"
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                application,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--loop",
                loop,
                "--http",
                "h11",
            ]
            if kind == "uvicorn-workers":
                # Its supervisor and worker processes that multiprocessing
                # spawns.
                command += ["--workers", str(workers)]
        elif kind == "hypercorn":
            command = [
                str(bindir / "hypercorn"),
                "project.asgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ]
        elif kind.startswith("granian"):
            # Rust's HTTP server; the application runs in its workers, which
            # multiprocessing forks (spawns, on Python 3.14), and under WSGI
            # on threads Rust starts.
            interface = "wsgi" if kind == "granian-wsgi" else "asgi"
            command = [
                str(bindir / "granian"),
                f"project.{interface}:application",
                "--interface",
                interface,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                # Its "Started worker-N" lines: see _wait_ready.
                "--log-level",
                "info",
            ]
        elif kind.startswith("uwsgi"):
            # Its master loads the application, then forks the workers from
            # C: Python's at-fork hooks do not run in them. --http: its
            # router process in front, as without a proxy.
            command = [
                str(bindir / "uwsgi"),
                "--http",
                f"127.0.0.1:{self.port}",
                "--module",
                "project.wsgi:application",
                "--master",
                "--processes",
                str(workers),
                "--need-app",
                "--disable-logging",
                # The clients here keep their connections: so does its router.
                "--http-keepalive",
                # Which workers serve a request: see wait_idle.
                "--stats",
                f"127.0.0.1:{free_port()}",
            ]
            if kind == "uwsgi-threads":
                command += ["--threads", str(threads)]
        elif kind == "waitress":
            # WSGI in one process, on a pool of threads of its own.
            command = [
                str(bindir / "waitress-serve"),
                f"--listen=127.0.0.1:{self.port}",
                f"--threads={threads}",
                "project.wsgi:application",
            ]
        elif kind == "gunicorn-asgi" or kind.startswith("gunicorn-uvicorn"):
            # ASGI in gunicorn's forked workers: gunicorn's own ASGI worker
            # (gunicorn >= 24; its event loop, uvloop's when installed), or
            # uvicorn's server in each.
            own = kind == "gunicorn-asgi"
            command = [
                str(bindir / "gunicorn"),
                "project.asgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "asgi" if own else uvicorn_worker_class(),
                # The ASGI worker's "ASGI server listening" lines: see
                # _wait_ready.
                "--log-level",
                "info" if own else "warning",
            ]
            if kind == "gunicorn-uvicorn-preload":
                command.append("--preload")
        else:
            command = [
                str(bindir / "gunicorn"),
                "project.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ]
            if kind == "gunicorn-gevent":
                # Monkey-patched before the app loads: its threads are
                # greenlets, threading.Thread a subclass of the standard one.
                command += ["--worker-class", "gevent"]
            elif kind == "gunicorn-sync":
                # Its default: one request at a time in each worker.
                command += ["--worker-class", "sync"]
            else:
                command += ["--worker-class", "gthread", "--threads", str(threads)]
            if kind == "gunicorn-preload":
                # The app (and switchtrace's patches, its span thread) load in
                # the master, then gunicorn forks the workers.
                command.append("--preload")
        # A line each worker logs once it serves (see _wait_ready).
        self.started = {
            "granian": "Started worker-",
            "uwsgi": "spawned uWSGI worker ",
            "gunicorn-asgi": "ASGI server listening on ",
        }.get(kind if kind == "gunicorn-asgi" else kind.partition("-")[0])
        self.workers = workers if self.started else 0
        self.log = records.with_name("server.log")
        command += extra_args
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=EXAMPLE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A worker can outlive its main process (granian's, uWSGI's;
                # once, a uvicorn worker of gunicorn --preload, still serving
                # after the suite ended): its group of its own, killed at
                # stop.
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                httpx.get(self.url + "/sync/?ready", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            # granian answers once one worker serves. A worker that gets
            # SIGTERM while it still loads the application waits for
            # shutdown forever (granian 2.8, with or without switchtrace: the
            # main process's handler is still the one it has): wait for all.
            # gunicorn's ASGI worker, too, misses a SIGTERM that comes before
            # it has set its loop's handlers, and lasts until gunicorn kills
            # it after --graceful-timeout (gunicorn 27.0, with or without
            # switchtrace): wait for all there as well.
            if not self.workers or self.output().count(self.started) >= self.workers:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start within 30 s:\n{self.output()}")

    def wait_idle(self) -> bool:
        """uWSGI: wait until no worker serves a request (a moment after the
        response, and after the request's record); False after 10 s. A
        worker stopped while it does skips the exit hooks (uWSGI's doing):
        what it queued would be lost. Asked of its stats server."""
        address = self.process.args[self.process.args.index("--stats") + 1]
        host, _, port = address.rpartition(":")
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                data = b"".join(iter(lambda: conn.recv(65536), b""))
            if all(w["status"] == "idle" for w in json.loads(data)["workers"]):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def output(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.kind.startswith("uwsgi"):
            # uWSGI 2.0 reloads on SIGTERM (unless die-on-term): SIGINT
            # stops it, as `uwsgi --stop` does.
            try:
                if self.process.poll() is None:
                    self.wait_idle()
            except (OSError, ValueError, KeyError):
                pass  # its stats server is not up yet (nothing served), or odd
            self.process.send_signal(signal.SIGINT)
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Its workers, if the main process died or was killed first.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
