"""Turn a finished request record into OpenTelemetry spans.

One span per crossing, named after what was bridged
(``sync_to_async SessionMiddleware.process_request``), from the call to the
return, with an event at the moment the code started on its target. A
crossing made inside another crossing's target is that span's child. The
request span is the application's own server span when one was active as
the handler received the request (opentelemetry-instrumentation-asgi or
-wsgi) or was started by a middleware above switchtrace's
(opentelemetry-instrumentation-django), else one of ours.

Runs in the pipeline's thread, after the response: never on a request's path,
but for :func:`request_attributes`, the figures the pipeline sets on an
application's server span as the request ends.

:func:`plan_spans` lays out the spans of a record once (ids, parents, names,
times, attributes, events); :func:`readable_spans` makes SDK ``ReadableSpan``
objects of them, and :mod:`.encode` writes them straight to OTLP protobuf or
OTLP/JSON. The attributes of a crossing that depend only on its call site
(what was bridged, by which component, through which executor) are worked out
once per site and shared.

Attributes use OpenTelemetry's semantic conventions where one exists and the
``switchtrace.`` prefix for the rest; the README's "Spans" section lists them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode

from ..tracer import Component, Crossing, RequestRecord
from ..tracer.describe import MAX_CACHED
from ..tracer.record import returned_before

Resolve = Callable[[Crossing, RequestRecord], Component | None]
#: Attributes as (key, value) pairs, in the order they are exported.
Attributes = tuple[tuple[str, Any], ...]

STARTED = "switchtrace.started"
QUEUE_WAIT = "switchtrace.queue_wait_ns"
#: On the span of a call that had not returned to its caller when the
#: request ended (work the request left running).
UNFINISHED = "switchtrace.unfinished"
LOOP_CREATED = "switchtrace.event_loop_created"
THREAD_STARTED = "switchtrace.thread_started"

#: OTLP's SpanKind values (SpanKind.INTERNAL is 1, SERVER 2).
KIND_INTERNAL = trace.SpanKind.INTERNAL.value + 1
KIND_SERVER = trace.SpanKind.SERVER.value + 1


def request_attributes(record: RequestRecord) -> dict[str, Any]:
    """The per-request figures, as set on the request span."""
    totals = record.totals()
    attributes: dict[str, Any] = {
        "switchtrace.context_switches": totals.context_switches,
        "switchtrace.thread_hops": totals.thread_hops,
        "switchtrace.event_loops_created": totals.event_loops_created,
        "switchtrace.threads_started": totals.threads_started,
        "switchtrace.dropped": record.dropped,
    }
    if record.at_headers is not None:
        attributes["switchtrace.context_switches_before_headers"] = (
            record.at_headers.context_switches
        )
        attributes["switchtrace.thread_hops_before_headers"] = record.at_headers.thread_hops
    return attributes


#: The HTTP methods OpenTelemetry's semantic conventions know by default
#: (RFC 9110's, PATCH and QUERY); OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS, a
#: comma-separated list, replaces them.
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY")
)
_known_methods: dict[str | None, frozenset[str]] = {None: KNOWN_METHODS}


def known_methods() -> frozenset[str]:
    """The methods a request span names as they are; any other is ``_OTHER``.
    (An empty OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS is unset, as every
    ``OTEL_*`` variable, and so is one of space alone, or of space and commas
    alone, whose empty entries are left out: it made every method
    ``_OTHER``.)"""
    return _read_variable(
        "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS",
        _known_methods,
        lambda values: frozenset(value for value in values if value) or KNOWN_METHODS,
    )


def _read_variable(
    name: str, cache: dict[str | None, Any], parse: Callable[[set[str]], Any]
) -> Any:
    """What the comma-separated list of variable ``name`` says, by
    ``parse(values)`` (each stripped), read once for each of its values;
    ``cache[None]`` holds what it says unset (empty, or space alone, as
    every ``OTEL_*`` variable). At most 8 other values are kept: a process
    that changes it for ever does not grow the cache for ever."""
    setting = os.environ.get(name, "").strip() or None
    value = cache.get(setting)
    if value is None:
        if len(cache) > 8:
            unset = cache[None]
            cache.clear()
            cache[None] = unset
        value = cache[setting] = parse({part.strip() for part in str(setting).split(",")})
    return value


def _http_attributes(record: RequestRecord) -> dict[str, Any]:
    attributes = {
        key: value
        for key in (
            "http.request.method",
            "http.route",
            "url.scheme",
            "url.path",
            "url.query",
            "http.response.status_code",
        )
        if (value := record.attributes.get(key)) is not None
    }
    query = attributes.get("url.query")
    if query is not None:
        attributes["url.query"] = redacted_query(str(query))
    method = attributes.get("http.request.method")
    if method is not None:
        # A method the instrumentation does not know is _OTHER (the semantic
        # conventions' MUST): a client sending made-up methods cannot fill a
        # backend with attribute values and span names. One Django serves as
        # a known method (it upper-cases them: "get" is a GET) is that method,
        # which the conventions ask of a framework taking methods in any case.
        canonical = _known_method(method)
        attributes["http.request.method"] = canonical or "_OTHER"
        if canonical != method:
            attributes["http.request.method_original"] = method
    attributes.update(_arrival_attributes(record, attributes.get("url.scheme")))
    raised = record.attributes.get("error.type")
    if raised is not None:
        # The HTTP semantic conventions: a request that failed (an exception
        # out of Django's handler, before or after its status was sent) is
        # an error, its error.type the exception's class.
        attributes["error.type"] = raised
    elif server_error(record):
        # And a server span of a 5xx response is one, its error.type the
        # status code.
        attributes["error.type"] = str(record.attributes["http.response.status_code"])
    return attributes


#: The query parameters whose values the HTTP semantic conventions redact by
#: default (url.query's note, since 1.29: the signatures and credentials of
#: pre-signed URLs, AWS's old and new, Azure's, Google's), matched as written.
SENSITIVE_QUERY_PARAMETERS = frozenset(
    {
        "AWSAccessKeyId",
        "Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "sig",
        "X-Goog-Signature",
    }
)


def redacted_query(query: str) -> str:
    """``query`` with the value of each sensitive parameter
    (:data:`SENSITIVE_QUERY_PARAMETERS`) replaced by ``REDACTED``, as the
    semantic conventions ask; everything else as the client sent it (the
    order, the encoding, blank and repeated parameters). A name is read as
    Django reads it (``+`` a space, percent-decoded)."""
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals and value and unquote_plus(name) in SENSITIVE_QUERY_PARAMETERS:
            parts[index] = f"{name}=REDACTED"
    return "&".join(parts)


#: The port a scheme's URL leaves out.
DEFAULT_PORTS = {"http": 80, "https": 443}


def request_url(record: RequestRecord) -> str:
    """The request's URL without its query, made of its request span's
    attributes (``url.scheme``, ``server.address``, ``server.port`` but the
    scheme's default, ``url.path``): ``https://shop.example/healthz``."""
    attributes = _http_attributes(record)
    scheme = str(attributes.get("url.scheme") or "http")
    host = str(attributes.get("server.address") or "")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = attributes.get("server.port")
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{attributes.get('url.path') or ''}"


#: record.extra's key for the request's :class:`Arrival`, kept only while
#: spans are made (a pipeline is attached).
ARRIVAL = "switchtrace.arrival"


class Arrival(NamedTuple):
    """What the request span's server, client and network attributes are
    made of, as the server handed them over (str, or bytes under ASGI): kept
    on the request's path as they are, parsed in the pipeline's thread."""

    #: The Host header, and a proxy's Forwarded / X-Forwarded-Host /
    #: X-Forwarded-Proto / X-Forwarded-For (each as one value, several
    #: fields joined by commas).
    host: Any
    forwarded: Any
    forwarded_host: Any
    forwarded_proto: Any
    forwarded_for: Any
    #: (address, port) of the server's listening socket and of the
    #: immediate client (WSGI: SERVER_NAME/SERVER_PORT, REMOTE_ADDR/
    #: REMOTE_PORT; ASGI: the scope's server and client), either may be None.
    server: Any
    peer: Any
    #: WSGI's SERVER_PROTOCOL ("HTTP/1.1"), or the ASGI scope's http_version.
    protocol: Any
    user_agent: Any


DEFAULT_PORTS = {"http": 80, "https": 443}
#: As servers name them -> as the conventions do.
HTTP_VERSIONS = {"1.0": "1.0", "1.1": "1.1", "2": "2", "2.0": "2", "3": "3", "3.0": "3"}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 65535 else None
    text = _text(value)
    # A client writes it (Host, X-Forwarded-Host): int() refuses more than
    # 4,300 digits, and no port needs more than 5 (leading zeros aside).
    text = text.lstrip("0") or "0" if text is not None else None
    if text is None or len(text) > 5 or not text.isascii() or not text.isdigit():
        return None
    return int(text) if int(text) <= 65535 else None


def _host_and_port(value: str, default: int | None = None) -> tuple[str | None, int | None]:
    """``example.com:8080``, ``[::1]:8000``, ``10.0.0.1`` as (address, port);
    an IPv6 address without its brackets; ``default`` the port of one
    without a port (not of one whose port is not a port). A host has no
    ``user:password@`` (a client may write one: not exported)."""
    if "@" in value:
        return None, None
    if value.startswith("["):
        address, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, None
        return address or None, _port(rest[1:]) if rest else default
    if value.count(":") == 1:
        address, _, port = value.partition(":")
        return address or None, _port(port)
    return value, default


def _first(value: Any) -> str | None:
    """The first of a comma-separated list: the one the original client
    sent, before any proxy added its own."""
    text = _text(value)
    return _text(text.partition(",")[0]) if text else None


def _forwarded(value: Any, key: str) -> str | None:
    """``key`` of the first element of a Forwarded header (RFC 7239),
    unquoted: ``for=192.0.2.60;proto=http, for=...`` has for 192.0.2.60."""
    first = _first(value)
    if first is None:
        return None
    for pair in first.split(";"):
        name, equals, found = pair.partition("=")
        if equals and name.strip().lower() == key:
            return _text(found.strip().strip('"'))
    return None


def _arrival_attributes(record: RequestRecord, scheme: Any) -> dict[str, Any]:
    """server.*, client.*, network.* and user_agent.original, as the HTTP
    server conventions determine them: server.address and server.port from
    what the client addressed (a proxy's Forwarded host or X-Forwarded-Host,
    else the Host header, with the port of the scheme the client used if it
    names none: a proxy's Forwarded proto or X-Forwarded-Proto, which is
    url.scheme then too; the listening socket without one), client.address
    from the original client (Forwarded for, X-Forwarded-For, else the peer),
    network.peer.* the immediate peer."""
    arrival = record.extra.get(ARRIVAL)
    if not isinstance(arrival, Arrival):
        return {}
    attributes: dict[str, Any] = {}
    addressed = _forwarded(arrival.forwarded, "host")
    if addressed is None:
        addressed = _first(arrival.forwarded_host)
    if addressed is None:
        addressed = _text(arrival.host)
    # The scheme the client used, as a proxy names it (a proxy ending TLS
    # passes the Host on and says X-Forwarded-Proto: https): the port of a
    # host without one, and, one of HTTP's, url.scheme too, as the
    # conventions ask ("the scheme of the original client request, if known
    # (e.g. from Forwarded#proto, X-Forwarded-Proto ...)"): it said http
    # beside the port 443 of an https host.
    proto = _forwarded(arrival.forwarded, "proto") or _first(arrival.forwarded_proto)
    if proto:
        scheme = proto
        if isinstance(proto, str) and proto.lower() in DEFAULT_PORTS:
            attributes["url.scheme"] = proto.lower()
    address = port = None
    if addressed is not None:
        default = DEFAULT_PORTS.get(scheme.lower()) if isinstance(scheme, str) else None
        address, port = _host_and_port(addressed, default)
    elif isinstance(arrival.server, (tuple, list)) and len(arrival.server) == 2:
        address, port = _text(arrival.server[0]), _port(arrival.server[1])
    if address is not None:
        attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
    peer_address = peer_port = None
    if isinstance(arrival.peer, (tuple, list)) and len(arrival.peer) == 2:
        peer_address, peer_port = _text(arrival.peer[0]), _port(arrival.peer[1])
    client = _forwarded(arrival.forwarded, "for") or _first(arrival.forwarded_for)
    if client is not None:
        # A port, an IPv6 address's brackets, RFC 7239's "unknown" and its
        # obfuscated identifiers ("_hidden", "_SEVKISEK") are not the
        # client's address.
        client = _host_and_port(client)[0]
        if client is not None and (client.lower() == "unknown" or client.startswith("_")):
            client = None
    client = client or peer_address
    if client is not None:
        attributes["client.address"] = client
    if peer_address is not None:
        attributes["network.peer.address"] = peer_address
        # (Port 0 is no connection's: uvicorn's, for the client a trusted
        # proxy forwarded.)
        if peer_port:
            attributes["network.peer.port"] = peer_port
    protocol = _text(arrival.protocol)
    if protocol is not None:
        version = HTTP_VERSIONS.get(
            protocol[5:] if protocol.upper().startswith("HTTP/") else protocol
        )
        if version is not None:
            attributes["network.protocol.version"] = version
    user_agent = _text(arrival.user_agent)
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent
    return attributes


def _known_method(method: Any) -> str | None:
    """``method`` as the known method Django serves it as, else None."""
    if not isinstance(method, str) or not method:
        return None
    known = known_methods()
    if method in known:
        return method
    upper = method.upper()  # as Django's request.method
    return upper if upper in known else None


def server_error(record: RequestRecord) -> bool:
    """Whether the request's span is an error: it failed (an exception out
    of Django's handler), or its response is a 5xx (a 4xx is the client's
    error, and leaves a server span's status unset)."""
    if record.attributes.get("error.type") is not None:
        return True
    status = record.attributes.get("http.response.status_code")
    return isinstance(status, int) and status >= 500


def request_span_name(record: RequestRecord) -> str:
    """``{method} {route}``, or the method alone without a route; ``HTTP``
    for a method that is not known (see :func:`known_methods`), upper-cased
    as Django serves it."""
    method = _known_method(record.attributes.get("http.request.method")) or "HTTP"
    route = record.attributes.get("http.route")
    return f"{method} {route}" if route else str(method)


# -- a crossing's attributes ------------------------------------------------------


class AttributeGroup:
    """Attributes that many spans share (a call site's, a pair of threads', a
    loop's): one object for all of them, so that each encoder encodes a group
    once and keeps the encoding on it (:attr:`protobuf`, :attr:`json`)."""

    __slots__ = ("attributes", "json", "protobuf")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.protobuf: bytes | None = None
        self.json: str | None = None

    def __repr__(self) -> str:
        return f"<AttributeGroup {dict(self.attributes)!r}>"


#: Which names of OpenTelemetry's ``code.*`` attributes a span carries: those
#: before semantic conventions 1.33 (``code.function``, ``code.namespace``,
#: ``code.filepath``, ``code.lineno``), the stable ones (``code.function.name``,
#: ``code.file.path``, ``code.line.number``), or both.
OLD, STABLE = 1, 2
_code_conventions: dict[str | None, int] = {None: OLD}


def code_conventions() -> int:
    """:data:`OLD`, :data:`STABLE` or both (``OLD | STABLE``), from
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` as OpenTelemetry's migration guide for
    the ``code.*`` attributes asks: a comma-separated list in which ``code``
    opts in to the stable names and ``code/dup`` to both (it wins over
    ``code``); its other values (``http``, ``database``) are other
    instrumentations' concern. Unset, empty or without either: the old names."""
    return int(
        _read_variable(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            _code_conventions,
            lambda values: (
                OLD | STABLE if "code/dup" in values else STABLE if "code" in values else OLD
            ),
        )
    )


_site_attributes: dict[tuple[Any, ...], tuple[str, AttributeGroup]] = {}


def site_attributes(crossing: Crossing) -> tuple[str, AttributeGroup]:
    """The span name and the attributes that depend only on where the crossing
    was made (call :meth:`RequestRecord.describe` first). The same group
    object for every crossing of a site."""
    description = crossing.description
    executor = crossing.executor
    thread_sensitive = crossing.thread_sensitive
    conventions = code_conventions()
    key = (description, crossing.mechanism, executor, thread_sensitive, conventions)
    shared = description is not None and description.shared
    cached = _site_attributes.get(key) if shared else None
    if cached is not None:
        return cached
    attributes: list[tuple[str, Any]] = [
        ("switchtrace.mechanism", crossing.mechanism),
        ("switchtrace.direction", crossing.direction),
    ]
    if thread_sensitive is not None:
        attributes.append(("switchtrace.thread_sensitive", thread_sensitive))
    if executor is not None:
        attributes.append(("switchtrace.executor", executor))
    component = crossing.component
    if component is not None:
        attributes.append(("switchtrace.component.kind", component.kind))
        attributes.append(("switchtrace.component", str(component)))
    location = description.location if description is not None else None
    if location is not None:
        if conventions & STABLE:
            # Fully qualified: the module, the class, the function.
            namespace, function = location.namespace, location.function
            attributes.append(
                ("code.function.name", f"{namespace}.{function}" if namespace else function)
            )
            if location.filepath is not None:
                attributes.append(("code.file.path", location.filepath))
            if location.lineno is not None:
                attributes.append(("code.line.number", location.lineno))
        if conventions & OLD:
            attributes.append(("code.function", location.function))
            attributes.append(("code.namespace", location.namespace))
            if location.filepath is not None:
                attributes.append(("code.filepath", location.filepath))
            if location.lineno is not None:
                attributes.append(("code.lineno", location.lineno))
    site = (f"{crossing.mechanism} {crossing.qualname}", AttributeGroup(tuple(attributes)))
    if shared:
        if len(_site_attributes) >= MAX_CACHED:
            _site_attributes.clear()
        _site_attributes[key] = site
    return site


#: Threads and loops can be made per request (asgiref under WSGI): these
#: caches stay small.
MAX_GROUPS = 256
_thread_groups: dict[tuple[Any, ...], AttributeGroup] = {}
_loop_groups: dict[tuple[Any, ...], AttributeGroup] = {}


def _cache(
    cache: dict[tuple[Any, ...], AttributeGroup], key: tuple[Any, ...], attributes: Attributes
) -> AttributeGroup:
    if len(cache) >= MAX_GROUPS:
        cache.clear()
    group = cache[key] = AttributeGroup(attributes)
    return group


def thread_group(source: threading.Thread, target: threading.Thread | None) -> AttributeGroup:
    """The attributes of a crossing's caller and target threads."""
    # Keyed by values, not by the thread objects: a server that starts a
    # thread per request would otherwise keep thousands of dead ones alive.
    key: tuple[Any, ...] = (
        source.ident or 0,
        source.name,
        None if target is None else (target.ident or 0),
        None if target is None else target.name,
        target is not None and target is not source,
    )
    group = _thread_groups.get(key)
    if group is None:
        attributes: Attributes = (
            ("switchtrace.caller.thread.id", key[0]),
            ("switchtrace.caller.thread.name", key[1]),
        )
        if target is not None:
            attributes += (("thread.id", key[2]), ("thread.name", key[3]))
        group = _cache(_thread_groups, key, (*attributes, ("switchtrace.thread_hop", key[4])))
    return group


def loop_group(crossing: Crossing) -> AttributeGroup:
    """The attributes of a crossing's event loop and of what it created."""
    loop_id = crossing.loop_id
    key = (loop_id, crossing.loop_created, crossing.threads_started, crossing.before_headers)
    group = _loop_groups.get(key)
    if group is None:
        group = _cache(
            _loop_groups,
            key,
            (
                *((("switchtrace.loop.id", loop_id),) if loop_id is not None else ()),
                ("switchtrace.loop.created", key[1]),
                ("switchtrace.threads.started", key[2]),
                ("switchtrace.before_headers", key[3]),
            ),
        )
    return group


def returned_in(crossing: Crossing, end_ns: int | None) -> bool:
    """Whether the call returned to its caller before ``end_ns``, the
    request's end (None: the request has not ended), as the request's
    figures count its return (:meth:`RequestRecord.switches_of`). A call the
    request left running that returned later, or never, did not."""
    return returned_before(crossing, end_ns)


def span_end(crossing: Crossing, end_ns: int) -> int:
    """Where a crossing's span ends: at its return, if that came before the
    request ended at ``end_ns``; else where its code ended, if that came
    before too (its caller gone); else with the request. (What a call left
    running does after the request is not the request's, and may still be
    happening as the spans are made.)"""
    if returned_in(crossing, end_ns):
        return crossing.return_ns  # type: ignore[return-value]
    ended = crossing.end_ns
    return ended if ended is not None and ended <= end_ns else end_ns


def failed(crossing: Crossing, end_ns: int | None) -> bool:
    """Whether the span of a crossing is an error: its call raised to its
    caller before the request ended (the return sets ``return_ns`` before
    ``exception``: an exception seen has its return time seen too)."""
    return crossing.exception is not None and returned_in(crossing, end_ns)


def own_attributes(crossing: Crossing, end_ns: int | None = None) -> Attributes:
    """The attributes of this call alone: its queue wait and outcome, as it
    stood when the request ended at ``end_ns`` (None: the outcome as it
    stands)."""
    start_ns = crossing.start_ns
    own: Attributes = () if start_ns is None else ((QUEUE_WAIT, start_ns - crossing.call_ns),)
    if not returned_in(crossing, end_ns):
        # Left running (or abandoned by its caller): its span ends with the
        # request and counts one switch, its start.
        return (*own, (UNFINISHED, True))
    if crossing.exception is not None:
        # error.type: the class of error the call ended with (OpenTelemetry's
        # general conventions for a failed operation), as Python's
        # instrumentations name an exception's.
        own += (("switchtrace.exception", crossing.exception), ("error.type", crossing.exception))
    return own


def call_attributes(
    crossing: Crossing, end_ns: int | None = None
) -> tuple[AttributeGroup, AttributeGroup, Attributes]:
    """The attributes particular to this call, in three groups: the threads',
    the loop's and flags' (one shared group per distinct value, so that
    encoders encode each once), and the call's own (its queue wait and
    outcome, as of the request's end at ``end_ns``)."""
    return (
        thread_group(crossing.source_thread, crossing.target_thread),
        loop_group(crossing),
        own_attributes(crossing, end_ns),
    )


def crossing_attributes(crossing: Crossing, end_ns: int | None = None) -> dict[str, Any]:
    """Every attribute of a crossing's span (after :meth:`RequestRecord.describe`),
    its outcome as of the request's end at ``end_ns`` (None: as it stands)."""
    threads, loop, own = call_attributes(crossing, end_ns)
    site = site_attributes(crossing)[1]
    return dict(site.attributes + threads.attributes + loop.attributes + own)


# -- the spans of a record -------------------------------------------------------


class PlannedEvent(NamedTuple):
    time: int
    name: str
    attributes: Attributes
    #: Attributes left off by the span limits (see :class:`Limits`).
    dropped: int = 0


class PlannedSpan(NamedTuple):
    """One span, ready to be written in any format."""

    span_id: int
    #: The parent's span id (None for a root request span).
    parent_id: int | None
    #: Whether the parent is remote (an incoming traceparent).
    parent_remote: bool
    name: str
    kind: int
    start: int
    end: int
    #: Groups of attributes shared with other spans (the same objects: the
    #: call site's, the threads', the loop's), then the span's own.
    groups: tuple[AttributeGroup, ...]
    attributes: Attributes
    #: When the bridged code started on its target (the STARTED event), if it did.
    started: int | None
    #: The span's other events (loops created, threads started), in time order.
    events: Sequence[PlannedEvent]
    #: Status Error: an exception left the bridged code, or the request's
    #: response is a 5xx (else the status is unset).
    error: bool = False
    #: Attributes and events left off by the span limits (see :class:`Limits`).
    dropped_attributes: int = 0
    dropped_events: int = 0


def span_events(span: PlannedSpan) -> Sequence[PlannedEvent]:
    """All the events of a span, in time order (the start first among
    events at the same instant)."""
    if span.started is None:
        return span.events
    started = PlannedEvent(span.started, STARTED, ())
    if not span.events:
        return (started,)
    return sorted((started, *span.events), key=_time)


class PlannedSpans(NamedTuple):
    trace_id: int
    #: The W3C tracestate header value ("" when there is none).
    trace_state: str
    state: TraceState | None
    #: The crossings' spans, then the request span.
    spans: list[PlannedSpan]


# -- the SDK's span limits ---------------------------------------------------------

#: The most attributes a crossing's span has: its site's 13 (mechanism,
#: direction, thread_sensitive, executor, component.kind, component and
#: seven code.*, the old names and the stable ones: see code_conventions),
#: its threads' 5, its loop's 4 and its own 3 (queue wait, exception,
#: error.type). An attribute count limit at least this high never cuts one.
CROSSING_ATTRIBUTES = 25
#: The attributes of an event other than STARTED (loop created, thread started).
EVENT_ATTRIBUTES = 2


class Limits:
    """The OpenTelemetry SDK's span limits (its ``SpanLimits``, which read
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT and OTEL_SPAN_EVENT_COUNT_LIMIT), applied
    to planned spans as the SDK's spans apply them: string values (inside
    sequences and mappings too) cut to the length limit (a span's attributes
    to the span one, an event's to the global one), and past a count limit
    the first attributes or events left off (the SDK's make room for the
    later ones), their number reported as dropped. Read once, as a
    TracerProvider reads them when it is made."""

    def __init__(self, limits: SpanLimits | None = None) -> None:
        limits = limits if limits is not None else SpanLimits()
        self.span_length: int | None = limits.max_span_attribute_length
        self.event_length: int | None = limits.max_attribute_length
        self.span_attributes: int | None = limits.max_span_attributes
        self.event_attributes: int | None = limits.max_event_attributes
        self.events: int | None = limits.max_events
        #: Whether any span may be changed: a length limit, or a count limit
        #: a crossing's span or an event may reach. Else only a record whose
        #: request span or events reach theirs (the defaults, 128 each, are
        #: far above what a request makes) is looked at: see :meth:`apply`.
        self.every_span = (
            self.span_length is not None
            or self.event_length is not None
            or (self.span_attributes is not None and self.span_attributes < CROSSING_ATTRIBUTES)
            or (self.event_attributes is not None and self.event_attributes < EVENT_ATTRIBUTES)
        )
        #: Shared groups with their values cut to the span length limit, so
        #: that they stay shared (and encoded once).
        self._groups: dict[AttributeGroup, AttributeGroup] = {}

    def apply(
        self, spans: list[PlannedSpan], most_attributes: int, most_events: int
    ) -> list[PlannedSpan]:
        """``spans`` within the limits; ``most_attributes`` and ``most_events``
        the most any of them has beside a crossing's usual ones (the request
        span's attributes; a span's events, STARTED included)."""
        if not self.every_span and not (
            self.span_attributes is not None and most_attributes > self.span_attributes
        ):
            if self.events is None or most_events <= self.events:
                return spans  # (the usual case: nothing to do)
        return [self.span(span) for span in spans]

    def span(self, span: PlannedSpan) -> PlannedSpan:
        """``span`` within the limits."""
        groups, own = span.groups, span.attributes
        length = self.span_length
        if length is not None:
            groups = tuple(self._group(group) for group in groups)
            own = _truncated(own, length)
        dropped_attributes = 0
        cap = self.span_attributes
        if cap is not None:
            total = sum(len(group.attributes) for group in groups) + len(own)
            if total > cap:
                everything: Attributes = sum((group.attributes for group in groups), ()) + own
                groups, own = (), everything[total - cap :]
                dropped_attributes = total - cap
        started, events = span.started, span.events
        if events and (
            self.event_length is not None
            or (self.event_attributes is not None and self.event_attributes < EVENT_ATTRIBUTES)
        ):
            events = [self._event(event) for event in events]
        dropped_events = 0
        cap = self.events
        if cap is not None:
            total = len(events) + (started is not None)
            if total > cap:
                kept = span_events(span._replace(events=events))[total - cap :]
                started, events = None, kept
                dropped_events = total - cap
        return span._replace(
            groups=groups,
            attributes=own,
            started=started,
            events=events,
            dropped_attributes=dropped_attributes,
            dropped_events=dropped_events,
        )

    def _group(self, group: AttributeGroup) -> AttributeGroup:
        limited = self._groups.get(group)
        if limited is None:
            if len(self._groups) >= MAX_CACHED:
                self._groups.clear()
            attributes = _truncated(group.attributes, self.span_length)  # type: ignore[arg-type]
            limited = group if attributes is group.attributes else AttributeGroup(attributes)
            self._groups[group] = limited
        return limited

    def _event(self, event: PlannedEvent) -> PlannedEvent:
        attributes = event.attributes
        if self.event_length is not None:
            attributes = _truncated(attributes, self.event_length)
        cap = self.event_attributes
        dropped = 0
        if cap is not None and len(attributes) > cap:
            dropped = len(attributes) - cap
            attributes = attributes[dropped:]
        return event._replace(attributes=attributes, dropped=dropped)


def _truncated(attributes: Attributes, length: int) -> Attributes:
    """``attributes`` with their values cut to ``length`` (the same tuple when
    none is longer)."""
    cut = [(key, _truncate(value, length)) for key, value in attributes]
    if all(new is old for (_key, new), (_key, old) in zip(cut, attributes, strict=True)):
        return attributes
    return tuple(cut)


def _truncate(value: Any, length: int) -> Any:
    """``value`` with its strings cut to ``length`` characters, in sequences
    and mappings too, as the SDK's ``_clean_attribute_value``; the same
    object when none is longer."""
    if isinstance(value, str):
        return value[:length] if len(value) > length else value
    if value is None or isinstance(value, (bool, int, float, bytes, bytearray)):
        return value
    if isinstance(value, Sequence):
        items = [_truncate(item, length) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return tuple(items) if changed else value
    if isinstance(value, Mapping):
        pairs = {key: _truncate(item, length) for key, item in value.items()}
        changed = any(pairs[key] is not item for key, item in value.items())
        return pairs if changed else value
    return value


_MISSING = object()


class _Sampled(NamedTuple):
    """A request sampled in: what its request span is made of."""

    parent_context: trace.SpanContext | None
    trace_id: int
    name: str
    attributes: dict[str, Any]
    state: TraceState | None


def _sample(
    record: RequestRecord,
    *,
    sampler: Sampler,
    ids: IdGenerator,
    parent: Context | None,
    server_span: trace.Span | None,
) -> _Sampled | None:
    """The request's one sampling decision: None when it has no spans (not
    sampled, or no crossing to put under ``server_span``)."""
    if server_span is not None:
        if not record.crossings:
            return None
        parent = trace.set_span_in_context(server_span)
    parent_context = trace.get_current_span(parent).get_span_context() if parent else None
    if parent_context is not None and not parent_context.is_valid:
        parent_context = None
    trace_id = parent_context.trace_id if parent_context else ids.generate_trace_id()
    name = request_span_name(record)
    attributes = {**_http_attributes(record), **request_attributes(record)}
    given = dict(attributes)  # what the sampler does to it is not switchtrace's own
    sampled = sampler.should_sample(parent, trace_id, name, trace.SpanKind.SERVER, given)
    if sampled.decision is not Decision.RECORD_AND_SAMPLE:
        return None
    # What the sampler added or changed (the SDK's give back the attributes
    # they were given, switchtrace's own, clean), cleaned as the SDK's
    # provider cleans them (it makes the span's attributes a
    # BoundedAttributes): a value of a type no attribute holds becomes its
    # string, or None, rather than an attribute the writers leave out.
    added = {
        key: value
        for key, value in (sampled.attributes or {}).items()
        if attributes.get(key, _MISSING) is not value
    }
    if added:
        attributes.update(BoundedAttributes(attributes=added, immutable=False))
    return _Sampled(parent_context, trace_id, name, attributes, sampled.trace_state)


def count_spans(
    record: RequestRecord,
    *,
    sampler: Sampler,
    ids: IdGenerator,
    parent: Context | None = None,
    server_span: trace.Span | None = None,
) -> int:
    """How many spans :func:`plan_spans` would lay out for ``record``, after
    the same sampling decision, without laying them out (spans that would not
    be sent: the pipeline's exports paused after a failure)."""
    if _sample(record, sampler=sampler, ids=ids, parent=parent, server_span=server_span) is None:
        return 0
    return len(record.crossings) + (server_span is None)


def plan_spans(
    record: RequestRecord,
    *,
    sampler: Sampler,
    ids: IdGenerator,
    parent: Context | None = None,
    resolve: Resolve | None = None,
    server_span: trace.Span | None = None,
    limits: Limits | None = None,
) -> PlannedSpans | None:
    """Lay out the spans of ``record`` under a request span of ours, or under
    ``server_span`` (the application's, active when the request started or
    started by a middleware above switchtrace's: its trace, the crossings its
    children, no request span of ours; ``parent`` is then ignored). One
    sampling decision per request. None when the request is not sampled, or
    has no crossing to put under ``server_span``. With ``limits``, the spans
    are within them, as the SDK's provider would record them."""
    record.describe(resolve)
    to_wall = record.wall_ns - record.begin_ns  # record clock -> ns since the epoch
    end_ns = record.end_ns if record.end_ns is not None else record.clock()
    sampled = _sample(record, sampler=sampler, ids=ids, parent=parent, server_span=server_span)
    if sampled is None:
        return None
    parent_context, trace_id, name, attributes, state = sampled
    trace_state = ",".join(f"{k}={v}" for k, v in state.items()) if state else ""

    new_id = ids.generate_span_id
    # Under the application's server span, it stands for our request span.
    request_id = parent_context.span_id if server_span is not None and parent_context else new_id()
    crossings = record.crossings
    span_ids = {id(crossing): new_id() for crossing in crossings}
    # Loops created and threads started: events of the crossing in progress
    # (when it is in the record), else of the request span.
    events: dict[int, list[PlannedEvent]] = {}
    request_events: list[PlannedEvent] = []
    for creation in record.loop_creations:
        cause = id(creation.crossing)
        (events.setdefault(cause, []) if cause in span_ids else request_events).append(
            PlannedEvent(
                creation.at_ns + to_wall,
                LOOP_CREATED,
                (("switchtrace.loop.id", creation.loop_id), ("thread.name", creation.thread.name)),
            )
        )
    for start in record.thread_starts:
        cause = id(start.crossing)
        (events.setdefault(cause, []) if cause in span_ids else request_events).append(
            PlannedEvent(
                start.at_ns + to_wall,
                THREAD_STARTED,
                (("thread.id", start.thread.ident or 0), ("thread.name", start.thread.name)),
            )
        )
    for own in events.values():
        own.sort(key=_time)
    request_events.sort(key=_time)
    # The thread objects of this record's crossings (few): their groups.
    threads_of: dict[tuple[Any, Any], AttributeGroup] = {}
    spans: list[PlannedSpan] = []
    append = spans.append
    for crossing in crossings:
        key = id(crossing)
        parent_crossing = crossing.parent
        name_, site = site_attributes(crossing)
        pair = (crossing.source_thread, crossing.target_thread)
        threads = threads_of.get(pair)
        if threads is None:
            threads = threads_of[pair] = thread_group(*pair)
        start_ns = crossing.start_ns
        append(
            PlannedSpan(
                span_ids[key],
                request_id
                if parent_crossing is None
                else span_ids.get(id(parent_crossing), request_id),
                False,
                name_,
                KIND_INTERNAL,
                crossing.call_ns + to_wall,
                span_end(crossing, end_ns) + to_wall,
                (site, threads, loop_group(crossing)),
                own_attributes(crossing, end_ns),
                None if start_ns is None else start_ns + to_wall,
                events.get(key, ()),
                failed(crossing, end_ns),
            )
        )
    # The most events a crossing's span has (STARTED and its own).
    most_events = max(map(len, events.values()), default=0) + 1
    if server_span is not None:
        # No request span of ours: loops created and threads started outside
        # any crossing are left off (the application's span has usually ended
        # by the time the pipeline's thread gets the record).
        if limits is not None:
            spans = limits.apply(spans, 0, most_events)
        return PlannedSpans(trace_id, trace_state, state, spans)
    append(
        PlannedSpan(
            request_id,
            parent_context.span_id if parent_context else None,
            bool(parent_context and parent_context.is_remote),
            name,
            KIND_SERVER,
            record.wall_ns,
            end_ns + to_wall,
            (),
            tuple(attributes.items()),
            None,
            request_events,
            server_error(record),
        )
    )
    if limits is not None:
        spans = limits.apply(spans, len(attributes), max(most_events, len(request_events)))
    return PlannedSpans(trace_id, trace_state, state, spans)


def _time(event: PlannedEvent) -> int:
    return event.time


_ERROR = Status(StatusCode.ERROR)
_UNSET = Status(StatusCode.UNSET)


def readable_spans(
    planned: PlannedSpans, *, resource: Resource, scope: InstrumentationScope
) -> list[ReadableSpan]:
    """The planned spans as the SDK's finished ``ReadableSpan`` objects (for
    the memory exporter and exporters that take nothing else), with the
    counts of what the span limits left off where the SDK keeps them."""
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    state = planned.state

    def context(span_id: int, remote: bool = False) -> trace.SpanContext:
        return trace.SpanContext(planned.trace_id, span_id, remote, flags, state)

    kinds = {KIND_INTERNAL: trace.SpanKind.INTERNAL, KIND_SERVER: trace.SpanKind.SERVER}
    return [
        ReadableSpan(
            name=span.name,
            context=context(span.span_id),
            parent=None if span.parent_id is None else context(span.parent_id, span.parent_remote),
            resource=resource,
            attributes=_dropping(
                sum((group.attributes for group in span.groups), ()) + span.attributes,
                span.dropped_attributes,
            ),
            events=_events(span),
            kind=kinds[span.kind],
            instrumentation_scope=scope,
            status=_ERROR if span.error else _UNSET,
            start_time=span.start,
            end_time=span.end,
        )
        for span in planned.spans
    ]


def _dropping(attributes: Attributes, dropped: int) -> Any:
    """Attributes as a ReadableSpan or Event takes them: with ``dropped``
    (left off by the limits), the SDK's bounded mapping that counts them."""
    if not dropped:
        return dict(attributes)
    bounded = BoundedAttributes(None, dict(attributes), immutable=True)
    bounded.dropped = dropped
    return bounded


def _events(span: PlannedSpan) -> Sequence[Event]:
    events = [
        Event(
            e.name,
            _dropping(e.attributes, e.dropped) if e.dropped else dict(e.attributes) or None,
            e.time,
        )
        for e in span_events(span)
    ]
    if not span.dropped_events:
        return events
    bounded = BoundedList.from_seq(None, events)
    bounded.dropped = span.dropped_events
    return bounded


# -- through a live tracer (an application's provider) ------------------------------


def emit_spans(
    record: RequestRecord,
    tracer: trace.Tracer,
    *,
    parent: Context | None = None,
    server_span: trace.Span | None = None,
    resolve: Resolve | None = None,
    pause: Callable[[], None] | None = None,
) -> int:
    """Start and end the spans of ``record`` with its own timestamps.

    Under ``server_span`` (the application's), or else under a request span of
    ours whose parent is ``parent`` (an incoming traceparent). ``pause`` is
    called between spans (the pipeline releases the GIL there). Returns how
    many spans were emitted (0 when the request was not sampled)."""
    record.describe(resolve)
    wall = record.wall_time
    to_wall = record.wall_ns - record.begin_ns
    end_ns = record.end_ns if record.end_ns is not None else record.clock()
    own_request_span = server_span is None
    if own_request_span:
        request_span = tracer.start_span(
            request_span_name(record),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={**_http_attributes(record), **request_attributes(record)},
            start_time=wall(record.begin_ns),
        )
    else:
        request_span = server_span  # type: ignore[assignment]
    if not request_span.is_recording() and own_request_span:
        request_span.end(end_time=wall(end_ns))
        return 0
    emitted = 1 if own_request_span else 0
    # The events of no crossing go on the request span; the application's
    # may have ended already (opentelemetry-instrumentation-asgi ends its
    # span with the last body message), and takes none then: the SDK would
    # warn on each request, "Tried calling _add_event on an ended span".
    request_events: trace.Span | None = (
        request_span if own_request_span or request_span.is_recording() else None
    )
    request_context = trace.set_span_in_context(request_span)
    spans: dict[int, trace.Span] = {}
    try:
        for crossing in record.crossings:
            parent_span = spans.get(id(crossing.parent)) if crossing.parent is not None else None
            context = trace.set_span_in_context(parent_span) if parent_span else request_context
            name, _site = site_attributes(crossing)
            span = tracer.start_span(
                name,
                context=context,
                kind=trace.SpanKind.INTERNAL,
                attributes=crossing_attributes(crossing, end_ns),
                start_time=wall(crossing.call_ns),
            )
            spans[id(crossing)] = span
            if crossing.start_ns is not None:
                span.add_event(STARTED, timestamp=crossing.start_ns + to_wall)
            if failed(crossing, end_ns):
                span.set_status(_ERROR)
            emitted += 1
            if pause is not None:
                pause()

        def events_span(crossing: Crossing | None) -> trace.Span | None:
            return (spans.get(id(crossing)) if crossing else None) or request_events

        for creation in record.loop_creations:
            target = events_span(creation.crossing)
            if target is not None:
                target.add_event(
                    LOOP_CREATED,
                    {"switchtrace.loop.id": creation.loop_id, "thread.name": creation.thread.name},
                    timestamp=creation.at_ns + to_wall,
                )
        for start in record.thread_starts:
            target = events_span(start.crossing)
            if target is not None:
                target.add_event(
                    THREAD_STARTED,
                    {"thread.id": start.thread.ident or 0, "thread.name": start.thread.name},
                    timestamp=start.at_ns + to_wall,
                )
    finally:
        # Every span started is ended, even when the application's span
        # processor raised part way (in on_start, on_end): one left open
        # stays in its processors for ever, never exported. The error goes
        # on (the pipeline logs it, the request counted as dropped).
        failure = _end_spans(record, spans, request_span if own_request_span else None, end_ns)
    if failure is not None:
        raise failure
    return emitted


def _end_spans(
    record: RequestRecord,
    spans: dict[int, trace.Span],
    request_span: trace.Span | None,
    end_ns: int,
) -> BaseException | None:
    """End the crossings' spans that were started, then ``request_span`` (ours),
    each with its own end time; the first error raised ending one, if any
    (any exception: this is the pipeline's own thread)."""
    wall = record.wall_time
    failure: BaseException | None = None
    for crossing in record.crossings:
        span = spans.get(id(crossing))
        if span is None:
            continue
        try:
            span.end(end_time=wall(span_end(crossing, end_ns)))
        except BaseException as exc:
            failure = failure or exc
    if request_span is not None:
        try:
            if server_error(record):
                request_span.set_status(_ERROR)
            request_span.end(end_time=wall(end_ns))
        except BaseException as exc:
            failure = failure or exc
    return failure
