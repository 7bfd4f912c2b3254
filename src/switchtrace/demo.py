"""``switchtrace demo``: the example project under WSGI and ASGI, every
endpoint, every middleware variant, one table per endpoint.

In-process (Django's own handlers driven directly): no server, nothing else
to install. Each case is served twice and the second request is shown, so
that one-time costs (a process-wide executor's first thread) do not blur it.

Its last line says how many spans went where (or that the sampler kept
none). Settings that keep switchtrace disabled, or its spans off, are one
line and exit status 2 before the tables; spans that could not all go where
they were sent, one line and exit status 1 after them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from . import example
from .plural import count
from .text import printable, without_credentials

ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/sync/", "a sync view returning a fixed response"),
    ("/async/", "an async view returning a fixed response"),
    ("/async-io/", "an async view awaiting asyncio.sleep(0.005)"),
    ("/async-to-sync/", "a sync view calling async_to_sync three times"),
    ("/asyncio-run/", "a sync view calling asyncio.run() once"),
    ("/db-sync/", "a sync view querying SQLite"),
    ("/db-async/", "an async view querying SQLite through sync_to_async"),
    ("/stream/", "a streaming response from a sync generator"),
    ("/async-stream/", "a streaming response from an async generator"),
)
SERVERS = ("ASGI", "WSGI")


@dataclass
class Case:
    server: str
    variant: str
    status: int
    before_headers: int
    switches: int
    hops: int
    loops: int
    threads: int
    causes: list[tuple[str, int]]


ALL_ENDPOINTS = tuple(endpoint for endpoint, _description in ENDPOINTS)


def measure(endpoints: Sequence[str] = ALL_ENDPOINTS) -> dict[str, list[Case]]:
    """Serve every endpoint under both servers and every variant; Django must
    be set up with the example project (:func:`example.setup`)."""
    from . import tracer
    from .django_app import components
    from .exporters.console import top_causes

    records: list[tracer.RequestRecord] = []
    tracer.add_listener(records.append)
    example.ignore_streaming_warnings()
    cases: dict[str, list[Case]] = {endpoint: [] for endpoint in endpoints}
    try:
        for variant in example.VARIANTS:
            with example.handlers(variant) as (asgi, wsgi), example.answering():
                for endpoint in endpoints:
                    for server in SERVERS:
                        for _ in range(2):
                            if server == "ASGI":
                                result = example.run_in_server_loop(
                                    example.asgi_request(asgi, endpoint)
                                )
                            else:
                                result = example.wsgi_request(wsgi, endpoint)
                            example.answered(result, server, endpoint, variant)
                        record = records[-1]
                        totals = record.totals()
                        cases[endpoint].append(
                            Case(
                                server=server,
                                variant=variant,
                                status=result.status,
                                before_headers=(result.figures() or (0,))[0],
                                switches=totals.context_switches,
                                hops=totals.thread_hops,
                                loops=totals.event_loops_created,
                                threads=totals.threads_started,
                                causes=top_causes(record, components.resolve, limit=3),
                            )
                        )
    finally:
        tracer.remove_listener(records.append)
    return cases


def reading(cases: list[Case]) -> str:
    """One line saying what the table shows."""

    def find(server: str, variant: str) -> Case:
        return next(c for c in cases if c.server == server and c.variant == variant)

    shipped, sync_only, none = (find("ASGI", v) for v in example.VARIANTS)
    wsgi = find("WSGI", "shipped")
    text = (
        f"Under ASGI the shipped middleware costs {shipped.before_headers} switches per "
        f"request before the headers ({shipped.switches} in all); made sync-only "
        f"{sync_only.before_headers}, without middleware {none.before_headers}. "
        f"Under WSGI: {wsgi.before_headers}"
    )
    if wsgi.switches != wsgi.before_headers:
        text += f" before the headers ({wsgi.switches} in all)"
    created = [
        f"{count(n, 'new ' + what)}"
        for n, what in ((wsgi.loops, "event loop"), (wsgi.threads, "thread"))
        if n
    ]
    if created:
        text += ", with " + " and ".join(created)
    return text + "."


def render(cases: dict[str, list[Case]], out: TextIO) -> None:
    descriptions = dict(ENDPOINTS)
    header = ("server", "middleware", "switches (before headers)", "hops", "loops", "threads")
    for endpoint, unordered in cases.items():
        rows = sorted(unordered, key=lambda c: SERVERS.index(c.server))
        out.write(f"\n{endpoint} — {descriptions.get(endpoint, '')}\n")
        table = [header] + [
            (
                c.server,
                c.variant,
                f"{c.switches} ({c.before_headers})",
                str(c.hops),
                str(c.loops),
                str(c.threads),
            )
            for c in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for n, row in enumerate(table):
            line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
            causes = "top causes" if n == 0 else _causes(rows[n - 1].causes)
            out.write(f"  {line}  {causes}\n".rstrip() + "\n")
        out.write(f"  → {reading(rows)}\n")


def _causes(causes: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count}" for name, count in causes) or "-"


def run(project: str | None, out: TextIO) -> int:
    example.setup_unlogged(example.find_project(project))
    from .django_app import telemetry

    example.require_enabled()
    example.require_spans()

    out.write(
        "switchtrace demo: the example project served in-process under WSGI and ASGI,\n"
        "the seven startproject middleware as shipped, made sync-only, and none.\n"
        "switches = context switches of the whole request (those before the response\n"
        "headers, as in X-Context-Switches); hops, loops and threads started likewise.\n"
    )
    with _export_failures_unlogged() as said:
        render(measure(), out)
        pipeline = telemetry.pipeline()
        flushed = pipeline.flush(30) if pipeline is not None else True
    if pipeline is not None:
        options = pipeline.options
        if not pipeline.own_provider:
            where = "to the application's OpenTelemetry provider"
        elif options.exporter == "file":
            where = f"to {options.file_path} (OTLP JSON, one export per line)"
        elif options.exporter == "otlp":
            where = (
                f"over OTLP ({options.protocol}) to "
                f"{without_credentials(options.endpoint) or 'the default endpoint'}"
            )
        else:
            where = f"to the {options.exporter} exporter"
        if not flushed or pipeline.failed or pipeline.dropped:
            lost = [f"{count(pipeline.failed, 'span')} lost"] if pipeline.failed else []
            if pipeline.dropped:
                lost.append(f"the spans of {count(pipeline.dropped, 'request')} dropped")
            if not flushed:
                lost.append("some still unsent after 30 s")
            hint = {
                "otlp": "; is the collector running, at that endpoint?",
                "file": f"; can {options.file_path} be written?",
            }.get(options.exporter, "")
            if said:
                # What the exporter last said: a collector that answers 404
                # (a traces endpoint without /v1/traces), a refused header.
                words = printable(said[-1].rstrip("."), 300)
                lost[-1] += f" (the exporter said: {words})"
            print(
                f"switchtrace demo: error: the spans could not all go {where}: "
                f"{', '.join(lost)}{hint}",
                file=sys.stderr,
            )
            pipeline.told()
            return 1
        if not pipeline.own_provider:
            out.write(f"\nSpans of every request went {where}.\n")
        elif pipeline.exported:
            out.write(f"\n{count(pipeline.exported, 'span')} went {where}.\n")
        else:
            # Sampled out: nothing was made, so nothing was sent or lost.
            out.write(
                "\nNo spans were made: the sampler kept none of the requests "
                "(SWITCHTRACE['SAMPLE_RATE'], or OTEL_TRACES_SAMPLER when it is None).\n"
            )
    return 0


class _Held(logging.Handler):
    """Keeps the messages of errors it is handed (their text alone)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().strip()
        except Exception:  # a message whose arguments do not format
            return
        if message:
            self.messages[:] = [message]  # the last one alone


@contextlib.contextmanager
def _export_failures_unlogged() -> Iterator[list[str]]:
    """The exporters' messages about failed exports (the SDK's retries,
    switchtrace's count of spans lost) held back while the demo runs: it
    says in one line at the end whether the spans went where it says (with
    the exporter's last error, given as the list's one item)."""

    sdk = logging.getLogger("opentelemetry")
    held = _Held()
    propagate = sdk.propagate
    sdk.addHandler(held)
    sdk.propagate = False
    try:
        with example.unlogged(
            "switchtrace: span export failed",
            "switchtrace: span exports paused",
            "switchtrace: span queue full",
        ):
            yield held.messages
    finally:
        sdk.propagate = propagate
        sdk.removeHandler(held)
