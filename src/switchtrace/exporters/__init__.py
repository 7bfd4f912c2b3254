"""switchtrace's exporters: they own the OpenTelemetry SDK and turn finished
request records into spans (``otlp``, ``file``, ``memory``) or console lines
(``console``). Nothing here runs on a request's path but a queue put, and
for spans a look for an application's server span (and, under one, setting
the request's figures on it).
"""

import os


def _import_the_sdk() -> None:
    """Import opentelemetry.sdk.trace, which reads OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT
    as it is imported (a module constant kept for backward compatibility)
    and raises ValueError on a value that is not a non-negative integer:
    Django's startup died of it, switchtrace disabled too. Imported again
    with the variable set aside for that import alone, as the constant is
    all it reads then; the SDK's SpanLimits still refuse it, read when
    switchtrace's provider is made: switchtrace.E006, spans off, headers on."""
    name = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"
    try:
        import opentelemetry.sdk.trace
    except ValueError:
        value = os.environ.pop(name, None)
        if value is None:
            raise
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        finally:
            os.environ[name] = value


_import_the_sdk()

from .console import ConsoleReporter, format_record  # noqa: E402
from .otlp_json import FileSpanExporter, to_otlp_json  # noqa: E402
from .pipeline import EXPORTERS, PROTOCOLS, ExportOptions, SpanPipeline, traces_url  # noqa: E402
from .spans import crossing_attributes, emit_spans, request_attributes  # noqa: E402

__all__ = [
    "EXPORTERS",
    "PROTOCOLS",
    "ConsoleReporter",
    "ExportOptions",
    "FileSpanExporter",
    "SpanPipeline",
    "crossing_attributes",
    "emit_spans",
    "format_record",
    "request_attributes",
    "to_otlp_json",
    "traces_url",
]
