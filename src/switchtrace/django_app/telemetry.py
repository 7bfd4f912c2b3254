"""Wires the exporters to the request records, as the settings say.

Rebuilt only when the export settings change, and always outside a request
(AppConfig.ready, setting_changed), so that the pipeline's thread is never
counted as started by a request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .. import tracer
from ..exporters import ConsoleReporter, ExportOptions, SpanPipeline
from ..exporters.pipeline import LimitsError, ResourceError
from . import components

_lock = threading.Lock()
_options: ExportOptions | None = None
#: Why the exporter asked for could not be made (the OTLP exporter raising
#: for an OTEL_* variable), or None.
_failure: str | None = None
#: What to do about it: the hint of switchtrace.E006, which says it.
FAILURE_HINT = "Correct or unset the OTEL_* variable it names, or choose another EXPORTER."
_pipeline: SpanPipeline | None = None
_console: ConsoleReporter | None = None
#: False between :func:`detach` and :func:`attach`: the exporter is kept
#: alive but fed no records.
_attached = True


def configure(options: ExportOptions | None) -> None:
    global _options, _pipeline, _console, _failure
    with _lock:
        if options == _options and (_listener() is not None or options is None):
            _attach()  # the exporter in place is the one asked for
            return
        _stop()
        _options = options
        if options is None or options.exporter == "none":
            return
        if options.exporter == "console":
            _console = ConsoleReporter(components.resolve, queue_size=options.queue_size)
            tracer.add_listener(_console)
            return
        try:
            _pipeline = SpanPipeline(options, resolve=components.resolve)
        except Exception as exc:
            # The OTLP exporters read the OTEL_EXPORTER_OTLP_* variables
            # themselves, and some raise for a value they do not take
            # (OTEL_EXPORTER_OTLP_COMPRESSION under gRPC): no spans, the
            # headers as usual, and the reason told at startup (and by the
            # system checks, as switchtrace.E006).
            if isinstance(exc, ResourceError):
                _failure = f"The spans' resource cannot be written, so no spans are exported: {exc}"
            elif isinstance(exc, LimitsError):
                # OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT and the like, which the
                # SDK's provider reads (and refuses) when it is made.
                _failure = (
                    f"The OpenTelemetry span limits cannot be read, so no spans are exported: {exc}"
                )
            else:
                _failure = (
                    f"The {options.exporter} exporter cannot be made, so no spans are "
                    f"exported: {type(exc).__name__}: {exc}"
                )
            from .apps import startup_error

            # Logged as a setting that keeps switchtrace disabled is: the
            # message, the id and the hint of the check that says it.
            startup_error(
                f"switchtrace: {_failure}. (switchtrace.E006) {FAILURE_HINT}", "switchtrace.E006"
            )
            return
        tracer.add_listener(_pipeline)


def shutdown() -> None:
    global _options
    with _lock:
        _stop()
        _options = None


def detach() -> None:
    """Stop exporting, as if the exporter were "none", but keep the exporter
    (the pipeline's thread and caches) for :func:`attach` or a
    :func:`configure` with the same options: ``switchtrace bench --overhead``
    switches between modes every round, and a server's pipeline lives as
    long as the process."""
    global _attached
    with _lock:
        listener = _listener()
        if _attached and listener is not None:
            tracer.remove_listener(listener)
        _attached = False


def attach() -> None:
    """Export again with the exporter :func:`detach` kept."""
    with _lock:
        _attach()


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Nothing exported in the block (``switchtrace explain --measure``'s
    requests are not the project's traffic); as it was after."""
    with _lock:
        was_attached = _attached
    detach()
    try:
        yield
    finally:
        if was_attached:
            attach()


def _listener() -> SpanPipeline | ConsoleReporter | None:
    return _pipeline if _pipeline is not None else _console


def _attach() -> None:
    global _attached
    listener = _listener()
    if not _attached and listener is not None:
        tracer.add_listener(listener)
    _attached = True


def failure() -> str | None:
    """Why the exporter the settings ask for could not be made, if it could not."""
    return _failure


def _stop() -> None:
    global _pipeline, _console, _attached, _failure
    _failure = None
    listener = _listener()
    if _attached and listener is not None:
        tracer.remove_listener(listener)
    if _pipeline is not None:
        _pipeline.shutdown()
    if _console is not None:
        _console.shutdown()
    _pipeline = _console = None
    _attached = True


def pipeline() -> SpanPipeline | None:
    """The span pipeline in use, if spans are being made."""
    return _pipeline if _attached else None
