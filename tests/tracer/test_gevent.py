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

#: Monkey-patched first, as gunicorn's gevent workers do; what switchtrace
#: says kept in ``said``.
PATCHED = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json, logging, sys, threading
    sys.path[:0] = [{src!r}]
    said = []

    class Said(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logging.getLogger("switchtrace").addHandler(Said())
    """
)

SCRIPT = PATCHED + textwrap.dedent(
    """
    from asgiref.sync import async_to_sync
    from switchtrace import tracer
    from switchtrace.tracer import guard

    swallowed = []
    guard.set_error_hook(lambda exc, where: swallowed.append((where, repr(exc))))
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


SENTRY_SCRIPT = PATCHED + textwrap.dedent(
    """
    import sentry_sdk
    from sentry_sdk.transport import Transport
    from switchtrace import tracer

    class Kept(Transport):
        def capture_envelope(self, envelope):
            pass

    tracer.install()
    # sentry-sdk's threading integration, after switchtrace: its start goes
    # on gevent's Thread, over the inherited one of switchtrace's.
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Kept)

    def started():
        with tracer.recording() as record:
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        return record.threads_started

    counts = [started()]
    tracer.uninstall()
    counts.append(started())
    tracer.install()
    counts.append(started())
    print(json.dumps({{"counts": counts, "sentry_on_gevents": "start" in vars(threading.Thread),
                      "said": said}}))
    """
)


def test_a_thread_counts_once_after_switchtrace_is_turned_off_and_on_under_sentry():
    """sentry-sdk initialised after switchtrace under gevent puts its start
    on gevent's Thread, calling the start it found there: switchtrace's, on
    the standard library's. Turned off, switchtrace restores that one (its
    own, untouched), but sentry's still holds it; turned on again, a thread
    counted twice (once through sentry's, once through the old patch under
    it) would make X-Threads-Started 2 for 1."""
    result = json.loads(run_script(SENTRY_SCRIPT))
    assert result["sentry_on_gevents"]
    assert result["counts"] == [1, 0, 1]
    assert result["said"] == [
        "switchtrace: <class 'concurrent.futures.thread.ThreadPoolExecutor'>.submit "
        "was patched again by someone else; left as it is (said once)"
    ]


OTHER_GREENLET_SCRIPT = PATCHED + textwrap.dedent(
    """
    import asyncio
    import gevent
    from asgiref.sync import async_to_sync
    from switchtrace import tracer
    from switchtrace.tracer import guard

    swallowed = []
    guard.set_error_hook(lambda exc, where: swallowed.append((where, repr(exc))))
    tracer.install()

    async def slow():
        await asyncio.sleep(0.3)

    def other():
        # Another request's code, or none's: a greenlet of its own, in a
        # context of its own, in the same OS thread as the loop above.
        for _ in range(2):
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        return len(threading.enumerate())

    with tracer.recording() as record:
        other_greenlet = gevent.spawn_later(0.1, other)
        async_to_sync(slow)()  # its loop waits in gevent's select meanwhile
        other_greenlet.join()
    print(json.dumps({{
        "ran": other_greenlet.successful(),
        "figures": [
            record.context_switches,
            record.thread_hops,
            record.event_loops_created,
            record.threads_started,
        ],
        "said": said,
        "swallowed": swallowed,
    }}))
    """
)


def test_a_thread_another_greenlet_starts_while_a_requests_loop_runs_is_not_the_requests():
    """Under gevent every greenlet runs in one OS thread, and asyncio finds
    the loop running there from any of them: a thread that a greenlet
    outside the request started while the request's async_to_sync loop
    waited was counted for the request (here 3 threads started, not 1:
    asgiref's), and under gunicorn's gevent worker for whichever request's
    loop was running."""
    assert json.loads(run_script(OTHER_GREENLET_SCRIPT)) == {
        "ran": True,
        "figures": [2, 2, 1, 1],
        "said": [],
        "swallowed": [],
    }
