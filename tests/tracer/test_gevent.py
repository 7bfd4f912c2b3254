"""gevent's monkey-patching (gunicorn's gevent workers patch before they load
the application): ``threading.Thread`` is then gevent's subclass of the
standard library's, whose threads are greenlets, and it inherits ``start``.
The tracer patches ``start`` where it is defined: before, it found none on
``threading.Thread``, warned at every start-up that Python "lacks
Thread.start", and counted no thread started. The script runs in a process
of its own: monkey-patching this one would change every other test."""

from __future__ import annotations

import json
import textwrap

import pytest

from ..support import run_script

pytest.importorskip("gevent")  # in the test extra; not on every platform

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json, logging, sys, threading
    sys.path[:0] = [{src!r}]
    from asgiref.sync import async_to_sync
    from switchtrace import tracer
    from switchtrace.tracer import guard

    swallowed = []
    guard.set_error_hook(lambda exc, where: swallowed.append((where, repr(exc))))
    said = []

    class Said(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logging.getLogger("switchtrace").addHandler(Said())
    tracer.install()

    async def noop():
        return "done"

    with tracer.recording() as record:
        # Under WSGI: a thread and an event loop of asgiref's for the call,
        # and a thread the request's code starts itself.
        result = async_to_sync(noop)()
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
    print(json.dumps({{
        "thread_class": threading.Thread.__module__,
        "result": result,
        "figures": [
            record.context_switches,
            record.thread_hops,
            record.event_loops_created,
            record.threads_started,
        ],
        "missing": tracer.missing_hooks(),
        "said": said,
        "swallowed": swallowed,
    }}))
    """
)


def test_under_gevents_monkey_patching_threads_started_are_counted():
    assert json.loads(run_script(SCRIPT)) == {
        "thread_class": "gevent.threading",
        "result": "done",
        "figures": [2, 2, 1, 2],
        "missing": [],
        "said": [],
        "swallowed": [],
    }
