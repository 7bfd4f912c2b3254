"""The trace context a request comes with, read as the application reads it.

OpenTelemetry's global propagator says which headers carry it: the one
``OTEL_PROPAGATORS`` configures (W3C Trace Context and Baggage when it is
unset; ``b3``, ``b3multi``, ``jaeger``… from the packages that register
them), or the one the application set with ``set_global_textmap``. The
headers it reads are copied from the request as it arrives (each up to
:data:`MAX_PROPAGATION_HEADER` characters); the spans thread extracts the
parent from them, with the same propagator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..tracer.guard import logger

#: Longest trace context header taken from a request; longer ones are ignored.
MAX_PROPAGATION_HEADER = 512

#: record.extra's key for the trace context headers a request came with
#: ({the propagator's field name: the value}).
TRACE_CONTEXT = "trace_context"

#: What is read when OpenTelemetry's global propagator cannot be had
#: (``opentelemetry.propagate`` failing to import: an OTEL_PROPAGATORS naming
#: a propagator not installed, which switchtrace.E013 reports at startup).
_W3C = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class Propagation:
    """A propagator and the headers it reads: as WSGI environ keys, and as
    ASGI header names, each with the field name the propagator asks for."""

    textmap: TextMapPropagator
    environ_keys: tuple[tuple[str, str], ...]
    header_names: dict[bytes, tuple[str, ...]]


_current: Propagation | None = None
_get_global_textmap: Callable[[], TextMapPropagator] | None = None
#: The propagator types whose extract raised (logged once each).
_told: set[type] = set()


def propagation() -> Propagation:
    """The application's global propagator and its headers (recomputed when
    the application sets another)."""
    global _current
    textmap = _global_textmap()
    current = _current
    if current is not None and current.textmap is textmap:
        return current
    fields = _fields(textmap)
    names: dict[bytes, tuple[str, ...]] = {}
    for field in fields:
        name = field.lower().encode("latin-1")
        names[name] = (*names.get(name, ()), field)
    current = Propagation(
        textmap,
        tuple(("HTTP_" + field.upper().replace("-", "_"), field) for field in fields),
        names,
    )
    _current = current
    return current


def _global_textmap() -> TextMapPropagator:
    global _get_global_textmap
    if _get_global_textmap is None:
        try:
            from opentelemetry.propagate import get_global_textmap
        except Exception:
            # OTEL_PROPAGATORS naming one not installed (switchtrace.E013
            # says so where spans are made): tried once, not every request.
            _get_global_textmap = _w3c
            return _W3C
        _get_global_textmap = get_global_textmap
    return _get_global_textmap()


def _w3c() -> TextMapPropagator:
    return _W3C


def _fields(textmap: TextMapPropagator) -> tuple[str, ...]:
    """The header names ``textmap`` reads (what its ``fields`` says: a
    propagator's code, which may fail), that can be header names."""
    try:
        fields = sorted(
            field
            for field in textmap.fields
            if isinstance(field, str) and field and field.isascii() and field.isprintable()
        )
    except Exception:
        logger.warning(
            "switchtrace: the propagator %s.%s could not say which headers it reads; "
            "only W3C Trace Context's are read",
            type(textmap).__module__,
            type(textmap).__qualname__,
            exc_info=True,
        )
        return ("traceparent", "tracestate")
    return tuple(fields)


def keep(record_extra: dict[str, Any], textmap: Any, found: Iterable[tuple[str, Any]]) -> None:
    """Keep the trace context headers ``found`` (field, value: a str, or
    bytes from ASGI) of sane length for the span pipeline, with the
    propagator they are read with (the one of the request's arrival)."""
    carrier = {}
    for field, value in found:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and len(value) <= MAX_PROPAGATION_HEADER:
            carrier[field] = value
    if carrier:
        record_extra[TRACE_CONTEXT] = (textmap, carrier)


def parent(record_extra: dict[str, Any]) -> Any:
    """The incoming span the request's spans are children of, as a context,
    or None (no trace context, or none the propagator takes: a new trace)."""
    kept = record_extra.get(TRACE_CONTEXT)
    if kept is None:
        return None
    textmap, carrier = kept
    try:
        context = textmap.extract(carrier, getter=DefaultGetter())
    except Exception:
        # The propagator's own failure on what a client sent: a new trace,
        # said once for each propagator.
        if type(textmap) not in _told:
            _told.add(type(textmap))
            logger.warning(
                "switchtrace: the propagator %s.%s raised reading a request's trace "
                "context; such requests start a new trace (logged once)",
                type(textmap).__module__,
                type(textmap).__qualname__,
                exc_info=True,
            )
        return None
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context
