"""Spans over the wire: real uvicorn and gunicorn servers (and gunicorn with
uvicorn's worker, and uWSGI's workers, forked after switchtrace's exporter is
made; uWSGI's from C, past Python's at-fork hooks) export through the
real OTLP exporters (gRPC and HTTP/protobuf) to a real receiver on loopback,
and the decoded spans are checked."""

from __future__ import annotations

import gzip
import json
import os

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..django_app.test_components import SIGNAL
from ..e2e.servers import Server
from .receiver import GrpcReceiver, HttpReceiver

MIDDLEWARE = [
    "SecurityMiddleware",
    "SessionMiddleware",
    "CommonMiddleware",
    "CsrfViewMiddleware",
    "AuthenticationMiddleware",
    "MessageMiddleware",
]


WSGI = ("gunicorn", "uwsgi")


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.mark.parametrize(
    ("kind", "protocol"),
    [
        ("uvicorn", "grpc"),
        ("uvicorn", "http/protobuf"),
        ("gunicorn", "http/protobuf"),
        ("gunicorn-uvicorn-preload", "grpc"),
        # The exporter made in uWSGI's master, used in workers it forks from C.
        ("uwsgi", "grpc"),
    ],
)
def test_default_stack_spans_reach_the_collector(kind, protocol, tmp_path):
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    stable_code = (kind, protocol) == ("uvicorn", "http/protobuf")
    server = Server(
        kind,
        "shipped",
        tmp_path / "records.jsonl",
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": f"example-{kind}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            # The stable code.* attributes in one of the runs, the old in the others.
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http,code" if stable_code else "http",
            # The URLs left out of tracing, read in the server's process: the
            # first request below gets its headers and no span.
            **({"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "healthz, /async/$"} if stable_code else {}),
        },
    )
    try:
        if stable_code:
            excluded = httpx.get(server.url + "/async/", timeout=10)
            assert excluded.status_code == 200
            assert excluded.headers["X-Context-Switches"] == "28"
        response = httpx.get(
            server.url + "/sync/?wire",
            # Forwarded, not X-Forwarded-For: uvicorn would make the scope's
            # client of that one (it trusts a proxy on 127.0.0.1).
            headers={"User-Agent": "budget-check/1.0", "Forwarded": "for=203.0.113.7;proto=http"},
            timeout=10,
        )
    finally:
        # Stopping flushes every worker's spans (gunicorn has two workers;
        # either may have served the request).
        server.stop()
    try:
        spans = receiver.received.wait_until(
            lambda spans: (
                any(attrs(s).get("url.query") == "wire" for s in spans)
                and (kind in WSGI or len(spans) >= 16 + 1)
            )
        )
    finally:
        receiver.stop()
    assert response.status_code == 200
    assert receiver.received.service_names() == {f"example-{kind}"}
    # Spans leave in the order their requests ended: the excluded request's
    # would have come first.
    assert {attrs(s).get("url.path") for s in spans if s.kind == s.SPAN_KIND_SERVER} == {"/sync/"}
    [request] = [s for s in spans if attrs(s).get("url.query") == "wire"]
    children = [s for s in spans if s.parent_span_id == request.span_id]
    a = attrs(request)
    if kind not in WSGI:
        assert len(children) == 16
        assert sum(attrs(c)["switchtrace.before_headers"] for c in children) == 15
        names = [c.name for c in sorted(children, key=lambda c: c.start_time_unix_nano)]
        assert names[0] == f"sync_to_async {SIGNAL}"
        assert names[1:7] == [f"sync_to_async {m}.process_request" for m in MIDDLEWARE]
        assert names[-1] == "sync_to_async HttpResponseBase.close"
        for child in children:
            c = attrs(child)
            assert c["thread.id"] != c["switchtrace.caller.thread.id"]
            assert child.trace_id == request.trace_id
        [view] = [attrs(c) for c in children if c.name == "sync_to_async sync_view"]
        code = {k: v for k, v in view.items() if k.startswith("code.")}
        path = code.pop("code.file.path" if stable_code else "code.filepath")
        assert path.endswith(os.path.join("project", "views.py"))
        with open(path) as views:
            line = 1 + next(n for n, text in enumerate(views) if text.startswith("def sync_view("))
        if stable_code:
            assert code == {
                "code.function.name": "project.views.sync_view",
                "code.line.number": line,
            }
        else:
            assert code == {
                "code.function": "sync_view",
                "code.namespace": "project.views",
                "code.lineno": line,
            }
        # The request span's counts: the response headers plus the close after them.
        assert int(response.headers["X-Context-Switches"]) == 30
        assert a["switchtrace.context_switches_before_headers"] == 30
        assert a["switchtrace.context_switches"] == 30 + 2
    else:
        assert children == []
        assert a["switchtrace.context_switches"] == 0
    assert a["http.response.status_code"] == 200
    # The HTTP server conventions' server, client and network attributes: the
    # address the client used (its Host header), the original client a
    # proxy names, the immediate peer, and the client's User-Agent.
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == int(server.url.rpartition(":")[2])
    assert a["client.address"] == "203.0.113.7"
    assert a["network.peer.address"] == "127.0.0.1"
    assert 0 < a["network.peer.port"] != a["server.port"]
    assert a["network.protocol.version"] == "1.1"
    assert a["user_agent.original"] == "budget-check/1.0"


def test_the_http_receiver_refuses_what_a_collector_refuses():
    """Else a test passing against it could hide an export a collector refuses."""
    receiver = HttpReceiver()
    url = receiver.endpoint + "/v1/traces"
    valid = ExportTraceServiceRequest().SerializeToString()
    protobuf = {"Content-Type": "application/x-protobuf"}
    try:
        answers = [
            httpx.post(
                url, content=b'{"resourceSpans":[]}', headers={"Content-Type": "text/plain"}
            ),
            httpx.post(url, content=b"\xff\xff\xff", headers=protobuf),
            httpx.post(url, content=valid, headers={**protobuf, "Content-Encoding": "br"}),
            httpx.post(url, content=b"not gzip", headers={**protobuf, "Content-Encoding": "gzip"}),
            httpx.get(url),
            httpx.post(
                url, content=gzip.compress(valid), headers={**protobuf, "Content-Encoding": "gzip"}
            ),
        ]
    finally:
        receiver.stop()
    assert [a.status_code for a in answers] == [415, 400, 400, 400, 405, 200]
    assert len(receiver.received.requests) == 1


def test_http_exports_are_gzipped_and_carry_the_url_decoded_headers(monkeypatch):
    """OTEL_EXPORTER_OTLP_COMPRESSION and OTEL_EXPORTER_OTLP_HEADERS (values
    percent-encoded) reach the collector with the spans switchtrace encodes
    itself, as with the SDK's."""
    from switchtrace.django_app import telemetry

    from ..django_app.test_middleware import project
    from ..support import run_asgi

    receiver = HttpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k%3D,x-tenant=a%2Cb")
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint}
    try:
        with project(SWITCHTRACE=settings) as (asgi, _wsgi):
            pipeline = telemetry.pipeline()
            assert pipeline.writer is not None  # switchtrace's own encoding
            run_asgi(asgi, "/sync/")
            assert pipeline.flush(30)
            assert (pipeline.exported, pipeline.failed) == (17, 0)
    finally:
        receiver.stop()
    [headers] = receiver.received.headers
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-encoding"] == "gzip"
    assert (headers["authorization"], headers["x-tenant"]) == ("Bearer t0k=", "a,b")
    assert len(receiver.received.spans()) == 17


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otel_variables_from_a_crlf_env_file_reach_the_collector(protocol, monkeypatch):
    """An env file written with CRLF line ends gives each value a trailing
    '\\r'. The endpoint's passed the check (urlsplit drops it) and every
    export over OTLP/HTTP then failed; 'grpc\\r' kept switchtrace disabled,
    headers and all, as E006, where the SDK's configuration strips it."""
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint + "\r")
    if protocol == "grpc":  # (http/protobuf is the default)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol + "\r")
    _one_request_reaches(receiver, protocol=protocol)


def _one_request_reaches(receiver, **options):
    """One default-stack request's 17 spans reach ``receiver``, from the
    pipeline the environment and ``options`` (its options as it has them)
    make."""
    from switchtrace.django_app import telemetry

    from ..django_app.test_middleware import project
    from ..support import run_asgi

    try:
        with project(SWITCHTRACE={"ENABLED": True}) as (asgi, _wsgi):
            pipeline = telemetry.pipeline()
            for name, value in options.items():
                assert getattr(pipeline.options, name) == value
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert pipeline.flush(30)
            assert (pipeline.exported, pipeline.failed) == (17, 0)
    finally:
        receiver.stop()
    assert len(receiver.received.spans()) == 17


def test_a_grpc_target_without_a_scheme_reaches_the_collector(monkeypatch):
    """OTLP/gRPC takes an endpoint of host:port as gRPC does (OpenTelemetry's
    exporter specification; the Python exporter does): it was E006, which
    kept switchtrace disabled, and stopped `migrate` and `runserver` for a
    variable set for another tool. Its TLS is as OTEL_EXPORTER_OTLP_INSECURE
    says."""
    receiver = GrpcReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"127.0.0.1:{receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    _one_request_reaches(receiver, protocol="grpc", endpoint=f"127.0.0.1:{receiver.port}")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "NoCompression"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, "Gzip"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, "NoCompression"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": " GZIP\r"}, "Gzip"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": ""}, "NoCompression"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
            "Gzip",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            },
            "NoCompression",
        ),
    ],
)
def test_grpc_compression_is_read_as_the_specification_says(environ, expected, monkeypatch):
    """The gRPC exporter refused 'none' and an empty value (spans off,
    E006), and read an empty traces-specific variable rather than the
    generic one: the specification and the HTTP exporter take 'none' as no
    compression, and an empty value as unset."""
    from switchtrace.exporters.pipeline import grpc_compression

    for name in ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert grpc_compression().name == expected


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "bogus"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        # The traces-specific one empty, so unset: the generic one is named
        # (the exporter named the empty one, 'Invalid value ""').
        (
            {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "", "OTEL_EXPORTER_OTLP_COMPRESSION": "br"},
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "Bogus"},
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        ),
    ],
)
def test_a_grpc_compression_it_does_not_take_is_refused_as_the_exporter_does(
    environ, named, monkeypatch
):
    from switchtrace.exporters.pipeline import grpc_compression

    for name in ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    value = next(v for v in environ.values() if v).lower()
    with pytest.raises(Exception) as refused:
        grpc_compression()
    assert str(refused.value) == f'Invalid value "{value}" for compression envvar {named}'


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "none"},
        {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
    ],
)
def test_grpc_exports_with_compression_none_or_unset_reach_the_collector(environ, monkeypatch):
    receiver = GrpcReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    _one_request_reaches(receiver, protocol="grpc")


HUGE = 20_000


@pytest.mark.parametrize("exporter", ["otlp", "file", "memory"])
def test_a_huge_user_agent_and_url_are_cut_to_the_attribute_length_limit(
    exporter, monkeypatch, tmp_path
):
    """A client's 20,000-character User-Agent and URL made as long request
    span attributes, whatever OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT said: one
    request could take an export past a collector's size limit, the other
    requests' spans lost with it. They are cut to it now, as the SDK's
    provider cuts them, by switchtrace's own encoders (protobuf to a real
    OTLP receiver, OTLP/JSON to the file) and through the SDK's spans (the
    memory exporter)."""
    from switchtrace.django_app import telemetry
    from switchtrace.example import run_in_server_loop

    from ..django_app.test_middleware import project
    from ..support import asgi_request

    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100")
    receiver = HttpReceiver() if exporter == "otlp" else None
    path = tmp_path / "traces.jsonl"
    settings = {
        "otlp": {"ENABLED": True, "OTLP_ENDPOINT": receiver and receiver.endpoint},
        "file": {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)},
        "memory": {"ENABLED": True, "EXPORTER": "memory", "SERVICE_NAME": "limited"},
    }[exporter]
    agent = "Mozilla/5.0 " + "x" * (HUGE - 12)
    url_path = "/sync/" + "p" * (HUGE - 6)
    query = "q=" + "v" * (HUGE - 2)
    try:
        with project(SWITCHTRACE=settings) as (asgi, _wsgi):
            pipeline = telemetry.pipeline()  # made now, under the limit
            result = run_in_server_loop(
                asgi_request(
                    asgi,
                    url_path,
                    headers=[(b"host", b"testserver"), (b"user-agent", agent.encode())],
                    query=query,
                )
            )
            assert result.status == 404
            assert pipeline.flush(30)
            assert pipeline.failed == 0
            if exporter == "memory":
                spans = [
                    (s.kind.value + 1, dict(s.attributes), s.dropped_attributes)
                    for s in pipeline.exporter.get_finished_spans()
                ]
    finally:
        if receiver is not None:
            receiver.stop()
    if exporter == "otlp":
        spans = [(s.kind, attrs(s), s.dropped_attributes_count) for s in receiver.received.spans()]
    elif exporter == "file":
        spans = []
        for line in path.read_text().splitlines():
            for s in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                values = {
                    a["key"]: next(iter(a["value"].values())) for a in s.get("attributes", ())
                }
                spans.append((s["kind"], values, s.get("droppedAttributesCount", 0)))
    [request] = [attributes for kind, attributes, _dropped in spans if kind == 2]
    assert request["user_agent.original"] == agent[:100]
    assert request["url.path"] == url_path[:100]
    assert request["url.query"] == query[:100]
    # Lengths only: no attribute or event is left off.
    assert [dropped for _kind, _attributes, dropped in spans] == [0] * len(spans)
    assert max(len(v) for _k, a, _d in spans for v in a.values() if isinstance(v, str)) == 100
