"""switchtrace's exporters: they own the OpenTelemetry SDK and turn finished
request records into spans (``otlp``, ``file``, ``memory``) or console lines
(``console``). Nothing here runs on a request's path but a queue put, and
for spans a look for an application's server span (and, under one, setting
the request's figures on it).
"""

from .console import ConsoleReporter, format_record
from .otlp_json import FileSpanExporter, to_otlp_json
from .pipeline import EXPORTERS, PROTOCOLS, ExportOptions, SpanPipeline, traces_url
from .spans import crossing_attributes, emit_spans, request_attributes

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
