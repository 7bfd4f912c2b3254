"""Drive Django's real ASGI and WSGI handlers in-process, as a server would
(the drivers live in the package: the demo and the benchmark use them too)."""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext

from switchtrace.example import Result, asgi_request, run_in_server_loop, wsgi_request

__all__ = [
    "ASGI_THREADS",
    "NOBODY",
    "Result",
    "asgi_request",
    "collect_garbage",
    "directory_every_user_may_write",
    "raised_by_a_start_listener",
    "run_asgi",
    "run_script",
    "wait_for",
    "wsgi_request",
]

#: Threads an ASGI request starts in all: the per-request thread of Django's
#: ThreadSensitiveContext, and, from asgiref 3.12, the thread that joins it.
ASGI_THREADS = 2 if "Thread(" in inspect.getsource(ThreadSensitiveContext.__aexit__) else 1


#: Another user's uid, for the files and links root gives away.
NOBODY = 65534


def directory_every_user_may_write(parent: Path) -> Path:
    """A new directory in ``parent`` every user may write, as /tmp is
    (without its sticky bit, which the kernel's protected_regular and
    protected_symlinks need), where root may give a file to uid
    :data:`NOBODY`; the test is skipped where it cannot (not root, or the
    root of a user namespace)."""
    if os.geteuid() != 0:
        pytest.skip("a file of another user is made by root")
    directory = parent / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    try:
        os.chown(directory, NOBODY, NOBODY)
    except OSError as exc:
        pytest.skip(f"uid {NOBODY} cannot be given a file: {exc}")
    os.chown(directory, os.geteuid(), os.getegid())
    return directory


class StartListenerStop(BaseException):
    """As a test's pytest.fail() in a start listener of its own raises."""


def raised_by_a_start_listener(serve: Any) -> list[str]:
    """``serve()`` with a start listener raising :class:`StartListenerStop`,
    which ``serve`` must let out; the "never awaited" warnings of that and
    of the garbage collected after it (a coroutine made before the record
    opened, never closed)."""
    from switchtrace import tracer

    def stop(record: Any) -> None:
        raise StartListenerStop("at the start")

    tracer.add_start_listener(stop)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.suppress(StartListenerStop):
                serve()
                raise AssertionError("the start listener's BaseException did not come out")
            gc.collect()
    finally:
        tracer.remove_start_listener(stop)
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def run_asgi(handler: Any, path: str) -> Result:
    """One request, in a loop that lives on between requests as a server's does."""
    return run_in_server_loop(asgi_request(handler, path))


def wait_for(ready: Any, timeout: float = 10.0) -> bool:
    """Whether ``ready()`` came true within ``timeout`` seconds (another
    thread's progress, waited for rather than assumed after a sleep)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def collect_garbage() -> None:
    """``gc.collect()`` once the test settings' span pipeline has made the
    spans of every record finished so far: its thread holds each record
    until then."""
    from switchtrace.django_app import telemetry

    pipeline = telemetry.pipeline()
    assert pipeline is None or pipeline.flush(10)
    gc.collect()


def run_script(script: str, *args: Any) -> str:
    """``script`` (a template whose ``{src}`` is this checkout's src/) run by
    this interpreter in a process of its own, with PATH alone in its
    environment, given ``args``: what it printed, once it has exited 0."""
    src = Path(__file__).resolve().parent.parent / "src"
    out = subprocess.run(
        [sys.executable, "-c", script.format(src=str(src)), *map(str, args)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
