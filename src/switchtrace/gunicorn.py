"""A gunicorn hook for uvicorn's worker, so that SIGTERM (and SIGINT: Ctrl-C)
loses no spans.

In ``gunicorn.conf.py`` (gunicorn reads it from its working directory)::

    from switchtrace.gunicorn import post_worker_init

uvicorn's worker for gunicorn leaves SIGTERM and SIGINT at their default
action, and uvicorn raises the one it caught again after its graceful
shutdown: the worker dies without running the exit hooks, and the spans
still waiting for their batch are lost. (A terminal's Ctrl-C sends SIGINT to
gunicorn's workers too, not only to its master.) The hook makes it exit
through them. gunicorn's own workers have handlers of their own by then and
are left alone.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType
from typing import Any

#: The signals that uvicorn's worker leaves at their default action and
#: raises again after its graceful shutdown.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def post_worker_init(worker: Any) -> None:
    for signum in SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, exit_through_the_exit_hooks)


def exit_through_the_exit_hooks(signum: int, frame: FrameType | None) -> None:
    """SIGTERM's and SIGINT's handler: ``sys.exit(0)`` from the worker's
    event loop.

    It is raised from a callback of the loop, where loops expect it: the
    signal may interrupt the loop's own Python code (uvloop calls back into
    Python while it sets up its signal handling), and a SystemExit raised
    there leaves the loop marked running, so that it can be neither run nor
    closed again and the worker dies with a traceback.

    With no event loop running, the worker is not serving: it has not started
    yet (nothing to lose) or its loop has returned and it is on its way out
    through the exit hooks. The signal then does what it does without the
    hook.
    This is also the case, with uvloop, while its loop starts or stops.

    uvicorn raises the signal again at the end of its graceful shutdown,
    from its main task, which then returns: the worker is on its way out
    through the exit hooks already. A SystemExit raised after the main task
    has ended broke the loop's own shutdown instead (the stop() that ends
    ``run_until_complete`` was then still to come, and stopped the loop in
    the middle of ``shutdown_default_executor()``: "Event loop stopped
    before Future completed", the worker dying with a traceback): it is
    not raised once the task the signal interrupted has ended (whatever
    other tasks the application left pending).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    loop.call_soon_threadsafe(_exit_unless_ended, asyncio.current_task(loop))


def _exit_unless_ended(interrupted: asyncio.Task[Any] | None) -> None:
    if interrupted is None or not interrupted.done():
        sys.exit(0)
