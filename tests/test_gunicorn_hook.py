"""switchtrace.gunicorn's post_worker_init: SIGTERM (and SIGINT) in uvicorn's
worker exits through the exit hooks, wherever the signal lands.

Each case runs in a child interpreter that sends itself the signal at one
chosen point, both signals at their default action first (as uvicorn's
worker's ``init_signals`` leaves them); the exit hooks are an atexit function
that prints ``exit hooks ran``.
The e2e servers' tests (tests/e2e/test_servers.py) run the hook in gunicorn.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

PRELUDE = """
import asyncio, atexit, signal, socket, sys
sys.path.insert(0, {src!r})
from switchtrace.gunicorn import post_worker_init

atexit.register(lambda: print("exit hooks ran", flush=True))
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, signal.SIG_DFL)  # uvicorn's worker's init_signals
post_worker_init(object())


def new_loop():
    if {loop!r} == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coroutine):
    # uvicorn's asyncio_run, as its worker runs it.
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
"""

LOOPS = ["asyncio", "uvloop"]  # uvicorn's two loops


#: The signals uvicorn raises again after its graceful shutdown.
SIGNALS = ["SIGTERM", "SIGINT"]


def child(
    body: str, loop: str = "asyncio", sig: str = "SIGTERM"
) -> subprocess.CompletedProcess[str]:
    """``body`` run after PRELUDE, its SIGTERM read as ``sig``."""
    pytest.importorskip(loop)
    code = PRELUDE.format(src=str(SRC), loop=loop) + textwrap.dedent(body).replace("SIGTERM", sig)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_uvicorns_raising_the_signal_again_exits_through_the_exit_hooks(loop, sig):
    """What uvicorn's Server.serve does after its graceful shutdown: it puts
    back the handler it found and raises the signal it caught. (SIGINT: a
    terminal's Ctrl-C reaches gunicorn's workers too; the worker died by its
    default action, and its spans still waiting with it.)"""
    done = child(
        """
        async def serve():
            found = signal.signal(signal.SIGTERM, lambda signum, frame: None)
            # ... the graceful shutdown ...
            signal.signal(signal.SIGTERM, found)
            signal.raise_signal(signal.SIGTERM)
            print("serve returned", flush=True)

        run(serve())
        print("worker returned", flush=True)
        sys.exit(0)
        """,
        loop,
        sig,
    )
    assert (done.returncode, done.stderr) == (0, "")
    # Raised from the loop's next callback: serve() ends first, as it would
    # with SIGTERM at its default action.
    assert done.stdout.splitlines()[-1] == "exit hooks ran"
    assert "serve returned" in done.stdout


@pytest.mark.parametrize("pending", [False, True], ids=["no task left", "a task left"])
@pytest.mark.parametrize("loop", LOOPS)
def test_uvicorns_signal_raised_again_after_an_executors_use_ends_cleanly(loop, pending):
    """Django logs an error response in run_in_executor's default executor,
    whose shutdown takes more than one turn of the loop. The SystemExit came
    after the main task had ended; the loop's pending stop() then broke
    shutdown_default_executor() ("Event loop stopped before Future
    completed"): the worker died with a traceback. Also with a task the
    application left pending (fire and forget)."""
    done = child(
        f"""
        async def serve():
            await asyncio.get_running_loop().run_in_executor(None, print, "logged")
            if {pending!r}:
                asyncio.get_running_loop().create_task(asyncio.sleep(3600))
            found = signal.signal(signal.SIGTERM, lambda signum, frame: None)
            signal.signal(signal.SIGTERM, found)
            signal.raise_signal(signal.SIGTERM)

        run(serve())
        print("worker returned", flush=True)
        sys.exit(0)
        """,
        loop,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-2:] == ["worker returned", "exit hooks ran"]


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_before_uvicorn_serves_exits_through_the_exit_hooks(loop, sig):
    """While the worker's loop runs uvicorn's start-up (config, lifespan),
    before uvicorn puts a handler of its own."""
    done = child(
        """
        async def start():
            signal.raise_signal(signal.SIGTERM)
            print("not interrupted here", flush=True)
            await asyncio.sleep(30)
            print("slept", flush=True)

        run(start())
        print("worker returned", flush=True)
        """,
        loop,
        sig,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["not interrupted here", "exit hooks ran"]


def test_sigterm_inside_uvloops_own_start_up_ends_the_worker_as_without_the_hook():
    """The signal lands while uvloop sets up its signal handling, in the
    Python it calls there (socket.socketpair): a SystemExit raised there left
    the loop marked running, neither runnable nor closable, and the worker
    died with a traceback (the e2e test met it in a second worker still
    starting). No loop is running yet: SIGTERM's default action, as without
    the hook; the worker has served nothing."""
    done = child(
        """
        sent = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code is socket.socketpair.__code__:
                if not sent:
                    sent.append(True)
                    signal.raise_signal(signal.SIGTERM)

        async def serve():
            print("served", flush=True)

        sys.setprofile(profile)
        run(serve())
        """,
        "uvloop",
    )
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGTERM, "", "")


@pytest.mark.parametrize("sig", SIGNALS)
def test_sigterm_with_no_loop_running_is_sigterms_default_action(sig):
    done = child(
        """
        signal.raise_signal(signal.SIGTERM)
        print("not reached", flush=True)
        """,
        sig=sig,
    )
    assert (done.returncode, done.stdout, done.stderr) == (-getattr(signal, sig), "", "")


def test_a_worker_with_a_handler_of_its_own_is_left_alone():
    """gunicorn's own workers have put their handler by post_worker_init."""
    done = child(
        """
        def theirs(signum, frame):
            pass

        signal.signal(signal.SIGTERM, theirs)
        post_worker_init(object())
        print(signal.getsignal(signal.SIGTERM) is theirs, flush=True)
        """
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "True\nexit hooks ran\n",
        "",
    )
