"""A collector that is down, hangs or fails costs the application nothing:
every request is served with its figures, the queue is bounded and its drops
counted, the spans of failed exports counted, and shutdown ends within its
timeout."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from switchtrace import tracer
from switchtrace.django_app import telemetry
from switchtrace.exporters import pipeline as pipeline_module
from switchtrace.exporters.worker import Flush
from switchtrace.plural import count

from ..conftest import ROOT
from ..django_app.test_middleware import project
from ..support import run_asgi, run_script, wait_for, wsgi_request
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
        # Every export fails (after the exporter's retries, within its 1 s
        # timeout each): no request is dropped from the queue, and every span
        # (17 a request under ASGI, 2 under WSGI) is counted as lost.
        assert pipeline.flush(60)
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (20, 0, 10 * 17 + 10 * 2)
    # Leaving the settings shuts the pipeline down: bounded by the 1 s export
    # timeout (and its retries), not by the collector. A generous liveness bound.
    assert time.monotonic() - started < 30


def test_the_pause_after_a_failed_export_is_the_readmes_one_second_doubling_to_thirty():
    """The tests of the pause (tests/exporters/test_backoff.py) shorten it
    to run quickly; these are the figures the README gives."""
    from switchtrace.exporters import pipeline

    assert (pipeline.FAILURE_BACKOFF_S, pipeline.MAX_FAILURE_BACKOFF_S) == (1.0, 30.0)


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
        "switchtrace: span queue full (3 records); the spans of 1 request dropped so far",
        # At most one warning a minute: the rest are told when it shuts down.
        "switchtrace: shut down with the spans of 7 requests dropped in all (the spans of 6 "
        "requests dropped since the last warning)",
    ]


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = [{root!r} + "/src", {root!r}, {example!r}]
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


def exit_with_a_hanging_collector(receiver, tmp_path, **otel):
    """SHUTDOWN_SCRIPT run to its end, its spans exported to ``receiver``,
    which hangs, with the ``otel`` variables: its output."""
    from ..conftest import EXAMPLE

    receiver.received.mode = "hang"
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "unused.jsonl"),
        **otel,
    }
    script = SHUTDOWN_SCRIPT.format(root=str(ROOT), example=str(EXAMPLE))
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        receiver.stop()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "served\n"
    return out


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_process_exit_with_spans_queued_for_a_hanging_collector_is_bounded(protocol, tmp_path):
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    started = time.monotonic()
    exit_with_a_hanging_collector(
        receiver, tmp_path, OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_EXPORTER_OTLP_TIMEOUT="1"
    )
    assert time.monotonic() - started < 20  # liveness: exits, within the timeouts


def test_process_exit_during_an_export_says_what_it_did_not_export(tmp_path):
    """The exit hook's shutdown gives up after its 5 s while the export of
    the 20 requests' spans (one batch, made at shutdown: batches wait a
    minute here) still waits for a collector that hangs, within the
    exporter's 30 s. The process exits then, before the pipeline's thread
    can count those spans as lost: the shutdown says so itself, where
    nothing in switchtrace's log said they were lost."""
    out = exit_with_a_hanging_collector(
        HttpReceiver(), tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT="30", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    assert [line for line in out.stderr.splitlines() if line.startswith("switchtrace")] == [
        "switchtrace: shut down with 20 spans not exported yet: an export was still in "
        "progress when the shutdown's time ran out (lost if the process ends first)"
    ]


def test_a_ctrl_c_during_the_exit_hooks_wait_ends_it_with_one_line(tmp_path):
    """The same exit, and a Ctrl-C (SIGINT) while the exit hook waits for
    the export: the wait ends, and what it leaves is told in one line, not
    in a traceback of switchtrace's."""
    from ..conftest import EXAMPLE

    receiver = HttpReceiver()
    receiver.received.mode = "hang"
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "unused.jsonl"),
    }
    # Says when the exit hook's export has begun (a daemon thread started
    # now: Python 3.12 starts no thread once the interpreter is exiting).
    script = SHUTDOWN_SCRIPT.format(root=str(ROOT), example=str(EXAMPLE)) + textwrap.dedent(
        """
        import threading
        from switchtrace.django_app import telemetry
        def exporting():
            while not telemetry.pipeline()._exporting:
                time.sleep(0.01)
            os.write(1, b"exporting\\n")  # not print: its lock may outlive the process
        threading.Thread(target=exporting, daemon=True).start()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline() == "served\n"
        assert process.stdout.readline() == "exporting\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
        receiver.stop()
    assert process.returncode == 0, err
    assert out == ""
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [line for line in err.splitlines() if line.startswith("switchtrace")] == [
        "switchtrace: shutdown interrupted (Ctrl-C) with 20 spans not exported"
    ]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_shutdown_keeps_to_its_timeout_with_an_export_hanging_and_the_queue_full(
    protocol, monkeypatch, caplog
):
    """The pipeline's thread is stuck in an export (the collector hangs, the
    exporter's timeout is 30 s) and the queue is full: shutdown(2) returns
    within its 2 s (not twice that), counts what it could not export, and the
    thread stops as soon as the export returns."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    receiver.received.mode = "hang"
    settings = {
        "ENABLED": True,
        "OTLP_ENDPOINT": receiver.endpoint,
        "OTLP_PROTOCOL": protocol,
        "QUEUE_SIZE": 2,
    }
    try:
        with (
            caplog.at_level(logging.WARNING, logger="switchtrace"),
            project(SWITCHTRACE=settings) as (_asgi, wsgi),
        ):
            pipeline = telemetry.pipeline()
            wsgi_request(wsgi, "/sync/")  # one span, exported alone: the export hangs
            assert wait_for(lambda: pipeline.records == 1)
            for _ in range(3):  # two queued, one dropped
                assert wsgi_request(wsgi, "/sync/").status == 200
            assert pipeline.dropped == 1
            started = time.monotonic()
            pipeline.shutdown(timeout=2)
            took = time.monotonic() - started
            # One deadline for the whole shutdown: a generous bound, well
            # under the 4 s that waiting for room in the queue and then for
            # the thread took.
            assert 2 <= took < 3.5
            # The two records still queued were never made into spans.
            assert pipeline.dropped == 1 + 2
            receiver.received.release.set()  # the collector answers at last
            pipeline._worker.join(10)
            assert not pipeline._worker.is_alive()
            assert pipeline.records == 1
    finally:
        receiver.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "switchtrace"]
    if protocol == "grpc":
        # Closing the exporter's channel cancels the RPC in progress: its span
        # is counted as lost (the receiver, released, may still take it).
        assert pipeline.failed == 1
        lost = [
            "switchtrace: span export failed; 1 span lost so far "
            "(and the spans of 3 requests dropped)"
        ]
    else:
        # The HTTP request in progress was answered: its span delivered.
        assert pipeline.failed == 0
        assert receiver.received.span_count == 1
        lost = []
    assert messages == [
        "switchtrace: span queue full (2 records); the spans of 1 request dropped so far",
        "switchtrace: shut down with the spans of 2 requests not made "
        "(the shutdown's time ran out)",
        "switchtrace: shut down with 1 span not exported yet: an export was still in "
        "progress when the shutdown's time ran out (lost if the process ends first)",
        *lost,
    ]


def test_failed_exports_are_counted_and_logged_at_most_once_a_minute(tmp_path, caplog):
    # A file that can no longer be written (its directory was there at
    # startup, which the checks require, and went away): every export fails,
    # deterministically.
    path = tmp_path / "gone" / "traces.jsonl"
    path.parent.mkdir()
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with (
        caplog.at_level(logging.WARNING, logger="switchtrace"),
        project(SWITCHTRACE=settings) as (asgi, _wsgi),
    ):
        pipeline = telemetry.pipeline()
        path.parent.rmdir()
        for _ in range(3):
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert pipeline.flush(10)
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (3, 0, 3 * 17)
    assert not path.parent.exists()
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        f"switchtrace: span export failed (cannot append to {path}: No such file or "
        "directory); 17 spans lost so far (and the spans of 0 requests dropped)",
        # The losses since are told at shutdown: the process may end before
        # the next warning could come.
        "switchtrace: shut down with 51 spans lost in all (34 spans lost since the last warning)",
    ]


def test_drops_while_it_shuts_down_are_told_at_its_end(monkeypatch, caplog):
    """Requests that a server's threads finish while the pipeline shuts down
    (the queue full behind a slow export): their drops were taken for the
    ones shutdown's own warning tells, and the last line left them out."""
    import types

    release = threading.Event()

    def slow_emit(self, record):
        release.wait(10)
        return []

    monkeypatch.setattr(pipeline_module.SpanPipeline, "_emit", slow_emit)
    options = pipeline_module.ExportOptions(exporter="memory", queue_size=2)
    with caplog.at_level(logging.WARNING, logger="switchtrace"):
        pipeline = pipeline_module.SpanPipeline(options)
        pipeline(types.SimpleNamespace(extra={}))
        deadline = time.monotonic() + 10
        while not pipeline._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the thread holds the first
        assert pipeline._queue.empty()
        for _ in range(3):  # two queued, one dropped: the warning
            pipeline(types.SimpleNamespace(extra={}))

        def finishing():
            time.sleep(0.3)
            for _ in range(4):  # the queue still full: dropped, within the minute
                pipeline(types.SimpleNamespace(extra={}))
            release.set()

        thread = threading.Thread(target=finishing)
        thread.start()
        pipeline.shutdown(5)
        thread.join()
    assert pipeline.dropped == 5
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: span queue full (2 records); the spans of 1 request dropped so far",
        "switchtrace: shut down with the spans of 5 requests dropped in all (the spans of 4 "
        "requests dropped since the last warning)",
    ]


@pytest.mark.parametrize("hooks", ["os.fork", "fork() from C"])
def test_a_forked_child_does_not_tell_its_parents_losses(tmp_path, hooks):
    """A pre-forking server's worker, or multiprocessing's fork, from a
    process whose pipeline had lost spans: the child told them at its exit
    as its own, and the parent again at its own. Also forked past Python's
    at-fork hooks (uWSGI's workers), where the child takes the pipeline
    over on its first record only: one that served none told its parent's."""
    fork = "os.fork()" if hooks == "os.fork" else "ctypes.PyDLL(None).fork()"
    own = "pipeline._fail(2)" if hooks == "os.fork" else "pipeline.shutdown()"
    script = textwrap.dedent(
        f"""
        import ctypes, logging, os, sys
        sys.path[:0] = [{str(ROOT / "src")!r}]
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
        from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
        path = {str(tmp_path / "gone" / "t.jsonl")!r}
        pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=path))
        pipeline._fail(10)
        pipeline._fail(5)  # within the minute: untold
        sys.stdout.flush()
        child = {fork}
        if child == 0:
            {own}  # os.fork: the child's own loss, within the parent's minute
            print("child", flush=True)
            sys.exit(0)
        os.waitpid(child, 0)
        print("parent", pipeline.failed, flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.splitlines() == [
        "switchtrace: span export failed; 10 spans lost so far (and the spans of 0 requests "
        "dropped)",
        "child",
        *(["switchtrace: shut down with 2 spans lost in all"] if hooks == "os.fork" else []),
        "parent 15",
        "switchtrace: shut down with 15 spans lost in all (5 spans lost since the last warning)",
    ]


def test_a_file_that_cannot_be_written_pauses_no_export(tmp_path, monkeypatch):
    """The pause after a failed export spares a collector and the OTLP
    exporter's error line; a file that could not be appended to (its
    directory gone, the disk full) has neither, and the next batch may be
    written (the directory back, space freed): it is. Before, the next
    request's spans, made within the pause (an hour here), were lost."""
    monkeypatch.setattr(pipeline_module, "FAILURE_BACKOFF_S", 3600.0)
    monkeypatch.setattr(pipeline_module, "MAX_FAILURE_BACKOFF_S", 3600.0)
    path = tmp_path / "gone" / "traces.jsonl"
    path.parent.mkdir()
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        path.parent.rmdir()
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
        assert (pipeline.exported, pipeline.failed) == (0, 17)
        path.parent.mkdir()
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
        assert (pipeline.records, pipeline.dropped) == (2, 0)
        assert (pipeline.exported, pipeline.failed) == (17, 17)
    [line] = path.read_text().splitlines()
    assert len(json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 17


TORN_SCRIPT = textwrap.dedent(
    """
    import os, resource, signal, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    path = sys.argv[1]
    exporter = FileSpanExporter(path)
    line = '{{"resourceSpans":[]}}'
    padded = '{{"resourceSpans":[],"x":"' + "x" * 10000 + '"}}'
    results = [exporter.export(EncodedSpans(line, 1)).name]
    # The disk fills up 100 bytes into the next line (a file size limit
    # here: the write is cut short as on a full disk, then refused).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 100, hard))
    results.append(exporter.export(EncodedSpans(padded, 1)).name)
    results.append(exporter.failure())
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    results.append(exporter.export(EncodedSpans(line, 1)).name)
    results.append(exporter.export(EncodedSpans(line, 1)).name)
    print(results)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="a file size limit, as Linux applies it")
def test_a_line_cut_short_by_a_full_disk_leaves_the_next_lines_readable(tmp_path):
    """A line written in part (the disk full midway) was followed by the next
    export's line on the same line: once the disk had room again, that export
    was reported delivered and could not be read either."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(TORN_SCRIPT, path)
    results = ["SUCCESS", "FAILURE", f"cannot append to {path}: File too large", "SUCCESS"]
    assert stdout == f"{[*results, 'SUCCESS']}\n"
    lines = path.read_text().split("\n")
    assert [len(line) for line in lines] == [20, 100, 20, 20, 0]
    assert [json.loads(line) for line in (lines[0], lines[2], lines[3])] == [
        {"resourceSpans": []}
    ] * 3


UNREADABLE_TORN_SCRIPT = textwrap.dedent(
    """
    import os, resource, signal, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    # A file this process may append to and not read (as root, nothing can
    # be made so: os.open refuses to open it for reading too).
    real_open = os.open

    def refusing(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    os.open = refusing
    path = sys.argv[1]
    exporter = FileSpanExporter(path)
    line = '{{"resourceSpans":[]}}'
    padded = '{{"resourceSpans":[],"x":"' + "x" * 10000 + '"}}'
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def export(text, room=None):
        if room is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + room, hard))
        try:
            return exporter.export(EncodedSpans(text, 1)).name
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    results = [export(line), export(padded, 100), export(line), export(line)]
    # Cut short again; then room for one byte: the newline that ends it.
    results += [export(padded, 100), export(line, 1), export(line)]
    print(results)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="a file size limit, as Linux applies it")
def test_a_line_cut_short_in_a_file_the_exporter_cannot_read(tmp_path):
    """What the exporter knows of the end of a file it cannot read (its last
    byte unseen): a line cut short is ended by a newline ahead of the next
    line, once; an export cut short after that newline alone leaves the
    file ending with a whole line, and no empty line follows."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(UNREADABLE_TORN_SCRIPT, path)
    results = ["SUCCESS", "FAILURE", "SUCCESS", "SUCCESS", "FAILURE", "FAILURE", "SUCCESS"]
    assert stdout == f"{results}\n"
    lines = path.read_text().split("\n")
    assert [len(line) for line in lines] == [20, 100, 20, 20, 100, 20, 0]


SHARED_TORN_SCRIPT = textwrap.dedent(
    """
    import os, resource, signal, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    line = '{{"resourceSpans":[]}}'
    padded = '{{"resourceSpans":[],"x":"' + "x" * 10000 + '"}}'
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    results = []
    # Two workers' exporters appending to one file; the other one's rotates
    # the file at 100 bytes in the second.
    for path, limit in zip(sys.argv[1:], (None, 100)):
        first, other = FileSpanExporter(path), FileSpanExporter(path, limit)
        results.append(first.export(EncodedSpans(line, 1)).name)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 100, hard))
        results.append(first.export(EncodedSpans(padded, 1)).name)  # cut short
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
        # The other worker appends next.
        results.append(other.export(EncodedSpans(line, 1)).name)
        results.append(first.export(EncodedSpans(line, 1)).name)
    print(results)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="a file size limit, as Linux applies it")
def test_a_line_cut_short_by_one_worker_leaves_the_others_lines_readable(tmp_path):
    """A line one worker's exporter wrote in part (the disk full midway) was
    followed, on the same line, by the line another worker's exporter
    appended next: that export was reported delivered and could not be read.
    And where the other had rotated the file meanwhile, the worker that cut
    its line short began its next line in the new file with a newline: an
    empty line. A line now starts on a line of its own whoever cut the last
    one short, and a new file with a line."""
    shared, rotated = tmp_path / "shared.jsonl", tmp_path / "rotated.jsonl"
    stdout = run_script(SHARED_TORN_SCRIPT, shared, rotated)
    assert stdout == f"{['SUCCESS', 'FAILURE', 'SUCCESS', 'SUCCESS'] * 2}\n"
    lines = shared.read_text().split("\n")
    assert [len(line) for line in lines] == [20, 100, 20, 20, 0]
    assert [json.loads(lines[i]) for i in (0, 2, 3)] == [{"resourceSpans": []}] * 3
    older = (tmp_path / "rotated.jsonl.1").read_text()
    assert [len(line) for line in older.split("\n")] == [20, 100]
    assert rotated.read_text() == '{"resourceSpans":[]}\n' * 2


CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    path, exports = sys.argv[1], int(sys.argv[2])
    # Two workers' exporters appending large lines to one file at once.
    pid = os.fork()
    name = "child" if pid == 0 else "parent"
    exporter = FileSpanExporter(path)
    line = '{{"resourceSpans":[],"x":"' + name * 4000 + '"}}'
    results = {{exporter.export(EncodedSpans(line, 1)).name for _ in range(exports)}}
    if pid == 0:
        os._exit(0 if results == {{"SUCCESS"}} else 1)
    _, status = os.waitpid(pid, 0)
    print(sorted(results), status)
    """
)


def test_workers_appending_to_one_file_at_once_leave_no_empty_line(tmp_path):
    """Each worker looked at the file's last byte to see whether a line had
    been cut short before its own: while another worker's line was still
    being written, that byte was part of it, and the worker began its line
    with a newline (an empty line between the two, which a reader of
    JSON lines refuses). Appenders take turns: every line is a whole one."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(CONCURRENT_SCRIPT, path, 500)
    assert stdout == "['SUCCESS'] 0\n"
    lines = path.read_text().split("\n")
    assert lines.pop() == ""
    assert (len(lines), sum(not line for line in lines)) == (1000, 0)
    names = [json.loads(line)["x"][:5] for line in lines]
    assert (names.count("child"), names.count("paren")) == (500, 500)


WORKERS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    path, exports, size, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # Three workers' exporters appending at once; each rename noted with the
    # size of the file it put aside.
    name = "parent"
    children = []
    for child in ("first", "second"):
        pid = os.fork()
        if pid == 0:
            name, children = child, []
            break
        children.append(pid)
    replace = os.replace

    def noted(source, destination):
        with open(path + ".renamed", "a") as notes:
            notes.write(f"{{os.stat(source).st_size}}\\n")
        replace(source, destination)

    os.replace = noted
    exporter = FileSpanExporter(path, None if limit == "none" else int(limit))
    line = '{{"resourceSpans":[],"x":"' + name[0] * (size - 28) + '"}}'  # size with its newline
    results = {{exporter.export(EncodedSpans(line, 1)).name for _ in range(exports)}}
    if name != "parent":
        os._exit(0 if results == {{"SUCCESS"}} else 1)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    print(sorted(results), statuses)
    """
)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a named pipe")
def test_workers_writing_to_one_pipe_do_not_mix_their_lines(tmp_path):
    """FILE_PATH a pipe (/dev/stdout piped to a log shipper, here a named
    pipe) that three workers write lines of 200 KB to at once: a write of
    more than PIPE_BUF (4 KiB) to a pipe is not one piece, and the workers'
    lines came out mixed (of 15 lines, 8 to 13 were not JSON). They take
    turns on a pipe too: every line is whole."""
    fifo = tmp_path / "shipper"
    os.mkfifo(fifo)
    read: list[bytes] = []
    # The shipper reads from the start (a pipe without a reader refuses the
    # workers' open), until the last writer has closed it.
    pipe = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    held = os.open(fifo, os.O_WRONLY)
    os.set_blocking(pipe, True)

    def shipper() -> None:
        with open(pipe, "rb") as stream:
            read.append(stream.read())

    reader = threading.Thread(target=shipper)
    reader.start()
    try:
        stdout = run_script(WORKERS_SCRIPT, fifo, 5, 200_000, "none")
    finally:
        os.close(held)
        reader.join(30)
    assert stdout == "['SUCCESS'] [0, 0]\n"
    lines = read[0].split(b"\n")
    assert lines.pop() == b""
    names = sorted(json.loads(line)["x"][0] for line in lines)
    assert names == ["f"] * 5 + ["p"] * 5 + ["s"] * 5


def test_workers_rotating_one_file_keep_each_within_max_bytes(tmp_path):
    """Each worker measured the file before taking its turn to append: two
    could each find room for their line, and together take the file past
    FILE_MAX_BYTES (files of 21000 and 22000 bytes put aside at a 20000
    limit). The size is looked at in turn: no file put aside holds more
    than the limit, and every line is whole."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(WORKERS_SCRIPT, path, 200, 1000, 20_000)
    assert stdout == "['SUCCESS'] [0, 0]\n"
    renamed = [int(size) for size in (tmp_path / "traces.jsonl.renamed").read_text().split()]
    # 600 lines of 1000 bytes, 20 to a file: the last file kept, each other renamed once.
    assert (len(renamed), max(renamed)) == (29, 20_000)
    for kept in (path, tmp_path / "traces.jsonl.1"):
        lines = kept.read_text().split("\n")
        assert lines.pop() == ""
        assert all(json.loads(line)["x"] for line in lines)
        assert len(lines) == 20


def refuse_the_lock(refused: str, monkeypatch) -> None:
    """flock as a file system that refuses it (ENOLCK) does: the lock and
    its release, or (``refused`` "unlock") the release alone."""
    import fcntl

    from switchtrace.exporters import otlp_json

    class Refusing:
        LOCK_EX, LOCK_UN, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_UN, fcntl.LOCK_NB

        @staticmethod
        def flock(descriptor, operation):
            if operation == fcntl.LOCK_UN or refused == "lock and unlock":
                raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
            # Not waiting: a lock this process left held is a failure here.
            fcntl.flock(descriptor, operation | fcntl.LOCK_NB)

    monkeypatch.setattr(otlp_json, "fcntl", Refusing)


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
@pytest.mark.parametrize("refused", ["lock and unlock", "unlock"])
def test_a_file_system_that_refuses_the_files_lock_still_gets_every_line(
    refused, tmp_path, monkeypatch
):
    """Appenders take turns with flock, which a file system may refuse (NFS
    without its lock daemon: ENOLCK, "No locks available"), the unlock too.
    The line is then appended without the lock, as it was before appenders
    took turns, and the descriptor closed (which frees a lock taken): no
    export failed, and none left a descriptor open in the application.
    (When appenders began to take turns, each export failed; and one whose
    unlock was refused left its descriptor open, locked, so that the next
    one waited for that lock for ever.)"""
    import fcntl

    from switchtrace.exporters import otlp_json
    from switchtrace.exporters.encode import EncodedSpans

    refuse_the_lock(refused, monkeypatch)
    path = tmp_path / "traces.jsonl"
    exporter = otlp_json.FileSpanExporter(path)
    descriptors = len(os.listdir("/proc/self/fd"))
    results = [exporter.export(EncodedSpans('{"resourceSpans":[]}', 1)) for _ in range(3)]
    assert results == [SpanExportResult.SUCCESS] * 3
    assert (exporter.error, exporter._locked) == (None, None)
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert path.read_text() == '{"resourceSpans":[]}\n' * 3
    other = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: not held by a lost descriptor
    finally:
        os.close(other)


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
@pytest.mark.parametrize("refused", ["lock and unlock", "unlock"])
def test_a_file_system_that_refuses_the_files_lock_still_has_the_file_renamed(
    refused, tmp_path, monkeypatch, caplog
):
    """The lock refused (ENOLCK), or only its release: the full file is
    renamed all the same, without a word. The refusal was taken for the
    rename's: a warning said the file 'cannot be renamed (No locks
    available)', and the file grew past FILE_MAX_BYTES (refused only
    the unlock, the file was renamed and the line went into FILE_PATH.1)."""
    from switchtrace.exporters import otlp_json
    from switchtrace.exporters.encode import EncodedSpans

    refuse_the_lock(refused, monkeypatch)
    path = tmp_path / "traces.jsonl"
    exporter = otlp_json.FileSpanExporter(path, 30)
    with caplog.at_level("WARNING", logger="switchtrace"):
        for text in ("a", "b", "c"):
            line = '{"resourceSpans":[],"x":"' + text + '"}'  # 29 bytes with its newline
            assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert caplog.records == []
    assert [json.loads(p.read_text())["x"] for p in (tmp_path / "traces.jsonl.1", path)] == [
        "b", "c"]  # fmt: skip


def test_an_exporter_given_sdk_spans_counts_its_failed_exports_too(monkeypatch, caplog):
    """An OTLP exporter without the hook for encoded spans gets SDK spans
    through the SDK's batch processor: its failed exports are counted all the
    same (here the gRPC exporter, told it has no hook, and a collector that
    answers UNAVAILABLE)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    real_build = pipeline_module.build_exporter

    def without_the_hook(options):
        exporter = real_build(options)
        exporter.takes_encoded = False
        return exporter

    monkeypatch.setattr(pipeline_module, "build_exporter", without_the_hook)
    receiver = GrpcReceiver()
    receiver.received.mode = "unavailable"
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint, "OTLP_PROTOCOL": "grpc"}
    try:
        with caplog.at_level(logging.CRITICAL), project(SWITCHTRACE=settings) as (asgi, _wsgi):
            pipeline = telemetry.pipeline()
            assert pipeline.writer is None
            run_asgi(asgi, "/sync/")
            pipeline.flush(30)
            assert (pipeline.records, pipeline.dropped, pipeline.failed) == (1, 0, 17)
    finally:
        receiver.stop()


def test_shutdown_counts_every_record_it_did_not_make(tmp_path, monkeypatch):
    """Records made into spans plus records counted as dropped are every
    record queued, whether the thread ends at the deadline on its own or is
    still at work when shutdown returns (five shutdowns of 300 records each,
    the thread laying out a record in about half a millisecond)."""
    for attempt in range(5):
        settings = {
            "ENABLED": True,
            "EXPORTER": "file",
            "FILE_PATH": str(tmp_path / f"traces-{attempt}.jsonl"),
            "QUEUE_SIZE": 1000,
        }
        with project(SWITCHTRACE=settings):
            pipeline = telemetry.pipeline()
            make = pipeline._emit

            def slowly(record, make=make):
                busy_until = time.perf_counter() + 0.0005  # holding the GIL
                while time.perf_counter() < busy_until:
                    pass
                return make(record)

            monkeypatch.setattr(pipeline, "_emit", slowly)
            for _ in range(300):
                with tracer.recording():
                    pass
            pipeline.shutdown(timeout=0.05)
            pipeline._worker.join(10)
            assert not pipeline._worker.is_alive()
            assert pipeline.records + pipeline.dropped == 300, attempt


def test_shutdown_keeps_to_its_timeout_through_the_sdks_batch_processor(monkeypatch):
    """An exporter without the hook for encoded spans gets them through the
    SDK's batch processor, whose own shutdown waits up to 30 s for an export:
    shutdown(1) gives it only what is left of its one deadline."""
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    exporting, release = threading.Event(), threading.Event()

    class Hanging(SpanExporter):
        takes_encoded = False

        def export(self, spans):
            exporting.set()
            release.wait(30)  # a collector that does not answer
            return SpanExportResult.FAILURE

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    real_build = pipeline_module.build_exporter
    endpoint = "http://127.0.0.1:9"

    def build(options):  # this test's settings only (not those restored after it)
        return Hanging() if options.endpoint == endpoint else real_build(options)

    monkeypatch.setattr(pipeline_module, "build_exporter", build)
    settings = {"ENABLED": True, "OTLP_ENDPOINT": endpoint, "QUEUE_SIZE": 10}
    try:
        with project(SWITCHTRACE=settings):
            pipeline = telemetry.pipeline()
            assert pipeline.writer is None
            assert isinstance(pipeline.processor, BatchSpanProcessor)
            for _ in range(3):
                with tracer.recording():
                    pass
            assert exporting.wait(10)
            started = time.monotonic()
            pipeline.shutdown(timeout=1)
            took = time.monotonic() - started
    finally:
        release.set()
    # A generous bound, far under the SDK's own 30 s for its thread.
    assert took < 5, took
    # One span a request: the one in the hanging export, and the two the
    # processor still held when its time ran out, are all counted as lost.
    assert wait_for(lambda: pipeline.failed == 3)


def test_the_span_thread_lets_go_of_a_record_once_its_spans_are_made(tmp_path):
    """Not when the next record comes: until then a request's objects (what
    its crossings ran, their bound objects) would stay alive."""
    import gc
    import weakref

    class Held:
        pass

    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with project(SWITCHTRACE=settings):
        pipeline = telemetry.pipeline()
        held = Held()
        with tracer.recording() as record:
            record.extra["held"] = held
        held_ref = weakref.ref(held)
        del held, record
        # Made into spans (a flush would hand the thread something else).
        assert wait_for(lambda: pipeline.records == 1)
        gc.collect()
        assert held_ref() is None


def test_a_flush_waiting_when_shutdown_gives_up_returns_false_at_once(monkeypatch):
    """The thread is stuck in an export; a flush waits behind queued records;
    shutdown's time runs out: the flush learns it failed then, not at the end
    of its own timeout."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    receiver = HttpReceiver()
    receiver.received.mode = "hang"
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint, "QUEUE_SIZE": 10}
    outcome = {}
    try:
        with project(SWITCHTRACE=settings):
            pipeline = telemetry.pipeline()
            for _ in range(3):
                with tracer.recording():
                    pass
            assert wait_for(lambda: pipeline.records == 1)  # its export hangs

            def flush():
                started = time.monotonic()
                outcome["flushed"] = pipeline.flush(30)
                outcome["took"] = time.monotonic() - started

            flusher = threading.Thread(target=flush)
            flusher.start()
            assert wait_for(  # the flush queued behind the records
                lambda: any(isinstance(item, Flush) for item in list(pipeline._queue.queue))
            )
            pipeline.shutdown(timeout=0.5)
            flusher.join(10)
            assert not flusher.is_alive()
    finally:
        receiver.received.release.set()
        receiver.stop()
    assert outcome["flushed"] is False
    assert outcome["took"] < 10  # a generous bound, far under its 30 s


def test_batches_wait_half_a_second_unless_told_otherwise(tmp_path, monkeypatch):
    """What waits for its batch is lost when a signal's default action ends
    the process (SIGTERM, re-raised by uvicorn): half a second by default,
    not the SDK's five; OTEL_BSP_SCHEDULE_DELAY still decides."""
    options = pipeline_module.ExportOptions(exporter="file", file_path=str(tmp_path / "t.jsonl"))
    monkeypatch.delenv("OTEL_BSP_SCHEDULE_DELAY", raising=False)
    pipeline = pipeline_module.SpanPipeline(options)
    try:
        assert pipeline._delay == 0.5
    finally:
        pipeline.shutdown()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "2000")
    pipeline = pipeline_module.SpanPipeline(options)
    try:
        assert pipeline._delay == 2.0
    finally:
        pipeline.shutdown()
    # No signal handler of switchtrace's: the application sees its own.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_record_whose_spans_cannot_be_made_is_counted_as_dropped(
    tmp_path, monkeypatch, swallowed, caplog
):
    """An error laying out a record's spans (switchtrace's own, logged as
    such) lost its spans without a count: the pipeline said it had made
    them (records), and the warning of lost spans did not count them."""
    from switchtrace.tracer import guard

    guard.reset_reported()  # logged once per place and kind: this test's too
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with caplog.at_level(logging.WARNING), project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        plan = pipeline_module.plan_spans
        calls = []

        def plan_once_wrongly(record, **kwargs):
            # Code switchtrace calls itself (not through OpenTelemetry, nor a
            # sampler): its error is switchtrace's, wherever the code is.
            calls.append(record.attributes["url.path"])
            if len(calls) == 1:
                raise ValueError("a layout bug")
            return plan(record, **kwargs)

        monkeypatch.setattr(pipeline_module, "plan_spans", plan_once_wrongly)
        for _ in range(2):
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert pipeline.flush(10)
        assert calls == ["/sync/", "/sync/"]
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (1, 1, 0)
        assert pipeline.exported == 17
        assert [(where, repr(exc)) for where, exc in swallowed] == [
            ("span building", "ValueError('a layout bug')")
        ]
        swallowed.clear()
        path.unlink()
        path.mkdir()  # the next export fails: its warning counts the request dropped
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (2, 1, 17)
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: internal error in span building (logged once; the request goes on untouched)",
        f"switchtrace: span export failed (cannot append to {path}: Is a directory); "
        "17 spans lost so far (and the spans of 1 request dropped)",
    ]


@pytest.mark.parametrize("exporter", ["file", "otlp"])
@pytest.mark.parametrize("raised", [SystemExit("the exporter gave up"), ValueError("a bug")])
def test_an_export_raising_any_exception_loses_its_batch_not_the_thread(
    exporter, raised, tmp_path, monkeypatch, swallowed, caplog
):
    """An export that raised SystemExit (or a gevent.Timeout: any exception
    not an Exception) ended the span thread, silently: its batch never
    counted, every later record queued until the queue was full and then
    dropped, and shutdown said its time ran out. Its warning said the file
    exporter's last failure (none); an OTLP exporter's raising paused
    exports, though no collector had refused anything: the next batch goes
    when it is due."""
    from switchtrace.tracer import guard

    guard.reset_reported()  # logged once per place and kind: this test's too
    path = tmp_path / "traces.jsonl"
    receiver = HttpReceiver()
    options = (
        pipeline_module.ExportOptions(exporter="file", file_path=str(path))
        if exporter == "file"
        else pipeline_module.ExportOptions(exporter="otlp", endpoint=receiver.endpoint)
    )
    pipeline = pipeline_module.SpanPipeline(options)
    export = pipeline.exporter.export
    calls = []

    def gives_up_once(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise raised
        return export(batch)

    monkeypatch.setattr(pipeline.exporter, "export", gives_up_once)
    try:
        with caplog.at_level(logging.WARNING, logger="switchtrace"):
            for _ in range(2):
                with tracer.recording() as record:
                    pass
                pipeline(record)
                assert pipeline.flush(10)
                assert pipeline._retry_at == 0.0  # no pause
            pipeline.shutdown()
    finally:
        receiver.stop()
    assert [(where, repr(exc)) for where, exc in swallowed] == [("span export", repr(raised))]
    swallowed.clear()
    assert (pipeline.records, pipeline.dropped, pipeline.exported, pipeline.failed) == (2, 0, 1, 1)
    if exporter == "file":
        assert len(path.read_text().splitlines()) == 1
    else:
        assert receiver.received.span_count == 1
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: internal error in span export (logged once; the request goes on untouched)",
        "switchtrace: span export raised an error; 1 span lost so far (and the spans of 0 "
        "requests dropped)",
    ]


def test_a_switchtrace_error_raised_in_its_own_code_is_its_own(
    tmp_path, monkeypatch, swallowed, caplog
):
    """An error whose last frame is switchtrace's own (here the call that
    lays out the spans fails in the pipeline's own frame) is switchtrace's,
    logged as such, and the span thread goes on: telling whose it was (the
    frame after switchtrace's last, which there is none of) raised
    IndexError in its except clause, which ended the span thread."""
    from switchtrace.tracer import guard

    guard.reset_reported()  # logged once per place and kind: this test's too
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with caplog.at_level(logging.WARNING), project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        monkeypatch.setattr(pipeline_module, "plan_spans", None)
        assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
        assert pipeline.flush(10)
        monkeypatch.undo()
        assert [(where, repr(exc)) for where, exc in swallowed] == [
            ("span building", "TypeError(\"'NoneType' object is not callable\")")
        ]
        swallowed.clear()
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
        assert (pipeline.records, pipeline.dropped, pipeline.failed) == (1, 1, 0)
        assert pipeline.exported == 17
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: internal error in span building (logged once; the request goes on untouched)",
        "switchtrace: shut down with the spans of 1 request dropped in all",
    ]


@pytest.mark.parametrize("value", ["", " ", "\r"])
def test_an_empty_batch_variable_is_unset_and_not_warned_of(value, tmp_path, monkeypatch, caplog):
    """The OpenTelemetry specification: an empty value is unset. An empty
    (or space-only) OTEL_BSP_SCHEDULE_DELAY / OTEL_BSP_MAX_EXPORT_BATCH_SIZE
    logged that it was not an integer."""
    options = pipeline_module.ExportOptions(exporter="file", file_path=str(tmp_path / "t.jsonl"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", value)
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value)
    with caplog.at_level(logging.DEBUG, logger="switchtrace"):
        pipeline = pipeline_module.SpanPipeline(options)
        try:
            assert (pipeline._delay, pipeline._batch_size) == (0.5, 512)
        finally:
            pipeline.shutdown()
    assert [r.getMessage() for r in caplog.records] == []


def test_a_batch_variable_that_is_not_an_integer_is_warned_of(tmp_path, monkeypatch, caplog):
    options = pipeline_module.ExportOptions(exporter="file", file_path=str(tmp_path / "t.jsonl"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "half a second")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", " 64\r")
    with caplog.at_level(logging.DEBUG, logger="switchtrace"):
        pipeline = pipeline_module.SpanPipeline(options)
        try:
            assert (pipeline._delay, pipeline._batch_size) == (0.5, 64)
        finally:
            pipeline.shutdown()
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: OTEL_BSP_SCHEDULE_DELAY is not an integer; using 500"
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_whose_reader_is_gone_fails_the_export(tmp_path):
    """FILE_PATH a pipe (/dev/stdout piped to a log shipper, a named pipe):
    opened for reading too (to see the file's last byte), the exporter was a
    reader of its own pipe, so with the real reader gone each line went into
    the pipe's buffer, reported delivered, and once 64 KiB were there the
    next write waited for ever, the span thread with it. A pipe is opened
    for writing alone: no reader, a failed export."""
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    line = EncodedSpans('{"resourceSpans":[]}', 1)
    read, write = os.pipe()
    try:
        # /dev/stdout of a server whose output goes to a pipe, its reader gone.
        os.close(read)
        exporter = FileSpanExporter(f"/proc/self/fd/{write}", 10)
        assert exporter.export(line) == SpanExportResult.FAILURE
        assert exporter.failure() == f"cannot append to /proc/self/fd/{write}: Broken pipe"
    finally:
        os.close(write)
    # A named pipe nobody reads: no reader, and no waiting for one.
    fifo = tmp_path / "spans"
    os.mkfifo(fifo)
    exporter = FileSpanExporter(fifo, 10)
    assert exporter.export(line) == SpanExportResult.FAILURE
    assert exporter.failure() == f"cannot append to {fifo}: No such device or address"
    # With a reader, the line reaches it.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert exporter.export(line) == SpanExportResult.SUCCESS
        assert os.read(reader, 100) == b'{"resourceSpans":[]}\n'
    finally:
        os.close(reader)


def test_shutdown_during_an_export_counts_the_spans_waiting_behind_it(monkeypatch, caplog):
    """Batches of one span: a request's 17 spans are one export in progress
    (the collector hangs) and 16 waiting for theirs when shutdown's time
    runs out, and the shutdown's warning says 17 spans, not the one."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    receiver = HttpReceiver()
    receiver.received.mode = "hang"
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint}
    try:
        with (
            caplog.at_level(logging.WARNING, logger="switchtrace"),
            project(SWITCHTRACE=settings) as (asgi, _wsgi),
        ):
            pipeline = telemetry.pipeline()
            assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            assert wait_for(lambda: receiver.received.posts == 1)
            pipeline.shutdown(timeout=0.2)
            messages = [r.getMessage() for r in caplog.records if r.name == "switchtrace"]
    finally:
        receiver.received.release.set()
        receiver.stop()
    pipeline._worker.join(10)
    assert not pipeline._worker.is_alive()
    assert messages == [
        "switchtrace: shut down with 17 spans not exported yet: an export was still in "
        "progress when the shutdown's time ran out (lost if the process ends first)"
    ]


@pytest.mark.parametrize(
    ("flushed", "told"),
    [
        (True, "a request's spans"),
        (False, "1 span not exported yet and a request's spans"),
    ],
)
def test_spans_waiting_for_their_batch_when_shutdown_gives_up_are_counted(
    flushed, told, tmp_path, monkeypatch, caplog
):
    """Batches wait an hour; the first record's span is exported by a
    flush (or waits for its batch), and the thread is still laying out the
    second record when shutdown's time runs out. That record's span,
    waiting for its batch, is never exported: counted as lost once the
    thread is free, not left uncounted. The shutdown tells them itself (it
    said nothing: a process that exits then never heard of them), and no
    export being in progress then, it does not say one was."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    path = tmp_path / "traces.jsonl"
    pipeline = pipeline_module.SpanPipeline(
        pipeline_module.ExportOptions(exporter="file", file_path=str(path))
    )
    building, release = threading.Event(), threading.Event()
    make = pipeline._emit

    def held_at_the_second(record):
        if pipeline.records == 1:
            building.set()
            release.wait(10)
        return make(record)

    def request() -> None:
        with tracer.recording() as record:
            pass
        pipeline(record)

    monkeypatch.setattr(pipeline, "_emit", held_at_the_second)
    try:
        with caplog.at_level(logging.WARNING, logger="switchtrace"):
            request()
            if flushed:
                assert pipeline.flush(10)
            request()
            assert building.wait(10)
            pipeline.shutdown(timeout=0.1)
            release.set()
            pipeline._worker.join(10)
    finally:
        release.set()
    assert not pipeline._worker.is_alive()
    exported = 1 if flushed else 0
    assert (pipeline.records, pipeline.dropped, pipeline.exported, pipeline.failed) == (
        2, 0, exported, 2 - exported,
    )  # fmt: skip
    assert (len(path.read_text().splitlines()) if path.exists() else 0) == exported
    # No export failed: the warning says what happened.
    assert [r.getMessage() for r in caplog.records] == [
        f"switchtrace: shut down with {told} still being made when the shutdown's time ran out "
        "(lost if the process ends first)",
        # The thread, once free (as after an export in progress then).
        "switchtrace: shut down with spans waiting for their batch (the shutdown's time ran "
        f"out); {count(2 - exported, 'span')} lost so far (and the spans of 0 requests dropped)",
    ]


def one_request_through_the_sdks_processor(settings) -> pipeline_module.SpanPipeline:
    """One request to /sync/ with ``settings``, whose exporter gets the SDK's
    spans: the pipeline, flushed, then shut down as the settings are left."""
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        assert pipeline.writer is None
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(30)
    return pipeline


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_otlp_exporter_given_sdk_spans_delivers_them(protocol, monkeypatch, caplog):
    """An OTLP exporter without the hook for encoded spans (an HTTP exporter
    whose client has no ``export``, a gRPC one told it has none) gets SDK
    spans through the SDK's batch processor, and sends them as it would
    without switchtrace."""
    real_build = pipeline_module.build_exporter
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()

    def without_the_hook(options):
        exporter = real_build(options)
        if options.endpoint == receiver.endpoint:  # this test's settings only
            monkeypatch.setattr(type(exporter), "takes_encoded", False)
        return exporter

    monkeypatch.setattr(pipeline_module, "build_exporter", without_the_hook)
    settings = {"ENABLED": True, "OTLP_ENDPOINT": receiver.endpoint, "OTLP_PROTOCOL": protocol}
    try:
        with caplog.at_level(logging.WARNING):
            pipeline = one_request_through_the_sdks_processor(settings)
    finally:
        receiver.stop()
    assert (pipeline.records, pipeline.dropped, pipeline.failed) == (1, 0, 0)
    assert pipeline.exported == 17
    assert receiver.received.span_count == 17
    # Shut down once, by the SDK's processor (the exporter warns of a second time).
    assert [r.getMessage() for r in caplog.records] == []


def test_a_flush_the_thread_cannot_take_in_time_returns_false(tmp_path, monkeypatch):
    """The thread is held laying out a record: a flush queued behind it says
    it failed when its timeout passes, and so does one that finds no room in
    the queue (of two: the first flush and a record) to queue itself."""
    pipeline = pipeline_module.SpanPipeline(
        pipeline_module.ExportOptions(
            exporter="file", file_path=str(tmp_path / "t.jsonl"), queue_size=2
        )
    )
    building, release = threading.Event(), threading.Event()
    make = pipeline._emit

    def held(record):
        building.set()
        release.wait(5)
        return make(record)

    def request() -> None:
        with tracer.recording() as record:
            pass
        pipeline(record)

    monkeypatch.setattr(pipeline, "_emit", held)
    try:
        request()
        assert building.wait(10)  # the thread holds the first record
        assert pipeline.flush(0.1) is False  # queued, not taken in time
        request()  # the queue is full
        assert pipeline.flush(0.1) is False  # not even queued
        release.set()
        assert pipeline.flush(10) is True
        assert (pipeline.records, pipeline.dropped) == (2, 0)
    finally:
        release.set()
        pipeline.shutdown()


@pytest.mark.parametrize("exporter", ["memory", "file"])
def test_the_threads_cpu_time_laying_out_spans_is_counted(exporter, tmp_path):
    """``switchtrace bench --overhead`` reports the span thread's CPU time
    per request from :attr:`SpanPipeline.cpu_ns`: the time laying out the
    records' spans (with the memory exporter, no export of the pipeline's
    own to count), never left out, and that of the exports it makes (the
    file exporter's), within the thread's own CPU time (read from its CPU
    clock where there is one)."""
    options = pipeline_module.ExportOptions(
        exporter=exporter, file_path=str(tmp_path / "traces.jsonl")
    )
    pipeline = pipeline_module.SpanPipeline(options)
    try:
        for _ in range(5):
            with tracer.recording() as record:
                pass
            pipeline(record)
        assert pipeline.flush(10)
        assert (pipeline.records, pipeline.exported) == (5, 5)
        assert pipeline.cpu_ns > 0
        if hasattr(time, "pthread_getcpuclockid"):
            clock = time.pthread_getcpuclockid(pipeline._worker.ident)
            assert pipeline.cpu_ns <= time.clock_gettime_ns(clock)
    finally:
        pipeline.shutdown()


def test_a_pipeline_shut_down_flushes_at_once(tmp_path):
    """flush() once its thread has stopped: True, nothing being queued (the
    record's spans exported by the shutdown)."""
    path = tmp_path / "traces.jsonl"
    pipeline = pipeline_module.SpanPipeline(
        pipeline_module.ExportOptions(exporter="file", file_path=str(path))
    )
    with tracer.recording() as record:
        pass
    pipeline(record)
    pipeline.shutdown()
    assert not pipeline._worker.is_alive()
    assert pipeline.flush(10) is True
    assert (pipeline.records, pipeline.exported) == (1, 1)
    assert len(path.read_text().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_batch_variable_not_above_zero_is_the_default(value, tmp_path, monkeypatch):
    """A batch of no span (the thread would export empty batches for ever)
    or a delay of none is not taken: the defaults are, without a warning."""
    options = pipeline_module.ExportOptions(exporter="file", file_path=str(tmp_path / "t.jsonl"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", value)
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value)
    pipeline = pipeline_module.SpanPipeline(options)
    try:
        assert (pipeline._delay, pipeline._batch_size) == (0.5, 512)
    finally:
        pipeline.shutdown()


def test_spans_an_exporter_raising_on_sdk_spans_did_not_deliver_are_counted(monkeypatch, caplog):
    """An exporter without the hook for encoded spans that raises (rather
    than reporting a failure): the SDK's batch processor logs it, and the
    pipeline counts the spans as lost."""
    from opentelemetry.sdk.trace.export import SpanExporter

    class Raising(SpanExporter):
        takes_encoded = False

        def export(self, spans):
            raise ConnectionError("no route")

    real_build = pipeline_module.build_exporter
    endpoint = "http://127.0.0.1:9"

    def build(options):  # this test's settings only
        return Raising() if options.endpoint == endpoint else real_build(options)

    monkeypatch.setattr(pipeline_module, "build_exporter", build)
    settings = {"ENABLED": True, "OTLP_ENDPOINT": endpoint}
    with caplog.at_level(logging.CRITICAL):
        pipeline = one_request_through_the_sdks_processor(settings)
    assert (pipeline.records, pipeline.exported, pipeline.failed) == (1, 0, 17)
