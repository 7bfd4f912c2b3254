"""switchtrace's own OTLP writers against opentelemetry-exporter-otlp's encoder.

The pipeline encodes spans itself (exporters/encode.py); the same planned
spans, made into SDK ReadableSpans and encoded by the SDK, must give the same
protobuf bytes and the same OTLP/JSON message."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from google.protobuf import json_format
from opentelemetry import baggage, trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._internal import _encode_attributes, _encode_value
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.propagate import extract
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    SamplingResult,
    StaticSampler,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from opentelemetry.trace.status import Status

from switchtrace import tracer
from switchtrace.django_app import components
from switchtrace.exporters import otlp_json, to_otlp_json
from switchtrace.exporters import pipeline as pipeline_module
from switchtrace.exporters.encode import (
    EncodedSpans,
    JsonWriter,
    ProtobufWriter,
    any_value,
    field,
    json_attributes,
    json_value,
    key_values,
    varint,
)
from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
from switchtrace.exporters.spans import (
    CROSSING_ATTRIBUTES,
    KIND_SERVER,
    QUEUE_WAIT,
    STARTED,
    THREAD_STARTED,
    AttributeGroup,
    Limits,
    PlannedEvent,
    count_spans,
    emit_spans,
    plan_spans,
    readable_spans,
    span_events,
)

from ..django_app.test_middleware import project
from ..support import run_asgi, wsgi_request

RESOURCE = Resource.create({"service.name": "shop", "deployment.environment": "staging"})
SCOPE = InstrumentationScope("switchtrace", "9.9.9")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def failing():
    raise KeyError("nope")


async def bridges_that_fail_and_nest():
    try:
        await sync_to_async(failing)()
    except KeyError:
        pass
    await sync_to_async(lambda: async_to_sync(asyncio.sleep)(0))()


@pytest.fixture
def recorded(records):
    """Records covering every kind of span content: the ASGI default stack, a
    WSGI request with new loops and threads (events with attributes) under a
    remote parent with a tracestate, asyncio.run, and a crossing that raised;
    each with its parent context."""
    with project() as (asgi, wsgi):
        run_asgi(asgi, "/sync/")
        wsgi_request(
            wsgi, "/async-to-sync/", HTTP_TRACEPARENT=TRACEPARENT, HTTP_TRACESTATE="shop=1,b=2"
        )
        wsgi_request(wsgi, "/asyncio-run/")
    with tracer.recording():
        asyncio.run(bridges_that_fail_and_nest())
    parents = [None, extract({"traceparent": TRACEPARENT, "tracestate": "shop=1,b=2"}), None, None]
    return list(zip(records, parents, strict=True))


def plan_all(recorded):
    return [
        plan_spans(
            record,
            sampler=ALWAYS_ON,
            ids=RandomIdGenerator(),
            parent=parent,
            resolve=components.resolve,
        )
        for record, parent in recorded
    ]


@pytest.fixture
def planned(recorded):
    """The planned spans of the records above."""
    return plan_all(recorded)


def parsed_json(text):
    """An OTLP/JSON export request as protobuf's JSON parser reads it (its
    ids, hex strings in OTLP/JSON, turned into protobuf JSON's base64)."""
    message = json.loads(text)
    for resource in message["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for with_ids in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in with_ids:
                            with_ids[key] = base64.b64encode(bytes.fromhex(with_ids[key])).decode()
    return json_format.ParseDict(message, ExportTraceServiceRequest())


def test_protobuf_bytes_equal_the_sdk_encoding(planned):
    writer = ProtobufWriter(RESOURCE, SCOPE)
    ours = writer.request([span for plan in planned for span in writer.spans(plan)])
    sdk = [
        span for plan in planned for span in readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    ]
    assert len(sdk) == 17 + (1 + 3) + (1 + 1) + (1 + 4)
    assert ours == encode_spans(sdk).SerializeToString()
    # And the message reads back whole.
    message = ExportTraceServiceRequest.FromString(ours)
    spans = message.resource_spans[0].scope_spans[0].spans
    assert len(spans) == len(sdk)
    request = spans[17 + 3]
    assert request.name == "GET async-to-sync/"
    assert request.trace_state == "shop=1,b=2"
    assert request.flags == 0x300  # its parent is remote
    assert spans[17].flags == 0x100


def test_json_equals_the_sdk_spans_in_otlp_json(planned):
    writer = JsonWriter(RESOURCE, SCOPE)
    sdk = [
        span for plan in planned for span in readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    ]
    ours = writer.request([span for plan in planned for span in writer.spans(plan)])
    assert json.loads(ours) == json.loads(to_otlp_json(sdk))
    # And protobuf's JSON parser reads the message the SDK encodes.
    assert parsed_json(ours) == encode_spans(sdk)


@pytest.mark.parametrize("opt_in", ["code", "code/dup"])
def test_the_stable_code_attributes_encode_as_the_sdks(recorded, monkeypatch, opt_in):
    """With OTEL_SEMCONV_STABILITY_OPT_IN's ``code`` or ``code/dup``, a call
    site's group of attributes is another, and encodes as the SDK does."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    planned = plan_all(recorded)
    sdk = [
        span for plan in planned for span in readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    ]
    named = [span for span in sdk if "code.function.name" in span.attributes]
    assert len(named) == 17 - 1 + 3 + 1 + 4  # but the request spans
    assert all(("code.function" in span.attributes) is (opt_in == "code/dup") for span in named)
    writer = ProtobufWriter(RESOURCE, SCOPE)
    assert writer.request([s for plan in planned for s in writer.spans(plan)]) == (
        encode_spans(sdk).SerializeToString()
    )
    writer = JsonWriter(RESOURCE, SCOPE)
    ours = writer.request([s for plan in planned for s in writer.spans(plan)])
    assert json.loads(ours) == json.loads(to_otlp_json(sdk))


def test_sdk_spans_with_links_and_a_status_message_in_otlp_json():
    """to_otlp_json writes any SDK span (an application's, given to the file
    exporter) as the SDK encodes it: links (remote or not, with attributes,
    and those the limits left off) and a status with its message too."""
    provider = TracerProvider(
        resource=RESOURCE, id_generator=Sequential(), span_limits=SpanLimits(max_links=3)
    )
    tracer_ = provider.get_tracer(SCOPE.name, SCOPE.version)
    remote = SpanContext(2**100, 5, True, TraceFlags(TraceFlags.SAMPLED))
    local = SpanContext(2**100, 6, False, TraceFlags(TraceFlags.SAMPLED))
    links = [Link(local), Link(remote, {"why": "retry"}), Link(local), Link(local, {"n": 3})]
    span = tracer_.start_span("app", links=links, start_time=10)
    span.set_status(Status(StatusCode.ERROR, "it broke"))
    span.end(end_time=20)
    text = to_otlp_json([span])
    assert parsed_json(text) == encode_spans([span])
    [written] = json.loads(text)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert written["links"] == [
        {
            "traceId": f"{2**100:032x}",
            "spanId": f"{5:016x}",
            "flags": 0x300,
            "attributes": [{"key": "why", "value": {"stringValue": "retry"}}],
        },
        {"traceId": f"{2**100:032x}", "spanId": f"{6:016x}", "flags": 0x100},
        {
            "traceId": f"{2**100:032x}",
            "spanId": f"{6:016x}",
            "flags": 0x100,
            "attributes": [{"key": "n", "value": {"intValue": "3"}}],
        },
    ]
    assert written["droppedLinksCount"] == 1
    assert written["status"] == {"code": 2, "message": "it broke"}


def test_schema_urls_and_a_scopes_attributes_encode_as_the_sdks(planned):
    """A resource's schema URL, and a scope's with its attributes (as an
    application's provider may give them), in both writers."""
    resource = Resource({"service.name": "shop"}, "https://opentelemetry.io/schemas/1.21.0")
    scope = InstrumentationScope(
        "switchtrace", "9.9.9", "https://example.com/scope/2", {"profiler": True, "n": 2}
    )
    plan = planned[0]
    sdk = readable_spans(plan, resource=resource, scope=scope)
    protobuf = ProtobufWriter(resource, scope)
    ours = protobuf.request(protobuf.spans(plan))
    assert ours == encode_spans(sdk).SerializeToString()
    [resource_spans] = ExportTraceServiceRequest.FromString(ours).resource_spans
    assert resource_spans.schema_url == "https://opentelemetry.io/schemas/1.21.0"
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.schema_url == "https://example.com/scope/2"
    assert [(a.key, a.value) for a in scope_spans.scope.attributes] == [
        ("profiler", AnyValue(bool_value=True)),
        ("n", AnyValue(int_value=2)),
    ]
    writer = JsonWriter(resource, scope)
    text = writer.request(writer.spans(plan))
    assert parsed_json(text) == encode_spans(sdk)
    assert json.loads(text) == json.loads(to_otlp_json(sdk))


def test_every_span_of_the_default_stack_under_a_remote_parent_with_a_tracestate(records):
    # The crossings of the ASGI default stack take the writers' shortcut for
    # the common span; with a tracestate, the protobuf writer's general path.
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    parent = extract({"traceparent": TRACEPARENT, "tracestate": "shop=1"})
    plan = plan_spans(
        record,
        sampler=ALWAYS_ON,
        ids=RandomIdGenerator(),
        parent=parent,
        resolve=components.resolve,
    )
    sdk = readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    assert len(sdk) == 17
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    assert protobuf.request(protobuf.spans(plan)) == encode_spans(sdk).SerializeToString()
    writer = JsonWriter(RESOURCE, SCOPE)
    assert json.loads(writer.request(writer.spans(plan))) == json.loads(to_otlp_json(sdk))


def test_spans_off_the_common_layout_an_empty_group_and_simultaneous_events(planned):
    # Spans the writers' shortcut must not take: an empty shared group, and an
    # event at the very instant the code started (the start comes first).
    plan = planned[0]
    common = plan.spans[1]
    spans = [
        common._replace(groups=(common.groups[0], AttributeGroup(()), common.groups[2])),
        common._replace(
            events=[PlannedEvent(common.started, THREAD_STARTED, (("thread.name", "w"),))]
        ),
        *plan.spans[2:],
    ]
    plan = plan._replace(spans=spans)
    assert [event.name for event in span_events(spans[1])] == [STARTED, THREAD_STARTED]
    sdk = readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    assert protobuf.request(protobuf.spans(plan)) == encode_spans(sdk).SerializeToString()
    writer = JsonWriter(RESOURCE, SCOPE)
    assert json.loads(writer.request(writer.spans(plan))) == json.loads(to_otlp_json(sdk))


#: A crossing's span as most are (a parent, three shared groups, the queue
#: wait alone, the STARTED event alone), each changed in one way that the
#: writers' template for such spans cannot write.
OFF_THE_TEMPLATE = {
    "no-parent": lambda span: span._replace(parent_id=None),
    # (The span limits leave STARTED off and the queue wait on.)
    "not-started": lambda span: span._replace(started=None),
    "no-own-attribute": lambda span: span._replace(attributes=()),
    "another-own-attribute": lambda span: span._replace(
        attributes=(("switchtrace.exception", "KeyError"),)
    ),
    "two-own-attributes": lambda span: span._replace(
        attributes=(*span.attributes, ("switchtrace.exception", "KeyError"))
    ),
    "two-groups": lambda span: span._replace(groups=span.groups[:2]),
    "four-groups": lambda span: span._replace(groups=(*span.groups, AttributeGroup((("n", 1),)))),
    # A group whose every attribute the SDK's encoder leaves out.
    **{
        f"group-{n}-left-out": lambda span, n=n: span._replace(
            groups=tuple(
                AttributeGroup((("big", 2**64),)) if i == n else group
                for i, group in enumerate(span.groups)
            )
        )
        for n in range(3)
    },
    "error": lambda span: span._replace(error=True),
    "dropped-attributes": lambda span: span._replace(dropped_attributes=3),
    "dropped-events": lambda span: span._replace(dropped_events=2),
}


@pytest.mark.parametrize("change", OFF_THE_TEMPLATE)
def test_a_span_off_the_template_encodes_as_the_sdks(planned, change, swallowed):
    plan = planned[0]
    common = plan.spans[1]
    assert common.parent_id is not None and common.started is not None and not common.events
    assert [key for key, _value in common.attributes] == [QUEUE_WAIT]
    assert len(common.groups) == 3 and all(group.attributes for group in common.groups)
    plan = plan._replace(spans=[OFF_THE_TEMPLATE[change](common)])
    sdk = readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    assert protobuf.request(protobuf.spans(plan)) == encode_spans(sdk).SerializeToString()
    writer = JsonWriter(RESOURCE, SCOPE)
    assert parsed_json(writer.request(writer.spans(plan))) == encode_spans(sdk)
    left_out = {"span attribute encoding"} if change.endswith("left-out") else set()
    assert {where for where, _exc in swallowed} == left_out
    swallowed.clear()


def test_the_same_site_shares_its_attributes_and_its_encoding(planned):
    asgi = planned[0].spans
    assert asgi[1].name == "sync_to_async SecurityMiddleware.process_request"
    site = asgi[1].groups[0]
    assert dict(site.attributes)["switchtrace.component"] == "SecurityMiddleware.process_request"
    # The three async_to_sync calls of one view share their site's group...
    calls = planned[1].spans[:3]
    assert calls[0].groups[0] is calls[1].groups[0] is calls[2].groups[0]
    # ... and each writer encodes it once and keeps the encoding on it.
    for writer, encoding in (
        (ProtobufWriter(RESOURCE, SCOPE), "protobuf"),
        (JsonWriter(RESOURCE, SCOPE), "json"),
    ):
        first = writer.spans(planned[1])
        encoded = getattr(calls[0].groups[0], encoding)
        assert encoded in first[0] and encoded in first[1]
        assert writer.spans(planned[1])[0] == first[0]
        assert getattr(calls[0].groups[0], encoding) is encoded
        # So with every group, on the spans written from the writers' template
        # (the ASGI stack's, without a tracestate) as on the others.
        written = [writer.spans(plan) for plan in planned]
        groups = [group for plan in planned for span in plan.spans for group in span.groups]
        kept = [getattr(group, encoding) for group in groups]
        assert all(kept)
        assert [writer.spans(plan) for plan in planned] == written
        assert all(getattr(group, encoding) is was for group, was in zip(groups, kept, strict=True))


def test_a_crossing_that_raised_and_nesting(planned):
    run, raised, outer, inner, request = planned[3].spans
    assert dict(raised.attributes)["switchtrace.exception"] == "KeyError"
    assert "switchtrace.exception" not in dict(outer.attributes)
    assert inner.parent_id == outer.span_id
    assert outer.parent_id == run.span_id == raised.parent_id
    assert run.parent_id == request.span_id
    assert request.parent_id is None and not request.parent_remote


def test_an_unsampled_request_has_no_plan(records):
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    assert plan_spans(record, sampler=ALWAYS_OFF, ids=RandomIdGenerator()) is None


def test_the_spans_counted_instead_of_made_are_those_planned(records):
    """While exports are paused, the pipeline counts a record's spans as lost
    without making them: as many as plan_spans lays out, after the same
    sampling decision (an unsampled parent, the application's server span)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased

    with project() as (asgi, wsgi):
        run_asgi(asgi, "/sync/")
        wsgi_request(wsgi, "/async-to-sync/")
    with tracer.recording():
        pass
    server_span = TracerProvider().get_tracer("app").start_span("GET", kind=trace.SpanKind.SERVER)
    unsampled = extract({"traceparent": TRACEPARENT[:-2] + "00"})
    sampler = ParentBased(ALWAYS_ON)
    counts = []
    for record in records:
        for parent, span in ((None, None), (unsampled, None), (None, server_span)):
            plan = plan_spans(
                record, sampler=sampler, ids=RandomIdGenerator(), parent=parent, server_span=span
            )
            count = count_spans(
                record, sampler=sampler, ids=RandomIdGenerator(), parent=parent, server_span=span
            )
            assert count == (0 if plan is None else len(plan.spans))
            counts.append(count)
    assert counts == [17, 0, 16, 4, 0, 3, 1, 0, 0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, AnyValue(int_value=0)),
        (300, AnyValue(int_value=300)),
        (-1, AnyValue(int_value=-1)),
        (2**63 - 1, AnyValue(int_value=2**63 - 1)),
        (True, AnyValue(bool_value=True)),
        (False, AnyValue(bool_value=False)),
        ("", AnyValue(string_value="")),
        ("é" * 100, AnyValue(string_value="é" * 100)),
        (b"\x00", AnyValue(bytes_value=b"\x00")),
        (1.5, AnyValue(double_value=1.5)),
        (
            ["a", 1],
            AnyValue(
                array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=1)])
            ),
        ),
        (
            {"k": True},
            AnyValue(
                kvlist_value=KeyValueList(
                    values=[KeyValue(key="k", value=AnyValue(bool_value=True))]
                )
            ),
        ),
    ],
)
def test_any_value_is_protobufs_encoding(value, message):
    assert any_value(value) == message.SerializeToString()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7, '{"intValue":"7"}'),
        (True, '{"boolValue":true}'),
        ('a"b', '{"stringValue":"a\\"b"}'),
        (0.25, '{"doubleValue":0.25}'),
        (b"\x01", '{"bytesValue":"AQ=="}'),
        ((1, "x"), '{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"}]}}'),
        ({"k": 1}, '{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}}'),
    ],
)
def test_json_value(value, text):
    assert json_value(value) == text


def test_varint():
    assert [varint(n) for n in (0, 127, 128, 16384)] == [
        b"\x00",
        b"\x7f",
        b"\x80\x01",
        b"\x80\x80\x01",
    ]
    # Every length, at both ends, as protobuf itself encodes it.
    for bits in range(1, 65):
        for n in (2 ** (bits - 1), 2**bits - 1):
            assert (
                varint(n)
                == AnyValue(int_value=n - 2**64 if n >= 2**63 else n).SerializeToString()[1:]
            )


def test_an_encoded_batch_counts_its_spans():
    assert len(EncodedSpans(b"", 17)) == 17


@pytest.mark.parametrize(
    ("options", "writer"),
    [
        ({"exporter": "file", "file_path": "unused.jsonl"}, JsonWriter),
        (
            {"exporter": "otlp", "protocol": "grpc", "endpoint": "http://127.0.0.1:9"},
            ProtobufWriter,
        ),
        ({"exporter": "otlp", "endpoint": "http://127.0.0.1:9"}, ProtobufWriter),
        ({"exporter": "memory"}, type(None)),
    ],
    ids=["file", "otlp-grpc", "otlp-http", "memory"],
)
def test_which_exporters_take_encoded_spans(options, writer, tmp_path):
    """The file and OTLP exporters get spans encoded by switchtrace; the memory
    exporter gets the SDK's spans."""
    options = ExportOptions(**{**options, "file_path": str(tmp_path / "t.jsonl")})
    pipeline = SpanPipeline(options)
    try:
        assert type(pipeline.writer) is writer
        assert (pipeline.processor is None) is (writer is not type(None))
    finally:
        pipeline.shutdown(timeout=5)


def test_the_http_exporter_sends_nothing_once_shut_down():
    """As the SDK's exporter refuses its spans once shut down (a late batch,
    the span thread's join having timed out), the encoded ones are refused,
    not sent."""
    from .receiver import HttpReceiver

    receiver = HttpReceiver()
    try:
        exporter = pipeline_module.build_exporter(
            ExportOptions(exporter="otlp", protocol="http/protobuf", endpoint=receiver.endpoint)
        )
        payload = ExportTraceServiceRequest().SerializeToString()
        results = [exporter.export(EncodedSpans(payload, 1)).name]
        exporter.shutdown()
        results.append(exporter.export(EncodedSpans(payload, 1)).name)
        assert (results, receiver.received.posts) == (["SUCCESS", "FAILURE"], 1)
    finally:
        receiver.stop()


def test_an_otlp_exporter_without_the_hook_gets_sdk_spans(monkeypatch):
    """An opentelemetry-exporter-otlp version whose HTTP exporter has no
    ``_client`` (the hook used to send encoded spans) is given SDK spans
    through a batch processor instead."""
    real_build = pipeline_module.build_exporter
    clients = []

    def without_client(options):
        exporter = real_build(options)
        clients.append(exporter._client)
        del exporter._client
        return exporter

    monkeypatch.setattr(pipeline_module, "build_exporter", without_client)
    pipeline = SpanPipeline(ExportOptions(exporter="otlp", endpoint="http://127.0.0.1:9"))
    try:
        assert pipeline.writer is None
        assert isinstance(pipeline.processor, BatchSpanProcessor)
        assert pipeline.exporter.takes_encoded is False
    finally:
        pipeline.exporter._client = clients[0]  # for the exporter's own shutdown
        pipeline.shutdown(timeout=5)


def test_a_memo_makes_each_value_once_and_stays_bounded(monkeypatch):
    from switchtrace.exporters import encode

    made = []
    memo = encode.Memo(lambda key: made.append(key) or key * 2)
    assert (memo[3], memo[3], memo[4]) == (6, 6, 8)
    assert made == [3, 4]
    assert dict(memo) == {3: 6, 4: 8}
    monkeypatch.setattr(encode, "MAX_CACHED", 2)
    assert memo[5] == 10  # full: cleared first
    assert dict(memo) == {5: 10}


def test_the_site_attributes_cache_stays_bounded(monkeypatch):
    """The span name and attributes of a call site are made once, and the
    cache of them, as every cache by call site, holds at most MAX_CACHED
    entries (4,096, as the README says), emptied when full."""
    from switchtrace.exporters import encode, spans
    from switchtrace.tracer import SYNC_TO_ASYNC, Crossing, Description, describe

    assert describe.MAX_CACHED == encode.MAX_CACHED == spans.MAX_CACHED == 4096
    monkeypatch.setattr(spans, "MAX_CACHED", 2)
    monkeypatch.setattr(spans, "_site_attributes", {})
    sites = {name: Description(name, None, None) for name in "abc"}
    for description in sites.values():
        description.shared = True
    made = []
    for name in "abac":
        crossing = Crossing(SYNC_TO_ASYNC, None, None, threading.current_thread(), None, 0)
        crossing.description = sites[name]
        made.append(spans.site_attributes(crossing))
    assert [name for name, _attributes in made] == [f"sync_to_async {n}" for n in "abac"]
    assert made[2] is made[0]  # the same group for every crossing of a site
    assert list(spans._site_attributes.values()) == [made[3]]  # full at "c": emptied first


# -- values off the beaten path, against the SDK's encoder ----------------------

#: Values the SDK's ``_encode_value`` encodes.
ENCODED = [
    None,
    ["a", None],
    [None],
    {"k": None},
    {1: "a"},
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    1e300,
    [],
    (),
    {},
    [[]],
    {"k": {}},
    [[1, 2], ["x"]],
    -(2**63),
    2**63 - 1,
    "\u2028\x00😀",
    b"",
    bytearray(b"ab"),
    [True, 1, 1.5],
]
#: Values it raises for, leaving out the attribute that holds them.
REFUSED = [
    2**63,
    -(2**63) - 1,
    2**64 + 5,
    [1, 2**70],
    {"k": 2**63},
    [{"k": [2**63]}],
    {1, 2},
]
#: Text with lone surrogates (a non-UTF-8 file name decoded with
#: surrogateescape), which the SDK's encoder refuses (protobuf cannot encode
#: it, and strict JSON parsers refuse its escape), and the text it is written as.
ESCAPED = [
    ("/srv/caf\udce9/views.py", "/srv/caf\\xe9/views.py"),
    (["ok", "\ud800"], ["ok", "\\ud800"]),
    ({"caf\udce9": 1}, {"caf\\xe9": 1}),  # (in a key)
]


@pytest.mark.parametrize(("value", "written"), ESCAPED, ids=repr)
def test_text_utf8_cannot_write_is_written_with_escapes(value, written, swallowed):
    """Left out (as the SDK's encoder raises for it), as switchtrace's own
    error: a thread named after a directory named in Latin-1 lost its
    thread.name, with 'internal error in span attribute encoding' logged."""
    assert any_value(value) == any_value(written)
    assert json_value(value) == json_value(written)
    assert otlp_json._value(value) == otlp_json._value(written)
    assert swallowed == []


def sdk_json(value):
    return json.loads(json_format.MessageToJson(_encode_value(value), indent=None))


@pytest.mark.parametrize("value", ENCODED, ids=repr)
def test_values_are_encoded_as_the_sdk_encodes_them(value):
    assert any_value(value) == _encode_value(value).SerializeToString()
    # OTLP/JSON as protobuf's JSON mapping writes the SDK's message: NaN and
    # infinities as strings (valid JSON), empty arrays and lists as {}.
    assert json.loads(json_value(value)) == sdk_json(value)
    assert otlp_json._value(value) == sdk_json(value)


def test_non_finite_doubles_are_valid_json():
    assert json_value(float("nan")) == '{"doubleValue":"NaN"}'
    assert json_value(float("inf")) == '{"doubleValue":"Infinity"}'
    assert json_value(float("-inf")) == '{"doubleValue":"-Infinity"}'
    assert json_value([]) == '{"arrayValue":{}}'
    assert json_value({}) == '{"kvlistValue":{}}'
    assert json_value(None) == "{}"


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_values_the_sdk_refuses_raise(value):
    with pytest.raises(Exception) as sdk:
        _encode_value(value)
    with pytest.raises(type(sdk.value) if type(sdk.value) is not Exception else TypeError):
        any_value(value)
    with pytest.raises(type(sdk.value) if type(sdk.value) is not Exception else TypeError):
        json_value(value)
    with pytest.raises(type(sdk.value) if type(sdk.value) is not Exception else TypeError):
        otlp_json._value(value)


def test_an_attribute_the_sdk_leaves_out_is_left_out_alone(swallowed):
    """As the SDK's _encode_attributes: the attribute that cannot be encoded
    is left out, the others kept (here, one of each value above between two
    plain ones, and a key that is not a string)."""
    attributes = {"first": 1}
    attributes.update({f"ok{n}": value for n, value in enumerate(ENCODED)})
    attributes.update({f"refused{n}": value for n, value in enumerate(REFUSED)})
    attributes[3] = "not a string key"
    attributes["clé"] = "a key UTF-8 can"
    attributes["last"] = "x"
    sdk = _encode_attributes(attributes)
    assert [kv.key for kv in sdk] == [
        "first",
        *(f"ok{n}" for n in range(len(ENCODED))),
        "clé",
        "last",
    ]
    expected = b"".join(field(9, kv.SerializeToString()) for kv in sdk)
    assert key_values(9, attributes.items()) == expected
    ours_json = json.loads(f"[{json_attributes(attributes.items())}]")
    assert ours_json == [json.loads(json_format.MessageToJson(kv, indent=None)) for kv in sdk]
    assert otlp_json._attributes(attributes) == ours_json
    # Each writer reports each attribute it leaves out (a failed test here,
    # logged once in production).
    assert [where for where, _exc in swallowed] == ["span attribute encoding"] * 3 * (
        len(REFUSED) + 1
    )
    assert {type(exc) for _where, exc in swallowed} == {ValueError, TypeError, AttributeError}
    swallowed.clear()


def test_odd_values_in_spans_events_groups_and_the_resource_encode_as_the_sdks(planned, swallowed):
    """The byte-for-byte and field-for-field comparisons above, with every
    odd value in a span's own attributes, an event's, a shared group (one
    whose every attribute is left out, on a span the writers would otherwise
    write from their template) and the resource's."""
    odd = tuple((f"ok{n}", value) for n, value in enumerate(ENCODED)) + tuple(
        (f"refused{n}", value) for n, value in enumerate(REFUSED)
    )
    resource = Resource({"service.name": "shop", **dict(odd)})
    plan = planned[0]
    common, *rest = plan.spans[1:]
    request = rest[-1]
    spans = [
        plan.spans[0]._replace(attributes=plan.spans[0].attributes + odd),
        common._replace(
            groups=(common.groups[0], AttributeGroup((("big", 2**64),)), common.groups[2])
        ),
        *rest[:-1],
        request._replace(events=[PlannedEvent(request.start, THREAD_STARTED, odd)]),
    ]
    plan = plan._replace(spans=spans)
    sdk = readable_spans(plan, resource=resource, scope=SCOPE)
    protobuf = ProtobufWriter(resource, SCOPE)
    assert protobuf.request(protobuf.spans(plan)) == encode_spans(sdk).SerializeToString()
    writer = JsonWriter(resource, SCOPE)
    text = writer.request(writer.spans(plan))
    assert json.loads(text) == json.loads(to_otlp_json(sdk))  # (no NaN or Infinity literals)
    # (Compared as bytes: NaN is not equal to itself in the messages.)
    assert parsed_json(text).SerializeToString() == encode_spans(sdk).SerializeToString()
    assert {where for where, _exc in swallowed} == {"span attribute encoding"}
    swallowed.clear()


def test_error_statuses_encode_as_the_sdks_and_through_an_applications_provider(records):
    """A 5xx request span and the crossing its view raised in carry status
    Error in both writers, as in the SDK's encoding, and so do the spans made
    through an application's provider (emit_spans)."""
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/raise/")
    [record] = records
    plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator())
    sdk = readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    errors = {s.name for s in sdk if s.status.status_code is StatusCode.ERROR}
    assert errors == {"sync_to_async raising_view", "GET raise/"}
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    ours = protobuf.request(protobuf.spans(plan))
    assert ours == encode_spans(sdk).SerializeToString()
    spans = ExportTraceServiceRequest.FromString(ours).resource_spans[0].scope_spans[0].spans
    assert {s.name for s in spans if s.status.code == 2} == errors
    writer = JsonWriter(RESOURCE, SCOPE)
    message = json.loads(writer.request(writer.spans(plan)))
    assert message == json.loads(to_otlp_json(sdk))
    json_spans = message["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["name"] for s in json_spans if s["status"] == {"code": 2}} == errors

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert emit_spans(record, provider.get_tracer("app"), resolve=components.resolve) == len(sdk)
    emitted = exporter.get_finished_spans()
    assert {s.name for s in emitted if s.status.status_code is StatusCode.ERROR} == errors
    [request] = [s for s in emitted if s.name == "GET raise/"]
    assert request.attributes["error.type"] == "500"


# -- the SDK's span limits -------------------------------------------------------


class Sequential(IdGenerator):
    """Ids 1, 2, 3...: two plans of a record made with one each have the same."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return next(self._next) + 2**100


class Replayed(IdGenerator):
    """The ids of planned spans, for the SDK's tracer to make the same spans."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


#: Attribute values with strings inside, which a sampler adds to the request span.
NESTED = {
    "switchtrace.test.list": ("abcdefghijklmnop", 7, "xy"),
    "switchtrace.test.map": {"k": "abcdefghijklmnop", "n": 2, "inner": ["abcdefghijklmnop"]},
    "switchtrace.test.strings": {"k": "abcdefghijklmnop"},
    "switchtrace.test.bytes": b"abcdefghijklmnop",
    "switchtrace.test.none_inside": ["abcdefghijklmnop", None],
    "switchtrace.test.float": 1.5,
    "switchtrace.test.bool": True,
}


class Nesting(StaticSampler):
    """ALWAYS_ON, adding NESTED to the request span's attributes."""

    def __init__(self) -> None:
        super().__init__(Decision.RECORD_AND_SAMPLE)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, **kw):
        result = super().should_sample(parent_context, trace_id, name, kind, attributes, **kw)
        return SamplingResult(result.decision, NESTED, result.trace_state)


def through_the_sdk(plans):
    """The planned spans (made without limits) made again by the SDK's own
    provider, made now (reading the span limits from the environment), with
    their ids, times, attributes and events in the same order: its finished
    spans."""
    exporter = InMemorySpanExporter()
    flags = TraceFlags(TraceFlags.SAMPLED)
    for plan in plans:
        ids = Replayed(plan.trace_id)
        provider = TracerProvider(sampler=ALWAYS_ON, resource=RESOURCE, id_generator=ids)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer_ = provider.get_tracer(SCOPE.name, SCOPE.version)
        for span in plan.spans:
            parent = None
            if span.parent_id is not None:
                parent_span = NonRecordingSpan(
                    SpanContext(
                        plan.trace_id, span.parent_id, span.parent_remote, flags, plan.state
                    )
                )
                parent = trace.set_span_in_context(parent_span)
            ids.span_id = span.span_id
            made = tracer_.start_span(
                span.name,
                context=parent,
                kind=trace.SpanKind.SERVER if span.kind == KIND_SERVER else trace.SpanKind.INTERNAL,
                attributes=dict(sum((g.attributes for g in span.groups), ()) + span.attributes),
                start_time=span.start,
            )
            for event in span_events(span):
                made.add_event(event.name, dict(event.attributes), timestamp=event.time)
            if span.error:
                made.set_status(StatusCode.ERROR)
            made.end(end_time=span.end)
    return exporter.get_finished_spans()


LIMITS = {
    "value-length": {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "8"},
    "span-and-global-value-lengths": {
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "12",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3",
    },
    "span-attribute-and-event-counts": {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "5",
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "1",
    },
    "global-attribute-count": {"OTEL_ATTRIBUTE_COUNT_LIMIT": "1"},
    # Only the events' count: a crossing's span with an event beside STARTED.
    "event-count": {"OTEL_SPAN_EVENT_COUNT_LIMIT": "1"},
    "no-event": {"OTEL_SPAN_EVENT_COUNT_LIMIT": "0"},
    "event-attribute-count": {"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "1"},
    # At the most a crossing's span has (the code.* attributes under their
    # old names alone): only the request spans have more.
    "request-span-only": {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "22"},
    # Below the most a crossing's span has with the code.* attributes under
    # both names (25), above that under one: the crossings' spans are cut.
    "both-code-names": {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "24",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "code/dup",
    },
    # A span attribute count alone, below a crossing's: the crossings' spans
    # under the application's server span (no request span of ours) are cut
    # too. An empty variable is no limit, to the SDK (its "" is unset).
    "span-attribute-count": {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "5",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "",
    },
    # Only the events' values: an empty span length is no limit, not the
    # global one.
    "event-value-length": {
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "",
    },
    "no-count-limits": {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "",
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "",
    },
    "zero": {
        "OTEL_ATTRIBUTE_COUNT_LIMIT": "0",
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "0",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "0",
    },
    "defaults": {},
}
#: Per case: the counts it caps (a span's attributes, its events, an event's
#: attributes; None: not capped) and whether it leaves anything off here.
CAPS = {
    "value-length": ((None, None, None), False),
    "span-and-global-value-lengths": ((None, None, None), False),
    "span-attribute-and-event-counts": ((5, 1, None), True),
    "global-attribute-count": ((1, None, 1), True),
    "event-count": ((None, 1, None), True),
    "no-event": ((None, 0, None), True),
    "event-attribute-count": ((None, None, 1), True),
    "request-span-only": ((22, None, None), True),
    "both-code-names": ((24, None, None), True),
    "span-attribute-count": ((5, None, None), True),
    "event-value-length": ((None, None, None), False),
    "no-count-limits": ((None, None, None), False),
    "zero": ((0, 0, None), True),
    "defaults": ((None, None, None), False),
}


def left_off(plans, caps):
    """What ``caps`` leave off the spans of ``plans`` (made without limits):
    attributes of spans, events, attributes of the events kept."""
    span_cap, event_cap, event_attribute_cap = caps
    attributes = events = event_attributes = 0
    for plan in plans:
        for span in plan.spans:
            count = sum(len(group.attributes) for group in span.groups) + len(span.attributes)
            if span_cap is not None:
                attributes += max(count - span_cap, 0)
            kept = span_events(span)
            if event_cap is not None:
                events += max(len(kept) - event_cap, 0)
                kept = kept[len(kept) - min(event_cap, len(kept)) :]
            if event_attribute_cap is not None:
                event_attributes += sum(
                    max(len(e.attributes) - event_attribute_cap, 0) for e in kept
                )
    return attributes, events, event_attributes


LIMIT_VARIABLES = [
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
]


@pytest.mark.parametrize("case", LIMITS)
def test_spans_under_the_sdks_limits_encode_as_the_sdk_makes_and_encodes_them(
    recorded, case, monkeypatch
):
    """Under the span limits of the environment, the spans switchtrace lays
    out and encodes itself are those the SDK's provider makes of the same
    spans: values cut, the first attributes and events left off past a count
    limit, and the counts of what was left off, byte for byte in protobuf and
    field for field in OTLP/JSON (and its ReadableSpans encode the same)."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in LIMITS[case].items():
        monkeypatch.setenv(name, value)
    limits = Limits()
    plans, unlimited = [], []
    # (The ASGI request's crossings under an application's server span too.)
    server_span = TracerProvider().get_tracer("app").start_span("GET", kind=trace.SpanKind.SERVER)
    for record, parent in [*recorded, (recorded[0][0], server_span)]:
        under = {"server_span": parent} if parent is server_span else {"parent": parent}
        for made, into in ((limits, plans), (None, unlimited)):
            into.append(
                plan_spans(
                    record,
                    sampler=Nesting(),
                    ids=Sequential(),
                    resolve=components.resolve,
                    limits=made,
                    **under,
                )
            )
    sdk = through_the_sdk(unlimited)
    assert len(sdk) == 17 + (1 + 3) + (1 + 1) + (1 + 4) + 16
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    ours = protobuf.request([span for plan in plans for span in protobuf.spans(plan)])
    assert ours == encode_spans(sdk).SerializeToString()
    readable = [
        span for plan in plans for span in readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    ]
    assert encode_spans(readable).SerializeToString() == encode_spans(sdk).SerializeToString()
    writer = JsonWriter(RESOURCE, SCOPE)
    message = json.loads(writer.request([span for plan in plans for span in writer.spans(plan)]))
    assert message == json.loads(to_otlp_json(sdk))
    # What was left off, as the SDK counts it (and a test that the limits bite).
    caps, bites = CAPS[case]
    dropped = left_off(unlimited, caps)
    assert (
        sum(s.dropped_attributes for s in sdk),
        sum(s.dropped_events for s in sdk),
        sum(e.dropped_attributes for s in sdk for e in s.events),
    ) == dropped
    assert any(dropped) is bites
    requests = [s for s in sdk if s.kind is trace.SpanKind.SERVER]
    if case == "request-span-only":
        # Only request spans have more attributes (with the sampler's six).
        assert all(s.dropped_attributes == 0 for s in sdk if s not in requests)
        assert [s.dropped_attributes for s in requests] == [
            max(len(s.attributes) + s.dropped_attributes - 22, 0) for s in requests
        ]
        assert requests[0].dropped_attributes > 0
    [request] = [s for s in requests if s.name == "GET sync/"]
    if case == "value-length":
        assert request.attributes["switchtrace.test.list"] == ("abcdefgh", 7, "xy")
        assert request.attributes["switchtrace.test.map"] == {
            "k": "abcdefgh",
            "n": 2,
            "inner": ("abcdefgh",),
        }
        assert request.attributes["switchtrace.test.strings"] == {"k": "abcdefgh"}
        assert request.attributes["switchtrace.test.bytes"] == b"abcdefghijklmnop"
        assert max(len(s.attributes.get("code.filepath", "")) for s in sdk) == 8
    thread_names = {e.attributes["thread.name"] for s in sdk for e in s.events if e.attributes}
    if case == "span-and-global-value-lengths":
        assert request.attributes["switchtrace.test.none_inside"] == ("abcdefghijkl", None)
        assert {len(name) for name in thread_names} == {3}
    if case == "event-value-length":
        assert {len(name) for name in thread_names} == {3}
        assert request.attributes["switchtrace.test.none_inside"] == ("abcdefghijklmnop", None)
    if case == "span-attribute-count":
        assert {len(s.attributes) for s in sdk if s not in requests} == {5}


def test_the_cut_groups_are_made_once_and_stay_bounded(monkeypatch):
    """A shared group cut to the length limit is cut once, the same object
    for every span that has it, and the cut groups kept are bounded (thread
    groups are made anew as threads come and go: a server starting a
    thread per request would otherwise grow them for ever)."""
    from switchtrace.exporters import spans as spans_module

    monkeypatch.setattr(spans_module, "MAX_CACHED", 2)
    limits = Limits(SpanLimits(max_span_attribute_length=3))
    groups = [AttributeGroup((("k", f"value {n}"),)) for n in range(3)]
    first = limits._group(groups[0])
    assert first.attributes == (("k", "val"),)
    assert limits._group(groups[0]) is first
    limits._group(groups[1])
    assert list(limits._groups) == groups[:2]
    limits._group(groups[2])  # full: cleared first
    assert list(limits._groups) == groups[2:]


async def builtin_in_an_executor():
    await asyncio.get_running_loop().run_in_executor(None, int)


def test_a_group_whose_every_value_is_too_long_is_cut(records, monkeypatch):
    """A call site's attributes that are all strings longer than the length
    limit (a builtin run in an executor: no thread_sensitive, no line
    number) are all cut, as the SDK cuts them."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "2")
    with tracer.recording():
        asyncio.run(builtin_in_an_executor())
    [record] = records
    plans = [
        plan_spans(record, sampler=ALWAYS_ON, ids=Sequential(), limits=limits)
        for limits in (Limits(), None)
    ]
    site = plans[0].spans[1].groups[0]
    assert dict(site.attributes) == {
        "switchtrace.mechanism": "ru",
        "switchtrace.direction": "as",
        "switchtrace.executor": "Th",
        "code.function": "in",
        "code.namespace": "bu",
    }
    sdk = through_the_sdk(plans[1:])
    protobuf = ProtobufWriter(RESOURCE, SCOPE)
    ours = protobuf.request(protobuf.spans(plans[0]))
    assert ours == encode_spans(sdk).SerializeToString()


class Odd:
    """A value of a type no attribute holds, with a string of its own."""

    def __str__(self) -> str:
        return "odd"


#: What a sampler of the application's may add that no attribute can hold as
#: it is: the SDK's provider cleans it (to a string, or None where the type
#: has no string of its own, at the version installed), as any attribute.
UNCLEAN = {
    "switchtrace.test.odd": Odd(),
    "switchtrace.test.object": object(),
    "switchtrace.test.odd_inside": [Odd(), 1],
    "switchtrace.test.map_of_odd": {"k": Odd()},
}


class Unclean(StaticSampler):
    """ALWAYS_ON, adding UNCLEAN to the request span's attributes."""

    def __init__(self) -> None:
        super().__init__(Decision.RECORD_AND_SAMPLE)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, *a, **kw):
        result = super().should_sample(parent_context, trace_id, name, kind, attributes, *a, **kw)
        return SamplingResult(result.decision, UNCLEAN, result.trace_state)


def test_a_samplers_attributes_are_cleaned_as_the_sdks_provider_cleans_them(records):
    """Attribute values a sampler adds that no attribute holds as they are
    become what the SDK's own provider makes of them (a string, or None),
    not attributes the writers leave out as switchtrace's own failure."""
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    plan = plan_spans(record, sampler=Unclean(), ids=Sequential(), resolve=components.resolve)
    request = plan.spans[-1]
    provider = TracerProvider(sampler=Unclean(), resource=RESOURCE)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer(SCOPE.name, SCOPE.version).start_span(request.name).end()
    [sdk] = exporter.get_finished_spans()
    # (Keyed by what each has: an SDK older than its extended attributes
    # drops what it cannot hold, and switchtrace then does too.)
    ours = {key: value for key, value in request.attributes if key in UNCLEAN}
    assert ours == {key: value for key, value in sdk.attributes.items() if key in UNCLEAN}
    assert ours or not sdk.attributes.keys() & UNCLEAN.keys()
    # No value left that an encoder refuses (each would be a swallowed error).
    protobuf, writer = ProtobufWriter(RESOURCE, SCOPE), JsonWriter(RESOURCE, SCOPE)
    protobuf.request(protobuf.spans(plan))
    message = json.loads(writer.request(writer.spans(plan)))
    [encoded] = [
        span
        for span in message["resourceSpans"][0]["scopeSpans"][0]["spans"]
        if not span.get("parentSpanId")
    ]
    assert {a["key"] for a in encoded["attributes"]} >= set(ours)


class Meddling(StaticSampler):
    """ALWAYS_ON, giving back the attributes it is given with an unclean
    value added to them in place, and one of switchtrace's replaced by one."""

    def __init__(self) -> None:
        super().__init__(Decision.RECORD_AND_SAMPLE)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, *a, **kw):
        attributes["switchtrace.test.odd"] = Odd()
        attributes["url.path"] = Odd()
        return super().should_sample(parent_context, trace_id, name, kind, attributes, *a, **kw)


def test_what_a_sampler_adds_to_or_changes_in_the_attributes_it_is_given_is_cleaned(records):
    """Only what differs from switchtrace's own attributes is cleaned (the
    SDK's samplers give those back as they are), and that is told by each
    value, not by its key: a sampler that writes into the mapping it is given
    changes none of switchtrace's, and a value of switchtrace's it replaces
    is cleaned too."""
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    plan = plan_spans(record, sampler=Meddling(), ids=Sequential(), resolve=components.resolve)
    attributes = dict(plan.spans[-1].attributes)
    # What the SDK's provider makes of such a value, at the version installed.
    cleaned = BoundedAttributes(attributes={"odd": Odd()}, immutable=False)
    if "odd" in cleaned:
        assert (attributes["switchtrace.test.odd"], attributes["url.path"]) == (
            cleaned["odd"],
            cleaned["odd"],
        )
    else:
        assert "switchtrace.test.odd" not in attributes
        assert attributes["url.path"] == "/sync/"
    assert attributes["http.route"] == "sync/"


def test_an_event_count_limit_of_zero_leaves_off_every_start(records, monkeypatch):
    """Even of a request none of whose crossings has an event but STARTED."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "0")
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    record.thread_starts.clear()  # (its one thread already started, say)
    plan = plan_spans(record, sampler=ALWAYS_ON, ids=RandomIdGenerator(), limits=Limits())
    assert [(span.started, list(span.events), span.dropped_events) for span in plan.spans] == [
        *([(None, [], 1)] * 16),
        (None, [], 0),
    ]


def test_without_limits_near_their_defaults_spans_are_left_as_they_are(
    recorded, planned, monkeypatch
):
    """No length limit and counts far below the caps (the defaults): nothing
    is looked at, the spans are those laid out."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    limits = Limits()
    assert not limits.every_span
    spans = planned[1].spans
    assert limits.apply(spans, 128, 128) is spans
    assert limits.apply(spans, 129, 3) is not spans
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000")
    assert Limits().every_span

    # The most a crossing's span has (a crossing that raised, with every
    # attribute of its site: the code.* attributes under both names), on
    # which the shortcut relies.
    def most(planned):
        return max(
            sum(len(group.attributes) for group in span.groups) + len(span.attributes)
            for plan in planned
            for span in plan.spans
            if span.kind != KIND_SERVER
        )

    assert most(planned) == 22
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "code/dup")
    assert most(plan_all(recorded)) == CROSSING_ATTRIBUTES == 25


# -- through an application's provider ---------------------------------------------


def as_compared(span):
    """What a finished SDK span shows in a backend: its events in time order
    (emit_spans adds a crossing's start first, then the loops it created and
    the threads it started)."""
    events = sorted(span.events, key=lambda event: event.timestamp)
    return (
        span.name,
        span.kind,
        span.context.trace_id,
        span.context.span_id,
        span.context.trace_state,
        span.context.is_remote,
        None if span.parent is None else (span.parent.span_id, span.parent.is_remote),
        span.start_time,
        span.end_time,
        list(span.attributes.items()),
        [(e.name, e.timestamp, dict(e.attributes or {})) for e in events],
        span.status.status_code,
    )


def assert_emitted_as_planned(record, parent, *, ours=True):
    """The spans emit_spans makes of ``record`` through a provider and those
    plan_spans lays out: the same, as a backend shows them."""
    under = {"parent": parent} if ours else {"server_span": parent}
    plan = plan_spans(
        record, sampler=ALWAYS_ON, ids=Sequential(), resolve=components.resolve, **under
    )
    planned = readable_spans(plan, resource=RESOURCE, scope=SCOPE)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON, resource=RESOURCE, id_generator=Sequential())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer_ = provider.get_tracer(SCOPE.name, SCOPE.version)
    paused = itertools.count()
    emitted = emit_spans(
        record, tracer_, resolve=components.resolve, pause=paused.__next__, **under
    )
    assert emitted == len(planned) == len(record.crossings) + ours
    assert next(paused) == len(record.crossings)  # (called between spans)
    assert [as_compared(s) for s in exporter.get_finished_spans()] == [
        as_compared(s) for s in planned
    ]


def test_spans_made_through_an_applications_provider_are_those_planned(recorded):
    """emit_spans makes, through an application's provider, the spans that
    plan_spans lays out and the writers encode: the same ids, parents, names,
    times, attributes, events and statuses, under a request span of ours
    (with its parent: remote, local, or a context without a span) or under
    the application's server span (sampled or not: its sampler decides); and
    none when the request is not sampled."""
    app_provider = TracerProvider(sampler=ALWAYS_ON, id_generator=Sequential())
    server_span = app_provider.get_tracer("app").start_span("GET", kind=trace.SpanKind.SERVER)
    unsampled = NonRecordingSpan(SpanContext(2**100, 7, False, TraceFlags(TraceFlags.DEFAULT)))
    local = trace.set_span_in_context(server_span)
    no_span = baggage.set_baggage("tenant", "shop")
    # A thread started and a loop made outside any crossing: the request span's events.
    with tracer.recording() as outside:
        thread = threading.Thread(target=int)
        thread.start()
        thread.join()
        asyncio.new_event_loop().close()
    asgi = recorded[0][0]
    cases = [
        *recorded,
        (outside, None),
        (asgi, local),
        (asgi, no_span),
        (asgi, server_span),
        (asgi, unsampled),
    ]
    for record, parent in cases:
        assert_emitted_as_planned(record, parent, ours=parent not in (server_span, unsampled))
    # A crossing whose caller was gone before it returned ends where its code
    # ended; one that did not end either, with the request.
    last = asgi.crossings[-1]
    last.return_ns = None
    assert_emitted_as_planned(asgi, None)
    last.end_ns = None
    assert_emitted_as_planned(asgi, None)
    unsampled_provider = TracerProvider(sampler=ALWAYS_OFF)
    assert emit_spans(asgi, unsampled_provider.get_tracer("app")) == 0
