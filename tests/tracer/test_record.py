"""The request record as a data structure: what a crossing holds before
anything has happened to it."""

from __future__ import annotations

import functools
import itertools
import threading

from switchtrace import tracer
from switchtrace.tracer.describe import CodeLocation, Description, code_location
from switchtrace.tracer.record import ASYNCIO_RUN, SYNC_TO_ASYNC, Component


def test_a_crossing_just_made_holds_only_what_it_was_given():
    """Renderers read every field of the crossings they are handed (and of
    their parents, which may never have started): a crossing just made has
    each one, empty, and names itself."""
    thread = threading.current_thread()
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, thread, None, 7)
    assert (crossing.mechanism, crossing.bridge, crossing.func) == (SYNC_TO_ASYNC, None, len)
    assert (crossing.source_thread, crossing.parent, crossing.call_ns) == (thread, None, 7)
    assert (crossing.source_ident, crossing.claims, crossing.executor_object) == (None, None, None)
    assert (crossing.start_ns, crossing.end_ns, crossing.return_ns) == (None, None, None)
    assert (crossing.target_thread, crossing.loop_id, crossing.exception) == (None, None, None)
    assert (crossing.loop_created, crossing.threads_started) == (False, 0)
    assert (crossing.before_headers, crossing.description) == (True, None)
    assert (crossing.hop, crossing.queue_wait_ns, crossing.executor) == (False, None, None)
    assert repr(crossing) == "<Crossing sync_to_async len hop=False loop_created=False>"


def test_a_crossing_is_named_by_its_description_else_its_function():
    thread = threading.current_thread()
    partial = functools.partial(len)
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, partial, thread, None, 0)
    assert repr(crossing) == "<Crossing sync_to_async partial hop=False loop_created=False>"
    crossing.description = Description("views.index", None, None)
    assert repr(crossing) == "<Crossing sync_to_async views.index hop=False loop_created=False>"
    crossing.target_thread = threading.Thread()
    crossing.loop_created = True
    assert repr(crossing) == "<Crossing sync_to_async views.index hop=True loop_created=True>"


def test_a_record_just_made_holds_nothing_until_it_is_finished():
    ticks = iter([5, 9])
    record = tracer.RequestRecord("asgi", lambda: next(ticks))
    assert (record.kind, record.begin_ns) == ("asgi", 5)
    assert (record.end_ns, record.finished) == (None, False)
    assert (record.crossings, record.thread_starts, record.loop_creations) == ([], [], [])
    assert (record.attributes, record.extra, record.at_headers) == ({}, {}, None)
    assert (record.max_events, record.dropped) == (1000, 0)
    assert record.totals() == record.figures() == tracer.Figures(0, 0, 0, 0)
    # Its clock's times as nanoseconds since the epoch: begin_ns is wall_ns.
    assert record.wall_time(15) == record.wall_ns + 10
    record.attributes["url.path"] = "/sync/"
    assert repr(record) == "<RequestRecord asgi /sync/ switches=0 hops=0 loops=0 threads=0>"
    record.finish()
    assert (record.end_ns, record.finished) == (9, True)


def test_a_loop_creation_makes_the_loop_its_causes_only_where_the_cause_runs_in_it():
    record = tracer.RequestRecord("wsgi", itertools.count(10).__next__)
    thread = threading.current_thread()
    cause = tracer.Crossing(ASYNCIO_RUN, None, None, thread, None, 0)
    ahead = record.loop_created(1, thread, cause)
    assert (cause.loop_created, cause.loop_id) == (False, None)
    assert (ahead.at_ns, ahead.loop_id, ahead.thread, ahead.crossing) == (11, 1, thread, cause)
    outside = record.loop_created(2, thread, None, runs_in_it=True)
    runs = record.loop_created(3, thread, cause, runs_in_it=True, at_ns=4)
    assert (cause.loop_created, cause.loop_id) == (True, 3)
    assert [(c.at_ns, c.crossing) for c in (outside, runs)] == [(12, None), (4, cause)]
    assert record.loop_creations == [ahead, outside, runs]
    assert record.totals() == tracer.Figures(0, 0, 3, 0)


def test_describe_names_each_crossing_once_and_asks_until_a_component_is_found():
    """describe() names a crossing once; given a resolver, it asks it again
    for a crossing whose component is not known yet, and no more once it is."""
    record = tracer.RequestRecord("asgi", itertools.count().__next__)
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, threading.current_thread(), None, 0)
    record.crossings.append(crossing)
    view = Component("view", "views.index")
    asked = []

    def resolve(crossing, record):
        asked.append(crossing)
        return None if len(asked) == 1 else view

    record.describe()
    named = crossing.description
    assert (crossing.qualname, crossing.component) == ("len", None)
    record.describe()
    assert crossing.description is named
    for _ in range(3):
        record.describe(resolve)
    assert asked == [crossing, crossing]
    assert (crossing.qualname, crossing.component) == ("len", view)


def test_a_builtin_method_is_located_in_its_class_alone():
    """A method of a C type (``{}.get``, a socket's ``recv``) says no module:
    its namespace is its class, not the class after a dot."""
    assert code_location({}.get) == CodeLocation("get", "dict", None, None)
    assert code_location((1).__add__) == CodeLocation("__add__", "int", None, None)
    assert code_location(len) == CodeLocation("len", "builtins", None, None)
