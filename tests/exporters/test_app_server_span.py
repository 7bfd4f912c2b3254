"""An application's server span (opentelemetry-instrumentation-asgi or
-django with a provider of its own that is not the global one) with
switchtrace's own provider: the crossings' spans nest under it, whatever
switchtrace exports with; with the file and OTLP exporters they are encoded
and written by switchtrace's own writer."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchtrace.django_app import telemetry
from switchtrace.exporters.encode import JsonWriter, ProtobufWriter

from ..django_app.test_components import SIGNAL
from ..django_app.test_middleware import project, serve
from ..support import asgi_request, run_asgi
from .receiver import GrpcReceiver, HttpReceiver


def serve_under_an_application_server_span(settings):
    """One ASGI request of the default stack under the application's SERVER
    span; returns that span, once switchtrace's pipeline has exported."""
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    app_tracer = app_provider.get_tracer("app")

    async def instrumented(asgi):
        with app_tracer.start_as_current_span("GET /sync/", kind=trace.SpanKind.SERVER) as span:
            await asgi_request(asgi, "/sync/")
        return span

    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        # Settings equal to the test suite's keep its pipeline and exporter:
        # count from here.
        pipeline = telemetry.pipeline()
        assert pipeline.own_provider
        if isinstance(pipeline.exporter, InMemorySpanExporter):
            # Earlier tests' requests may still have spans on their way.
            assert pipeline.flush(10)
            pipeline.exporter.clear()
        before = (pipeline.records, pipeline.dropped, pipeline.failed)
        server_span = asyncio.run(instrumented(asgi))
        assert pipeline.flush(10)
        after = (pipeline.records, pipeline.dropped, pipeline.failed)
        assert tuple(a - b for a, b in zip(after, before, strict=True)) == (1, 0, 0)
    [app_span] = app_exporter.get_finished_spans()
    assert app_span.attributes["switchtrace.context_switches"] == 32
    assert app_span.attributes["switchtrace.context_switches_before_headers"] == 30
    return server_span, pipeline


def test_the_memory_exporter_gets_them():
    """As with opentelemetry-instrumentation-asgi: a SERVER span is current
    while Django handles the request."""
    settings = {"ENABLED": True, "EXPORTER": "memory"}
    server_span, pipeline = serve_under_an_application_server_span(settings)
    ours = pipeline.exporter.get_finished_spans()
    assert len(ours) == 16
    assert all(s.parent.span_id == server_span.context.span_id for s in ours)
    assert all(s.context.trace_id == server_span.context.trace_id for s in ours)


def test_an_excluded_url_under_an_application_server_span_has_its_spans(monkeypatch):
    """OTEL_PYTHON_DJANGO_EXCLUDED_URLS leaves out the spans switchtrace
    would make of a request itself: under an application's server span the
    application's instrumentation traced it, and the crossings are its."""
    monkeypatch.setenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "/sync/")
    settings = {"ENABLED": True, "EXPORTER": "memory"}
    try:
        server_span, pipeline = serve_under_an_application_server_span(settings)
    finally:
        # The suite's pipeline, made again without it.
        monkeypatch.delenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS")
        with override_settings(SWITCHTRACE=django_settings.SWITCHTRACE):
            pass
    assert pipeline.options.excluded_urls.pattern == "/sync/"
    ours = pipeline.exporter.get_finished_spans()
    assert len(ours) == 16
    assert all(s.parent.span_id == server_span.context.span_id for s in ours)


@pytest.mark.parametrize("kind", ["internal", "unsampled-server"])
def test_an_application_span_that_is_not_a_recording_server_span_is_not_the_request_span(kind):
    """A span of the application's current when the request starts, but of
    another kind than SERVER (an INTERNAL span around the call), or a SERVER
    span its sampler did not record: the request's spans are switchtrace's
    own, in a trace of their own, and the application's span gets none of
    the figures."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider(sampler=ALWAYS_OFF if kind == "unsampled-server" else None)
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    span_kind = trace.SpanKind.SERVER if kind == "unsampled-server" else trace.SpanKind.INTERNAL

    async def instrumented(asgi):
        tracer = app_provider.get_tracer("app")
        with tracer.start_as_current_span("work", kind=span_kind) as span:
            await asgi_request(asgi, "/sync/")
        return span

    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "memory"}) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        assert pipeline.flush(10)
        pipeline.exporter.clear()
        app_span = asyncio.run(instrumented(asgi))
        assert pipeline.flush(10)
        ours = pipeline.exporter.get_finished_spans()
    assert len(ours) == 17
    assert {s.context.trace_id for s in ours} != {app_span.get_span_context().trace_id}
    [request_span] = [s for s in ours if s.parent is None]
    assert request_span.kind is trace.SpanKind.SERVER
    finished = app_exporter.get_finished_spans()
    assert [dict(s.attributes) for s in finished] == ([] if kind == "unsampled-server" else [{}])


def test_the_file_exporter_writes_them(tmp_path):
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    server_span, pipeline = serve_under_an_application_server_span(settings)
    assert type(pipeline.writer) is JsonWriter
    [line] = path.read_text().splitlines()
    [resource] = json.loads(line)["resourceSpans"]
    [scope] = resource["scopeSpans"]
    spans = scope["spans"]
    context = server_span.get_span_context()
    assert len(spans) == 16
    assert {s["traceId"] for s in spans} == {f"{context.trace_id:032x}"}
    assert {s["parentSpanId"] for s in spans} == {f"{context.span_id:016x}"}
    assert {(s["kind"], s["flags"]) for s in spans} == {(1, 0x100)}  # INTERNAL, local parent
    assert spans[0]["name"] == f"sync_to_async {SIGNAL}"
    assert spans[-1]["name"] == "sync_to_async HttpResponseBase.close"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_otlp_exporter_sends_them(protocol):
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint, "OTLP_PROTOCOL": protocol}
    try:
        server_span, pipeline = serve_under_an_application_server_span(settings)
        # flush() returns once the export has been answered.
        spans = receiver.received.spans()
    finally:
        receiver.stop()
    assert type(pipeline.writer) is ProtobufWriter
    context = server_span.get_span_context()
    assert len(spans) == 16
    assert {s.trace_id for s in spans} == {context.trace_id.to_bytes(16, "big")}
    assert {s.parent_span_id for s in spans} == {context.span_id.to_bytes(8, "big")}
    assert {(s.kind, s.flags) for s in spans} == {(1, 0x100)}
    assert len({s.span_id for s in spans}) == 16
    assert spans[0].name == f"sync_to_async {SIGNAL}"
    assert spans[-1].name == "sync_to_async HttpResponseBase.close"


_app_exporter = InMemorySpanExporter()
_app_provider = TracerProvider()
_app_provider.add_span_processor(SimpleSpanProcessor(_app_exporter))


class ServerSpanMiddleware:
    """As opentelemetry-instrumentation-django's middleware, which it puts
    first in MIDDLEWARE: the request's SERVER span, current while the rest of
    the chain runs, ended when the response leaves it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tracer = _app_provider.get_tracer("app")
        with tracer.start_as_current_span("GET async/", kind=trace.SpanKind.SERVER):
            return self.get_response(request)


def _served(middleware, serve):
    """One request, ``serve(asgi, wsgi)``, with ``middleware`` above
    switchtrace's: its result and switchtrace's spans of it (the
    application's are in ``_app_exporter``, cleared first)."""
    from switchtrace.django_app.conf import MIDDLEWARE_PATH

    _app_exporter.clear()
    with project("none", MIDDLEWARE=[*middleware, MIDDLEWARE_PATH]) as handlers:
        pipeline = telemetry.pipeline()
        # Earlier tests' requests may still have spans on their way.
        assert pipeline.flush(10)
        pipeline.exporter.clear()
        result = serve(*handlers)
        assert pipeline.flush(10)
        return result, pipeline.exporter.get_finished_spans()


def _figures(span) -> dict:
    return {k: v for k, v in span.attributes.items() if k.startswith("switchtrace.")}


def _span_figures(switches: int, loops: int, threads: int) -> dict:
    """A request span's figures, every switch a hop and before the headers."""
    return {
        "switchtrace.context_switches": switches,
        "switchtrace.thread_hops": switches,
        "switchtrace.event_loops_created": loops,
        "switchtrace.threads_started": threads,
        "switchtrace.dropped": 0,
        "switchtrace.context_switches_before_headers": switches,
        "switchtrace.thread_hops_before_headers": switches,
    }


def test_a_server_span_started_by_a_middleware_above_switchtraces_is_the_request_span(caplog):
    """WSGI: no server span is active when Django's handler receives the
    request; opentelemetry-instrumentation-django's middleware starts it.
    The crossings go under it (they made a request span and a trace of
    their own), and its figures are those of the response. The span has
    ended when the request's record finishes: switchtrace leaves it alone
    then (the SDK warns "Setting attribute on ended span." otherwise, once
    a request)."""
    from ..support import wsgi_request

    with caplog.at_level(logging.WARNING):
        result, [ours] = _served(
            [f"{__name__}.ServerSpanMiddleware"], lambda _asgi, wsgi: wsgi_request(wsgi, "/async/")
        )
    assert [r.getMessage() for r in caplog.records] == []
    assert result.figures() == (2, 2, 1, 1)
    [app_span] = _app_exporter.get_finished_spans()
    assert ours.name == "async_to_sync async_view"
    assert ours.context.trace_id == app_span.context.trace_id
    assert ours.parent.span_id == app_span.context.span_id
    assert _figures(app_span) == _span_figures(2, 1, 1)


@pytest.mark.parametrize(
    ("middleware", "path", "figures"),
    [
        # A maintenance-mode or rate-limiting middleware above switchtrace's
        # answers: switchtrace's never runs.
        (["tests.views.ShortCircuitMiddleware", "switchtrace"], "/paused-shared/?short", (0, 0, 0)),
        # Spans without the headers: switchtrace's middleware is not used.
        ([], "/async/", (2, 1, 1)),
    ],
    ids=["answered-above", "no-middleware"],
)
def test_a_wsgi_server_span_ended_before_the_body_has_the_figures_of_the_headers(
    middleware, path, figures
):
    """WSGI: the application's server span is current when Django's handler
    receives the request, and ends as soon as the handler returns (a WSGI
    middleware of the project's own, ``with tracer.start_as_current_span()``
    around the call), before the body is sent and the response closed. It
    has the figures as the headers are sent, though switchtrace's
    middleware did not run."""
    from django.http import HttpResponse

    from switchtrace.django_app.conf import MIDDLEWARE_PATH

    from .. import views
    from ..support import wsgi_request

    _app_exporter.clear()
    views.paused_response = HttpResponse("answered")
    middleware = [MIDDLEWARE_PATH if name == "switchtrace" else name for name in middleware]
    try:
        with project("none", MIDDLEWARE=middleware) as (_asgi, wsgi):

            def instrumented(environ, start_response):
                tracer = _app_provider.get_tracer("app")
                with tracer.start_as_current_span("GET", kind=trace.SpanKind.SERVER):
                    return wsgi(environ, start_response)

            result = wsgi_request(instrumented, path)
    finally:
        views.paused_response = None
    assert result.status == 200
    [app_span] = _app_exporter.get_finished_spans()
    assert _figures(app_span) == _span_figures(*figures)


def test_a_middleware_server_span_never_has_fewer_switches_than_before_the_headers():
    """ASGI, the middleware that starts the span sync-only: switchtrace's
    runs inside its async_to_sync, itself inside the handler's
    sync_to_async, and the figures it writes count both return trips. The
    span, ended before they happen, said 4 switches in all and 6 before the
    headers."""
    from ..support import run_asgi

    result, ours = _served(
        [f"{__name__}.ServerSpanMiddleware"], lambda asgi, _wsgi: run_asgi(asgi, "/async/")
    )
    assert result.figures() == (6, 6, 0, 1)
    [app_span] = _app_exporter.get_finished_spans()
    assert {s.context.trace_id for s in ours} == {app_span.context.trace_id}
    assert len(ours) == 4
    assert _figures(app_span) == _span_figures(6, 0, 1)


def test_a_middleware_server_span_has_the_figures_of_the_response_leaving_switchtraces():
    """What the README says of a span a middleware started: it ends before
    Django logs a 4xx under ASGI (one sync_to_async, 2 switches), which the
    headers count and it does not."""
    from ..support import asgi_request

    # In a loop of its own, whose default executor has one thread, as the
    # threads the request starts depend on it: its thread-sensitive thread,
    # and the executor's thread (Django logs the 404 there). An executor of
    # several threads starts another one for each call made while none of
    # its threads is idle yet: one or two more, from run to run, in a new
    # loop, and none or one in a loop that served requests before.
    async def served_in_a_loop_of_its_own(asgi):
        one = ThreadPoolExecutor(max_workers=1)
        asyncio.get_running_loop().set_default_executor(one)
        return await asgi_request(asgi, "/nowhere/")

    result, _ours = _served(
        [f"{__name__}.ServerSpanMiddleware"],
        lambda asgi, _wsgi: asyncio.run(served_in_a_loop_of_its_own(asgi)),
    )
    assert result.status == 404
    assert result.figures() == (10, 10, 0, 2)
    [app_span] = _app_exporter.get_finished_spans()
    assert _figures(app_span) == _span_figures(8, 0, 2)


class PathSpanMiddleware:
    """As opentelemetry-instrumentation-django's middleware: a SERVER span
    (named after the path) if no span is current, else an INTERNAL one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tracer = _app_provider.get_tracer("app")
        current = trace.get_current_span().get_span_context().is_valid
        kind = trace.SpanKind.INTERNAL if current else trace.SpanKind.SERVER
        with tracer.start_as_current_span(request.path, kind=kind):
            return self.get_response(request)


class SubRequestFirstMiddleware:
    """First in MIDDLEWARE: for /sync/, serves a sub-request to /async/
    through the test Client before the request goes on (an internal call
    that a middleware makes, an authentication's)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.test import Client

        if request.path == "/sync/":
            Client().get("/async/")
        return self.get_response(request)


def test_a_sub_request_before_the_request_span_leaves_it_the_request_span():
    """A sub-request served above the middleware that starts the request's
    SERVER span (under WSGI): the sub-request's own handler starts one too,
    with none current; switchtrace's middleware in the sub-request does not
    take it for the request's. The request's span gets the figures (the
    sub-request's async_to_sync: 2 switches) and the crossing span as its
    child; it got neither, the sub-request's span both."""
    from ..support import wsgi_request

    middleware = [f"{__name__}.SubRequestFirstMiddleware", f"{__name__}.PathSpanMiddleware"]
    result, [ours] = _served(middleware, lambda _asgi, wsgi: wsgi_request(wsgi, "/sync/"))
    assert result.figures() == (2, 2, 1, 1)
    spans = {span.name: span for span in _app_exporter.get_finished_spans()}
    assert sorted(spans) == ["/async/", "/sync/"]
    assert ours.name == "async_to_sync async_view"
    assert ours.parent.span_id == spans["/sync/"].context.span_id
    assert _figures(spans["/async/"]) == {}
    assert _figures(spans["/sync/"]) == _span_figures(2, 1, 1)


@pytest.fixture
def otel_django():
    """opentelemetry-instrumentation-django's own middleware (the test
    extra's), its spans in ``_app_exporter``: its path in MIDDLEWARE."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from switchtrace.bench import OTEL_DJANGO_MIDDLEWARE

    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(tracer_provider=_app_provider)
    try:
        yield OTEL_DJANGO_MIDDLEWARE
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
@pytest.mark.parametrize("place", ["above", "below"])
def test_a_sub_request_after_the_response_leaves_the_request_span_its_figures(
    server, place, otel_django, records
):
    """A middleware serving a sub-request (to /async-to-sync/, three
    async_to_sync: 6 switches, 3 loops, 3 threads under WSGI) once the
    response of /async/ is back, above opentelemetry-instrumentation-django's
    middleware (the request's SERVER span has ended: the sub-request's
    handler starts a SERVER span of its own, in a trace of its own) or below
    it (the request's span is current: the sub-request's is its INTERNAL
    child). The sub-request is the request's: its crossings are in the
    request's headers, record and trace. The request's span has the figures
    of the response leaving switchtrace's middleware, as any span a
    middleware started (WSGI: the async view's async_to_sync; ASGI: the
    request_started signal, the adapters around the sync-only middleware
    and process_view), never those of the sub-request's leaving it (below
    opentelemetry's, where its span still records: 8 under WSGI, 14 under
    ASGI); the sub-request's span has none."""
    middleware = ["tests.views.SubRequestAfterMiddleware", otel_django]
    if place == "below":
        middleware.reverse()
    result, ours = _served(middleware, lambda *handlers: serve(server, handlers, "/async/?after=1"))
    [record] = records
    spans = {span.name: span for span in _app_exporter.get_finished_spans()}
    assert sorted(spans) == ["GET async-to-sync/", "GET async/"]
    request_span, sub_request_span = spans["GET async/"], spans["GET async-to-sync/"]
    assert request_span.kind is trace.SpanKind.SERVER
    if place == "above":
        assert sub_request_span.kind is trace.SpanKind.SERVER
        assert sub_request_span.parent is None
    else:
        assert sub_request_span.kind is trace.SpanKind.INTERNAL
        assert sub_request_span.parent.span_id == request_span.context.span_id
    if server == "wsgi":
        assert result.figures() == (8, 8, 4, 4)
        assert record.context_switches == 8
        assert _figures(request_span) == _span_figures(2, 1, 1)
    else:
        assert result.figures() == (14, 14, 0, 1)
        assert record.context_switches == 16  # and the response's close
        assert _figures(request_span) == _span_figures(8, 0, 1)
    assert _figures(sub_request_span) == {}
    assert len(ours) == record.context_switches // 2
    assert {span.context.trace_id for span in ours} == {request_span.context.trace_id}


def test_the_crossings_before_a_middleware_server_span_starts_are_its_children_all_the_same(
    otel_django,
):
    """ASGI: opentelemetry-instrumentation-django's middleware (sync-only,
    adapted by Django in a sync_to_async) starts the request's SERVER span
    inside that crossing, after the request_started signal's. Both are its
    children, starting before it; the adapter's ends after it, as the
    response's close (after the headers) does, which is not in its figures.
    The README says Jaeger draws them so."""
    result, ours = _served([otel_django], lambda asgi, _wsgi: run_asgi(asgi, "/sync/"))
    [request_span] = _app_exporter.get_finished_spans()
    assert result.figures() == (10, 10, 0, 1)
    under_it = [s.name for s in ours if s.parent.span_id == request_span.context.span_id]
    assert under_it == [
        f"sync_to_async {SIGNAL}",
        "sync_to_async _DjangoMiddleware",
        "sync_to_async HttpResponseBase.close",
    ]
    assert [s.name for s in ours if s.start_time < request_span.start_time] == [
        f"sync_to_async {SIGNAL}",
        "sync_to_async _DjangoMiddleware",
    ]
    assert [s.name for s in ours if s.end_time > request_span.end_time] == [
        "sync_to_async _DjangoMiddleware",
        "sync_to_async HttpResponseBase.close",
    ]
