"""The console exporter: one compact line per request, with its top causes.

    GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops,
    2 threads; top: CsrfViewMiddleware 6, SessionMiddleware 4, ...

(one line in the output).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from ..plural import count
from ..tracer import RequestRecord
from .spans import Resolve


def top_causes(
    record: RequestRecord, resolve: Resolve | None, limit: int = 5
) -> list[tuple[str, int]]:
    """(cause, switches) for the causes with the most switches, most first."""
    record.describe(resolve)
    causes: Counter[str] = Counter()
    for crossing in record.crossings:
        component = crossing.component
        if component is None:
            name = str(crossing.qualname)
        elif component.kind in ("middleware", "middleware-adapter", "signal", "view"):
            name = component.name
        else:
            name = str(component)
        started = crossing.start_ns is not None
        causes[name] += (1 if started else 0) + (
            1 if started and crossing.return_ns is not None else 0
        )
    return causes.most_common(limit)


def format_record(record: RequestRecord, resolve: Resolve | None = None) -> str:
    totals = record.totals()
    method = record.attributes.get("http.request.method") or record.kind.upper()
    path = record.attributes.get("url.path") or ""
    status = record.attributes.get("http.response.status_code")
    head = f"{method} {path}" + (f" {status}" if status is not None else "")
    before = f" ({record.at_headers.context_switches} before headers)" if record.at_headers else ""
    line = (
        f"{head}: {count(totals.context_switches, 'switch', 'switches')}{before}, "
        f"{count(totals.thread_hops, 'hop')}, {count(totals.event_loops_created, 'loop')}, "
        f"{count(totals.threads_started, 'thread')}"
    )
    causes = top_causes(record, resolve)
    if causes:
        line += "; top: " + ", ".join(f"{name} {count}" for name, count in causes)
    return line


class ConsoleReporter:
    """A record listener printing :func:`format_record` lines."""

    def __init__(self, resolve: Resolve | None = None, stream: TextIO | None = None) -> None:
        self.resolve = resolve
        self.stream = stream

    def __call__(self, record: RequestRecord) -> None:
        stream = self.stream or sys.stderr
        stream.write(format_record(record, self.resolve) + "\n")
        stream.flush()
