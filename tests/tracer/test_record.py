"""The request record as a data structure: what a crossing holds before
anything has happened to it."""

from __future__ import annotations

import functools
import threading

from switchtrace import tracer
from switchtrace.tracer.describe import Description
from switchtrace.tracer.record import SYNC_TO_ASYNC


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
