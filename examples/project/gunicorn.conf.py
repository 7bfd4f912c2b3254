"""gunicorn reads this file from its working directory."""

import signal
import sys


def post_worker_init(worker):
    # uvicorn's worker (-k uvicorn_worker.UvicornWorker) leaves SIGTERM at its
    # default action, which uvicorn raises again after its graceful shutdown:
    # the worker would die without running the exit hooks, and switchtrace's
    # spans still waiting for their batch would be lost. Exit through them.
    # gunicorn's own workers have a handler of their own here: left alone.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
