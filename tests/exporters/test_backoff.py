"""After a failed export the pipeline pauses its exports (1 s, doubling up
to 30 s, reset by a success): a collector that refuses everything (404 from
an endpoint without /v1/traces, UNIMPLEMENTED, 503/UNAVAILABLE) is not hit,
and the exporter does not log its error, twice a second. What is not sent
meanwhile is counted, exactly; shutdown tries once more."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from switchtrace import tracer
from switchtrace.django_app import telemetry
from switchtrace.exporters import pipeline as pipeline_module
from switchtrace.exporters.propagation import TRACE_CONTEXT
from switchtrace.tracer import guard

from ..django_app.test_middleware import project
from ..support import run_asgi, wait_for
from .receiver import GrpcReceiver, HttpReceiver

#: Spans of one request to /sync/ under ASGI with the default stack.
SPANS = 17


@pytest.fixture
def receiver(request):
    protocol, mode = request.param
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    receiver.received.mode = mode
    receiver.protocol = protocol
    yield receiver
    receiver.stop()


def pause(monkeypatch, seconds: float) -> None:
    monkeypatch.setattr(pipeline_module, "FAILURE_BACKOFF_S", seconds)
    monkeypatch.setattr(pipeline_module, "MAX_FAILURE_BACKOFF_S", seconds)


def exporter_errors(caplog) -> list[str]:
    """The OTLP HTTP exporter's own error lines."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("opentelemetry") and r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize(
    "receiver",
    [
        ("http/protobuf", "not_found"),
        ("http/protobuf", "unavailable"),
        ("grpc", "not_found"),
        ("grpc", "unavailable"),
    ],
    indirect=True,
    ids=lambda p: "-".join(p),
)
def test_a_refusing_collector_gets_one_export_while_they_are_paused(receiver, monkeypatch, caplog):
    """Each request followed by a flush: the first export fails, and the
    other requests' spans, not made while the pause lasts (an hour here),
    are counted as lost without an export."""
    pause(monkeypatch, 3600.0)
    # Under a second: a 503/UNAVAILABLE is then not retried by the exporter
    # (its first wait, 1 s less a fifth at most, would pass its timeout).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    settings = {
        "ENABLED": True,
        "OTLP_ENDPOINT": receiver.endpoint,
        "OTLP_PROTOCOL": receiver.protocol,
    }
    with caplog.at_level(logging.WARNING), project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        made = []
        encode = pipeline.writer.spans
        monkeypatch.setattr(
            pipeline.writer, "spans", lambda plan: made.append(plan) or encode(plan)
        )
        for _ in range(5):
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert pipeline.flush(10)
        assert receiver.received.posts == 1
        assert receiver.received.span_count == 0
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (5, 0, 5 * SPANS)
        assert len(made) == 1  # the others' spans were counted, not made
        if receiver.protocol == "http/protobuf":
            # The HTTP exporter logs an error for each export that fails (the
            # gRPC one leaves out a message repeated within the same 20 s of
            # the wall clock, so its count is not known here).
            assert len(exporter_errors(caplog)) == 1
        assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
            "switchtrace: span export failed; exports paused for 3600 s; "
            f"{SPANS} spans lost so far (and the spans of 0 requests dropped)"
        ]


@pytest.mark.parametrize("collector_back", [True, False], ids=["collector-back", "still-refusing"])
@pytest.mark.parametrize(
    "receiver", [("http/protobuf", "not_found")], indirect=True, ids=lambda p: "-".join(p)
)
def test_batches_due_while_paused_are_not_sent_and_shutdown_tries_once_more(
    receiver, collector_back, monkeypatch, caplog
):
    """Batches waiting longer (an hour) than the pause (a minute): the
    requests' spans are made, but their batch, due (a flush) while the pause
    lasts, is not sent. Shutdown, still within the pause, sends what waits
    for its batch: delivered if the collector is back, else counted."""
    pause(monkeypatch, 60.0)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint}
    with caplog.at_level(logging.WARNING), project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        for _ in range(4):
            run_asgi(asgi, "/sync/")
            assert pipeline.flush(10)
        assert receiver.received.posts == 1
        assert (pipeline.records, pipeline.failed) == (4, 4 * SPANS)
        # One more, its spans made and waiting for their batch.
        run_asgi(asgi, "/sync/")
        assert wait_for(lambda: pipeline.records == 5)
        if collector_back:
            receiver.received.mode = "ok"
        pipeline.shutdown()
        assert receiver.received.posts == 2
        assert receiver.received.span_count == (SPANS if collector_back else 0)
        assert (pipeline.records, pipeline.dropped) == (5, 0)
        assert pipeline.failed == (4 if collector_back else 5) * SPANS
        assert len(exporter_errors(caplog)) == (1 if collector_back else 2)


class Clock:
    """The pipeline's clock for its pauses, set by the test."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "receiver", [("http/protobuf", "not_found")], indirect=True, ids=lambda p: "-".join(p)
)
def test_the_pause_doubles_up_to_its_longest_and_a_success_ends_it(receiver, monkeypatch, caplog):
    monkeypatch.setattr(pipeline_module, "FAILURE_BACKOFF_S", 1.0)
    monkeypatch.setattr(pipeline_module, "MAX_FAILURE_BACKOFF_S", 4.0)
    monkeypatch.setattr(pipeline_module, "LOG_INTERVAL", 0.0)  # every warning
    clock = Clock()
    options = pipeline_module.ExportOptions(exporter="otlp", endpoint=receiver.endpoint)
    pipeline = pipeline_module.SpanPipeline(options, clock=clock)
    received = receiver.received

    def request_at(now: float) -> int:
        """A request (one span) at ``now``, flushed: the posts so far."""
        clock.now = now
        with tracer.recording() as record:
            pass
        pipeline(record)
        assert pipeline.flush(10)
        return received.posts

    try:
        with caplog.at_level(logging.WARNING, logger="switchtrace"):
            assert request_at(0.0) == 1  # fails: a pause of 1 s
            assert request_at(0.0) == 1  # its span not made
            assert request_at(0.6) == 1  # made (the pause ends within a batch's delay), not sent
            assert request_at(1.0) == 2  # fails: 2 s
            assert request_at(2.9) == 2
            assert request_at(3.0) == 3  # fails: 4 s
            assert request_at(7.0) == 4  # fails: 4 s still, the longest
            assert request_at(10.9) == 4
            received.mode = "ok"
            assert request_at(11.0) == 5  # delivered: the pause is over
            received.mode = "not_found"
            assert request_at(11.0) == 6  # no pause since: fails, 1 s again
            assert request_at(11.5) == 6
            assert request_at(12.0) == 7  # fails again: 2 s
        assert received.span_count == 1
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (12, 0, 11)
    finally:
        pipeline.shutdown()
    lost = "lost so far (and the spans of 0 requests dropped)"
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        f"switchtrace: span export failed; exports paused for 1 s; 1 span {lost}",
        f"switchtrace: span exports paused after a failed one, for 1.0 s more; 2 spans {lost}",
        f"switchtrace: span exports paused after a failed one, for 0.4 s more; 3 spans {lost}",
        f"switchtrace: span export failed; exports paused for 2 s; 4 spans {lost}",
        f"switchtrace: span exports paused after a failed one, for 0.1 s more; 5 spans {lost}",
        f"switchtrace: span export failed; exports paused for 4 s; 6 spans {lost}",
        f"switchtrace: span export failed; exports paused for 4 s; 7 spans {lost}",
        f"switchtrace: span exports paused after a failed one, for 0.1 s more; 8 spans {lost}",
        f"switchtrace: span export failed; exports paused for 1 s; 9 spans {lost}",
        f"switchtrace: span exports paused after a failed one, for 0.5 s more; 10 spans {lost}",
        f"switchtrace: span export failed; exports paused for 2 s; 11 spans {lost}",
    ]


@pytest.mark.parametrize(
    "receiver", [("http/protobuf", "ok")], indirect=True, ids=lambda p: "-".join(p)
)
def test_an_error_encoding_a_batch_loses_that_batch_only(receiver, monkeypatch, swallowed, caplog):
    """The export request's encoding ran outside the thread's guard: an
    error there ended the pipeline's thread, and every later request's spans
    waited in its queue until it was full. Then, inside the guard, an error of
    switchtrace's own encoding, which is not the collector refusing,
    it paused the exports all the same (an hour here; 1 s, doubling, by
    default), so the next batch, encoded fine, was not sent but counted as
    lost, under a warning that a span export failed. Only the batch that
    could not be encoded is lost now; the next is sent."""
    pause(monkeypatch, 3600.0)
    guard.reset_reported()  # logged once per place and kind: this test's too
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint}
    with caplog.at_level(logging.WARNING), project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        request = pipeline.writer.request
        calls = []

        def encode_once_wrongly(pending):
            calls.append(len(pending))
            if len(calls) == 1:
                raise ValueError("an encoding bug")
            return request(pending)

        monkeypatch.setattr(pipeline.writer, "request", encode_once_wrongly)
        for _ in range(2):
            run_asgi(asgi, "/sync/")
            assert pipeline.flush(10)
        assert calls == [SPANS, SPANS]
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (2, 0, SPANS)
        assert pipeline.exported == SPANS
        assert receiver.received.posts == 1
        assert receiver.received.span_count == SPANS
        assert [(where, repr(exc)) for where, exc in swallowed] == [
            ("span export", "ValueError('an encoding bug')")
        ]
        swallowed.clear()
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: internal error in span export (logged once; the request goes on untouched)",
        f"switchtrace: the export request could not be made; {SPANS} spans lost so far "
        "(and the spans of 0 requests dropped)",
    ]


@pytest.mark.parametrize(
    "receiver", [("http/protobuf", "not_found")], indirect=True, ids=lambda p: "-".join(p)
)
def test_an_application_provider_set_while_exports_are_paused_makes_the_spans(
    receiver, monkeypatch
):
    """The application sets its global provider (a post_fork hook) while
    switchtrace's own exports are paused after a failure: the next record's
    spans are made by the application's provider, not counted as lost."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    pause(monkeypatch, 3600.0)
    options = pipeline_module.ExportOptions(exporter="otlp", endpoint=receiver.endpoint)
    pipeline = pipeline_module.SpanPipeline(options, clock=Clock())

    def request() -> None:
        with tracer.recording() as record:
            pass
        pipeline(record)
        assert pipeline.flush(10)

    # The test settings' pipeline sees no record here (it would follow the
    # application's provider too, for the rest of the tests).
    with telemetry.detached():
        try:
            request()  # fails: exports paused for an hour
            assert (pipeline.records, pipeline.failed, receiver.received.posts) == (1, 1, 1)
            app_exporter = InMemorySpanExporter()
            app_provider = TracerProvider()
            app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
            monkeypatch.setattr(trace, "_TRACER_PROVIDER", app_provider)  # as set_tracer_provider
            request()
            assert (pipeline.own_provider, pipeline.provider) == (False, app_provider)
            assert (pipeline.records, pipeline.failed, receiver.received.posts) == (2, 1, 1)
            assert len(app_exporter.get_finished_spans()) == 1
        finally:
            pipeline.shutdown()


@pytest.mark.parametrize(
    "receiver", [("http/protobuf", "not_found")], indirect=True, ids=lambda p: "-".join(p)
)
def test_spans_counted_while_paused_follow_the_callers_sampling_decision(receiver, monkeypatch):
    """Exports paused, a record's spans are counted as lost without being
    made, after the same sampling decision as when they are made: a request
    whose caller's traceparent says not sampled has none to lose."""
    pause(monkeypatch, 3600.0)
    options = pipeline_module.ExportOptions(exporter="otlp", endpoint=receiver.endpoint)
    pipeline = pipeline_module.SpanPipeline(options, clock=Clock())
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    def request(traceparent: str | None) -> int:
        """A request (one span) with ``traceparent``: the spans lost so far."""
        with tracer.recording() as record:
            if traceparent is not None:
                record.extra[TRACE_CONTEXT] = TraceContextTextMapPropagator().extract(
                    {"traceparent": traceparent}
                )
        pipeline(record)
        assert pipeline.flush(10)
        return pipeline.failed

    try:
        assert request(None) == 1  # fails: exports paused for an hour
        assert request(f"00-{trace_id}-{span_id}-00") == 1  # not sampled
        assert request(f"00-{trace_id}-{span_id}-01") == 2
        assert (pipeline.records, pipeline.dropped, receiver.received.posts) == (3, 0, 1)
    finally:
        pipeline.shutdown()
