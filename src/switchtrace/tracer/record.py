"""The per-request record: a neutral data structure filled by the patches.

Nothing here knows how a crossing was observed, nor how it will be shown.
Headers, spans, console lines and reports are renderers of a finished
:class:`RequestRecord`; none of them reaches back into the patches.

The counters are ``itertools.count`` objects, whose ``next()`` is atomic under
the GIL: the figures stay exact when a request touches several threads at
once, and the hot path takes no lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import SyncToAsync

from .describe import Description, attribute, describe_crossing

# Mechanisms: how control crossed between synchronous code and an event loop.
SYNC_TO_ASYNC = "sync_to_async"
ASYNC_TO_SYNC = "async_to_sync"
ASYNCIO_RUN = "asyncio.run"
#: ``loop.run_until_complete()`` called from synchronous code, outside
#: asyncio.run (whose own calls to it are part of its crossing).
RUN_UNTIL_COMPLETE = "loop.run_until_complete"
TO_THREAD = "asyncio.to_thread"
RUN_IN_EXECUTOR = "run_in_executor"

# Directions, named after where the bridged code runs.
LOOP_TO_THREAD = "async->sync"
THREAD_TO_LOOP = "sync->async"

#: What each side of a crossing appends to :attr:`Crossing.claims`.
STARTED = "started"
CLOSED = "closed"
#: An offload's caller cancelled while its function runs (the future's
#: ``cancel()``), the function still to end: the first of the two closes it.
CANCELLED = "cancelled"

_TO_LOOP = frozenset({ASYNC_TO_SYNC, ASYNCIO_RUN, RUN_UNTIL_COMPLETE})

# Kinds of request record.
WSGI = "wsgi"
ASGI = "asgi"

DEFAULT_MAX_EVENTS = 1000

Clock = Callable[[], int]


def _value(counter: itertools.count) -> int:  # type: ignore[type-arg]
    """The next value an ``itertools.count`` would give, without taking it."""
    return int(repr(counter)[6:-1])  # repr is "count(N)"


@dataclass(frozen=True)
class Figures:
    """The four per-request figures, as put on the response headers."""

    context_switches: int
    thread_hops: int
    event_loops_created: int
    threads_started: int


class ThreadStart:
    """An OS thread started on behalf of a request."""

    __slots__ = ("at_ns", "crossing", "thread")

    def __init__(self, at_ns: int, thread: threading.Thread, crossing: Crossing | None):
        self.at_ns = at_ns
        self.thread = thread
        self.crossing = crossing


class LoopCreation:
    """An event loop constructed on behalf of a request."""

    __slots__ = ("__weakref__", "at_ns", "crossing", "loop_id", "thread")

    def __init__(
        self, at_ns: int, loop_id: int, thread: threading.Thread, crossing: Crossing | None
    ):
        self.at_ns = at_ns
        self.loop_id = loop_id
        self.thread = thread
        self.crossing = crossing


class Crossing:
    """One bridge call: code handed from one side of the sync/async boundary to
    the other and back.

    Timestamps are in nanoseconds of the tracer's clock: ``call_ns`` when the
    caller made the call, ``start_ns`` when the bridged code started on its
    target thread or loop, ``end_ns`` when it finished there, ``return_ns`` when
    the caller got control back. ``queue_wait_ns`` is ``start_ns - call_ns``.

    Slotted: a crossing is made on every bridge call, and a slotted object is
    made and filled in about half the time of one with a ``__dict__``.
    """

    __slots__ = (
        "__weakref__",
        "before_headers",
        "bridge",
        "call_ns",
        "claims",
        "description",
        "end_ns",
        "exception",
        "executor_object",
        "func",
        "loop_created",
        "loop_id",
        "mechanism",
        "parent",
        "return_ns",
        "returned_late",
        "source_ident",
        "source_thread",
        "start_ns",
        "target_thread",
        "threads_started",
    )

    def __init__(
        self,
        mechanism: str,
        bridge: object | None,
        func: object | None,
        source_thread: threading.Thread,
        parent: Crossing | None,
        call_ns: int,
    ) -> None:
        self.mechanism = mechanism
        #: The asgiref SyncToAsync/AsyncToSync object, if any (None for offloads
        #: and asyncio.run).
        self.bridge = bridge
        #: The bridged callable (or coroutine, for asyncio.run).
        self.func = func
        self.source_thread = source_thread
        #: ``threading.get_ident()`` of the source thread, where the patches
        #: need it (sync_to_async: the executor submission is claimed only
        #: on the thread that made the call).
        self.source_ident: int | None = None
        self.parent = parent
        self.call_ns = call_ns
        #: Where the start and the return are noted on different threads
        #: (sync_to_async: the executor's thread, the caller's loop), each
        #: side appends to this list (an atomic step under the GIL), and the
        #: one that comes first decides: the return is counted only if the
        #: start came first, and a start that comes after the caller gave up
        #: (a call cancelled after a worker took it) is not counted.
        self.claims: list[object] | None = None
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.return_ns: int | None = None
        #: Whether its return came once the request had ended, uncounted
        #: (a call the request left running): see :meth:`RequestRecord.switches_of`.
        self.returned_late = False
        self.target_thread: threading.Thread | None = None
        #: The executor object that ran the sync side (see :attr:`executor`).
        self.executor_object: object | None = None
        #: ``id()`` of the event loop on the async side: unique among loops
        #: alive at the same time (a later loop may reuse it).
        self.loop_id: int | None = None
        self.loop_created = False
        self.threads_started = 0
        #: The exception class that left the bridged code, if any, as
        #: :func:`exception_type` names it.
        self.exception: str | None = None
        self.before_headers = True
        #: Filled by :meth:`RequestRecord.describe`, after the response.
        self.description: Description | None = None

    @property
    def direction(self) -> str:
        """Named after where the bridged code runs: async->sync (it runs in a
        thread) or sync->async (in an event loop)."""
        return THREAD_TO_LOOP if self.mechanism in _TO_LOOP else LOOP_TO_THREAD

    @property
    def qualname(self) -> str | None:
        """The bridged callable's qualified name (after :meth:`RequestRecord.describe`)."""
        return self.description.qualname if self.description is not None else None

    @property
    def component(self) -> Component | None:
        """The component that caused the crossing (after :meth:`RequestRecord.describe`)."""
        return self.description.component if self.description is not None else None

    @property
    def executor(self) -> str | None:
        """Which executor ran the sync side: "current_thread" (the outer sync
        thread of an async_to_sync), "thread_sensitive_context",
        "single_thread", "loop_default", or the executor's class name."""
        if self.executor_object is None:
            return None
        return executor_kind(self.executor_object, self)

    @property
    def thread_sensitive(self) -> bool | None:
        """For sync_to_async: whether the call was thread-sensitive (read from
        the bridge after the response; it never changes after construction)."""
        if self.mechanism is not SYNC_TO_ASYNC:
            return None
        return getattr(self.bridge, "_thread_sensitive", None)

    @property
    def hop(self) -> bool:
        """True when the bridged code ran on another OS thread than its caller."""
        return self.target_thread is not None and self.target_thread is not self.source_thread

    @property
    def queue_wait_ns(self) -> int | None:
        if self.start_ns is None:
            return None
        return self.start_ns - self.call_ns

    def __repr__(self) -> str:
        name = self.qualname or attribute(self.func, "__qualname__") or type(self.func).__name__
        return f"<Crossing {self.mechanism} {name} hop={self.hop} loop_created={self.loop_created}>"


def exception_type(exception: BaseException) -> str:
    """The exception's class as OpenTelemetry names it (``error.type``, the
    SDK's ``exception.type``): fully qualified, ``django.http.response.Http404``,
    a built-in's name alone, ``ValueError``."""
    cls = type(exception)
    module = attribute(cls, "__module__")
    if isinstance(module, str) and module and module != "builtins":
        return f"{module}.{cls.__qualname__}"
    return cls.__qualname__


def executor_kind(executor: Any, crossing: Crossing | None) -> str:
    """Name the executor that ran a crossing's sync side (after the response)."""
    if isinstance(executor, CurrentThreadExecutor):
        return "current_thread"
    if executor is getattr(SyncToAsync, "single_thread_executor", None):
        return "single_thread"
    if crossing is not None and crossing.mechanism is SYNC_TO_ASYNC:
        if crossing.thread_sensitive:
            return "thread_sensitive_context"
        if getattr(crossing.bridge, "_executor", None) is None:
            return "loop_default"
    return type(executor).__qualname__


@dataclass(frozen=True)
class Component:
    """The part of the application that caused a crossing.

    ``kind`` is one of "middleware", "middleware-adapter", "view", "signal",
    "response", "handler" or "other"; ``name`` names it (a middleware class, a
    view, a signal); ``hook`` is the middleware hook or method, if any.
    """

    kind: str
    name: str
    hook: str = ""

    def __str__(self) -> str:
        return f"{self.name}.{self.hook}" if self.hook else self.name


def returned_before(crossing: Crossing, end_ns: int | None) -> bool:
    """Whether ``crossing``'s return came before the request's end at
    ``end_ns`` (None: not ended), as the request's figures count it."""
    returned = crossing.return_ns
    return (
        returned is not None
        and not crossing.returned_late
        and (end_ns is None or returned <= end_ns)
    )


class RequestRecord:
    """Everything done on behalf of one request, across every thread and loop
    it touches, from the moment the handler receives it until the response is
    closed.

    The counters are exact. The lists of crossings, thread starts and loop
    creations are bounded by ``max_events``; what does not fit is counted in
    ``dropped``.
    """

    __slots__ = (
        "__weakref__",
        "_dropped",
        "_hops_returned",
        "_hops_started",
        "_loops",
        "_returned",
        "_started",
        "_threads",
        "at_headers",
        "attributes",
        "begin_ns",
        "clock",
        "crossings",
        "end_ns",
        "extra",
        "finished",
        "kind",
        "loop_creations",
        "max_events",
        "thread_starts",
        "wall_ns",
    )

    def __init__(self, kind: str, clock: Clock, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.kind = kind
        self.clock = clock
        self.max_events = max_events
        self.begin_ns = clock()
        #: Wall-clock time (ns since the epoch) at ``begin_ns``: renderers
        #: place every timestamp of the record relative to it.
        self.wall_ns = time.time_ns()
        self.end_ns: int | None = None
        self.crossings: list[Crossing] = []
        self.thread_starts: list[ThreadStart] = []
        self.loop_creations: list[LoopCreation] = []
        #: Free-form facts about the request set by integrations, named after
        #: OpenTelemetry's semantic conventions where one exists
        #: ("http.request.method", "url.path", "http.route", ...).
        self.attributes: dict[str, Any] = {}
        #: Objects integrations attach to describe crossings later (the view,
        #: for example); never exported.
        self.extra: dict[str, Any] = {}
        self.finished = False
        #: The figures as they stood when the response headers were sent.
        self.at_headers: Figures | None = None
        # Counters are itertools.count objects: next() is one C call, atomic
        # under the GIL, so threads of one request never lose an increment and
        # the hot path takes no lock.
        self._started = itertools.count()
        self._returned = itertools.count()
        self._hops_started = itertools.count()
        self._hops_returned = itertools.count()
        self._loops = itertools.count()
        self._threads = itertools.count()
        self._dropped = itertools.count()

    # -- the figures ---------------------------------------------------------

    @property
    def context_switches(self) -> int:
        """One transfer of control between synchronous code and an event loop, in either direction. A completed `sync_to_async` or `async_to_sync` is two switches (there and back); so is `asyncio.run()` called from sync code."""  # noqa: E501
        return _value(self._started) + _value(self._returned)

    @property
    def thread_hops(self) -> int:
        """A switch after which the code runs on a different OS thread from the one it left."""
        return _value(self._hops_started) + _value(self._hops_returned)

    @property
    def event_loops_created(self) -> int:
        """A new event loop constructed during the request."""
        return _value(self._loops)

    @property
    def threads_started(self) -> int:
        """OS threads started during the request."""
        return _value(self._threads)

    @property
    def dropped(self) -> int:
        """Crossings, loop creations and thread starts counted but not kept."""
        return _value(self._dropped)

    def figures(self, inside: Crossing | None = None) -> Figures:
        """The figures as they stand now, counting the return trip of
        ``inside`` and of every crossing around it (its parents) that has
        started: the code reading them runs inside those crossings, and
        control will go back through each of them. A crossing in progress
        elsewhere (an offload the request left running beside it) counts
        only the switch it has made: its return may come after the request,
        or never."""
        switches, hops = self.context_switches, self.thread_hops
        crossing = inside
        while crossing is not None:
            if crossing.start_ns is not None and crossing.return_ns is None:
                switches += 1
                if crossing.target_thread is not crossing.source_thread:
                    hops += 1
            crossing = crossing.parent
        return Figures(switches, hops, _value(self._loops), _value(self._threads))

    def totals(self) -> Figures:
        """The switches and hops that have happened so far (no pending returns)."""
        return Figures(
            self.context_switches, self.thread_hops, self.event_loops_created, self.threads_started
        )

    # -- filled by the patches (hot path) -------------------------------------

    def start(self, crossing: Crossing, target_thread: threading.Thread) -> None:
        """The bridged code starts on ``target_thread``: the switch there.

        ``sync_to_async`` and offloads, most of a request's switches, apply
        these rules written out in the patches (``_arrive`` and the
        ``SyncToAsync.__call__`` patch): the calls to :meth:`start` and
        :meth:`close` were about 5 % of what recording a crossing costs. The
        tests in ``tests/tracer/test_counting.py`` that name these rules hold
        the copies together."""
        crossing.start_ns = self.clock()
        crossing.target_thread = target_thread
        next(self._started)
        if target_thread is not crossing.source_thread:
            next(self._hops_started)
        if self.at_headers is not None:
            crossing.before_headers = False
        crossings = self.crossings
        if len(crossings) < self.max_events:
            crossings.append(crossing)
        else:
            next(self._dropped)

    def close(
        self, crossing: Crossing, exception: BaseException | None = None, closer: str = CLOSED
    ) -> None:
        """Control is back with the caller: the switch back, if it ever left.

        ``closer`` is what this side appends to the crossing's claims: an
        offload's return is noted both where its caller is cancelled
        (:data:`CANCELLED`) and where its function ends, and only the first
        of the two closes it. Written out in the ``sync_to_async`` patch too
        (see :meth:`start`)."""
        claims = crossing.claims
        if claims is not None:
            claims.append(closer)
            if claims[0] is STARTED and claims[1] is not closer:
                return  # closed by the other side already
        crossing.return_ns = now = self.clock()
        if exception is not None:
            crossing.exception = exception_type(exception)
        if claims is not None:
            if claims[0] is not STARTED:
                return
        elif crossing.start_ns is None:
            return
        end = crossing.end_ns
        if end is None or end > now:  # an async_to_sync's end timed after its return
            crossing.end_ns = now
        if self.finished:  # the figures were handed on at the end: they stay
            crossing.returned_late = True
            return
        next(self._returned)
        if crossing.target_thread is not crossing.source_thread:
            next(self._hops_returned)

    def loop_created(
        self,
        loop_id: int,
        thread: threading.Thread,
        cause: Crossing | None,
        runs_in_it: bool = False,
        at_ns: int | None = None,
    ) -> LoopCreation:
        """A loop was constructed on behalf of the request; ``cause`` is the
        crossing in progress, and ``runs_in_it`` says whether that crossing's
        code runs in the new loop (async_to_sync, asyncio.run)."""
        if cause is not None and runs_in_it:
            cause.loop_created = True
            cause.loop_id = loop_id
        event = LoopCreation(self.clock() if at_ns is None else at_ns, loop_id, thread, cause)
        next(self._loops)
        if len(self.loop_creations) < self.max_events:
            self.loop_creations.append(event)
        else:
            next(self._dropped)
        return event

    def thread_started(
        self, thread: threading.Thread, crossing: Crossing | None, at_ns: int | None = None
    ) -> None:
        if crossing is not None:
            crossing.threads_started += 1
        event = ThreadStart(self.clock() if at_ns is None else at_ns, thread, crossing)
        next(self._threads)
        if len(self.thread_starts) < self.max_events:
            self.thread_starts.append(event)
        else:
            next(self._dropped)

    # -- filled by integrations ------------------------------------------------

    def mark_headers(self) -> Figures:
        """Freeze the figures at the moment the response headers are sent,
        by the handler, outside every crossing of the request.

        Only the first call counts; it returns the frozen figures."""
        if self.at_headers is None:
            self.at_headers = self.figures()
        return self.at_headers

    def wall_time(self, ns: int) -> int:
        """A timestamp of this record's clock as nanoseconds since the epoch."""
        return self.wall_ns + (ns - self.begin_ns)

    def finish(self) -> None:
        # Marked finished before its end is timed: a return counted (seen
        # before this) was timed before the end, and one timed after it is
        # not counted (see switches_of).
        self.finished = True
        self.end_ns = self.clock()

    # -- for renderers, after the response ------------------------------------

    def describe(
        self, resolve: Callable[[Crossing, RequestRecord], Component | None] | None = None
    ) -> None:
        """Name every crossing's bridged callable and the component that caused
        it. Runs after the response, never on the hot path."""
        for crossing in self.crossings:
            if crossing.description is None or (resolve is not None and crossing.component is None):
                crossing.description = describe_crossing(crossing, self, resolve)

    def switches_of(self, crossing: Crossing) -> int:
        """The switches of ``crossing``, one of :attr:`crossings` (which holds
        those that started), that the request's figures count: its start, and
        its return if that came before the request ended (a call the request
        left running returns after it, uncounted, or never). A return that
        came as the request ended, timed before its end but seen once the
        record was finished, was not counted either: ``returned_late``."""
        return 2 if returned_before(crossing, self.end_ns) else 1

    def __repr__(self) -> str:
        return (
            f"<RequestRecord {self.kind} {self.attributes.get('url.path', '')} "
            f"switches={self.context_switches} hops={self.thread_hops} "
            f"loops={self.event_loops_created} threads={self.threads_started}>"
        )
