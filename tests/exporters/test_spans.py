"""Spans built from request records, through the real SDK (memory exporter)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import StatusCode

from switchtrace import tracer
from switchtrace.django_app import components, telemetry
from switchtrace.example import run_in_server_loop
from switchtrace.exporters import format_record
from switchtrace.exporters.propagation import MAX_PROPAGATION_HEADER
from switchtrace.exporters.spans import (
    ARRIVAL,
    LOOP_CREATED,
    STARTED,
    THREAD_STARTED,
    Arrival,
    plan_spans,
    readable_spans,
)
from switchtrace.testing import record_requests

from ..django_app.test_middleware import project
from ..support import ASGI_THREADS, asgi_request, run_asgi, wsgi_request
from ..views import ViewError


def by_name(spans):
    return {s.name: s for s in spans}


def request_span_of(record):
    """The request span planned for ``record`` (the last one planned)."""
    plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
    [span] = readable_spans(plan, resource=Resource.create(), scope=None)[-1:]
    return span


def test_asgi_default_stack_sync_view(spans):
    with project() as (asgi, _wsgi):
        result = run_asgi(asgi, "/sync/")
    finished = spans()
    [request] = [s for s in finished if s.kind is trace.SpanKind.SERVER]
    switches = [s for s in finished if s is not request]
    assert request.name == "GET sync/"
    assert len(switches) == 16
    assert [s.attributes["switchtrace.before_headers"] for s in switches] == [True] * 15 + [False]
    assert all(s.parent.span_id == request.context.span_id for s in switches)
    assert all(s.context.trace_id == request.context.trace_id for s in switches)
    assert all(
        s.attributes["thread.id"] != s.attributes["switchtrace.caller.thread.id"] for s in switches
    )
    assert switches[1].name == "sync_to_async SecurityMiddleware.process_request"
    assert switches[1].attributes["switchtrace.component"] == "SecurityMiddleware.process_request"
    assert switches[1].attributes["switchtrace.component.kind"] == "middleware"
    assert switches[8].name == "sync_to_async sync_view"
    assert switches[8].attributes["code.function"] == "sync_view"
    assert switches[8].attributes["code.namespace"] == "project.views"
    assert switches[-1].name == "sync_to_async HttpResponseBase.close"
    assert dict(request.attributes) == {
        "http.request.method": "GET",
        "http.route": "sync/",
        "url.path": "/sync/",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "server.address": "testserver",
        "server.port": 80,
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 50000,
        "network.protocol.version": "1.1",
        "switchtrace.context_switches": 32,
        "switchtrace.thread_hops": 32,
        "switchtrace.event_loops_created": 0,
        "switchtrace.threads_started": ASGI_THREADS,
        "switchtrace.dropped": 0,
        "switchtrace.context_switches_before_headers": 30,
        "switchtrace.thread_hops_before_headers": 30,
    }
    assert result.figures() == (30, 30, 0, 1)
    # The thread Django's ThreadSensitiveContext starts is an event on the
    # first crossing, before its code starts there (events in time order).
    assert [e.name for e in switches[0].events] == [
        "switchtrace.thread_started",
        "switchtrace.started",
    ]
    for span in switches:
        started = span.events[0].timestamp
        assert span.start_time <= started <= span.end_time
        assert request.start_time <= span.start_time and span.end_time <= request.end_time


def test_a_crossings_span_has_its_times_threads_loop_and_events(spans, records):
    """Each crossing's span, as its record has it: from the call to the
    return, the STARTED event when the code started, its caller's and its
    target's thread and whether they differ, its loop, its queue wait, and
    an event for each thread it started and loop it created, each at its
    time, naming its thread; the request span from the record's start to
    its end."""
    with project() as (asgi, wsgi):
        run_asgi(asgi, "/sync/")
        wsgi_request(wsgi, "/async/")
        wsgi_request(wsgi, "/asyncio-run/")  # (a new loop in the same thread)
    with project("sync-only") as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    finished = spans()
    assert [len(record.crossings) for record in records] == [16, 1, 1, 6]
    assert len(finished) == 16 + 1 + 1 + 6 + 4
    hops, made = [], []
    for record in records:
        *crossing_spans, request = finished[: len(record.crossings) + 1]
        del finished[: len(record.crossings) + 1]
        wall = record.wall_time
        assert (request.start_time, request.end_time) == (record.wall_ns, wall(record.end_ns))
        for span, crossing in zip(crossing_spans, record.crossings, strict=True):
            source, target = crossing.source_thread, crossing.target_thread
            assert (span.start_time, span.end_time) == (
                wall(crossing.call_ns),
                wall(crossing.return_ns),
            )
            expected = {
                "switchtrace.caller.thread.id": source.ident,
                "switchtrace.caller.thread.name": source.name,
                "thread.id": target.ident,
                "thread.name": target.name,
                "switchtrace.thread_hop": target is not source,
                "switchtrace.loop.id": crossing.loop_id,
                "switchtrace.loop.created": crossing.loop_created,
                "switchtrace.threads.started": crossing.threads_started,
                "switchtrace.before_headers": crossing.before_headers,
                "switchtrace.queue_wait_ns": crossing.start_ns - crossing.call_ns,
            }
            assert {key: span.attributes[key] for key in expected} == expected
            events = [
                (STARTED, wall(crossing.start_ns), {}),
                *(
                    (
                        LOOP_CREATED,
                        wall(c.at_ns),
                        {"switchtrace.loop.id": c.loop_id, "thread.name": c.thread.name},
                    )
                    for c in record.loop_creations
                    if c.crossing is crossing
                ),
                *(
                    (
                        THREAD_STARTED,
                        wall(t.at_ns),
                        {"thread.id": t.thread.ident, "thread.name": t.thread.name},
                    )
                    for t in record.thread_starts
                    if t.crossing is crossing
                ),
            ]
            assert [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events] == sorted(
                events, key=lambda event: event[1]
            )
            # (asyncio.run's loop, made as it set its Runner up, before
            # the patched run(), came before its span's start.)
            assert all(span.start_time <= e.timestamp <= span.end_time for e in span.events)
            hops.append(expected["switchtrace.thread_hop"])
            made.append(sorted(e.name for e in span.events if e.name != STARTED))
    assert hops == [True] * 17 + [False] + [True] * 6
    # (The thread of each ASGI request's ThreadSensitiveContext is started by
    # its first crossing; the loop is made in the calling thread before
    # asgiref 3.9, in the new one after.)
    assert made == [
        *([[THREAD_STARTED]] + [[]] * 15),
        [LOOP_CREATED, THREAD_STARTED],
        [LOOP_CREATED],
        *([[THREAD_STARTED]] + [[]] * 5),
    ]


def test_the_ends_and_events_of_crossings_cut_short_and_of_the_request(records):
    """A crossing's span ends at its return, else where its code ended (its
    caller gone), else with the request; one whose code never started has
    no STARTED event (nor queue wait, nor target thread), its other events
    in time order; the threads started and loops created outside any
    crossing are events of the request span, in time order."""
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/async/")
    with tracer.recording():
        thread = threading.Thread(target=int)
        thread.start()
        thread.join()
        asyncio.new_event_loop().close()
    wsgi_record, outside = records
    [crossing] = wsgi_record.crossings
    wall = wsgi_record.wall_time

    def planned(record):
        plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
        return readable_spans(plan, resource=Resource.create(), scope=None)

    code_end = crossing.end_ns
    crossing.return_ns = None
    assert planned(wsgi_record)[0].end_time == wall(code_end)
    crossing.end_ns = None
    assert planned(wsgi_record)[0].end_time == wall(wsgi_record.end_ns)
    crossing.start_ns = crossing.target_thread = None
    span = planned(wsgi_record)[0]
    assert "switchtrace.queue_wait_ns" not in span.attributes
    # Nor a target thread: no thread.*, no hop.
    source = crossing.source_thread
    assert {k: v for k, v in span.attributes.items() if "thread" in k} == {
        "switchtrace.caller.thread.id": source.ident,
        "switchtrace.caller.thread.name": source.name,
        "switchtrace.thread_hop": False,
        "switchtrace.threads.started": crossing.threads_started,
    }
    assert [(e.name, e.timestamp) for e in span.events] == sorted(
        [
            *((LOOP_CREATED, wall(c.at_ns)) for c in wsgi_record.loop_creations),
            *((THREAD_STARTED, wall(t.at_ns)) for t in wsgi_record.thread_starts),
        ],
        key=lambda event: event[1],
    )
    [request] = planned(outside)
    [loop] = outside.loop_creations
    [started] = outside.thread_starts
    assert [(e.name, e.timestamp, dict(e.attributes)) for e in request.events] == [
        (
            THREAD_STARTED,
            outside.wall_time(started.at_ns),
            {"thread.id": thread.ident, "thread.name": thread.name},
        ),
        (
            LOOP_CREATED,
            outside.wall_time(loop.at_ns),
            {"switchtrace.loop.id": loop.loop_id, "thread.name": "MainThread"},
        ),
    ]


def test_a_call_the_request_left_running_ends_its_span_with_the_request():
    """A sync_to_async the request left running in a task, cancelled once
    the request ended: the request counts its start alone (its return came
    after), and its span agrees in both writers (switchtrace's encoding and
    the SDK's): it ends with the request, not where its code ended or its
    caller got the CancelledError later, has no error, and says it was left
    running. (Its span took the CancelledError, and ended after the
    request's, whenever the spans were made after the cancellation.)"""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from switchtrace.exporters.spans import emit_spans

    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(10)

    async def main():
        with tracer.recording() as record:
            task = asyncio.ensure_future(sync_to_async(slow, thread_sensitive=False)())
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return record

    record = asyncio.run(main())  # (which waits for slow's thread to end)
    mechanisms = sorted(c.mechanism for c in record.crossings)
    assert mechanisms == sorted([tracer.SYNC_TO_ASYNC, tracer.RUN_IN_EXECUTOR])
    bridge = next(c for c in record.crossings if c.mechanism == tracer.SYNC_TO_ASYNC)
    assert bridge.exception == "asyncio.exceptions.CancelledError"
    assert bridge.return_ns > record.end_ns and bridge.end_ns > record.end_ns
    assert record.switches_of(bridge) == 1
    planned = readable_spans(
        plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator()),
        resource=Resource.create(),
        scope=None,
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit_spans(record, provider.get_tracer("switchtrace"))
    for written in (planned, exporter.get_finished_spans()):
        [span] = [s for s in written if s.name.startswith("sync_to_async ")]
        assert span.end_time == record.wall_time(record.end_ns)
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in span.attributes
        assert "switchtrace.exception" not in span.attributes
        assert span.attributes["switchtrace.unfinished"] is True
        [request] = [s for s in written if s.kind is trace.SpanKind.SERVER]
        # The call's start, and run_in_executor's two.
        assert request.attributes["switchtrace.context_switches"] == 3


def test_a_call_that_returned_in_the_request_is_not_marked_unfinished(records):
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
    written = readable_spans(plan, resource=Resource.create(), scope=None)
    assert len(written) == 17
    assert not any("switchtrace.unfinished" in span.attributes for span in written)


def test_nesting_is_real(spans):
    with project("sync-only") as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    named = by_name(spans())
    outer = named["sync_to_async SwitchTraceMiddleware"]
    a2s = named["async_to_sync BaseHandler._get_response_async"]
    view = named["sync_to_async sync_view"]
    process_view = named["sync_to_async CsrfViewMiddleware.process_view"]
    assert a2s.parent.span_id == outer.context.span_id
    assert view.parent.span_id == a2s.context.span_id
    assert process_view.parent.span_id == a2s.context.span_id
    assert view.attributes["switchtrace.executor"] == "current_thread"


def test_wsgi_async_view_loop_and_thread_are_events_of_its_span(spans):
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/async/")
    named = by_name(spans())
    a2s = named["async_to_sync async_view"]
    # In time order: the new thread and the new loop (asgiref before 3.9 makes
    # the loop first, in the calling thread; later versions in the new thread),
    # then the code starting in that loop.
    events = [e.name for e in sorted(a2s.events, key=lambda e: e.timestamp)]
    assert sorted(events[:2]) == ["switchtrace.event_loop_created", "switchtrace.thread_started"]
    assert events[2:] == ["switchtrace.started"]
    assert a2s.attributes["switchtrace.loop.created"] is True
    assert a2s.attributes["switchtrace.threads.started"] == 1
    assert named["GET async/"].attributes["switchtrace.event_loops_created"] == 1


def test_an_incoming_traceparent_is_honoured(spans):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with project() as (asgi, wsgi):
        run_in_server_loop(
            asgi_request(asgi, "/sync/", headers=[(b"traceparent", traceparent.encode())])
        )
        wsgi_request(wsgi, "/async/", HTTP_TRACEPARENT=traceparent)
    requests = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    assert len(requests) == 2
    for request in requests:
        assert format(request.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
        assert format(request.parent.span_id, "016x") == "b7ad6b7169203331"


@pytest.mark.parametrize(
    "traceparent",
    ["garbage", "00-" + "f" * 600, "00-00000000000000000000000000000000-b7ad6b7169203331-01"],
)
def test_a_malformed_or_oversized_traceparent_starts_a_new_trace(spans, traceparent):
    with project() as (_asgi, wsgi):
        result = wsgi_request(wsgi, "/sync/", HTTP_TRACEPARENT=traceparent)
    assert result.status == 200
    [request] = spans()
    assert request.parent is None
    assert request.context.trace_id != 0


def test_a_tracestate_of_the_longest_length_taken_is_kept(spans):
    """A tracestate of MAX_PROPAGATION_HEADER characters (two members of
    the longest value W3C Trace Context allows) is the request span's, under
    ASGI and WSGI; one character more, it is ignored and the traceparent
    still taken (the OpenTelemetry propagator sets no length limit of its
    own)."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    longest = "a=" + "x" * 254 + ",b=" + "y" * 253
    assert len(longest) == MAX_PROPAGATION_HEADER
    with project() as (asgi, wsgi):
        for tracestate in (longest, longest + "y"):
            run_in_server_loop(
                asgi_request(
                    asgi,
                    "/sync/",
                    headers=[
                        (b"traceparent", traceparent.encode()),
                        (b"tracestate", tracestate.encode()),
                    ],
                )
            )
            wsgi_request(wsgi, "/sync/", HTTP_TRACEPARENT=traceparent, HTTP_TRACESTATE=tracestate)
    requests = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    assert [format(request.parent.span_id, "016x") for request in requests] == [
        "b7ad6b7169203331"
    ] * 4
    assert [request.context.trace_state.to_header() for request in requests] == [
        longest,
        longest,
        "",
        "",
    ]


def test_sample_rate_zero_records_no_spans_but_keeps_the_headers(spans):
    settings = {"ENABLED": True, "EXPORTER": "memory", "SAMPLE_RATE": 0}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        result = run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
        assert pipeline.exporter.get_finished_spans() == ()
    assert result.figures() == (30, 30, 0, 1)


@pytest.mark.parametrize(("rate", "flags", "spans_made"), [(0, "01", 17), (1, "00", 0)])
def test_sample_rate_follows_a_sampled_or_unsampled_parent(rate, flags, spans_made):
    """Parent-based, as the README says: a client's sampled traceparent has
    its request's spans recorded whatever the rate, an unsampled one none."""
    traceparent = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
    settings = {"ENABLED": True, "EXPORTER": "memory", "SAMPLE_RATE": rate}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        assert pipeline.flush(10)
        pipeline.exporter.clear()
        result = run_in_server_loop(
            asgi_request(asgi, "/sync/", headers=[(b"traceparent", traceparent.encode())])
        )
        assert pipeline.flush(10)
        made = pipeline.exporter.get_finished_spans()
    assert result.figures() == (30, 30, 0, 1)
    assert len(made) == spans_made
    assert {format(span.context.trace_id, "032x") for span in made} <= {
        "0af7651916cd43dd8448eb211c80319c"
    }


def test_excluded_urls_make_no_spans_but_keep_the_headers(monkeypatch):
    """OTEL_PYTHON_DJANGO_EXCLUDED_URLS (else OTEL_PYTHON_EXCLUDED_URLS), as
    opentelemetry-instrumentation-django reads it: a request whose URL
    (without its query) one of its regular expressions finds gets no spans,
    its headers as usual; the others their spans."""
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "async")  # not read: the other is set
    monkeypatch.setenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "^http://testserver/sync/$, healthz")
    settings = {"ENABLED": True, "EXPORTER": "memory"}
    with project(SWITCHTRACE=settings) as (asgi, wsgi):
        try:
            pipeline = telemetry.pipeline()
            assert pipeline.flush(10)
            pipeline.exporter.clear()
            before = (pipeline.records, pipeline.dropped, pipeline.failed)
            left_out = [
                run_in_server_loop(asgi_request(asgi, "/sync/")),
                run_in_server_loop(asgi_request(asgi, "/sync/?q=1")),
            ]
            wsgi_request(wsgi, "/sync/")
            traced = [
                run_in_server_loop(asgi_request(asgi, "/sync/", scheme="https")),
                run_in_server_loop(asgi_request(asgi, "/async/")),
            ]
            assert pipeline.flush(10)
            spans = pipeline.exporter.get_finished_spans()
            after = (pipeline.records, pipeline.dropped, pipeline.failed)
        finally:
            # The suite's pipeline is made again as the settings come back:
            # without them.
            monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS")
            monkeypatch.delenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS")
    assert [r.figures() for r in left_out + traced] == [(30, 30, 0, 1)] * 3 + [(28, 28, 0, 1)]
    requests = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    assert [(s.attributes["url.scheme"], s.name) for s in requests] == [
        ("https", "GET sync/"),
        ("http", "GET async/"),
    ]
    assert len(spans) == 2 + 16 + 15
    # Each request was taken (none dropped), five of them.
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (5, 0, 0)


def test_the_url_excluded_urls_are_searched_in(records):
    """The request span's scheme, server address, port (but the scheme's
    default) and path."""
    from switchtrace.exporters.spans import request_url

    with project() as (asgi, wsgi):
        run_in_server_loop(asgi_request(asgi, "/sync/?q=1"))
        run_in_server_loop(
            asgi_request(asgi, "/sync/", scheme="https", headers=[(b"host", b"[::1]:8443")])
        )
        run_in_server_loop(
            asgi_request(asgi, "/sync/", scheme="https", headers=[(b"host", b"shop.example:443")])
        )
        wsgi_request(wsgi, "/async/", HTTP_HOST="shop.example:8000")
    assert [request_url(record) for record in records] == [
        "http://testserver/sync/",
        "https://[::1]:8443/sync/",
        "https://shop.example/sync/",
        "http://shop.example:8000/async/",
    ]


def test_a_wsgi_requests_path_is_the_one_the_client_sent(records):
    """Django's request.path: the script name (SCRIPT_NAME, the application
    mounted at /app: gunicorn's SCRIPT_NAME; Apache's SCRIPT_URL;
    FORCE_SCRIPT_NAME) and PATH_INFO, its bytes (latin-1 text, PEP 3333)
    read as UTF-8, and the URL excluded URLs are searched in from it.
    It was PATH_INFO alone: '/sync/' for '/app/sync/', and '/cafÃ©/'."""
    from switchtrace.exporters.spans import request_url

    with project() as (_asgi, wsgi):
        statuses = [
            wsgi_request(wsgi, "/sync/", SCRIPT_NAME="/app").status,
            wsgi_request(wsgi, "/caf\xc3\xa9/").status,  # é in UTF-8, as a server hands it
            wsgi_request(wsgi, "/\xff/").status,  # not UTF-8
            # Apache's mod_rewrite: the URL before it rewrote it.
            wsgi_request(wsgi, "/sync/", SCRIPT_NAME="/x.wsgi", SCRIPT_URL="/app/sync/").status,
            # A mount ending in "/" (Django strips it), one not in ASCII, and
            # both with a path not in ASCII (the other way of joining them).
            wsgi_request(wsgi, "/sync/", SCRIPT_NAME="/app/").status,
            wsgi_request(wsgi, "/sync/", SCRIPT_NAME="/caf\xc3\xa9").status,
            wsgi_request(wsgi, "/caf\xc3\xa9/", SCRIPT_NAME="/app/").status,
        ]
        with override_settings(FORCE_SCRIPT_NAME="/mounted"):  # a proxy strips the mount
            statuses.append(wsgi_request(wsgi, "/sync/").status)
    assert statuses == [200, 404, 404, 200, 200, 200, 404, 200]
    assert [record.attributes["url.path"] for record in records] == [
        "/app/sync/", "/café/", "/%FF/", "/app/sync/", "/app/sync/", "/café/sync/",
        "/app/café/", "/mounted/sync/"]  # fmt: skip
    assert request_url(records[0]) == "http://testserver/app/sync/"
    # Text that is no latin-1 (a server that decoded the bytes itself), which
    # Django refuses: as it came, not switchtrace's internal error; mounted too.
    from switchtrace.django_app.integration import wsgi_path

    assert wsgi_path({"SCRIPT_NAME": "", "PATH_INFO": "/\u0100/"}) == "/\u0100/"
    assert wsgi_path({"SCRIPT_NAME": "/app", "PATH_INFO": "/\u0100/"}) == "/app/\u0100/"


@pytest.mark.parametrize(
    ("server", "path", "status"),
    [
        ("asgi", "/raise/", 500),
        ("wsgi", "/raise/", 500),
        ("asgi", "/stream/", 200),
        ("wsgi", "/stream/", 200),
        ("asgi", "/async-stream/", 200),
        ("wsgi", "/async-stream/", 200),
    ],
)
def test_exceptions_and_streaming_end_every_span(spans, server, path, status, records):
    with project() as (asgi, wsgi):
        result = run_asgi(asgi, path) if server == "asgi" else wsgi_request(wsgi, path)
    assert result.status == status
    finished = spans()
    assert finished and all(s.end_time is not None for s in finished)
    [record] = records
    assert len(finished) == len(record.crossings) + 1


def test_a_client_disconnect_ends_every_span(spans, records):
    """ASGI: Django cancels the view when the client goes away."""

    async def disconnect_early(asgi):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "method": "GET",
            "scheme": "http",
            "path": "/slow/",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        messages = [
            {"type": "http.request", "body": b"", "more_body": False},
            {"type": "http.disconnect"},
        ]

        async def receive():
            if len(messages) == 1:
                await asyncio.sleep(0.05)
            return messages.pop(0)

        sent = []

        async def send(message):
            sent.append(message)

        await asgi(scope, receive, send)
        return sent

    with project() as (asgi, _wsgi):
        sent = run_in_server_loop(disconnect_early(asgi))
    from django.core.handlers.asgi import ASGIHandler

    if hasattr(ASGIHandler, "listen_for_disconnect"):  # Django >= 5.0 cancels the view
        assert sent == []
    [record] = records
    assert record.finished
    finished = spans()
    assert all(s.end_time is not None for s in finished)
    assert {s.name for s in finished} >= {"GET slow/"}


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_5xx_response_and_a_raising_crossing_are_errors(spans, server):
    """HTTP server spans of a 5xx response are errors (OpenTelemetry's HTTP
    semantic conventions: status Error and error.type the status code), and
    so is a crossing that an exception left, as the SDK marks a span that an
    exception leaves; a 404 and every span of a 200 stay unset."""
    with project() as (asgi, wsgi):
        for path in ("/raise/", "/missing/", "/sync/"):
            run_asgi(asgi, path) if server == "asgi" else wsgi_request(wsgi, path)
    finished = spans()
    requests = [s for s in finished if s.kind is trace.SpanKind.SERVER]
    assert [s.attributes["http.response.status_code"] for s in requests] == [500, 404, 200]
    failed, missing, ok = requests
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "500"
    for request in (missing, ok):
        assert request.status.status_code is StatusCode.UNSET
        assert "error.type" not in request.attributes
    raised = [s for s in finished if "switchtrace.exception" in s.attributes]
    errors = [s for s in finished if s.status.status_code is StatusCode.ERROR]
    assert errors == [*raised, failed]
    # Under WSGI the sync views make no crossing.
    assert [(s.name, s.attributes["switchtrace.exception"]) for s in raised] == (
        [("sync_to_async raising_view", "tests.views.ViewError")] if server == "asgi" else []
    )
    assert [s.attributes["error.type"] for s in raised] == (
        ["tests.views.ViewError"] if server == "asgi" else []
    )


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_request_that_fails_out_of_the_handler_is_an_error(spans, server, records):
    """OpenTelemetry's HTTP conventions: a request that fails (an error that
    keeps the server from sending the whole response) is an error whatever
    its status, error.type the exception's class. A body raising past the
    headers under ASGI (the 200 sent), SystemExit from a view (no status
    sent, the server answers it): both spans were left unset. Under WSGI the
    server reads the body after the handler returned: its failure is the
    server's, and the span keeps the response's status."""
    with project(ROOT_URLCONF="tests.urls") as (asgi, wsgi):
        serve = (
            (lambda path: run_asgi(asgi, path))
            if server == "asgi"
            else (lambda path: wsgi_request(wsgi, path))
        )
        with pytest.raises(ViewError, match="raised by the body"):
            serve("/body-raising/")
        if server == "wsgi":  # (in a task under ASGI, SystemExit stops the loop)
            with pytest.raises(SystemExit):
                serve("/exiting/")
    lines = [format_record(record) for record in records]
    assert lines[-1].startswith(
        "GET /body-raising/ 200 (raised tests.views.ViewError): "
        if server == "asgi"
        else "GET /exiting/ (raised SystemExit): 0 switches"
    )
    requests = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    made = [
        (
            s.attributes["url.path"],
            s.attributes.get("http.response.status_code"),
            s.status.status_code,
            s.attributes.get("error.type"),
        )
        for s in requests
    ]
    assert made == (
        [("/body-raising/", 200, StatusCode.ERROR, "tests.views.ViewError")]
        if server == "asgi"
        else [
            ("/body-raising/", 200, StatusCode.UNSET, None),
            ("/exiting/", None, StatusCode.ERROR, "SystemExit"),
        ]
    )


@pytest.mark.parametrize("server", ["asgi", "wsgi", "client"])
def test_a_close_raising_fails_the_request_under_every_server(records, server):
    """A request_finished receiver raising out of the response's close:
    under ASGI and Django's test Client the close is inside the handler,
    which the exception leaves; under a WSGI server the close comes after
    the handler returned, and the request was not marked failed."""
    from django.core.signals import request_finished
    from django.test import Client

    def receiver(**kwargs):
        raise ViewError("raised by a receiver")

    request_finished.connect(receiver)
    try:
        with project() as (asgi, wsgi):
            with pytest.raises(ViewError, match="raised by a receiver"):
                if server == "asgi":
                    run_asgi(asgi, "/sync/")
                elif server == "wsgi":
                    wsgi_request(wsgi, "/sync/")
                else:
                    with record_requests():
                        Client().get("/sync/")
    finally:
        request_finished.disconnect(receiver)
    [record] = records
    assert record.finished
    assert (record.attributes["http.response.status_code"], record.attributes["error.type"]) == (
        200,
        "tests.views.ViewError",
    )


def test_a_body_raising_under_wsgi_to_asgi_is_an_error(records):
    """asgiref's WsgiToAsgi reads the WSGI body inside its call: a body that
    raises leaves it, and the request failed, as under ASGI."""
    from asgiref.wsgi import WsgiToAsgi

    with project(ROOT_URLCONF="tests.urls") as (_asgi, wsgi):
        with pytest.raises(ViewError, match="raised by the body"):
            run_asgi(WsgiToAsgi(wsgi), "/body-raising/")
    [record] = records
    assert record.finished
    assert record.attributes["error.type"] == "tests.views.ViewError"
    assert format_record(record).startswith(
        "GET /body-raising/ 200 (raised tests.views.ViewError): "
    )


def test_a_server_error_is_a_5xx_status_code(records):
    """499 is the client's error (the span's status unset, no error.type),
    500 the server's; a status code that is no integer is no error."""
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    made = []
    for status in (499, 500, "500"):
        record.attributes["http.response.status_code"] = status
        span = request_span_of(record)
        made.append((span.status.status_code, span.attributes.get("error.type")))
    assert made == [(StatusCode.UNSET, None), (StatusCode.ERROR, "500"), (StatusCode.UNSET, None)]


def test_repeated_trace_context_headers_are_one_header_under_asgi_as_under_wsgi(spans):
    """W3C Trace Context: a tracestate sent as several header fields is their
    values joined by commas, and two traceparent fields are not a parent. WSGI
    servers join repeated headers; ASGI passes each field, of which only the
    last was read: a tracestate lost its first entries, and the second of two
    traceparents was taken as the parent."""
    first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    second = "00-11111111111111111111111111111111-2222222222222222-01"
    with project() as (asgi, wsgi):
        run_in_server_loop(
            asgi_request(
                asgi,
                "/sync/",
                headers=[
                    (b"traceparent", first.encode()),
                    (b"tracestate", b"shop=1,b=2"),
                    (b"tracestate", b"c=3"),
                ],
            )
        )
        run_in_server_loop(
            asgi_request(
                asgi,
                "/sync/",
                headers=[(b"traceparent", first.encode()), (b"traceparent", second.encode())],
            )
        )
        wsgi_request(wsgi, "/sync/", HTTP_TRACEPARENT=first, HTTP_TRACESTATE="shop=1,b=2,c=3")
        wsgi_request(wsgi, "/sync/", HTTP_TRACEPARENT=f"{first},{second}")
    joined, twice, wsgi_joined, wsgi_twice = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    for request in (joined, wsgi_joined):
        assert format(request.parent.span_id, "016x") == "b7ad6b7169203331"
        assert dict(request.context.trace_state) == {"shop": "1", "b": "2", "c": "3"}
    for request in (twice, wsgi_twice):
        assert request.parent is None
        assert format(request.context.trace_id, "032x") not in (first[3:35], second[3:35])


def test_a_root_url_has_no_route(records):
    """path(""): Django's route is "", which is none (OpenTelemetry's Django
    instrumentation sets none then): the span was named "GET " with a
    trailing space and had http.route "", beside the "GET" of requests no
    route matched."""
    with project(ROOT_URLCONF="tests.root_urls") as (asgi, wsgi):
        assert run_asgi(asgi, "/").status == 200
        assert wsgi_request(wsgi, "/").status == 200
    assert len(records) == 2
    for record in records:
        assert "http.route" not in record.attributes
        span = request_span_of(record)
        assert (span.name, span.attributes.get("http.route")) == ("GET", None)


def test_url_scheme_and_server_port_follow_the_scheme_a_proxy_names(records):
    """OpenTelemetry's HTTP server conventions: url.scheme is "the scheme of
    the original client request, if known (e.g. from Forwarded#proto,
    X-Forwarded-Proto ...)", which gives server.port too (the host names
    none): it said http beside the port 443 of an https host, and the
    request's URL was http://shop.example:443/sync/; behind a proxy that
    passes the Host on, port 80."""
    from switchtrace.exporters.spans import request_url

    cases = [
        ({b"forwarded": b"for=10.0.0.2;host=shop.example;proto=https"}, "https", 443),
        (
            {b"x-forwarded-host": b"shop.example", b"x-forwarded-proto": b"HTTPS, http"},
            "https",
            443,
        ),
        # A proxy ending TLS that passes the Host on (nginx's usual setup).
        ({b"host": b"shop.example", b"x-forwarded-proto": b"https"}, "https", 443),
        ({b"host": b"shop.example", b"forwarded": b"proto=https"}, "https", 443),
        # Not a scheme of HTTP's: url.scheme the server's own, no port known.
        ({b"forwarded": b"host=shop.example;proto=wss"}, "http", None),
    ]
    with project() as (asgi, _wsgi):
        for headers, _scheme, _port in cases:
            run_in_server_loop(asgi_request(asgi, "/sync/", headers=list(headers.items())))
    for record, (_headers, scheme, port) in zip(records, cases, strict=True):
        attributes = request_span_of(record).attributes
        assert (attributes["url.scheme"], attributes.get("server.port")) == (scheme, port)
        if port is not None:
            assert request_url(record) == f"{scheme}://shop.example/sync/"


#: A query string as sent -> url.query on the request span.
QUERIES = [
    ("sig=abc&q=a%20b", "sig=REDACTED&q=a%20b"),
    # A pre-signed S3 URL (signature version 4): its credential, token and
    # signature; the algorithm and expiry are no secret.
    (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261207%2Faws4_request"
        "&X-Amz-Expires=60&X-Amz-Security-Token=tok&X-Amz-Signature=f00d",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
        "&X-Amz-Expires=60&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED",
    ),
    # Version 2, and Google's.
    ("AWSAccessKeyId=AKIA&Expires=1&Signature=s%2B1", "AWSAccessKeyId=REDACTED&Expires=1"
     "&Signature=REDACTED"),
    ("X-Goog-Signature=ab&X-Goog-Date=20261207", "X-Goog-Signature=REDACTED&X-Goog-Date=20261207"),
    # Names match as written (case-sensitive), read as Django reads them;
    # a parameter without a value has nothing to hide; the rest, order,
    # encoding and repeats included, is as sent.
    ("SIG=x&sig&sig=&b=2&sig=1&a=%zz&b=3&sig=2", "SIG=x&sig&sig=&b=2&sig=REDACTED&a=%zz&b=3"
     "&sig=REDACTED"),
    ("si%67=x&X-Amz-Signature+=y&q=sig%3Dabc", "si%67=REDACTED&X-Amz-Signature+=y&q=sig%3Dabc"),
    # No query, no url.query.
    ("", None),
]  # fmt: skip


def test_url_query_hides_the_values_the_conventions_call_sensitive(records):
    """OpenTelemetry's url.query: the values of sig, X-Goog-Signature and the
    AWS pre-signed URLs' credentials and signatures SHOULD be REDACTED by
    default, the rest of the query kept. It exported them as sent."""
    with project() as (asgi, wsgi):
        for query, _redacted in QUERIES:
            run_in_server_loop(asgi_request(asgi, "/sync/", query=query))
            wsgi_request(wsgi, f"/sync/?{query}")
    # The record keeps the query as sent (the testing API shows it).
    assert [r.attributes.get("url.query") for r in records] == [
        query or None for query, _redacted in QUERIES for _ in (1, 2)
    ]
    assert [request_span_of(r).attributes.get("url.query") for r in records] == [
        redacted for _query, redacted in QUERIES for _ in (1, 2)
    ]


def test_the_request_span_has_the_scheme_and_a_known_method(records, monkeypatch):
    """OpenTelemetry's HTTP server conventions: url.scheme is required, and a
    method the instrumentation does not know is _OTHER (the span named HTTP),
    the method as sent in http.request.method_original; so a client cannot make
    a span name per made-up method. OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS
    replaces the list of known methods."""
    with project() as (asgi, wsgi):
        run_in_server_loop(asgi_request(asgi, "/sync/", scheme="https"))
        wsgi_request(wsgi, "/sync/", **{"wsgi.url_scheme": "https"})
        wsgi_request(wsgi, "/sync/")
    assert [r.attributes["url.scheme"] for r in records] == ["https", "https", "http"]

    def request_span(record):
        span = request_span_of(record)
        return span.name, {k: v for k, v in span.attributes.items() if "method" in k}

    record = records[0]
    assert request_span(record) == ("GET sync/", {"http.request.method": "GET"})
    record.attributes["http.request.method"] = "FOO"
    assert request_span(record) == (
        "HTTP sync/",
        {"http.request.method": "_OTHER", "http.request.method_original": "FOO"},
    )
    # Methods are case-sensitive, but Django serves "get" as a GET (it
    # upper-cases them): a framework taking them in any case names the
    # canonical one, the method as sent in http.request.method_original.
    record.attributes["http.request.method"] = "get"
    assert request_span(record) == (
        "GET sync/",
        {"http.request.method": "GET", "http.request.method_original": "get"},
    )
    # Empty is unset: the default list.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "")
    assert request_span(record)[0] == "GET sync/"
    # And so is one of space alone (a CRLF env file's "\r"), as for
    # OTEL_TRACES_SAMPLER: it made every method _OTHER.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", " \r")
    assert request_span(record)[0] == "GET sync/"
    # And one of commas alone, as for OTEL_PYTHON_DJANGO_EXCLUDED_URLS: its
    # empty entries left out, it listed no method, and every one was _OTHER.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", " , ,\r")
    assert request_span(record)[0] == "GET sync/"
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "FOO, BAR")
    record.attributes["http.request.method"] = "FOO"
    assert request_span(record) == ("FOO sync/", {"http.request.method": "FOO"})
    record.attributes["http.request.method"] = "GET"
    assert request_span(record) == (
        "HTTP sync/",
        {"http.request.method": "_OTHER", "http.request.method_original": "GET"},
    )


def test_the_known_methods_are_kept_for_a_few_settings(monkeypatch):
    """Each value of OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS is read once, for
    at most 8 values besides the default (a process changing it for ever
    does not grow the cache for ever), and the default stays known."""
    from switchtrace.exporters import spans as spans_module

    monkeypatch.setattr(spans_module, "_known_methods", {None: spans_module.KNOWN_METHODS})
    sizes = []
    for n in range(20):
        monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", f"GET, M{n}")
        assert spans_module.known_methods() == {"GET", f"M{n}"}
        assert spans_module.known_methods() is spans_module._known_methods[f"GET, M{n}"]
        sizes.append(len(spans_module._known_methods))
    assert sizes == [*range(2, 10), *range(2, 10), *range(2, 6)]
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS")
    assert spans_module.known_methods() is spans_module.KNOWN_METHODS


def test_the_code_attributes_follow_the_semconv_stability_opt_in(records, monkeypatch):
    """OpenTelemetry's code.* attributes were renamed when they became stable
    (semantic conventions 1.33): OTEL_SEMCONV_STABILITY_OPT_IN's ``code``
    gives the stable names, ``code/dup`` both, as its migration guide asks;
    without either, the names of before. Read as OpenTelemetry's Python
    instrumentations read the variable: comma-separated, space around a
    value ignored, case kept. A coroutine (asyncio.run's) is named in full."""
    from project import views

    with project() as (asgi, wsgi):
        run_in_server_loop(asgi_request(asgi, "/sync/"))
        wsgi_request(wsgi, "/asyncio-run/")

    def code_attributes(record, name):
        plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
        spans = readable_spans(plan, resource=Resource.create(), scope=None)
        [span] = [span for span in spans if span.name == name]
        return {k: v for k, v in span.attributes.items() if k.startswith("code.")}

    def expected(function):
        code = function.__code__
        old = {
            "code.function": function.__name__,
            "code.namespace": "project.views",
            "code.filepath": views.__file__,
            "code.lineno": code.co_firstlineno,
        }
        stable = {
            "code.function.name": f"project.views.{function.__name__}",
            "code.file.path": views.__file__,
            "code.line.number": code.co_firstlineno,
        }
        return old, stable

    old, stable = expected(views.sync_view)
    coroutine_old, coroutine_stable = expected(views.noop)
    cases = [
        (None, old),
        ("", old),
        ("http", old),
        ("CODE", old),
        ("code", stable),
        ("http, code ,database", stable),
        ("code/dup", {**stable, **old}),
        ("code,code/dup", {**stable, **old}),
        ("database/dup, code/dup", {**stable, **old}),
    ]
    for setting, attributes in cases:
        if setting is None:
            monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        else:
            monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", setting)
        assert code_attributes(records[0], "sync_to_async sync_view") == attributes, setting
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "code/dup")
    assert code_attributes(records[1], "asyncio.run noop") == {
        **coroutine_old,
        **coroutine_stable,
    }


def test_the_code_conventions_are_kept_for_a_few_settings(monkeypatch):
    """Each value of OTEL_SEMCONV_STABILITY_OPT_IN is read once, for at most
    8 values besides unset (the old names, always known)."""
    from switchtrace.exporters import spans as spans_module

    monkeypatch.setattr(spans_module, "_code_conventions", {None: spans_module.OLD})
    sizes = []
    for n in range(20):
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", f"code, http{n}")
        assert spans_module.code_conventions() == spans_module.STABLE
        assert spans_module._code_conventions[f"code, http{n}"] == spans_module.STABLE
        sizes.append(len(spans_module._code_conventions))
    assert sizes == [*range(2, 10), *range(2, 10), *range(2, 6)]
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN")
    assert spans_module.code_conventions() == spans_module.OLD
    assert spans_module._code_conventions[None] == spans_module.OLD


ARRIVAL_KEYS = (
    "server.address",
    "server.port",
    "client.address",
    "network.peer.address",
    "network.peer.port",
    "network.protocol.version",
    "user_agent.original",
)


def test_the_request_span_names_the_server_the_client_and_the_protocol(spans):
    """The HTTP server conventions' Recommended attributes: server.address and
    server.port as the client addressed them (a proxy's Forwarded host or
    X-Forwarded-Host, else the Host header; its port, else the scheme's),
    client.address the original client (Forwarded for, X-Forwarded-For's
    first, else the peer), network.peer.* the immediate peer."""
    asgi_peer = {"network.peer.address": "127.0.0.1", "network.peer.port": 50000}
    wsgi_peer = {"client.address": "192.0.2.9", "network.peer.address": "192.0.2.9"}
    cases = [
        (
            "asgi",
            {
                "headers": [
                    (b"host", b"shop.example:8443"),
                    (b"user-agent", b"curl/8.5.0"),
                    (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
                ],
                "scheme": "https",
            },
            {
                "server.address": "shop.example",
                "server.port": 8443,
                "client.address": "203.0.113.7",
                **asgi_peer,
                "user_agent.original": "curl/8.5.0",
            },
        ),
        # A proxy's Forwarded comes first (quoted, an IPv6 address with its
        # port); a host without a port has the scheme the client used, the
        # proxy's proto (the server's own is http here).
        (
            "asgi",
            {
                "headers": [
                    (b"host", b"internal:8000"),
                    (b"forwarded", b'for="[2001:db8::17]:4711";host=shop.example;proto=https'),
                    (b"forwarded", b"for=10.0.0.2"),
                    (b"x-forwarded-for", b"198.51.100.1"),
                    (b"x-forwarded-proto", b"http"),
                ]
            },
            {
                "server.address": "shop.example",
                "server.port": 443,
                "client.address": "2001:db8::17",
                **asgi_peer,
            },
        ),
        # X-Forwarded-Host, and X-Forwarded-Proto's first gives the port.
        (
            "asgi",
            {
                "headers": [
                    (b"host", b"internal:8000"),
                    (b"x-forwarded-host", b"shop.example"),
                    (b"x-forwarded-proto", b"HTTPS, http"),
                ]
            },
            {
                "server.address": "shop.example",
                "server.port": 443,
                **asgi_peer,
                "client.address": "127.0.0.1",
            },
        ),
        (
            "wsgi",
            {
                "HTTP_X_FORWARDED_HOST": "shop.example",
                "HTTP_X_FORWARDED_PROTO": "https",
                "REMOTE_ADDR": "192.0.2.9",
            },
            {"server.address": "shop.example", "server.port": 443, **wsgi_peer},
        ),
        # WSGI: an IPv6 Host; a client a proxy could not name is the peer.
        (
            "wsgi",
            {
                "HTTP_HOST": "[::1]:8000",
                "HTTP_X_FORWARDED_FOR": "unknown",
                "HTTP_X_FORWARDED_HOST": "",
                "REMOTE_ADDR": "192.0.2.9",
                "REMOTE_PORT": "61000",
                "SERVER_PROTOCOL": "HTTP/1.0",
                "HTTP_USER_AGENT": "Mozilla/5.0",
            },
            {
                "server.address": "::1",
                "server.port": 8000,
                **wsgi_peer,
                "network.peer.port": 61000,
                "network.protocol.version": "1.0",
                "user_agent.original": "Mozilla/5.0",
            },
        ),
        # WSGI behind a proxy: X-Forwarded-For's first is the client.
        (
            "wsgi",
            {"HTTP_X_FORWARDED_FOR": "203.0.113.7, 10.0.0.2", "REMOTE_ADDR": "192.0.2.9"},
            {
                "server.address": "testserver",
                "server.port": 80,
                **wsgi_peer,
                "client.address": "203.0.113.7",
            },
        ),
        # An obfuscated identifier (RFC 7239) is no address either.
        (
            "wsgi",
            {"HTTP_FORWARDED": "for=_hidden, for=198.51.100.1", "REMOTE_ADDR": "192.0.2.9"},
            {"server.address": "testserver", "server.port": 80, **wsgi_peer},
        ),
        # No Host at all (HTTP/1.0 allows it): the server's own name and port.
        (
            "wsgi",
            {"SERVER_NAME": "web-1", "SERVER_PORT": "8080", "REMOTE_ADDR": "192.0.2.9"},
            {"server.address": "web-1", "server.port": 8080, **wsgi_peer},
        ),
    ]
    with project() as (asgi, wsgi):
        for kind, arguments, expected in cases:
            if kind == "asgi":
                run_in_server_loop(asgi_request(asgi, "/sync/", **arguments))
            else:
                wsgi_request(wsgi, "/sync/", **arguments)
            [request] = [s for s in spans() if s.kind is trace.SpanKind.SERVER][-1:]
            made = {
                key: request.attributes[key] for key in ARRIVAL_KEYS if key in request.attributes
            }
            assert made == {"network.protocol.version": "1.1", **expected}


PEER = {"client.address": "192.0.2.9", "network.peer.address": "192.0.2.9"}

#: What a server may hand over (Arrival's fields; the others None) -> the
#: request span's server, client and network attributes, for a request
#: whose url.scheme is http.
ARRIVALS = [
    # An ASGI scope without server or client (both optional), no Host.
    ({}, {}),
    # A Host of spaces is none: the listening socket's name and port.
    (
        {"host": "  ", "server": ("web-1", 8080), "user_agent": " "},
        {"server.address": "web-1", "server.port": 8080},
    ),
    # A True is no port; nor is what is not a pair.
    ({"server": ("web-1", True)}, {"server.address": "web-1"}),
    ({"server": ("web-1", 8080, 0), "peer": ("192.0.2.9", 4711, 0)}, {}),
    # Ports from 0 to 65535, as integers (ASGI) and as text.
    # Port 0 is no connection's (uvicorn's for a client a trusted proxy
    # names): it said network.peer.port 0.
    ({"peer": ("192.0.2.9", 0)}, PEER),
    ({"peer": ("192.0.2.9", "0")}, PEER),
    ({"peer": ("192.0.2.9", 1)}, {**PEER, "network.peer.port": 1}),
    ({"peer": ("192.0.2.9", 65535)}, {**PEER, "network.peer.port": 65535}),
    ({"peer": ("192.0.2.9", 65536)}, PEER),
    ({"peer": ("192.0.2.9", -1)}, PEER),
    ({"host": "shop.example:0"}, {"server.address": "shop.example", "server.port": 0}),
    ({"host": "shop.example:000008443"}, {"server.address": "shop.example", "server.port": 8443}),
    ({"host": "shop.example:65535"}, {"server.address": "shop.example", "server.port": 65535}),
    *(
        ({"host": f"shop.example:{port}"}, {"server.address": "shop.example"})
        for port in ("65536", "-1", "+80", "8a", "\uff18\uff10", "\u00b2")
    ),
    # An IPv6 address's brackets: without a port, the scheme's; not closed,
    # or followed by what is no port, no address at all.
    ({"host": "[::1]"}, {"server.address": "::1", "server.port": 80}),
    ({"host": "[::1"}, {}),
    ({"host": "[::1]x"}, {}),
    ({"host": "[]:8000"}, {}),
    ({"host": ":8000"}, {}),
    # A proxy's host without its proto: the port of the request's scheme.
    ({"forwarded": "host=shop.example"}, {"server.address": "shop.example", "server.port": 80}),
    ({"forwarded_host": "shop.example"}, {"server.address": "shop.example", "server.port": 80}),
    # A Forwarded element without '=' is no pair; a client that is no
    # address is the peer.
    ({"forwarded": "for;for=198.51.100.1"}, {"client.address": "198.51.100.1"}),
    ({"forwarded_for": ":4711", "peer": ("192.0.2.9", None)}, PEER),
    # A host or client with a user (and password) is none: it went out as
    # server.address "alice:secret@shop.example:8443", server.port 80.
    ({"host": "alice:secret@shop.example:8443"}, {}),
    ({"host": "alice@shop.example"}, {}),
    ({"forwarded_host": "bob:secret@shop.example:9443"}, {}),
    ({"forwarded": 'host="carol:secret@shop.example"'}, {}),
    ({"forwarded_for": "dave:secret@198.51.100.1", "peer": ("192.0.2.9", None)}, PEER),
]


def test_the_arrival_attributes_of_what_a_server_may_hand_over(records):
    """The server, client and network attributes of values servers and
    clients may send (checked one by one against the record of a request,
    its Arrival replaced): optional ASGI scope keys missing, ports at and
    past their bounds, text that is no port, malformed brackets and proxy
    headers. None makes the pipeline's thread raise (which loses the
    request's spans)."""
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/sync/")
    [record] = records
    assert record.attributes["url.scheme"] == "http"
    made = []
    for given, _expected in ARRIVALS:
        record.extra[ARRIVAL] = Arrival(**{field: given.get(field) for field in Arrival._fields})
        plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
        request = dict(plan.spans[-1].attributes)
        made.append({key: request[key] for key in ARRIVAL_KEYS if key in request})
    assert made == [expected for _given, expected in ARRIVALS]


def test_a_hostile_port_is_no_port(spans):
    """A port of thousands of digits (a client's Host or X-Forwarded-Host,
    a proxy's Forwarded for) is no port: int() refuses strings of more
    than 4,300 digits, which lost the request's spans in the pipeline's
    thread."""
    digits = "9" * 5000
    with project() as (asgi, wsgi):
        run_in_server_loop(
            asgi_request(
                asgi,
                "/sync/",
                headers=[
                    (b"host", b"testserver"),
                    (b"x-forwarded-host", b"shop.example:" + digits.encode()),
                    (b"forwarded", b'for="198.51.100.1:' + digits.encode() + b'"'),
                ],
            )
        )
        wsgi_request(wsgi, "/sync/", HTTP_HOST="shop.example:0" + digits, REMOTE_PORT=digits)
    asgi_span, wsgi_span = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    assert {key: asgi_span.attributes.get(key) for key in ARRIVAL_KEYS[:3]} == {
        "server.address": "shop.example",
        "server.port": None,
        "client.address": "198.51.100.1",
    }
    assert {key: wsgi_span.attributes.get(key) for key in ARRIVAL_KEYS[:5]} == {
        "server.address": "shop.example",
        "server.port": None,
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": None,
    }


class _Raising(SpanProcessor):
    """An application's span processor that raises in on_start or on_end
    for the span named ``name`` (None: for every span)."""

    def __init__(self, hook, name):
        self.hook, self.name = hook, name

    def on_start(self, span, parent_context=None):
        if self.hook == "on_start" and self.name in (None, span.name):
            raise RuntimeError(f"{self.hook} of {span.name}")

    def on_end(self, span):
        if self.hook == "on_end" and self.name in (None, span.name):
            raise RuntimeError(f"{self.hook} of {span.name}")


class _Open(SpanProcessor):
    """An application's span processor keeping the spans started and not yet ended."""

    def __init__(self):
        self.open, self.ended = {}, []

    def on_start(self, span, parent_context=None):
        self.open[span.context.span_id] = span.name

    def on_end(self, span):
        self.ended.append(self.open.pop(span.context.span_id))


@pytest.mark.parametrize(
    ("hook", "name"),
    [
        # Raised as the third span starts: the request span and two crossings' started.
        ("on_start", "sync_to_async SessionMiddleware.process_request"),
        # Raised as the second crossing's span ends: 15 more to end.
        ("on_end", "sync_to_async SecurityMiddleware.process_request"),
        # Raised as the request span ends, the last.
        ("on_end", "GET sync/"),
        # Raised as each ends: the first error goes on.
        ("on_end", None),
    ],
)
def test_an_application_processor_raising_part_way_leaves_no_span_open(records, hook, name):
    """Under the application's provider, spans go through its processors. One
    that raised part way (in on_start, or on_end) left every span already
    started open for ever: in every processor that tracks open spans, and
    never exported. Each is ended now, and the error goes on to the pipeline
    (which logs it and counts the request as dropped)."""
    from opentelemetry.sdk.trace import TracerProvider

    from switchtrace.exporters.spans import emit_spans

    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"}) as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    provider = TracerProvider()
    opened = _Open()
    if hook == "on_start":  # as it raises, the span is not the tracker's yet
        provider.add_span_processor(_Raising(hook, name))
        provider.add_span_processor(opened)
    else:  # the tracker sees each end before it raises
        provider.add_span_processor(opened)
        provider.add_span_processor(_Raising(hook, name))
    with pytest.raises(RuntimeError) as raised:
        emit_spans(record, provider.get_tracer("switchtrace"), resolve=components.resolve)
    assert opened.open == {}
    assert len(opened.ended) == (3 if hook == "on_start" else 17)
    assert opened.ended[-1] == "GET sync/"
    first = opened.ended[0] if name is None else name  # (the first span ended)
    assert str(raised.value) == f"{hook} of {first}"


def test_the_span_whose_on_start_raised_is_the_one_left_open(records):
    """A processor that saw a span's start before another's on_start raised
    keeps that span: the SDK never hands it back to be ended (as with the
    application's own spans that processor refuses). Every other span
    started is ended: the request span and the two crossings' before it."""
    from opentelemetry.sdk.trace import TracerProvider

    from switchtrace.exporters.spans import emit_spans

    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"}) as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    provider = TracerProvider()
    opened = _Open()
    provider.add_span_processor(opened)
    raising = "sync_to_async SessionMiddleware.process_request"
    provider.add_span_processor(_Raising("on_start", raising))
    with pytest.raises(RuntimeError, match=f"on_start of {raising}"):
        emit_spans(record, provider.get_tracer("switchtrace"), resolve=components.resolve)
    assert list(opened.open.values()) == [raising]
    assert len(opened.ended) == 3
    assert opened.ended[-1] == "GET sync/"
