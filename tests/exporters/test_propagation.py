"""The trace context a request comes with, read with the application's
propagator (OTEL_PROPAGATORS, or what it set): B3 from the real
opentelemetry-propagator-b3, W3C Trace Context by default."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator

from switchtrace.example import run_in_server_loop

from ..django_app.test_middleware import project
from ..support import asgi_request, wsgi_request

TRACE_ID = "80f198ee56343ba864fe8b2a57d3eff7"
SPAN_ID = "e457b5a2e4d86bd1"


@contextmanager
def global_textmap(textmap: TextMapPropagator) -> Iterator[None]:
    """The application's global propagator, for the test."""
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(textmap)
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


def parents(spans) -> list[tuple[str, str | None]]:
    """Each request span's trace id and its parent's span id (None: a root)."""
    return [
        (
            format(span.context.trace_id, "032x"),
            None if span.parent is None else format(span.parent.span_id, "016x"),
        )
        for span in spans()
        if span.kind is trace.SpanKind.SERVER
    ]


def both(asgi_headers, **environ) -> None:
    """One request under ASGI and one under WSGI, with these headers."""
    with project() as (asgi, wsgi):
        run_in_server_loop(asgi_request(asgi, "/sync/", headers=asgi_headers))
        wsgi_request(wsgi, "/sync/", **environ)


def send(headers: dict[str, str]) -> None:
    """:func:`both`, the headers as a client writes them."""
    both(
        [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    )


def b3_multi(**more: str) -> dict[str, str]:
    """B3's several headers, as Envoy writes them, and ``more``."""
    return {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": SPAN_ID, **more}


def test_b3_single_header_is_the_parent_when_the_application_propagates_b3(spans):
    b3 = f"{TRACE_ID}-{SPAN_ID}-1"
    with global_textmap(B3SingleFormat()):
        both([(b"b3", b3.encode())], HTTP_B3=b3)
    assert parents(spans) == [(TRACE_ID, SPAN_ID)] * 2


def test_b3_multi_headers_are_the_parent_and_a_traceparent_is_not_read(spans):
    """B3's several headers, sent in any case; a W3C traceparent beside them
    is not the application's propagator's, and is not read."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with global_textmap(B3MultiFormat()):
        send(b3_multi(**{"X-B3-Sampled": "1", "traceparent": traceparent}))
    assert parents(spans) == [(TRACE_ID, SPAN_ID)] * 2


def test_an_unsampled_b3_parent_leaves_the_request_out(spans):
    """Parent-based sampling follows B3's sampled flag as it follows W3C's."""
    with global_textmap(B3MultiFormat()):
        send(b3_multi(**{"X-B3-Sampled": "0"}))
    assert parents(spans) == []


def test_no_propagator_reads_no_trace_context(spans):
    """OTEL_PROPAGATORS=none: a traceparent starts no trace of the caller's."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with global_textmap(CompositePropagator([])):
        both([(b"traceparent", traceparent.encode())], HTTP_TRACEPARENT=traceparent)
    found = parents(spans)
    assert [parent for _trace, parent in found] == [None, None]
    assert "0af7651916cd43dd8448eb211c80319c" not in [trace_id for trace_id, _parent in found]


class CapitalizedPropagator(TextMapPropagator):
    """A propagator that asks for its header as ``X-Amzn-Trace-Id`` (as AWS
    X-Ray's does): ``Root=<trace id>;Parent=<span id>``."""

    fields = {"X-Amzn-Trace-Id"}

    def extract(self, carrier, context=None, getter=None):
        [value] = getter.get(carrier, "X-Amzn-Trace-Id") or [""]
        parts = dict(part.split("=", 1) for part in value.split(";"))
        span_context = trace.SpanContext(
            int(parts["Root"], 16),
            int(parts["Parent"], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context), context)

    def inject(self, carrier, context=None, setter=None):
        raise NotImplementedError


def test_a_field_is_asked_for_by_the_propagators_own_name(spans):
    """Headers come lowercased under ASGI and as HTTP_X_... under WSGI; the
    propagator gets them under the name it asked for."""
    value = f"Root={TRACE_ID};Parent={SPAN_ID}"
    with global_textmap(CapitalizedPropagator()):
        both([(b"x-amzn-trace-id", value.encode())], HTTP_X_AMZN_TRACE_ID=value)
    assert parents(spans) == [(TRACE_ID, SPAN_ID)] * 2


def test_an_asgi_header_name_not_in_lower_case_is_read_all_the_same(spans):
    """ASGI asks servers for lower-case names; one that sends them as the
    client wrote them (a hand-built scope, a server of one's own) still has
    its traceparent read."""
    traceparent = f"00-{TRACE_ID}-{SPAN_ID}-01"
    with project() as (asgi, _wsgi):
        run_in_server_loop(
            asgi_request(asgi, "/sync/", headers=[(b"Traceparent", traceparent.encode())])
        )
    assert parents(spans) == [(TRACE_ID, SPAN_ID)]


def test_a_propagator_that_raises_starts_a_new_trace_said_once(spans, caplog):
    """What a client sent that the propagator fails on: the request's spans
    are a trace of their own, none lost, and a warning says so once."""
    with global_textmap(CapitalizedPropagator()), caplog.at_level(logging.WARNING, "switchtrace"):
        both([(b"x-amzn-trace-id", b"garbage")], HTTP_X_AMZN_TRACE_ID="garbage")
    assert [parent for _trace, parent in parents(spans)] == [None, None]
    [warning] = [r for r in caplog.records if r.name == "switchtrace"]
    assert warning.getMessage() == (
        "switchtrace: the trace context propagator raised reading a request's headers; such "
        "requests start a new trace (logged once)"
    )
    assert warning.exc_info[0] is ValueError


def test_b3_headers_its_fields_do_not_name_are_read(spans):
    """B3's extract reads the single b3 header first, then the x-b3-* ones,
    X-B3-Flags too (debug: sampled), whichever format it injects (its
    ``fields``): a service mesh's B3 is read whichever of the two
    OTEL_PROPAGATORS names."""
    b3 = f"{TRACE_ID}-{SPAN_ID}-1"
    with global_textmap(B3MultiFormat()):
        both([(b"b3", b3.encode())], HTTP_B3=b3)
        send(b3_multi(**{"X-B3-Flags": "1"}))
    with global_textmap(B3SingleFormat()):
        send(b3_multi(**{"X-B3-Sampled": "1"}))
    assert parents(spans) == [(TRACE_ID, SPAN_ID)] * 6


def test_a_composite_propagator_reads_as_it_does(spans):
    """tracecontext,b3multi: each in turn, the last that finds a parent
    winning (CompositePropagator's order), as the application reads it."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    b3 = f"{TRACE_ID}-{SPAN_ID}-1"
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    textmap = CompositePropagator([TraceContextTextMapPropagator(), B3MultiFormat()])
    with global_textmap(textmap):
        both([(b"traceparent", traceparent.encode())], HTTP_TRACEPARENT=traceparent)
        both(
            [(b"traceparent", traceparent.encode()), (b"b3", b3.encode())],
            HTTP_TRACEPARENT=traceparent,
            HTTP_B3=b3,
        )
    assert (
        parents(spans)
        == [("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")] * 2
        + [(TRACE_ID, SPAN_ID)] * 2
    )


def test_the_applications_current_span_is_no_incoming_parent():
    """A propagator that finds nothing returns the context it was given
    (W3C Baggage's: the current one, if given none): switchtrace gives it an
    empty one, or the current span (an instrumentation's, active around the
    request) would be taken for the caller's."""
    from switchtrace.exporters import propagation

    span_context = trace.SpanContext(
        int(TRACE_ID, 16), int(SPAN_ID, 16), is_remote=False, trace_flags=trace.TraceFlags(1)
    )
    token = context_api.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        extra: dict = {}
        with global_textmap(W3CBaggagePropagator()):
            propagation.arrived_wsgi(extra, {"HTTP_BAGGAGE": "k=v"})
            propagation.arrived_wsgi(extra, {})
            propagation.arrived_asgi(extra, [])
    finally:
        context_api.detach(token)
    assert extra == {}


SCRIPT = """
import os, sys
sys.path[:0] = [{src!r}, {root!r}, {root!r} + "/examples/project", {root!r} + "/examples"]
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from switchtrace.django_app import telemetry
from tests.django_app.test_middleware import project
from tests.support import wsgi_request
with project() as (_asgi, wsgi):
    wsgi_request(wsgi, "/sync/", HTTP_X_B3_TRACEID="{trace}", HTTP_X_B3_SPANID="{span}",
                 HTTP_X_B3_SAMPLED="1")
pipeline = telemetry.pipeline()
assert pipeline.flush(10)
[span] = pipeline.exporter.get_finished_spans()
if span.parent is None:
    print(None)
else:
    print(format(span.context.trace_id, "032x"), format(span.parent.span_id, "016x"))
"""


@pytest.mark.parametrize(
    ("environ", "printed"),
    [
        ({"OTEL_PROPAGATORS": "b3multi"}, [TRACE_ID, SPAN_ID]),
        # Without b3multi, the same B3 headers are no parent.
        ({}, ["None"]),
        ({"OTEL_PROPAGATORS": "tracecontext"}, ["None"]),
    ],
)
def test_otel_propagators_is_read_as_the_application_reads_it(environ, printed):
    """OTEL_PROPAGATORS, read by OpenTelemetry when the application (here
    switchtrace) first imports its propagate module, in a process of its own:
    a B3 request's parent, or none."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = textwrap.dedent(SCRIPT).format(
        src=str(root / "src"), root=str(root), trace=TRACE_ID, span=SPAN_ID
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == printed
