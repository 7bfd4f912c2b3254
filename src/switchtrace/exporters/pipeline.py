"""From finished request records to exported spans, off the request's path.

A request's record is handed to a bounded queue when it finishes (one
``put_nowait``); one thread, started when the pipeline is configured (never
during a request), builds the spans with the record's own timestamps and
hands them to the OpenTelemetry SDK, whose batch processor exports them.
When the queue is full the record's spans are dropped and counted, never
waited for: a slow or absent collector costs the application nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__, tracer
from ..tracer.guard import swallow
from .spans import Resolve, emit_readable_spans, emit_spans, request_attributes

logger = logging.getLogger("switchtrace")

EXPORTERS = ("otlp", "file", "console", "memory", "none")
PROTOCOLS = ("grpc", "http/protobuf")
#: Longest traceparent/tracestate header taken from a request; longer ones are ignored.
MAX_PROPAGATION_HEADER = 512


@dataclass(frozen=True)
class ExportOptions:
    """Where spans go. Built by the Django app from its settings and the
    standard OTEL_* environment variables."""

    exporter: str = "file"
    endpoint: str | None = None
    protocol: str = "http/protobuf"
    service_name: str = "django"
    file_path: str = "switchtrace-traces.jsonl"
    #: None: the sampler from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    sample_rate: float | None = None
    queue_size: int = 512


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP: a base endpoint gets the signal path appended."""
    parts = urlsplit(endpoint)
    if parts.path.rstrip("/").endswith("/v1/traces"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def build_exporter(options: ExportOptions) -> SpanExporter | None:
    if options.exporter == "otlp":
        if options.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            if options.endpoint is None:
                return GrpcExporter()
            parts = urlsplit(options.endpoint)
            return GrpcExporter(endpoint=parts.netloc, insecure=parts.scheme != "https")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=traces_url(options.endpoint) if options.endpoint else None)
    if options.exporter == "file":
        from .otlp_json import FileSpanExporter

        return FileSpanExporter(options.file_path)
    if options.exporter == "memory":
        return InMemorySpanExporter()
    return None


class SpanPipeline:
    """A record listener that turns sampled requests into spans."""

    def __init__(self, options: ExportOptions, resolve: Resolve | None = None) -> None:
        self.options = options
        self.resolve = resolve
        self.dropped = 0
        self.exporter: SpanExporter | None = None
        self._last_drop_log = 0.0
        current = trace.get_tracer_provider()
        if _is_configured(current):
            # The application configured OpenTelemetry itself: use its
            # provider, sampler and exporters, and add nothing of ours.
            self.provider: Any = current
            self.own_provider = False
        else:
            sampler = (
                sampling.ParentBased(sampling.TraceIdRatioBased(options.sample_rate))
                if options.sample_rate is not None
                else sampling._get_from_env_or_default()
            )
            self.provider = TracerProvider(
                sampler=sampler,
                resource=Resource.create({"service.name": options.service_name}),
                shutdown_on_exit=False,
            )
            self.own_provider = True
            self.exporter = build_exporter(options)
            self.processor: Any = None
            if self.exporter is not None:
                self.processor = (
                    SimpleSpanProcessor(self.exporter)
                    if isinstance(self.exporter, InMemorySpanExporter)
                    else BatchSpanProcessor(self.exporter)
                )
                self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("switchtrace", __version__)
        self._scope = InstrumentationScope("switchtrace", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._start_worker()
        os.register_at_fork(after_in_child=self._start_worker)
        atexit.register(self.shutdown)

    # -- on the request's path (cheap) ----------------------------------------

    def capture(self, record: tracer.RequestRecord) -> None:
        """At request start: note the application's server span, if one is active."""
        span = trace.get_current_span()
        if span.is_recording() and getattr(span, "kind", None) is trace.SpanKind.SERVER:
            record.extra["otel.server_span"] = span

    def at_headers(self, record: tracer.RequestRecord) -> None:
        span = record.extra.get("otel.server_span")
        if span is not None and span.is_recording():
            span.set_attributes(request_attributes(record))

    def __call__(self, record: tracer.RequestRecord) -> None:
        """Listener: called in the request's context as its record finishes."""
        span = record.extra.get("otel.server_span")
        if span is not None and span.is_recording():
            span.set_attributes(request_attributes(record))
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop()

    # -- in the pipeline's thread ---------------------------------------------

    def _start_worker(self) -> None:
        self._queue: queue.Queue[tracer.RequestRecord | None] = queue.Queue(self.options.queue_size)
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._run, name="switchtrace-spans", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        # The pipeline's own thread: builds spans one record at a time.
        while True:
            record = self._queue.get()
            if record is None:
                return
            self._idle.clear()
            try:
                self._emit(record)
            except Exception:
                swallow("span building")
            finally:
                if self._queue.empty():
                    self._idle.set()

    def _emit(self, record: tracer.RequestRecord) -> None:
        server_span = record.extra.get("otel.server_span")
        if self.own_provider and server_span is None:
            if self.processor is None:
                return
            emit_readable_spans(
                record,
                sampler=self.provider.sampler,
                ids=self.provider.id_generator,
                resource=self.provider.resource,
                scope=self._scope,
                on_end=self.processor.on_end,
                parent=self._parent_of(record),
                resolve=self.resolve,
            )
            return
        # The application's provider: through its tracer, so that its own
        # processors, limits and sampler see every span.
        emit_spans(
            record,
            self.tracer,
            parent=self._parent_of(record),
            server_span=server_span,
            resolve=self.resolve,
            pause=_yield_gil,
        )

    def _parent_of(self, record: tracer.RequestRecord) -> Any:
        carrier = {
            key: value
            for key in ("traceparent", "tracestate")
            if isinstance(value := record.extra.get(key), str)
            and len(value) <= MAX_PROPAGATION_HEADER
        }
        if "traceparent" not in carrier:
            return None
        return self._propagator.extract(carrier, getter=DefaultGetter())

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 60:
            self._last_drop_log = now
            logger.warning(
                "switchtrace: span queue full (%d records); %d requests' spans dropped so far",
                self.options.queue_size,
                self.dropped,
            )

    # -- lifecycle -------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is exported (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not (self._queue.empty() and self._idle.is_set()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        if self.own_provider:
            remaining = max(deadline - time.monotonic(), 0.001)
            return bool(self.provider.force_flush(int(remaining * 1000)))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread; export what is queued within ``timeout`` seconds."""
        atexit.unregister(self.shutdown)
        if self._worker.is_alive():
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._worker.join(timeout)
        if self.own_provider:
            self.provider.shutdown()


def _yield_gil() -> None:
    """Let request threads waiting for the GIL run now, not at the end of the
    interpreter's 5 ms switch interval: every thread hop of a request waits
    for the GIL, and a busy pipeline thread would otherwise make each of them
    wait (measured by `switchtrace bench --overhead`)."""
    time.sleep(0)


def _is_configured(provider: Any) -> bool:
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
