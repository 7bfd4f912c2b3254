"""OTLP protobuf and OTLP/JSON written straight from planned spans.

The SDK's path (a ``ReadableSpan`` per span, then opentelemetry-exporter-otlp's
encoder building a protobuf message per attribute) costs 100-300 µs a span on
the machines switchtrace is measured on, and a request of Django's default
stack under ASGI has 17 spans. These writers produce the same bytes (a test
compares them with the SDK's encoding, byte for byte and field for field)
from :class:`~.spans.PlannedSpans`, encoding each shared group of attributes
(a call site's, a pair of threads', a loop's) once and reusing it.

The spans are within the SDK's span limits as :func:`~.spans.plan_spans`
laid them out (:class:`~.spans.Limits`); what those left off is counted in
``droppedAttributesCount`` and ``droppedEventsCount``, as the SDK's encoder
reports its spans'.

Protobuf field numbers are those of opentelemetry-proto's ``trace.proto``,
``common.proto`` and ``resource.proto`` (v1).

Values are encoded as the SDK's ``_encode_value`` encodes them: None as an
empty AnyValue, a list or tuple as an array, a mapping as a key-value list
(keys made strings). An attribute the SDK cannot encode (an integer outside
int64, a value of another type, a key that is not a string) is left out, the
others and the span kept, as the SDK's ``_encode_attributes`` does (text
with lone surrogates, which the SDK's encoder refuses too, is written with
escapes instead: see :func:`utf8_text`); it is
reported through :func:`~switchtrace.tracer.guard.swallow` (logged once in
production, a failed test under switchtrace's tests). OTLP/JSON follows
protobuf's JSON mapping: 64-bit integers as strings, NaN and infinities as
"NaN", "Infinity" and "-Infinity", empty arrays and lists as ``{}``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..text import utf8_text
from ..tracer.describe import MAX_CACHED
from ..tracer.guard import swallow
from .spans import (
    QUEUE_WAIT,
    STARTED,
    AttributeGroup,
    PlannedEvent,
    PlannedSpan,
    PlannedSpans,
    span_events,
)

_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_pack_fixed32 = struct.Struct("<I").pack
# A span's id, then its parent's (tag and length 0x2208 between them).
_pack_ids = struct.Struct(">QHQ").pack
# Its start and end times with their tags (fixed64 fields 7 and 8).
_pack_times = struct.Struct("<BQBQ").pack
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]

_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
#: Span.flags by whether the parent is remote.
_FLAGS = {False: _REMOTE_KNOWN, True: _REMOTE_KNOWN | _REMOTE}


class EncodedSpans:
    """A batch of spans already encoded as one OTLP export request."""

    __slots__ = ("count", "payload")

    def __init__(self, payload: bytes | str, count: int) -> None:
        self.payload = payload
        self.count = count

    def __len__(self) -> int:
        return self.count


class Memo(dict[Any, Any]):
    """``memo[key]``: the encoding of ``key``, made by ``make(key)`` the first
    time (a plain dict lookup after that), for at most MAX_CACHED keys."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> Any:
        if len(self) >= MAX_CACHED:
            self.clear()
        value = self[key] = self.make(key)
        return value


# -- protobuf ---------------------------------------------------------------------


def varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def any_value(value: Any) -> bytes:
    """opentelemetry.proto.common.v1.AnyValue. Raises for what the SDK's
    encoder raises for (an integer outside int64: ValueError; another type:
    TypeError), anywhere in the value."""
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer out of int64 range: {value}")
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, str):
        try:
            return field(1, value.encode("utf-8"))
        except UnicodeEncodeError:
            return field(1, utf8_text(value).encode("utf-8"))
    if value is None:
        return b""  # an empty AnyValue, as the SDK writes None
    if isinstance(value, bytes):
        return field(7, value)
    if isinstance(value, Sequence):  # the SDK's order: a sequence before a mapping
        return field(5, b"".join(field(1, any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return field(6, b"".join(field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode a {type(value).__name__} as an attribute value")


_keys = Memo(lambda key: field(1, utf8_text(key).encode("utf-8")))


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue's body; raises as :func:`any_value` does."""
    return _keys[key] + field(2, any_value(value))


def key_values(number: int, attributes: Iterable[tuple[str, Any]]) -> bytes:
    """Repeated KeyValue as field ``number`` of the enclosing message. An
    attribute the SDK's encoder would leave out is left out (see the module
    docstring)."""
    out = []
    for key, value in attributes:
        try:
            out.append(field(number, _keys[key] + field(2, any_value(value))))
        except Exception:
            swallow("span attribute encoding")
    return b"".join(out)


def _common(span: PlannedSpan) -> bool:
    """Whether ``span`` is laid out as most crossings' spans are: a parent, the
    three shared groups (none empty), the queue wait as its only own attribute,
    the STARTED event alone, no error and nothing left off by the span limits.
    Writers write those with one template."""
    own = span.attributes
    return (
        span.parent_id is not None
        and span.started is not None
        and not span.events
        and len(own) == 1
        and own[0][0] == QUEUE_WAIT
        and len(span.groups) == 3
        and all(group.attributes for group in span.groups)
        and not span.error
        and not span.dropped_attributes
        and not span.dropped_events
    )


def _protobuf_group(group: AttributeGroup) -> bytes:
    encoded = group.protobuf = key_values(9, group.attributes)
    return encoded


class ProtobufWriter:
    """``ExportTraceServiceRequest`` bytes for one resource and scope."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self._resource = field(1, key_values(1, resource.attributes.items()))
        if resource.schema_url:
            self._resource_schema = field(3, resource.schema_url.encode("utf-8"))
        else:
            self._resource_schema = b""
        encoded_scope = field(1, scope.name.encode("utf-8"))
        if scope.version:
            encoded_scope += field(2, scope.version.encode("utf-8"))
        if scope.attributes:
            encoded_scope += key_values(3, scope.attributes.items())
        self._scope = field(1, encoded_scope)
        self._scope_schema = field(3, scope.schema_url.encode("utf-8")) if scope.schema_url else b""
        self._names = Memo(lambda name: field(5, name.encode("utf-8")))

    def spans(self, planned: PlannedSpans) -> list[bytes]:
        """Each span of a record as a ``ScopeSpans.spans`` field."""
        prefix = b"\x0a\x10" + planned.trace_id.to_bytes(16, "big") + b"\x12\x08"
        state = field(3, planned.trace_state.encode("utf-8")) if planned.trace_state else b""
        names = self._names
        out = []
        for span in planned.spans:
            own = span.attributes
            parent_id = span.parent_id
            if not state and _common(span):
                site, threads, loop = span.groups
                # Most crossings: only the ids, the times and the queue wait vary.
                wait = varint(own[0][1] & _UINT64)
                body = b"".join(
                    (
                        prefix,
                        _pack_ids(span.span_id, 0x2208, parent_id),
                        names[span.name],
                        b"\x30",
                        _ONE_BYTE[span.kind],
                        _pack_times(0x39, span.start, 0x41, span.end),
                        site.protobuf or _protobuf_group(site),
                        threads.protobuf or _protobuf_group(threads),
                        loop.protobuf or _protobuf_group(loop),
                        _QUEUE_WAIT_FIELDS[len(wait)],
                        wait,
                        _STARTED_EVENT,
                        _pack_fixed64(span.started),
                        _STARTED_NAME,
                        _STATUS_AND_FLAGS[span.parent_remote],
                    )
                )
                out.append(b"\x12" + varint(len(body)) + body)
                continue
            parts = [prefix, span.span_id.to_bytes(8, "big"), state]
            if parent_id is not None:
                parts.append(b"\x22\x08")
                parts.append(parent_id.to_bytes(8, "big"))
            parts += (
                names[span.name],
                b"\x30",
                _ONE_BYTE[span.kind],
                _pack_times(0x39, span.start, 0x41, span.end),
            )
            for group in span.groups:
                parts.append(group.protobuf or _protobuf_group(group))
            if own:
                parts.append(key_values(9, own))
            if span.dropped_attributes:  # (by the span limits: field 10)
                parts.append(b"\x50" + varint(span.dropped_attributes))
            if span.events:
                for event in span_events(span):
                    parts.append(field(11, _event(event)))
            elif span.started is not None:  # most crossings: this one event
                parts.append(_STARTED_EVENT)
                parts.append(_pack_fixed64(span.started))
                parts.append(_STARTED_NAME)
            if span.dropped_events:  # (field 12)
                parts.append(b"\x60" + varint(span.dropped_events))
            # The Status (empty: UNSET), then the flags (fixed32, field 16).
            parts.append(
                (_ERROR_AND_FLAGS if span.error else _STATUS_AND_FLAGS)[span.parent_remote]
            )
            body = b"".join(parts)
            out.append(b"\x12" + varint(len(body)) + body)
        return out

    def request(self, spans: Sequence[bytes]) -> bytes:
        """One ExportTraceServiceRequest holding ``spans`` (from :meth:`spans`)."""
        scope_spans = self._scope + b"".join(spans) + self._scope_schema
        resource_spans = self._resource + field(2, scope_spans) + self._resource_schema
        return field(1, resource_spans)


_event_names = Memo(lambda name: field(2, name.encode("utf-8")))
_STARTED_NAME = _event_names[STARTED]
# The Span.events field holding the STARTED event, up to its time (fixed64, field 1).
_STARTED_EVENT = varint(11 << 3 | 2) + varint(9 + len(_STARTED_NAME)) + b"\x09"
_STATUS_AND_FLAGS = {
    remote: b"\x7a\x00\x85\x01" + _pack_fixed32(flags) for remote, flags in _FLAGS.items()
}
# The same with Status.code ERROR (2, field 3).
_ERROR_AND_FLAGS = {
    remote: b"\x7a\x02\x18\x02\x85\x01" + _pack_fixed32(flags) for remote, flags in _FLAGS.items()
}
_UINT64 = 0xFFFFFFFFFFFFFFFF
# The attribute (KeyValue, field 9) of a queue wait whose varint is n bytes
# long, up to that varint.
_QUEUE_WAIT_FIELDS = [
    b"\x4a"
    + varint(len(_keys[QUEUE_WAIT]) + 3 + n)
    + _keys[QUEUE_WAIT]
    + b"\x12"
    + _ONE_BYTE[1 + n]
    + b"\x18"
    for n in range(11)
]


def _event(event: PlannedEvent) -> bytes:
    encoded = b"\x09" + _pack_fixed64(event.time) + _event_names[event.name]
    if event.attributes:
        encoded += key_values(3, event.attributes)
    if event.dropped:  # (by the span limits: field 4)
        encoded += b"\x20" + varint(event.dropped)
    return encoded


# -- OTLP/JSON ------------------------------------------------------------------

#: A string as JSON (what json.dumps writes for one, without its Python layer).
_json_string = encode_basestring_ascii


def json_value(value: Any) -> str:
    """An AnyValue in OTLP/JSON, as protobuf's JSON mapping writes it (64-bit
    integers as strings, NaN and infinities as strings, empty arrays and
    lists as ``{}``). Raises as :func:`any_value` does."""
    if value is True or value is False:
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer out of int64 range: {value}")
        return f'{{"intValue":"{value}"}}'
    if isinstance(value, float):
        return f'{{"doubleValue":{json_double(value)}}}'
    if isinstance(value, str):
        if not value.isascii():
            value = utf8_text(value)
        return f'{{"stringValue":{_json_string(value)}}}'
    if value is None:
        return "{}"
    if isinstance(value, bytes):
        import base64

        return f'{{"bytesValue":"{base64.b64encode(value).decode("ascii")}"}}'
    if isinstance(value, Sequence):
        values = ",".join(json_value(item) for item in value)
        return f'{{"arrayValue":{{"values":[{values}]}}}}' if values else '{"arrayValue":{}}'
    if isinstance(value, Mapping):
        values = ",".join(_json_key_value(str(k), v) for k, v in value.items())
        return f'{{"kvlistValue":{{"values":[{values}]}}}}' if values else '{"kvlistValue":{}}'
    raise TypeError(f"cannot encode a {type(value).__name__} as an attribute value")


def json_double(value: float) -> str:
    """A double as protobuf's JSON mapping writes it: a number, or "NaN",
    "Infinity", "-Infinity" (strings: JSON has no such numbers)."""
    if math.isfinite(value):
        return float.__repr__(value)
    if value != value:
        return '"NaN"'
    return '"Infinity"' if value > 0 else '"-Infinity"'


def checked_key(key: Any) -> str:
    """``key``, if the SDK's encoder takes it as an attribute key (a string:
    written as :func:`utf8_text` writes it); else raises as it does."""
    if not isinstance(key, str):
        raise TypeError(f"attribute key {key!r} is not a string")
    return key if key.isascii() else utf8_text(key)


def _json_key(key: str) -> str:
    return f'{{"key":{json.dumps(checked_key(key))},"value":'


_json_keys = Memo(_json_key)


def _json_key_value(key: str, value: Any) -> str:
    """A KeyValue in OTLP/JSON; raises as :func:`any_value` does."""
    return f"{_json_keys[key]}{json_value(value)}}}"


def json_attributes(attributes: Iterable[tuple[str, Any]]) -> str:
    """KeyValues in OTLP/JSON, comma-separated; an attribute the SDK's encoder
    would leave out is left out (see the module docstring)."""
    out = []
    for key, value in attributes:
        try:
            out.append(f"{_json_keys[key]}{json_value(value)}}}")
        except Exception:
            swallow("span attribute encoding")
    return ",".join(out)


class JsonWriter:
    """OTLP/JSON export requests (one line each) for one resource and scope:
    trace and span ids as hex strings, enums as integers."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        resource_attributes = json_attributes(resource.attributes.items())
        head = f'{{"resourceSpans":[{{"resource":{{"attributes":[{resource_attributes}]}},'
        head += '"scopeSpans":[{"scope":{"name":' + json.dumps(scope.name)
        if scope.version:
            head += ',"version":' + json.dumps(scope.version)
        if scope.attributes:
            head += f',"attributes":[{json_attributes(scope.attributes.items())}]'
        head += "}"
        if scope.schema_url:
            head += ',"schemaUrl":' + json.dumps(scope.schema_url)
        self._head = head + ',"spans":['
        tail = "]}]"
        if resource.schema_url:
            tail += ',"schemaUrl":' + json.dumps(resource.schema_url)
        self._tail = tail + "}]}"
        self._names = Memo(json.dumps)

    def spans(self, planned: PlannedSpans) -> list[str]:
        trace_id = f'{{"traceId":"{planned.trace_id:032x}","spanId":"'
        state = f',"traceState":{_json_string(planned.trace_state)}' if planned.trace_state else ""
        names = self._names
        out = []
        for span in planned.spans:
            own = span.attributes
            parent_id = span.parent_id
            if _common(span):
                site, threads, loop = span.groups
                site_json = site.json or _json_group(site)
                threads_json = threads.json or _json_group(threads)
                loop_json = loop.json or _json_group(loop)
                # (A group whose every attribute was left out takes the general path.)
                if site_json and threads_json and loop_json:
                    # Most crossings: this whole template, the only variable
                    # parts being the ids, the times and the queue wait.
                    out.append(
                        f'{trace_id}{span.span_id:016x}"{state},"parentSpanId":"{parent_id:016x}",'
                        f'"flags":{_FLAGS[span.parent_remote]},"name":{names[span.name]},'
                        f'"kind":{span.kind},"startTimeUnixNano":"{span.start}",'
                        f'"endTimeUnixNano":"{span.end}",'
                        f'"attributes":[{site_json},{threads_json},{loop_json},'
                        f'{{"key":"{QUEUE_WAIT}","value":{{"intValue":"{own[0][1]}"}}}}],'
                        f'"events":[{{"timeUnixNano":"{span.started}","name":"{STARTED}"}}],'
                        '"status":{}}'
                    )
                    continue
            attributes = [group.json or _json_group(group) for group in span.groups]
            if own:
                attributes.append(json_attributes(own))
            parent = "" if parent_id is None else f',"parentSpanId":"{parent_id:016x}"'
            text = (
                f'{trace_id}{span.span_id:016x}"{state}{parent},"flags":{_FLAGS[span.parent_remote]},'
                f'"name":{names[span.name]},"kind":{span.kind},'
                f'"startTimeUnixNano":"{span.start}","endTimeUnixNano":"{span.end}"'
            )
            if any(attributes):
                text += f',"attributes":[{",".join(filter(None, attributes))}]'
            if span.dropped_attributes:
                text += f',"droppedAttributesCount":{span.dropped_attributes}'
            events = span_events(span)
            if events:
                text += f',"events":[{",".join(_json_event(e) for e in events)}]'
            if span.dropped_events:
                text += f',"droppedEventsCount":{span.dropped_events}'
            out.append(text + (',"status":{"code":2}}' if span.error else ',"status":{}}'))
        return out

    def request(self, spans: Sequence[str]) -> str:
        return self._head + ",".join(spans) + self._tail


_json_event_names = Memo(json.dumps)


def _json_group(group: AttributeGroup) -> str:
    encoded = group.json = json_attributes(group.attributes)
    return encoded


def _json_event(event: PlannedEvent) -> str:
    text = f'{{"timeUnixNano":"{event.time}","name":{_json_event_names[event.name]}'
    attributes = json_attributes(event.attributes) if event.attributes else ""
    if attributes:
        text += f',"attributes":[{attributes}]'
    if event.dropped:
        text += f',"droppedAttributesCount":{event.dropped}'
    return text + "}"
