"""Listeners (``tracer.add_listener``/``add_start_listener``): an
application's own, whose errors are not switchtrace's, and what a
BaseException raised by one does."""

from __future__ import annotations

import logging

import pytest

from switchtrace import tracer


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
    first, second = listening(_failing("from the first")), listening(_failing("from the second"))
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
            "for it and this exception type; the request goes on untouched)",
            message,
        )
        for message in ("from the first", "from the second")
    ]
    assert [(where, str(exc)) for where, exc in swallowed] == [
        (name, "from the first"),
        (name, "from the second"),
    ] * 2
    swallowed.clear()
    assert first is not second


def test_a_start_listeners_error_is_the_applications_too(listening, swallowed, caplog):
    listening(_failing("at the start"), start=True)
    with caplog.at_level(logging.ERROR, logger="switchtrace"):
        with tracer.recording() as record:
            assert tracer.current_record() is record
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: the application's start listener '_failing.<locals>.fail' raised; the "
        "error is its own, not switchtrace's (logged once for it and this exception type; the "
        "request goes on untouched)"
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


def test_a_listeners_base_exception_comes_out_once_every_listener_has_the_record(listening):
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
