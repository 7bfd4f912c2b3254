"""The trace context a request comes with, read with the application's
propagator.

OpenTelemetry's global propagator says how: the one ``OTEL_PROPAGATORS``
configures (W3C Trace Context and Baggage when it is unset; ``b3``,
``b3multi``, ``jaeger``… from the packages that register them), loaded when
switchtrace's span pipeline starts, or the one the application set with
``set_global_textmap`` (the one in place as each request arrives). It reads
the request's headers as it arrives, through getters like those of
opentelemetry-instrumentation-wsgi and -asgi (whatever headers it asks for:
B3's extract reads more than its ``fields`` name), each header up to
:data:`MAX_PROPAGATION_HEADER` characters; the span it finds, if any, is kept
for the span pipeline. Under ASGI a header sent as several fields is one
value, joined by commas, as WSGI servers join them (W3C Trace Context: a
tracestate in pieces is whole, and two traceparents are no parent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..tracer.guard import logger

#: Longest trace context header taken from a request; longer ones are ignored.
MAX_PROPAGATION_HEADER = 512

#: record.extra's key for the context of the span a request's trace context
#: names (its parent).
TRACE_CONTEXT = "trace_context"

#: What is read when OpenTelemetry's global propagator cannot be had
#: (``opentelemetry.propagate`` failing to import: an OTEL_PROPAGATORS naming
#: a propagator that does not load, which switchtrace.E013 reports).
_W3C = TraceContextTextMapPropagator()

_get_global_textmap: Callable[[], TextMapPropagator] | None = None
#: The propagators whose extract raised (logged once each), by identity.
_told: set[int] = set()


def load() -> None:
    """Load the application's propagator (OpenTelemetry's propagate module
    reads OTEL_PROPAGATORS as it is imported): as the pipeline starts, not
    in a request."""
    _global_textmap()


def _global_textmap() -> TextMapPropagator:
    global _get_global_textmap
    if _get_global_textmap is None:
        try:
            from opentelemetry.propagate import get_global_textmap
        except Exception:
            # An OTEL_PROPAGATORS OpenTelemetry cannot load (switchtrace.E013
            # says so where spans are made): tried once, not every request.
            _get_global_textmap = _w3c
            return _W3C
        _get_global_textmap = get_global_textmap
    return _get_global_textmap()


def _w3c() -> TextMapPropagator:
    return _W3C


def _sane(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) and len(value) <= MAX_PROPAGATION_HEADER else None


class _EnvironGetter(Getter[Any]):
    """A header from a WSGI environ (``HTTP_X_B3_TRACEID``)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = _sane(carrier.get("HTTP_" + key.upper().replace("-", "_")))
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


class _HeadersGetter(Getter[Any]):
    """A header from an ASGI scope's ``headers``, its fields joined."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1", "replace")
        values = [
            value
            for field, value in carrier
            if type(field) is bytes and type(value) is bytes and field.lower() == name
        ]
        if not values:
            return None
        value = _sane(b",".join(values))
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return [field.decode("latin-1") for field, _value in carrier]


_ENVIRON = _EnvironGetter()
_HEADERS = _HeadersGetter()


def arrived_wsgi(extra: dict[str, Any], environ: Any) -> None:
    """Keep the parent a WSGI request's trace context names, if any."""
    _keep(extra, environ, _ENVIRON)


def arrived_asgi(extra: dict[str, Any], headers: list[Any]) -> None:
    """Keep the parent an ASGI request's trace context names, if any, from
    its scope's headers."""
    _keep(extra, headers, _HEADERS)


def _keep(extra: dict[str, Any], carrier: Any, getter: Getter[Any]) -> None:
    textmap = _global_textmap()
    try:
        # An empty context, not the current one: a span of the application's
        # current here (its instrumentation's) is no incoming parent.
        context = textmap.extract(carrier, context=Context(), getter=getter)
    except Exception:
        # The propagator's own failure on what a client sent: a new trace,
        # said once for each propagator.
        if id(textmap) not in _told:
            _told.add(id(textmap))
            logger.warning(
                "switchtrace: the trace context propagator raised reading a request's "
                "headers; such requests start a new trace (logged once)",
                exc_info=True,
            )
        return
    if trace.get_current_span(context).get_span_context().is_valid:
        extra[TRACE_CONTEXT] = context


def parent(extra: dict[str, Any]) -> Any:
    """The context of the incoming span the request's spans are children of,
    or None (a new trace)."""
    return extra.get(TRACE_CONTEXT)
