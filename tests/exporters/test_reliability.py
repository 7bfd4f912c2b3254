"""A collector that is down, hangs or fails costs the application nothing:
every request is served with its figures, the queue is bounded and its drops
counted, and shutdown ends within the exporter's timeout."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from switchtrace.django_app import telemetry
from switchtrace.exporters import pipeline as pipeline_module

from ..django_app.test_middleware import project
from ..support import run_asgi, wsgi_request
from .receiver import GrpcReceiver, HttpReceiver


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def collector(request):
    """(endpoint, protocol) of a collector in the given state."""
    state, protocol = request.param
    if state == "down":
        yield f"http://127.0.0.1:{closed_port()}", protocol
        return
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    receiver.received.mode = state
    yield receiver.endpoint, protocol
    receiver.stop()


@pytest.mark.parametrize(
    "collector",
    [
        ("down", "grpc"),
        ("down", "http/protobuf"),
        ("hang", "grpc"),
        ("hang", "http/protobuf"),
        ("unavailable", "grpc"),
        ("unavailable", "http/protobuf"),
    ],
    indirect=True,
    ids=lambda p: "-".join(p),
)
def test_requests_are_served_whatever_the_collector_does(collector, monkeypatch, caplog):
    endpoint, protocol = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    settings = {"ENABLED": True, "OTLP_ENDPOINT": endpoint, "OTLP_PROTOCOL": protocol}
    started = time.monotonic()
    with caplog.at_level(logging.CRITICAL), project(SWITCHTRACE=settings) as (asgi, wsgi):
        pipeline = telemetry.pipeline()
        assert pipeline.options.exporter == "otlp"
        for _ in range(10):
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert wsgi_request(wsgi, "/async/").figures() == (2, 2, 1, 1)
        assert pipeline.dropped == 0
    # Leaving the settings shuts the pipeline down: bounded by the 1 s export
    # timeout (and its retries), not by the collector. A generous liveness bound.
    assert time.monotonic() - started < 30


def test_a_full_queue_drops_and_counts_instead_of_waiting(monkeypatch, caplog):
    release = threading.Event()
    building = threading.Event()
    real_emit = pipeline_module.SpanPipeline._emit

    def slow_emit(self, record):
        building.set()
        release.wait(10)
        return real_emit(self, record)

    monkeypatch.setattr(pipeline_module.SpanPipeline, "_emit", slow_emit)
    settings = {"ENABLED": True, "EXPORTER": "memory", "QUEUE_SIZE": 3}
    with (
        caplog.at_level(logging.WARNING, logger="switchtrace"),
        project(SWITCHTRACE=settings) as (_asgi, wsgi),
    ):
        pipeline = telemetry.pipeline()
        wsgi_request(wsgi, "/sync/")
        assert building.wait(5)  # the thread holds the first record
        for _ in range(10):
            assert wsgi_request(wsgi, "/sync/").status == 200
        assert pipeline.dropped == 10 - 3
        release.set()
        assert pipeline.flush(10)
        assert len({s.context.trace_id for s in pipeline.exporter.get_finished_spans()}) == 4
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: span queue full (3 records); 1 requests' spans dropped so far"
    ]


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = [{root!r}, {example!r}]
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["SWITCHTRACE_EXAMPLE_MIDDLEWARE"] = "shipped"
    import django
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from tests.support import wsgi_request
    handler = WSGIHandler()
    for _ in range(20):
        assert wsgi_request(handler, "/sync/").status == 200
    print("served", flush=True)
    """
)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_process_exit_with_spans_queued_for_a_hanging_collector_is_bounded(protocol, tmp_path):
    from ..conftest import EXAMPLE, ROOT

    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    receiver.received.mode = "hang"
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "unused.jsonl"),
    }
    script = SHUTDOWN_SCRIPT.format(root=str(ROOT), example=str(EXAMPLE))
    started = time.monotonic()
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        receiver.stop()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "served\n"
    assert time.monotonic() - started < 20  # liveness: exits, within the timeouts
