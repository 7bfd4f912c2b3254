"""Listeners (``tracer.add_listener``/``add_start_listener``): an
application's own, whose errors are not switchtrace's, and what a
BaseException raised by one does."""

from __future__ import annotations

import gc
import logging
import threading

import pytest

from switchtrace import tracer
from switchtrace.tracer import guard


class Stop(BaseException):
    """As pytest.fail() raises, or KeyboardInterrupt: not an Exception."""


@pytest.fixture
def listening():
    added: list[tuple[str, tracer.Listener]] = []

    def add(listener: tracer.Listener, start: bool = False) -> tracer.Listener:
        (tracer.add_start_listener if start else tracer.add_listener)(listener)
        added.append(("start" if start else "end", listener))
        return listener

    yield add
    for kind, listener in added:
        (tracer.remove_start_listener if kind == "start" else tracer.remove_listener)(listener)


def _failing(message: str) -> tracer.Listener:
    def fail(record: tracer.RequestRecord) -> None:
        raise ValueError(message)

    return fail


def test_an_applications_listener_that_raises_is_named_as_such_once_for_each(
    listening, swallowed, caplog
):
    """Two listeners one factory made (one __qualname__): each one's error is
    logged, once, as the application's, not as switchtrace's internal error."""
    listening(_failing("from the first"))
    listening(_failing("from the second"))
    seen: list[tracer.RequestRecord] = []
    listening(seen.append)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        for _ in range(2):
            with tracer.recording() as record:
                pass
    assert seen[-1] is record and len(seen) == 2
    name = "the application's listener '_failing.<locals>.fail'"
    assert [(r.getMessage(), str(r.exc_info[1])) for r in caplog.records] == [
        (
            f"switchtrace: {name} raised; the error is its own, not switchtrace's (logged once "
            "for it and this exception type)",
            message,
        )
        for message in ("from the first", "from the second")
    ]
    assert [(where, str(exc)) for where, exc in swallowed] == [
        (name, "from the first"),
        (name, "from the second"),
    ] * 2
    swallowed.clear()


def test_a_start_listeners_error_is_the_applications_too(listening, swallowed, caplog):
    listening(_failing("at the start"), start=True)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with tracer.recording() as record:
            assert tracer.current_record() is record
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: the application's start listener '_failing.<locals>.fail' raised; the "
        "error is its own, not switchtrace's (logged once for it and this exception type)"
    ]
    swallowed.clear()


def test_switchtraces_own_listener_that_raises_is_an_internal_error(listening, swallowed, caplog):
    def exporting(record):
        raise RuntimeError("ours")

    exporting.__module__ = "switchtrace.exporters.pipeline"
    listening(exporting)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with tracer.recording():
            pass
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: internal error in listener 'test_switchtraces_own_listener_that_raises_is_"
        "an_internal_error.<locals>.exporting' (logged once; the request goes on untouched)"
    ]
    assert [where for where, _exc in swallowed] == [
        "listener 'test_switchtraces_own_listener_that_raises_is_an_internal_error.<locals>."
        "exporting'"
    ]
    swallowed.clear()


def test_a_listeners_base_exception_comes_out_once_every_listener_has_the_record(
    listening, swallowed
):
    """It is not swallowed (a KeyboardInterrupt, a test's pytest.fail() in a
    budget of its own): raised by finish_request once every other listener has
    the record and the record is no longer current, the first of them."""
    seen: list[str] = []

    def stop(name):
        def listener(record):
            seen.append(name)
            raise Stop(name)

        return listener

    listening(stop("first"))
    listening(stop("second"))
    listening(lambda record: seen.append("third"))
    record, token = tracer.start_request(tracer.WSGI)
    with pytest.raises(Stop, match=r"^first$") as raised:
        tracer.finish_request(record, token)
    assert seen == ["first", "second", "third"]
    assert record.finished
    assert tracer.current_record() is None
    assert raised.value.__context__ is None
    assert [repr(exc) for _where, exc in swallowed] == ["Stop('second')"]  # (logged)
    swallowed.clear()
    # Finished once: the listeners are not told again.
    tracer.finish_request(record)
    assert seen == ["first", "second", "third"]


def test_a_start_listeners_base_exception_ends_the_record_it_opened(listening):
    told: list[tuple[str, tracer.RequestRecord]] = []

    def stop(record):
        told.append(("start", record))
        raise Stop("at the start")

    listening(stop, start=True)
    listening(lambda record: told.append(("start, after", record)), start=True)
    listening(lambda record: told.append(("end", record)))
    with pytest.raises(Stop, match=r"^at the start$"):
        tracer.start_request(tracer.ASGI)
    assert [kind for kind, _ in told] == ["start", "start, after", "end"]
    record = told[0][1]
    assert all(r is record for _, r in told)
    assert record.finished
    assert tracer.current_record() is None


def test_each_listener_has_its_error_logged_once_while_it_lives(listening, swallowed, caplog):
    """By identity, while it lives: bound methods of one class, one after
    another (a test's own object, removed at its end), each logged; by id
    they were not, another object getting a dead one's id, and removing a
    bound method (a new object, equal to the one added) forgot nothing."""

    class App:
        def __init__(self, name):
            self.name = name

        def on_finish(self, record):
            raise ValueError(self.name)

    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        for name in ("first", "second", "third"):
            app = App(name)
            tracer.add_listener(app.on_finish)
            for _ in range(2):
                with tracer.recording():
                    pass
            tracer.remove_listener(app.on_finish)
            del app
    assert [str(r.exc_info[1]) for r in caplog.records] == ["first", "second", "third"]
    assert len(swallowed) == 6
    swallowed.clear()


def test_what_was_logged_for_an_object_goes_with_it(swallowed):
    class Listener:
        def __call__(self, record):
            pass

    listener = Listener()
    try:
        raise ValueError("once")
    except ValueError:
        guard.swallow("a test's listener", theirs=listener)
    key = id(listener)
    assert guard._reported_theirs.get(listener) == {("a test's listener", ValueError)}
    del listener
    gc.collect()
    assert key not in guard._reported_theirs._entries
    swallowed.clear()


def test_two_threads_first_telling_of_one_listeners_error_log_it_once(
    swallowed, caplog, monkeypatch
):
    """Both find nothing logged for the listener, and each stored a set of
    its own (outside the lock): each logged it, into its own set."""
    both_looked = threading.Barrier(2, timeout=10)

    class Interleaved(guard.WeakIdentityMap):
        __slots__ = ()

        def get(self, obj, default=None):
            found = super().get(obj, default)
            both_looked.wait()  # (each found none)
            return found

    monkeypatch.setattr(guard, "_reported_theirs", Interleaved())

    class Listener:
        def __call__(self, record):
            pass

    listener = Listener()

    def tell():
        try:
            raise ValueError("at once")
        except ValueError:
            guard.swallow("a test's listener", theirs=listener)

    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        threads = [threading.Thread(target=tell) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert [str(r.exc_info[1]) for r in caplog.records] == ["at once"]
    assert len(swallowed) == 2
    swallowed.clear()


def test_a_listener_that_removes_itself_as_it_raises(listening, swallowed, caplog):
    """The listener after it is still told of this record, and it is not
    told of the next one."""

    def once(record):
        tracer.remove_listener(once)
        raise ValueError("removed itself")

    listening(once)  # (removed after the test, if it did not remove itself)
    seen: list[tracer.RequestRecord] = []
    listening(seen.append)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with tracer.recording() as first:
            pass
        with tracer.recording() as second:
            pass
    assert seen == [first, second]
    assert [str(r.exc_info[1]) for r in caplog.records] == ["removed itself"]
    assert [str(exc) for _where, exc in swallowed] == ["removed itself"]
    assert once not in tracer._listeners
    swallowed.clear()


def test_a_second_base_exception_is_logged_not_lost(listening, swallowed, caplog):
    def stop(name):
        def listener(record):
            raise Stop(name)

        return listener

    listening(stop("first"))
    listening(stop("second"))
    record, token = tracer.start_request(tracer.WSGI)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with pytest.raises(Stop, match=r"^first$"):
            tracer.finish_request(record, token)
    assert [(r.getMessage(), repr(r.exc_info[1])) for r in caplog.records] == [
        (
            "switchtrace: the application's listener 'test_a_second_base_exception_is_logged_"
            "not_lost.<locals>.stop.<locals>.listener' raised; the error is its own, not "
            "switchtrace's (logged once for it and this exception type)",
            "Stop('second')",
        )
    ]
    assert [repr(exc) for _where, exc in swallowed] == ["Stop('second')"]
    swallowed.clear()


def test_finish_all_ends_every_record_and_raises_the_first_base_exception(
    listening, swallowed, caplog
):
    """What ends records elsewhere than in their context (asgiref's
    WsgiToAsgi's, those a test left open): a listener's BaseException on the
    first left the others unfinished for good."""
    ended: list[tracer.RequestRecord] = []

    def stop(record):
        ended.append(record)
        raise Stop(f"#{len(ended)}")

    listening(stop)
    records = [tracer.RequestRecord(tracer.WSGI, tracer.patches.clock, 10) for _ in range(3)]
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with pytest.raises(Stop, match=r"^#1$"):
            tracer.finish_all(records)
    assert ended == records
    assert all(record.finished for record in records)
    # The two after it: logged, each (once for its record).
    assert [repr(exc) for _where, exc in swallowed] == ["Stop('#2')", "Stop('#3')"]
    assert [repr(r.exc_info[1]) for r in caplog.records] == ["Stop('#2')", "Stop('#3')"]
    swallowed.clear()


def test_a_listener_that_cannot_be_named_is_named_by_its_type(listening, swallowed, caplog):
    """Its name was read with getattr and repr, the application's code,
    inside the except block: what they raised left finish_request before
    the record was no longer current, the listeners after it untold."""

    class Lazy:
        def __getattr__(self, name):
            raise Stop(f"not ready ({name})")  # (not even an Exception)

        def __repr__(self):
            raise RuntimeError("no repr")

        def __call__(self, record):
            raise ValueError("from the proxy")

    told: list[tracer.RequestRecord] = []
    listening(Lazy())
    listening(told.append)
    record, token = tracer.start_request(tracer.WSGI)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        tracer.finish_request(record, token)
    assert told == [record]
    assert tracer.current_record() is None
    assert [r.getMessage().split(" raised;")[0] for r in caplog.records] == [
        "switchtrace: the application's listener 'test_a_listener_that_cannot_be_named_is_"
        "named_by_its_type.<locals>.Lazy object'"
    ]
    swallowed.clear()
