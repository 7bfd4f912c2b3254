"""Wires the exporters to the request records, as the settings say.

Rebuilt only when the export settings change, and always outside a request
(AppConfig.ready, setting_changed), so that the pipeline's thread is never
counted as started by a request.
"""

from __future__ import annotations

import threading

from .. import tracer
from ..exporters import ConsoleReporter, ExportOptions, SpanPipeline
from . import components

_lock = threading.Lock()
_options: ExportOptions | None = None
_pipeline: SpanPipeline | None = None
#: A pipeline kept alive but fed no records (see :func:`detach`).
_detached: SpanPipeline | None = None
_console: ConsoleReporter | None = None


def configure(options: ExportOptions | None) -> None:
    global _options, _pipeline, _console
    with _lock:
        if options == _options and (_pipeline or _console or options is None):
            return
        _stop()
        _options = options
        if options is None or options.exporter == "none":
            return
        if options.exporter == "console":
            _console = ConsoleReporter(components.resolve)
            tracer.add_listener(_console)
            return
        _pipeline = SpanPipeline(options, resolve=components.resolve)
        tracer.add_listener(_pipeline)


def shutdown() -> None:
    global _options
    with _lock:
        _stop()
        _options = None


def detach() -> None:
    """Stop making spans, as if the exporter were "none", but keep the
    pipeline (its thread and its caches) for :func:`attach`: ``switchtrace
    bench --overhead`` switches between modes every round, and a server's
    pipeline lives as long as the process."""
    global _pipeline, _detached
    with _lock:
        if _pipeline is not None:
            tracer.remove_listener(_pipeline)
            _pipeline, _detached = None, _pipeline


def attach() -> None:
    """Make spans again with the pipeline :func:`detach` kept."""
    global _pipeline, _detached
    with _lock:
        if _detached is not None and _pipeline is None:
            _pipeline, _detached = _detached, None
            tracer.add_listener(_pipeline)


def _stop() -> None:
    global _pipeline, _detached, _console
    if _detached is not None:
        _detached.shutdown()
        _detached = None
    if _pipeline is not None:
        tracer.remove_listener(_pipeline)
        _pipeline.shutdown()
        _pipeline = None
    if _console is not None:
        tracer.remove_listener(_console)
        _console = None


def pipeline() -> SpanPipeline | None:
    """The span pipeline in use, if spans are being made."""
    return _pipeline
