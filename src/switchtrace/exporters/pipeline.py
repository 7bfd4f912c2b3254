"""From finished request records to exported spans, off the request's path.

A request's record is handed to a bounded queue when it finishes (one
``put_nowait``); one thread, started when the pipeline is configured (never
during a request), lays out the spans with the record's own timestamps.

With switchtrace's own provider and the file or OTLP exporter, that thread
encodes the spans itself (:mod:`.encode`) and hands batches of ready export
requests to the exporter: the real OTLP exporters of
opentelemetry-exporter-otlp send them, with their own endpoint, headers,
timeout, retries and TLS. Otherwise (the memory exporter, an OTLP exporter
version without the hook this relies on, or the application's own provider)
the spans go through the SDK. A global provider the application sets after
the pipeline was made (a pre-forking server's ``post_fork`` hook) is used from
then on.

When the queue is full the record's spans are dropped and counted, never
waited for: a slow or absent collector costs the application nothing. Spans
an export fails to deliver are counted too (:attr:`SpanPipeline.failed`), and
both are logged at most once a minute.

After one of its exports to a collector fails (the collector down, or
answering 404 to an endpoint without ``/v1/traces``) the thread exports
nothing for :data:`FAILURE_BACKOFF_S`, twice that after each further
failure, up to :data:`MAX_FAILURE_BACKOFF_S`; a successful export ends the
pause. The OTLP exporters log an error of their own for each failed export:
without the pause, one every half second. Batches that come due meanwhile
are not sent but counted as failed, and records that finish while the pause
has more than a batch's delay to run are not made into spans at all (their
spans are only counted: one sampling decision each). :meth:`SpanPipeline.flush`
keeps to the pause; :meth:`SpanPipeline.shutdown` tries once more even so
(the collector may be back, and there is no later). The SDK's batch
processor, where it is used, keeps its own schedule. The file exporter is
not paused: a failed append (the disk full, the file's permissions) costs a
system call and logs nothing of its own, and the next one may succeed once
the disk has room again; the warning says why it failed.

A process forked from one with pipelines (a pre-forking server) gets a new
thread for each pipeline that is in use and not shut down, and for no other:
one module-level at-fork hook, holding the pipelines weakly.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import inspect
import itertools
import os
import queue
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .. import __version__, tracer
from ..plural import count
from ..tracer.describe import is_of_type
from ..tracer.guard import logger, swallow
from . import propagation
from .encode import EncodedSpans, JsonWriter, ProtobufWriter
from .spans import (
    Limits,
    Resolve,
    count_spans,
    emit_spans,
    plan_spans,
    readable_spans,
    request_attributes,
    request_url,
)
from .worker import Flush, QueueWorker

EXPORTERS = ("otlp", "file", "console", "memory", "none")
PROTOCOLS = ("grpc", "http/protobuf")
#: At most one warning a minute about spans lost, of each kind.
LOG_INTERVAL = 60.0
#: How long spans wait for their batch, in ms, unless OTEL_BSP_SCHEDULE_DELAY
#: says otherwise (the SDK's default is 5000).
DEFAULT_SCHEDULE_DELAY_MS = 500
#: After a failed export, no export for this many seconds; twice as long after
#: each further failure, up to MAX_FAILURE_BACKOFF_S. One success resets it.
FAILURE_BACKOFF_S = 1.0
MAX_FAILURE_BACKOFF_S = 30.0


#: 100 MiB: some 3,000 requests of the default stack under ASGI (17 spans,
#: about 30 KB a request in OTLP/JSON).
DEFAULT_FILE_MAX_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ExportOptions:
    """Where spans go. Built by the Django app from its settings and the
    standard OTEL_* environment variables."""

    exporter: str = "file"
    endpoint: str | None = None
    #: True when ``endpoint`` came from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
    #: OTLP/HTTP then posts to it as it is, without /v1/traces appended.
    endpoint_is_traces_url: bool = False
    protocol: str = "http/protobuf"
    service_name: str = "django"
    file_path: str = "switchtrace-traces.jsonl"
    #: The file exporter's file is renamed file_path + ".1" past it (None: never).
    file_max_bytes: int | None = DEFAULT_FILE_MAX_BYTES
    #: None: the sampler from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    sample_rate: float | None = None
    queue_size: int = 512
    #: Requests whose URL this finds no spans are made for (None: none left
    #: out), when no application's server span was active: see
    #: :meth:`SpanPipeline._excluded`.
    excluded_urls: re.Pattern[str] | None = None


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP: a base endpoint gets the signal path appended to its path
    (before its query string: appended to the whole URL, it made
    ``?tenant=a/v1/traces``, which collectors answer with a 404), unless
    the path ends in it already (a slash after it is dropped: collectors
    serve /v1/traces alone)."""
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/traces"):
        path += "/v1/traces"
    return urlunsplit(parts._replace(path=path))


def grpc_target(endpoint: str) -> str:
    """OTLP/gRPC: the endpoint's host and port alone (not its user name and
    password, which made the target unresolvable, and were printed in every
    one of the exporter's error lines)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


#: The OTLP exporters' own default endpoints, given to them explicitly when
#: no endpoint is set: a variable of space alone (a CRLF env file's empty
#: value) is unset, which the exporters, reading it themselves, took for
#: an endpoint (every span lost).
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"


def build_exporter(options: ExportOptions) -> SpanExporter | None:
    if options.exporter == "otlp":
        if options.protocol == "grpc":
            exporter_class = _grpc_exporter_class()
            compression = grpc_compression()
            if options.endpoint is None:
                # (as the exporter's own default: TLS as its OTEL_EXPORTER_OTLP_INSECURE says)
                return exporter_class(endpoint=DEFAULT_GRPC_ENDPOINT, compression=compression)
            if "://" not in options.endpoint:
                # A gRPC target (host:port): TLS as its OTEL_EXPORTER_OTLP_INSECURE says.
                return exporter_class(endpoint=options.endpoint, compression=compression)
            return exporter_class(
                endpoint=grpc_target(options.endpoint),
                insecure=urlsplit(options.endpoint).scheme != "https",
                compression=compression,
            )
        endpoint = options.endpoint
        if endpoint and not options.endpoint_is_traces_url:
            endpoint = traces_url(endpoint)
        return _http_exporter_class()(endpoint=endpoint or DEFAULT_HTTP_ENDPOINT)
    if options.exporter == "file":
        from .otlp_json import FileSpanExporter

        return FileSpanExporter(options.file_path, options.file_max_bytes)
    if options.exporter == "memory":
        return InMemorySpanExporter()
    return None


def grpc_compression() -> Any:
    """OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, else OTEL_EXPORTER_OTLP_COMPRESSION,
    read as OpenTelemetry's specification and the HTTP exporter read them
    (empty, or space alone, is unset; ``none`` is no compression), for the
    gRPC exporter, which refused both (spans off). Another value raises as
    the exporter does (switchtrace.E006), naming the variable that holds it
    (the exporter named an empty traces-specific one)."""
    from grpc import Compression

    for name in ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        value = os.environ.get(name, "").strip().lower()
        if not value:
            continue
        compression = {"gzip": Compression.Gzip, "none": Compression.NoCompression}.get(value)
        if compression is None:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.exporter import (
                    InvalidCompressionValueException as Invalid,
                )
            except ImportError:  # (an exporter without it)
                raise ValueError(f'Invalid value "{value}" for compression envvar {name}') from None
            raise Invalid(name, value)
        return compression
    return Compression.NoCompression


def _grpc_exporter_class() -> type[Any]:
    """opentelemetry-exporter-otlp's gRPC exporter, also taking
    :class:`EncodedSpans` through its ``_translate_data`` step (the step its
    export goes through to make the request message); the rest (channel,
    retries, timeout, compression, headers) is the exporter's own."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    class GrpcSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        takes_encoded = callable(getattr(OTLPSpanExporter, "_translate_data", None))

        def _translate_data(self, data: Any) -> Any:
            if isinstance(data, EncodedSpans):
                return ExportTraceServiceRequest.FromString(data.payload)
            return super()._translate_data(data)

    return GrpcSpanExporter


def _http_exporter_class() -> type[Any]:
    """opentelemetry-exporter-otlp's HTTP/protobuf exporter, also taking
    :class:`EncodedSpans`: their bytes go to the exporter's own HTTP client
    (endpoint, headers, timeout, retries, compression). Versions without that
    client get the SDK's spans instead (``takes_encoded`` is then False)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    class HttpSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        @property
        def takes_encoded(self) -> bool:
            return callable(getattr(getattr(self, "_client", None), "export", None))

        def export(self, spans: Any) -> SpanExportResult:
            if not isinstance(spans, EncodedSpans):
                return super().export(spans)
            if getattr(self, "_shutdown", False):
                return SpanExportResult.FAILURE
            result = self._client.export(spans.payload)  # type: ignore[arg-type]
            return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

    return HttpSpanExporter


#: Places in the application's code already logged as raising while spans
#: were made (module, function, line, exception type), by the span thread.
_application_errors: set[tuple[str, str, int, type[BaseException]]] = set()
#: Top-level names of the standard library's modules (Python 3.10+).
_STDLIB = frozenset(sys.stdlib_module_names) - {"__main__"}


def _application_frame(exc: BaseException) -> types.TracebackType | None:
    """The traceback entry of the application's own code that ``exc`` was
    raised in (its span processor's ``on_start`` / ``on_end``, a sampler it
    registered), else None: ours to report. The application's only when
    switchtrace's last frame called into OpenTelemetry (which called the
    application's processor) or a sampler's ``should_sample``, and the
    innermost frame outside the standard library is neither switchtrace's
    nor OpenTelemetry's: what switchtrace's code calls itself (Django's URL
    resolver, a view's attributes) is switchtrace's concern."""
    entries: list[types.TracebackType] = []
    traceback = exc.__traceback__
    while traceback is not None:
        entries.append(traceback)
        traceback = traceback.tb_next
    packages = [_package(entry) for entry in entries]
    ours = [i for i, package in enumerate(packages) if package == "switchtrace"]
    if not ours or ours[-1] + 1 >= len(entries):
        return None
    callee = ours[-1] + 1
    if (
        packages[callee] != "opentelemetry"
        and entries[callee].tb_frame.f_code.co_name != "should_sample"
    ):
        return None
    outside = [i for i in range(callee, len(entries)) if packages[i] not in _STDLIB]
    if not outside or packages[outside[-1]] in ("switchtrace", "opentelemetry"):
        return None
    return entries[outside[-1]]


def _package(entry: types.TracebackType) -> str:
    """The top-level package of a traceback entry's code ("" if unknown)."""
    module = entry.tb_frame.f_globals.get("__name__")
    return module.partition(".")[0] if isinstance(module, str) else ""


def _log_application_error(exc: BaseException, place: types.TracebackType) -> bool:
    """Once for each place and exception type: what raised, where (the line the traceback
    entry names: the frame's own line is where it last ran, a ``finally``
    or a ``with``'s cleanup after the line that raised), with its traceback.
    Whether it was logged (this time)."""
    frame = place.tb_frame
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    key = (str(module), code.co_name, place.tb_lineno, type(exc))
    if key in _application_errors:
        return False
    _application_errors.add(key)
    logger.warning(
        "switchtrace: the application's OpenTelemetry code raised while switchtrace made a "
        "request's spans, in %s.%s (%s, line %s): %s: %s; that request's spans are dropped "
        "(logged once for each place and exception type)",
        module,
        _qualified_name(frame),
        code.co_filename,
        place.tb_lineno,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    return True


def _qualified_name(frame: types.FrameType) -> str:
    """The qualified name of the function ``frame`` runs (``Class.method``).
    Python 3.10's code objects have no ``co_qualname``: a method's class is
    found from its first argument (``self``, ``cls``), as the class in its
    MRO whose attribute of that name runs this code. Asks the objects
    nothing: their type's ``__mro__`` and the classes' ``__dict__``."""
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
    if isinstance(qualname, str):
        return qualname
    try:
        if code.co_argcount:
            first: Any = frame.f_locals.get(code.co_varnames[0])
            owner: type = first if is_of_type(first, type) else type(first)
            for cls in owner.__mro__:
                function: Any = cls.__dict__.get(code.co_name)
                if is_of_type(function, (classmethod, staticmethod)):
                    function = function.__func__
                if is_of_type(function, types.FunctionType) and function.__code__ is code:
                    return f"{cls.__qualname__}.{code.co_name}"
    except Exception:  # a class out of the ordinary: its function's name alone
        pass
    return code.co_name


class LimitsError(ValueError):
    """An OTEL_*_LIMIT variable the SDK's ``SpanLimits`` refuses (its message
    names it and what it takes)."""


class ResourceError(ValueError):
    """The spans' resource holds text that is not UTF-8, which no span could
    be encoded with: an OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES from an
    environment file saved in Latin-1 ('caf\xe9', read by Python as a lone
    surrogate)."""


@contextlib.contextmanager
def _executors_numbered_apart() -> Iterator[None]:
    """The ThreadPoolExecutors this thread makes meanwhile numbered apart
    from the application's, below zero. The SDK runs its resource detectors
    in one made without a name prefix (``Resource.create()``, here and as
    the OTLP exporters' modules are imported), which took the next number
    of the class's counter: the application's next executor's threads
    were named one number on ('ThreadPoolExecutor-1_0' for '-0_0', in its
    logs' threadName). Executors other threads make meanwhile take theirs
    from the class's counter, as always. Pipelines are made one at a time:
    two threads' swaps overlapping put back each other's numbering."""
    executor = concurrent.futures.ThreadPoolExecutor
    with _numbering:
        counter = executor.__dict__.get("_counter")
        if counter is None:  # a Python that names them otherwise
            yield
            return
        apart = itertools.count(-1, -1).__next__
        here = threading.get_ident()

        def numbered() -> int:
            return apart() if threading.get_ident() == here else counter()

        executor._counter = staticmethod(numbered)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            executor._counter = counter  # type: ignore[attr-defined]


_numbering = threading.RLock()


def _check_resource(resource: Resource) -> None:
    for key, value in resource.attributes.items():
        for text in (key, *value) if isinstance(value, (tuple, list)) else (key, value):
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ResourceError(
                    f"its attribute {key} is {value!r}, which holds bytes that are not UTF-8 "
                    "(from SERVICE_NAME, OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES)"
                ) from None


class SpanPipeline(QueueWorker):
    """A record listener that turns sampled requests into spans."""

    thread_name = "switchtrace-spans"
    lost_what = "the spans of {} not made"

    #: Set when the pipeline encodes spans itself (see the module docstring).
    writer: JsonWriter | ProtobufWriter | None = None
    #: Spans in the export the thread is making (0 between exports), and
    #: those waiting for their batch: what :meth:`shutdown` says is not
    #: exported yet when its time runs out during an export.
    _exporting = 0
    _pending: list[Any] = []

    def __init__(
        self,
        options: ExportOptions,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.resolve = resolve
        #: Requests whose spans were never made: the queue was full, they
        #: were still queued when :meth:`shutdown`'s time ran out, or laying
        #: them out failed (a switchtrace error, logged as such).
        self.dropped = 0
        #: Spans not delivered: the exporter reported a failure (the
        #: collector down, 503 after its retries, 404, a file that cannot be
        #: written), their batch came due while exports were paused after
        #: one (their spans then only counted, possibly never made), its
        #: export request could not be made (a switchtrace error, logged as
        #: such; no pause follows: no collector refused it), or they
        #: were still waiting for their batch when :meth:`shutdown`'s time
        #: ran out.
        self.failed = 0
        #: Spans the exporter switchtrace made delivered, whether the
        #: pipeline encodes them itself (see :attr:`writer`) or they go
        #: through the SDK's processor (the application's provider keeps its
        #: own count).
        self.exported = 0
        #: Records turned into spans (or counted as failed, exports being
        #: paused), and the CPU time the pipeline's thread
        #: spent on them, exports included (``switchtrace bench --overhead``
        #: reports it per request).
        self.records = 0
        self.cpu_ns = 0
        self.exporter: SpanExporter | None = None
        # As the SDK's batch processor: at most this many spans per export
        # request, sent at least this often. Half a second rather than its
        # five by default: what waits for its batch is lost when the process
        # ends by a signal's default action, without its exit hooks (SIGTERM
        # from docker compose stop, systemd or Kubernetes, which uvicorn
        # raises again after its graceful shutdown).
        self._batch_size = _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        self._delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS) / 1000
        self._last_drop_log = self._last_fail_log = -LOG_INTERVAL
        #: ``failed`` and ``dropped`` as the last warnings told them.
        self._told = (0, 0)
        #: Exports paused after a failure (the module docstring): none before
        #: ``_retry_at`` on ``_clock``, the pause ``_backoff`` seconds long
        #: (0 after a success). Only the pipeline's thread changes them, but
        #: for :meth:`shutdown`'s last attempt.
        self._clock = clock
        self._retry_at = 0.0
        self._backoff = 0.0
        #: The provider switchtrace made for itself, if it made one: shut
        #: down with the pipeline, even once the application's is used.
        self._made: TracerProvider | None = None
        self.processor: Any = None
        #: The SDK's span limits, read as our provider reads them (once,
        #: here), for the spans the pipeline lays out itself.
        self.limits: Limits | None = None
        #: The global provider as the request's path last saw it.
        self._global = current = _global_provider()
        if _is_configured(current):
            # The application configured OpenTelemetry itself: use its
            # provider, sampler and exporters, and add nothing of ours.
            self.provider: Any = current
            self.own_provider = False
            self._say_sample_rate_unused()
        else:
            sampler = (
                sampling.ParentBased(sampling.TraceIdRatioBased(options.sample_rate))
                if options.sample_rate is not None
                else _environ_sampler()
            )
            try:
                span_limits = SpanLimits()
            except ValueError as exc:  # a provider made now would raise it too
                raise LimitsError(str(exc)) from None
            self.limits = Limits(span_limits)
            with _executors_numbered_apart():
                resource = Resource.create({"service.name": options.service_name})
                _check_resource(resource)
                self.provider = TracerProvider(
                    sampler=sampler,
                    resource=resource,
                    shutdown_on_exit=False,
                    span_limits=span_limits,
                )
                self._made = self.provider
                self.own_provider = True
                self.exporter = build_exporter(options)
            if self.exporter is not None and getattr(self.exporter, "takes_encoded", False):
                json_out = getattr(self.exporter, "encoding", "protobuf") == "json"
                self.writer = (JsonWriter if json_out else ProtobufWriter)(
                    self.provider.resource, InstrumentationScope("switchtrace", __version__)
                )
            elif isinstance(self.exporter, InMemorySpanExporter):
                self.processor = SimpleSpanProcessor(
                    _Counted(self.exporter, self._fail, self._delivered)
                )
                self.provider.add_span_processor(self.processor)
            elif self.exporter is not None:
                self.processor = BatchSpanProcessor(
                    _Counted(self.exporter, self._fail, self._delivered),
                    schedule_delay_millis=self._delay * 1000,
                )
                self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("switchtrace", __version__)
        self._scope = InstrumentationScope("switchtrace", __version__)
        propagation.load()
        self._start(options.queue_size)

    # -- on the request's path (cheap) ----------------------------------------

    def capture(self, record: tracer.RequestRecord) -> None:
        """At request start: note the application's server span, if one is
        active; or the context of a span its sampler did not sample."""
        span = trace.get_current_span()
        if span.is_recording():
            if getattr(span, "kind", None) is trace.SpanKind.SERVER:
                record.extra["otel.server_span"] = span
            record.extra.pop("otel.unsampled", None)
            return
        context = span.get_span_context()
        # Not a span that has ended (the previous request's, in a keep-alive
        # connection's copied context): the SDK's spans have an end time
        # then; the NonRecordingSpan of a span its sampler dropped has none.
        if (
            context.is_valid
            and not context.trace_flags.sampled
            and getattr(span, "end_time", None) is None
        ):
            record.extra["otel.unsampled"] = span

    def at_headers(
        self, record: tracer.RequestRecord, figures: tracer.Figures | None = None
    ) -> None:
        """The figures so far on the application's server span. ``figures``:
        those the response carries, before the headers are sent (for a span
        that ends before, started by a middleware above switchtrace's)."""
        span = record.extra.get("otel.server_span")
        if span is not None and span.is_recording():
            attributes = request_attributes(record)
            if figures is not None and record.at_headers is None:
                # Its whole request as far as it can tell: the return trips
                # of the bridge calls around the middleware, which the
                # figures count, have not happened yet (the totals would be
                # below the figures "before the headers"). A span still
                # recording at the end gets the request's totals then.
                attributes["switchtrace.context_switches"] = figures.context_switches
                attributes["switchtrace.thread_hops"] = figures.thread_hops
                attributes["switchtrace.event_loops_created"] = figures.event_loops_created
                attributes["switchtrace.threads_started"] = figures.threads_started
                attributes["switchtrace.context_switches_before_headers"] = figures.context_switches
                attributes["switchtrace.thread_hops_before_headers"] = figures.thread_hops
            span.set_attributes(attributes)

    def __call__(self, record: tracer.RequestRecord) -> None:
        """Listener: called in the request's context as its record finishes."""
        span = record.extra.get("otel.server_span")
        if span is not None and span.is_recording():
            span.set_attributes(request_attributes(record))
        if self.own_provider and _global_provider() is not self._global:
            self._register_exit_hook_again()
        if self._pid != os.getpid():
            self._here()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop()

    def _register_exit_hook_again(self) -> None:
        """The application set its global provider after this pipeline was
        made (see :meth:`_follow_application_provider`): the SDK's exit hook
        that shuts it down, registered after ours, would run before it, and
        the records still queued at exit be handed to a provider already
        shut down (their spans lost, untold). Ours once more, now the newer,
        so that it runs first: from the first request to end after the
        change, or from the span thread as it follows the provider,
        whichever comes first. The first stays registered (the second
        shutdown returns at once): one registered while the exit hooks run,
        which never runs then, must not have taken its place."""
        self._global = _global_provider()
        if _is_configured(self._global) and not self._stopping.is_set():
            atexit.register(self._shutdown_at_exit)

    # -- in the pipeline's thread ---------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Also released in the child: locks that the parent's thread may
        have held at the fork."""
        # The parent's losses are the parent's to tell.
        self.failed = self.dropped = 0
        self._told = (0, 0)
        reinit = getattr(self.exporter, "_at_fork_reinit", None)
        if callable(reinit):
            reinit()
        super()._after_fork_in_child()

    def _run(self) -> None:
        # The pipeline's own thread: lays out spans one record at a time and,
        # when it encodes them itself, exports them in batches.
        pending: list[Any] = []
        self._pending = pending
        due = 0.0
        stopping = self._stopping
        while True:
            if stopping.is_set():
                if time.monotonic() >= self._deadline:
                    # shutdown() has given up waiting: what is left is lost
                    # (it counts what is still queued).
                    self._fail(
                        len(pending),
                        "shut down with spans waiting for their batch "
                        "(the shutdown's time ran out)",
                    )
                    return
                # Take what is queued without waiting (the queue may have been
                # too full for shutdown's sentinel), then stop.
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            else:
                try:
                    timeout = max(due - time.monotonic(), 0) if pending else None
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:  # the batch is due
                    self._export(pending)
                    continue
            if item is None or isinstance(item, Flush):  # shutdown, flush
                self._export(pending)
                if item is None:
                    return
                item.set()
                continue
            started = time.thread_time_ns()
            # Exports paused after a failure for longer than a batch waits:
            # this record's batch would come due unsent, so its spans are
            # only counted, not made (shutdown ends the pause, for its last
            # attempt).
            paused = self._clock() + self._delay < self._retry_at
            built, told = True, False
            try:
                if self._excluded(item) or (paused and self._count_lost(item)):
                    encoded = []
                else:
                    encoded = self._emit(item)
            except BaseException as exc:
                # The record's spans are not made, and it is counted as
                # dropped. A switchtrace error is the guard's to log; code of
                # the application's that raised (its span processor, sampler)
                # is not switchtrace's error, and is logged as its own. Any
                # exception (the application's SystemExit too): this thread
                # is switchtrace's, and ending it would end every later
                # request's spans.
                culprit = _application_frame(exc)
                if culprit is None:
                    swallow("span building")
                else:
                    # Its warning, if logged now, says these spans are dropped.
                    told = _log_application_error(exc, culprit)
                encoded = []
                built = False
            # Let go of the record now: this frame would otherwise keep it,
            # and everything its crossings hold, until the next one comes
            # (the culprit's traceback holds the frames that built its spans).
            item = culprit = None
            if built:
                self.records += 1
            else:
                self.dropped += 1
                if told:
                    self._told = (self._told[0], self._told[1] + 1)
            self.cpu_ns += time.thread_time_ns() - started
            if not paused:  # (counting spans takes the thread a few µs: no need)
                _yield_gil()
            if encoded:
                if not pending:
                    due = time.monotonic() + self._delay
                pending += encoded
                # Batches of at most OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans, as
                # the SDK's processor sends (a limit set to stay under a
                # collector's size limit): a request's spans may be split.
                while len(pending) >= self._batch_size:
                    batch = pending[: self._batch_size]
                    del pending[: self._batch_size]
                    self._export(batch)

    def _excluded(self, record: tracer.RequestRecord) -> bool:
        """Whether the request's URL is one of those left out of tracing
        (OTEL_PYTHON_DJANGO_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS):
        no span is made of it, as opentelemetry-instrumentation-django makes
        none. Not when an application's server span was active: its
        instrumentation traced the request, and the crossings are its
        children."""
        pattern = self.options.excluded_urls
        return (
            pattern is not None
            and record.extra.get("otel.server_span") is None
            and pattern.search(request_url(record)) is not None
        )

    def _count_lost(self, record: tracer.RequestRecord) -> bool:
        """Exports paused: count the spans the pipeline would encode for the
        record as failed, after the same sampling decision, without making
        them. False when its spans would not be encoded here (the
        application's provider, the SDK's processor): :meth:`_emit` then."""
        if self.own_provider:
            self._follow_application_provider()
        if not self.own_provider or self.writer is None:
            return False
        server_span = record.extra.get("otel.server_span")
        spans = count_spans(
            record,
            sampler=self.provider.sampler,
            ids=self.provider.id_generator,
            parent=None if server_span is not None else self._parent_of(record),
            server_span=server_span,
        )
        self._fail(spans, self._paused())
        return True

    def _emit(self, record: tracer.RequestRecord) -> list[Any]:
        """The record's spans: encoded, when the pipeline encodes them (to be
        exported in a batch), else handed to the SDK here."""
        server_span = record.extra.get("otel.server_span")
        if self.own_provider:
            self._follow_application_provider()
        if self.own_provider:
            # Under our request span, or under the application's server span
            # (its trace, the crossings its children) when one was active.
            if self.writer is None and self.processor is None:
                return []
            planned = plan_spans(
                record,
                sampler=self.provider.sampler,
                ids=self.provider.id_generator,
                parent=None if server_span is not None else self._parent_of(record),
                resolve=self.resolve,
                server_span=server_span,
                limits=self.limits,
            )
            if planned is None:
                return []
            if self.writer is not None:
                return self.writer.spans(planned)  # type: ignore[return-value]
            for span in readable_spans(planned, resource=self.provider.resource, scope=self._scope):
                self.processor.on_end(span)
            return []
        # The application's provider: through its tracer, so that its own
        # processors, limits and sampler see every span. Under the span of
        # the request its sampler left out (opentelemetry-instrumentation-
        # django's, not sampled), if any: a root of ours would be sampled
        # again, a trace the application decided not to make.
        emit_spans(
            record,
            self.tracer,
            parent=self._application_parent_of(record),
            server_span=server_span,
            resolve=self.resolve,
            pause=_yield_gil,
        )
        return []

    def _follow_application_provider(self) -> None:
        """The application set its global provider after this pipeline was
        made (in gunicorn's ``post_fork`` hook under ``--preload``, as
        OpenTelemetry's documentation advises for pre-forking servers; in
        ``wsgi.py`` after ``get_wsgi_application()``): its provider makes
        the spans of the records from now on, as it would have from the
        start. What is already encoded is still exported by ours."""
        current = _global_provider()
        if current is self.provider or not _is_configured(current):
            return
        self.provider = current
        self.tracer = current.get_tracer("switchtrace", __version__)
        self.own_provider = False
        self._register_exit_hook_again()
        self._say_sample_rate_unused()

    def _say_sample_rate_unused(self) -> None:
        """The application's provider samples switchtrace's spans: a
        SAMPLE_RATE set in the settings is not read, and the log says so."""
        if self.options.sample_rate is not None:
            logger.warning(
                "switchtrace: SWITCHTRACE['SAMPLE_RATE'] (%r) is not used: the application's "
                "TracerProvider makes switchtrace's spans and its sampler decides which "
                "requests are recorded (set the sampler there, or OTEL_TRACES_SAMPLER and "
                "OTEL_TRACES_SAMPLER_ARG for opentelemetry-instrument)",
                self.options.sample_rate,
            )

    def _export(self, pending: list[Any]) -> None:
        if not pending or self.writer is None or self.exporter is None:
            pending.clear()
            return
        if self._clock() < self._retry_at:
            # Exports paused after a failure: the batch is not sent.
            lost = len(pending)
            pending.clear()
            self._fail(lost, self._paused())
            return
        started = time.thread_time_ns()
        count = len(pending)
        batch = result = None
        raised = False
        try:
            # The request's encoding inside the guard too: an error there
            # loses this batch, not the pipeline's thread.
            batch = EncodedSpans(self.writer.request(pending), count)
            pending.clear()
            self._exporting = count
            result = self.exporter.export(batch)  # type: ignore[arg-type]
        except BaseException:
            # Any exception (an exporter's SystemExit, a gevent.Timeout), as
            # when spans are made: it loses this batch, not the thread.
            raised = True
            swallow("span export")
        finally:
            self._exporting = 0
            pending.clear()
            self.cpu_ns += time.thread_time_ns() - started
        if result is SpanExportResult.SUCCESS:
            self.exported += count
            self._backoff = 0.0
            return
        if raised:
            # Our own encoding failed, or the exporter raised (an error
            # logged as switchtrace's, whatever the exporter: the OTLP
            # exporters report a collector's refusal as a result, and never
            # raise for it): no collector refused anything, so nothing to
            # pause; the next batch is sent when it is due.
            self._fail(
                count,
                "the export request could not be made"
                if batch is None
                else "span export raised an error",
            )
            return
        if not getattr(self.exporter, "pause_after_failure", True):
            # The file exporter: no collector to spare, no error of its own
            # logged; the next batch is written when it is due (see
            # FileSpanExporter), and the warning says why this one was not.
            self._fail(count, f"span export failed ({self.exporter.failure()})")  # type: ignore[attr-defined]
            return
        # No export for a while, longer after each failure in a row: the
        # exporter logs an error of its own for every one that fails.
        self._backoff = min(self._backoff * 2 or FAILURE_BACKOFF_S, MAX_FAILURE_BACKOFF_S)
        self._retry_at = self._clock() + self._backoff
        if self._stopping.is_set():  # no export to pause: the thread is stopping
            self._fail(count)
        else:
            self._fail(count, f"span export failed; exports paused for {self._backoff:g} s")

    def _paused(self) -> str:
        """The warning's start for spans not sent because exports are paused."""
        left = max(self._retry_at - self._clock(), 0.0)
        return f"span exports paused after a failed one, for {left:.1f} s more"

    def _application_parent_of(self, record: tracer.RequestRecord) -> Any:
        """Under the application's provider: the span its sampler left out,
        if the request has one (whatever traceparent came with it: the
        application's decision, which its sampler is asked again), else the
        incoming traceparent."""
        unsampled = record.extra.get("otel.unsampled")
        if unsampled is None:
            return self._parent_of(record)
        return trace.set_span_in_context(unsampled)

    def _parent_of(self, record: tracer.RequestRecord) -> Any:
        return propagation.parent(record.extra)

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_INTERVAL:
            self._last_drop_log = now
            self._told = (self._told[0], self.dropped)
            logger.warning(
                "switchtrace: span queue full (%s); the spans of %s dropped so far",
                count(self.options.queue_size, "record"),
                count(self.dropped, "request"),
            )

    def _delivered(self, spans: int) -> None:
        """``spans`` spans delivered by the SDK's processor (in its thread,
        or in the one that flushes it: one at a time, under its lock)."""
        self.exported += spans

    def _fail(self, spans: int, why: str = "span export failed") -> None:
        """``spans`` spans not delivered (a failed export, exports paused);
        ``why`` begins the warning."""
        if not spans:
            return
        self.failed += spans
        now = time.monotonic()
        if now - self._last_fail_log >= LOG_INTERVAL:
            self._last_fail_log = now
            self._told = (self.failed, self.dropped)
            logger.warning(
                "switchtrace: %s; %s lost so far (and the spans of %s dropped)",
                why,
                count(self.failed, "span"),
                count(self.dropped, "request"),
            )

    # -- lifecycle -------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued before it is dealt with: its spans
        exported, or counted in :attr:`failed` (the export failed, or
        exports are paused after a failure: a flush keeps to the pause, as
        the batches that come due do). False when ``timeout`` passed first or
        :meth:`shutdown`'s time ran out (tests, ``switchtrace bench``)."""
        deadline = time.monotonic() + timeout
        if not self._here() or not self._worker.is_alive():
            return self._queue.empty()
        if not super().flush(timeout):
            return False
        if self._made is not None and self.processor is not None:
            remaining = max(deadline - time.monotonic(), 0.001)
            return bool(self._made.force_flush(int(remaining * 1000)))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread; export what is queued within ``timeout`` seconds,
        one deadline for the whole shutdown. What is left when it passes
        (an export hanging, a queue too long) is counted as lost, and the
        thread stops as soon as it is free (a daemon thread meanwhile).
        Exports paused after a failure are tried once more even so: the
        collector may be back, and there is no later (if that export fails
        too, the pause holds for the rest)."""
        if self._stopping.is_set():
            return
        # The pause ends here, from the caller's thread (the pipeline's may
        # be waiting for records, or in an export: one that fails now starts
        # a pause again, and that was the last attempt).
        self._retry_at = 0.0
        self._stop(timeout)
        # Still in an export at the deadline (a collector that hangs, or
        # answers after the exporter's retries): the thread counts its spans
        # when the export ends, which a process that exits now never sees.
        # Or laying out a record's spans (with spans of earlier ones waiting
        # for their batch, perhaps): the same, for that record's too.
        exporting = self._exporting
        if self._here() and self._worker.is_alive():
            waiting = count(exporting + len(self._pending), "span")
            if exporting:
                logger.warning(
                    "switchtrace: shut down with %s not exported yet: an export was still in "
                    "progress when the shutdown's time ran out (lost if the process ends first)",
                    waiting,
                )
            elif self._pending:
                logger.warning(
                    "switchtrace: shut down with %s not exported yet and a request's spans "
                    "still being made when the shutdown's time ran out (lost if the process "
                    "ends first)",
                    waiting,
                )
            else:
                logger.warning(
                    "switchtrace: shut down with a request's spans still being made when the "
                    "shutdown's time ran out (lost if the process ends first)"
                )
        if self._made is not None:
            self._shut_batch_processor(max(self._deadline - time.monotonic(), 0.0))
            self._made.shutdown()
            if self.writer is not None and self.exporter is not None:
                self.exporter.shutdown()
        self._tell_the_rest()

    def _undone(self) -> str:
        exporting = self._exporting + len(self._pending)
        in_export = f"{count(exporting, 'span')} not exported" if exporting else ""
        return " and ".join(filter(None, [super()._undone(), in_export]))

    def told(self) -> None:
        """The losses so far are told (``switchtrace demo``'s own line):
        shutdown tells only those that come after."""
        self._told = (self.failed, self.dropped)

    def _tell_the_rest(self) -> None:
        """At shutdown, the losses that no warning told (one comes at most
        once a minute: those after the last would never be seen). Those
        the shutdown's own warning told, when its time ran out, are not."""
        if self._pid != os.getpid():
            # A child forked past the at-fork hooks that served nothing: the
            # counts are its parent's, for its parent to tell.
            return
        failed, dropped = self._told
        untold = _losses(self.failed - failed, self.dropped - dropped - self.lost_at_stop)
        if untold:
            in_all = _losses(self.failed, self.dropped)
            since = "" if untold == in_all else f" ({untold} since the last warning)"
            logger.warning("switchtrace: shut down with %s in all%s", in_all, since)

    def _shut_batch_processor(self, seconds: float) -> None:
        """The SDK's batch processor (exporters without the hook for encoded
        spans) waits for its thread for up to 30 s when shut down the usual
        way: give it what is left of the deadline where the SDK takes one
        (its BatchProcessor, in recent SDKs). A thread cannot do the waiting:
        Python 3.12 on starts none during exit, where shutdown runs."""
        batch = getattr(self.processor, "_batch_processor", None)
        stop = getattr(batch, "shutdown", None)
        if stop is None:
            return
        try:
            if "timeout_millis" in inspect.signature(stop).parameters:
                stop(timeout_millis=int(seconds * 1000))
                # Past its timeout it exports no more: what it still holds is lost.
                left = len(getattr(batch, "_queue", ()))
                if left:
                    self._fail(left)
        except Exception:
            swallow("span processor shutdown")


def _losses(failed: int, dropped: int) -> str:
    """``12 spans lost``, ``the spans of 3 requests dropped``, or both."""
    return " and ".join(
        ([f"{count(failed, 'span')} lost"] if failed > 0 else [])
        + ([f"the spans of {count(dropped, 'request')} dropped"] if dropped > 0 else [])
    )


class _Counted(SpanExporter):
    """The exporter given to the SDK's processor (the memory exporter, an
    OTLP exporter without the hook for encoded spans): spans it exports, or
    fails to, are counted as the pipeline's own exports are."""

    def __init__(self, exporter: SpanExporter, fail: Any, delivered: Any) -> None:
        self._exporter = exporter
        self._fail = fail
        self._delivered = delivered

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except BaseException:  # (any: counted, then the SDK's to deal with)
            self._fail(len(spans))
            raise
        if result is SpanExportResult.SUCCESS:
            self._delivered(len(spans))
        else:
            self._fail(len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis))


def _yield_gil() -> None:
    """Let request threads waiting for the GIL run now, not at the end of the
    interpreter's 5 ms switch interval: every thread hop of a request waits
    for the GIL, and a busy pipeline thread would otherwise make each of them
    wait (measured by `switchtrace bench --overhead`). Once per record when
    the pipeline encodes the spans itself (a record's spans take a few
    hundred µs, and each yield is a round trip of the GIL: 60-70 µs of the
    thread's CPU time in that benchmark here); once per span when they go
    through the application's SDK provider (:func:`emit_spans`), whose spans
    cost far more each."""
    time.sleep(0)


def _environ_sampler() -> sampling.Sampler:
    """The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, as
    the SDK's configuration (``opentelemetry-instrument``) builds it: one of
    the SDK's, or one a package registers (entry point group
    ``opentelemetry_traces_sampler``), which the SDK's own default reading of
    the variables would replace with one that records every request. Read
    as switchtrace.E009 checks them: the space around a value is not part of
    it, and an empty value is unset (the SDK's default reading takes both
    for a name it does not know, with a warning: ``always_off `` recorded
    every request)."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip()
    known = (name or "parentbased_always_on").lower()
    if known in ("traceidratio", "parentbased_traceidratio"):
        ratio = (
            sampling.TraceIdRatioBased
            if known == "traceidratio"
            else sampling.ParentBasedTraceIdRatio
        )
        argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            return ratio(float(argument) if argument else 1.0)
        except ValueError:  # as the SDK: the specification's default
            return ratio(1.0)
    if known in sampling._KNOWN_SAMPLERS:
        return cast(sampling.Sampler, sampling._KNOWN_SAMPLERS[known])
    if name:
        try:
            from opentelemetry.sdk._configuration import _import_sampler
        except ImportError:  # an SDK without it: its default reading below
            pass
        else:
            sampler = _import_sampler(name)
            if sampler is not None:
                return sampler
    return sampling._get_from_env_or_default()


def _global_provider() -> Any:
    """The global provider as OpenTelemetry holds it, None until one is set.
    Not ``trace.get_tracer_provider()``: with OTEL_PYTHON_TRACER_PROVIDER in
    the environment, that makes the provider it names and sets it as the
    global one, which the application's own ``set_tracer_provider`` could
    then no longer replace ("Overriding of current TracerProvider is not
    allowed"); and on every request's path it would look in the
    environment each time (a microsecond, three times the listener's own
    work)."""
    return getattr(trace, "_TRACER_PROVIDER", None)


def application_provider() -> bool:
    """Whether the application has set its global TracerProvider (as
    ``opentelemetry-instrument`` does before the application starts): a
    pipeline made now uses it, its sampler included, and makes none of its
    own."""
    return _is_configured(_global_provider())


def _is_configured(provider: Any) -> bool:
    """Whether ``provider`` is one the application set: not the API's
    placeholders. One without a span processor yet (OTEL_PYTHON_TRACER_PROVIDER's,
    made by the first ``trace.get_tracer()``, before the application adds its
    processors) is the application's all the same: its own spans go where it
    sends them, and switchtrace's with them (a request span of switchtrace's
    own, in another backend, would lose the application's server span that
    switchtrace's spans are made under)."""
    return provider is not None and not isinstance(
        provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def _env_int(name: str, default: int) -> int:
    """A positive integer from the environment, as the SDK reads its OTEL_BSP_*
    variables. Empty, or space alone, is unset (the specification's rule for
    every ``OTEL_*`` variable), without a warning."""
    setting = os.environ.get(name, "").strip()
    if not setting:
        return default
    try:
        value = int(setting)
    except ValueError:
        logger.warning("switchtrace: %s is not an integer; using %d", name, default)
        return default
    return value if value > 0 else default
