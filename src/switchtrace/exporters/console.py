"""The console exporter: one compact line per request, with its top causes.

    GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops,
    2 threads; top: CsrfViewMiddleware 6, SessionMiddleware 4, ...

(one line in the output), formatted and written by its own thread: a request
only pays for a queue put, and a stderr that is slow or blocked (a pipe
nobody reads) holds up no request.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from collections import Counter
from typing import TextIO

from ..plural import count
from ..text import printable
from ..tracer import RequestRecord
from ..tracer.guard import logger, swallow
from .spans import Resolve
from .worker import Flush, QueueWorker

#: At most one warning a minute about lines lost, of each kind.
LOG_INTERVAL = 60.0


def top_causes(
    record: RequestRecord, resolve: Resolve | None, limit: int = 5
) -> list[tuple[str, int]]:
    """(cause, switches) for the causes with the most switches, most first.

    A view's bridge call of code that names no component of its own (an
    async view's ORM call) is named after both: ``db_view → QuerySet.get``.
    A return that came after the request ended (a call the request left
    running) is not counted, as in the request's figures."""
    record.describe(resolve)
    own = getattr(resolve, "own", None)
    causes: Counter[str] = Counter()
    for crossing in record.crossings:
        component = crossing.component
        if component is None:
            name = str(crossing.qualname)
        elif component.kind in ("middleware", "middleware-adapter", "signal", "view"):
            name = component.name
            if component.kind == "view" and own is not None:
                bridged = own(crossing, record)
                if bridged.kind == "other":
                    name = f"{name} → {crossing.qualname}"
        else:
            name = str(component)
        causes[name] += record.switches_of(crossing)
    return causes.most_common(limit)


#: The most characters of a request's path, and of its method and of a
#: cause's name, that a line shows (what is left out is counted): a line
#: stays under PIPE_BUF (4096 bytes on Linux), which a pipe that workers share
#: writes whole; a longer one (a client's 40,000-character path) had
#: another worker's line land in the middle of it.
MAX_PATH = 400
MAX_NAME = 60
#: And of the class a request raised, named with its module first
#: (``acme.payments.gateways.stripe.GatewayTimeout``): the class would be cut;
#: as a name is, though, where the line would not stay under PIPE_BUF.
MAX_RAISED = 200
PIPE_BUF = 4096


def format_record(record: RequestRecord, resolve: Resolve | None = None) -> str:
    line = _line(record, resolve, MAX_RAISED)
    if len(line.encode("utf-8", "replace")) >= PIPE_BUF:
        line = _line(record, resolve, MAX_NAME)
    return line


def _line(record: RequestRecord, resolve: Resolve | None, max_raised: int) -> str:
    totals = record.totals()
    method = record.attributes.get("http.request.method") or record.kind.upper()
    path = record.attributes.get("url.path") or ""
    status = record.attributes.get("http.response.status_code")
    head = f"{printable(str(method), MAX_NAME)} {printable(str(path), MAX_PATH)}"
    if status is not None:
        head += f" {status}"
    raised = record.attributes.get("error.type")
    if raised is not None:  # failed out of Django's handler (see integration.failed)
        head += f" (raised {printable(str(raised), max_raised)})"
    before = f" ({record.at_headers.context_switches} before headers)" if record.at_headers else ""
    line = (
        f"{head}: {count(totals.context_switches, 'switch', 'switches')}{before}, "
        f"{count(totals.thread_hops, 'hop')}, {count(totals.event_loops_created, 'loop')}, "
        f"{count(totals.threads_started, 'thread')}"
    )
    causes = top_causes(record, resolve)
    if causes:
        line += "; top: " + ", ".join(
            f"{printable(name, MAX_NAME)} {switches}" for name, switches in causes
        )
    if record.dropped:
        # The top names only what MAX_EVENTS kept: said, as its figures
        # would otherwise read as the request's.
        left_out = f"{count(record.dropped, 'event')} past MAX_EVENTS left out"
        line += f" ({left_out})" if causes else f"; top: none kept ({left_out})"
    return line


class ConsoleReporter(QueueWorker):
    """A record listener printing :func:`format_record` lines (on ``stream``,
    else ``sys.stderr`` as it is when the line is written).

    A finished record is handed to a bounded queue (``queue_size``, as the
    span pipeline's); one thread, started here (never during a request),
    formats and writes the lines. When the queue is full a line is dropped
    and counted, never waited for; a line the stream refuses (a closed
    pipe) is counted too, and both are logged at most once a minute, by that
    thread (the stream that filled the queue is usually stderr, where the
    warning goes too)."""

    thread_name = "switchtrace-console"
    lost_what = "the console lines of {} not written"

    def __init__(
        self, resolve: Resolve | None = None, stream: TextIO | None = None, queue_size: int = 512
    ) -> None:
        self.resolve = resolve
        self.stream = stream
        self.queue_size = queue_size
        #: Lines written.
        self.written = 0
        #: Requests whose line was never written: the queue was full, or it
        #: was still queued when :meth:`shutdown`'s time ran out.
        self.dropped = 0
        #: Lines the stream refused (an error writing or flushing it).
        self.failed = 0
        #: Records that did not fit in the queue, and how many of them the
        #: last warning told of.
        self._full = self._full_told = 0
        #: How many of the lines refused the last warning told of.
        self._failed_told = 0
        self._last_drop_log = self._last_fail_log = -LOG_INTERVAL
        self._start(queue_size)

    # -- on the request's path (cheap) ----------------------------------------

    def __call__(self, record: RequestRecord) -> None:
        """Listener: called in the request's context as its record finishes."""
        if self._pid != os.getpid():
            self._here()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            # Counted only: the queue is full because the stream is slow or
            # blocked, and that stream is usually stderr, where a warning
            # logged here would hold up the request. The console's thread
            # tells of it (see _tell_drops) once it is free again.
            self._full += 1
            self.dropped += 1

    # -- in the console's thread ------------------------------------------------

    def _run(self) -> None:
        # The console's own thread: one line per record, written in turn. A
        # write that blocks holds up this thread alone (the queue fills, and
        # what does not fit is dropped and counted).
        stopping = self._stopping
        while True:
            if stopping.is_set():
                if time.monotonic() >= self._deadline:
                    return  # shutdown() counts what is still queued
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                item = self._queue.get()
            if item is None:  # shutdown
                return
            if isinstance(item, Flush):
                item.set()
                continue
            try:
                line = format_record(item, self.resolve) + "\n"
            except Exception:
                swallow("console line")
                self.dropped += 1
                continue
            finally:
                item = None  # let go of the record now
            stream = self.stream or sys.stderr
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError) as exc:  # a closed pipe, a closed file
                self._fail(exc)
            else:
                self.written += 1
            if self._full != self._full_told:
                # Records dropped while this line was being written (a drop
                # needs a full queue: there is a next line, and this check
                # after it).
                self._tell_drops()

    def _tell_drops(self) -> None:
        """In the console's thread: the warning of the records dropped since
        the last one, at most once a minute."""
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_INTERVAL:
            self._last_drop_log = now
            self._full_told = self._full
            logger.warning(
                "switchtrace: console queue full (%s); the lines of %s dropped so far",
                count(self.queue_size, "record"),
                count(self.dropped, "request"),
            )

    def _fail(self, exc: Exception) -> None:
        self.failed += 1
        now = time.monotonic()
        if now - self._last_fail_log >= LOG_INTERVAL:
            self._last_fail_log = now
            self._failed_told = self.failed
            logger.warning(
                "switchtrace: a console line could not be written (%s: %s); %s lost so far",
                type(exc).__name__,
                exc,
                count(self.failed, "line"),
            )

    # -- lifecycle -------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent's lines, and its losses, are the parent's to tell.
        self.written = self.dropped = self.failed = 0
        self._full = self._full_told = self._failed_told = 0
        super()._after_fork_in_child()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread once it has written what is queued, within
        ``timeout`` seconds (see :class:`QueueWorker`); then tell the losses
        that no warning told (one comes at most once a minute)."""
        if self._stop(timeout):
            self._tell_the_rest()

    def _tell_the_rest(self) -> None:
        if self._pid != os.getpid():
            return  # forked past the at-fork hooks, nothing served: the parent's
        untold = _losses(self._full - self._full_told, self.failed - self._failed_told)
        # Told here: the thread, if the shutdown's time ran out on it, must
        # not tell them again once its write ends.
        self._full_told, self._failed_told = self._full, self.failed
        if not untold:
            return
        # In all: every line not written (those the shutdown's own warning
        # told, and those whose record could not be formatted, included).
        in_all = _losses(self.dropped, self.failed)
        since = "" if untold == in_all else f" ({untold} since the last warning)"
        logger.warning("switchtrace: console shut down with %s in all%s", in_all, since)


def _losses(full: int, failed: int) -> str:
    """``the lines of 3 requests dropped``, ``2 lines lost``, or both."""
    return " and ".join(
        ([f"the lines of {count(full, 'request')} dropped"] if full else [])
        + ([f"{count(failed, 'line')} lost"] if failed else [])
    )
