"""The file and console exporters, the provider rules and the OTEL_* variables."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import SpanExportResult

from switchtrace.django_app import components, telemetry
from switchtrace.django_app.conf import get_config
from switchtrace.exporters import format_record
from switchtrace.plural import count

from ..conftest import EXAMPLE, ROOT
from ..django_app.test_middleware import project
from ..support import (
    ASGI_THREADS,
    NOBODY,
    directory_every_user_may_write,
    run_asgi,
    wsgi_request,
)


def test_the_file_exporter_writes_otlp_json_lines(tmp_path):
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE=settings) as (asgi, wsgi):
        run_asgi(asgi, "/sync/")
        wsgi_request(wsgi, "/async-to-sync/")
        assert telemetry.pipeline().flush(10)
    lines = path.read_text().splitlines()
    spans = []
    for line in lines:
        message = json.loads(line)
        spans.extend(
            s for r in message["resourceSpans"] for c in r["scopeSpans"] for s in c["spans"]
        )
        # Hex ids, as OTLP/JSON wants; turned back into bytes it is a valid request.
        again = json.loads(line)
        for r in again["resourceSpans"]:
            for c in r["scopeSpans"]:
                for span in c["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        json_format.ParseDict(again, trace_service_pb2.ExportTraceServiceRequest())
    assert len(spans) == (1 + 16) + (1 + 3)
    assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans)
    kinds = sorted(s["kind"] for s in spans)
    assert kinds == [1] * 19 + [2] * 2  # INTERNAL switch spans, two SERVER request spans
    assert {s["name"] for s in spans} >= {"GET sync/", "GET async-to-sync/", "async_to_sync noop"}


def next_thread_names() -> tuple[str, str]:
    """The names the application's next unnamed thread and next executor's
    thread get (each call takes one number of each counter)."""
    thread = threading.Thread(target=lambda: None)
    with ThreadPoolExecutor(max_workers=1) as executor:
        return thread.name, executor.submit(lambda: threading.current_thread().name).result()


def numbers(names: tuple[str, str]) -> tuple[int, int]:
    thread, executor = names
    return int(thread.split("-")[1].split()[0]), int(executor.split("-")[1].split("_")[0])


@pytest.mark.parametrize(
    "settings",
    [
        {"EXPORTER": "file"},
        {"EXPORTER": "otlp", "OTLP_PROTOCOL": "grpc"},
        {"EXPORTER": "otlp", "OTLP_PROTOCOL": "http/protobuf"},
        {"EXPORTER": "console"},
    ],
    ids=lambda s: s.get("OTLP_PROTOCOL", s["EXPORTER"]),
)
def test_making_the_exporter_takes_no_number_of_the_applications_threads(settings, tmp_path):
    """The SDK's Resource.create() runs its resource detectors in a
    ThreadPoolExecutor made without a name prefix, which took a number from
    the class's counter: the application's next executor's threads were
    'ThreadPoolExecutor-<n+1>_0', one number on (in its logs' threadName)."""
    settings = {
        "ENABLED": True,
        "FILE_PATH": str(tmp_path / "t.jsonl"),
        "OTLP_ENDPOINT": "http://127.0.0.1:9",
        **settings,
    }
    thread, executor = numbers(next_thread_names())
    with project(SWITCHTRACE=settings):
        assert telemetry.failure() is None and telemetry._listener() is not None
        assert numbers(next_thread_names()) == (thread + 1, executor + 1)


def test_executors_other_threads_make_meanwhile_keep_the_class_numbering(tmp_path):
    """Only the thread making the pipeline numbers its executors apart:
    another thread's, made meanwhile, took numbers again from 0, names the
    application had already given."""
    names: list[str] = []
    stop = threading.Event()

    def make_executors():
        while not stop.is_set():
            names.append(next_thread_names()[1])

    maker = threading.Thread(target=make_executors)
    maker.start()
    try:
        for n in range(10):
            settings = {"ENABLED": True, "FILE_PATH": str(tmp_path / f"{n}.jsonl")}
            with project(SWITCHTRACE=settings):
                assert telemetry.pipeline() is not None
    finally:
        stop.set()
        maker.join()
    numbers = [int(name.split("-")[1].split("_")[0]) for name in names]
    # Each a number on from the one before (another thread's executor may
    # take one between), none given twice.
    assert len(numbers) > 10 and numbers == sorted(set(numbers))


def test_two_pipelines_made_at_once_leave_the_class_numbering_as_it_was():
    """Two threads making a pipeline at the same moment: the second saved the
    first's numbering as the class's and put it back when it ended last, and
    the first thread's executors were numbered below zero from then on."""
    from switchtrace.exporters.pipeline import _executors_numbered_apart

    original = ThreadPoolExecutor.__dict__["_counter"]
    first_in, first_out, second_done = threading.Event(), threading.Event(), threading.Event()

    def second() -> None:
        first_in.wait()
        with _executors_numbered_apart():
            first_out.wait(timeout=2)
        second_done.set()

    other = threading.Thread(target=second)
    other.start()
    try:
        with _executors_numbered_apart():
            first_in.set()
            # The second thread may enter here (and then ends last) or wait.
            second_done.wait(timeout=0.3)
        first_out.set()
    finally:
        first_in.set()
        first_out.set()
        other.join()
    assert ThreadPoolExecutor.__dict__["_counter"] is original


def spans_in(path) -> list[str]:
    """The request spans' paths in an OTLP/JSON file, line by line."""
    return [
        [
            attribute["value"]["stringValue"]
            for r in json.loads(line)["resourceSpans"]
            for c in r["scopeSpans"]
            for s in c["spans"]
            for attribute in s.get("attributes", ())
            if attribute["key"] == "url.path"
        ]
        for line in path.read_text().splitlines()
    ]


def test_an_export_holds_at_most_the_batch_size(tmp_path, monkeypatch):
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE caps the spans of an export request, as
    in the SDK's batch processor (set to stay under a collector's limit on a
    request's size): a batch took a request's spans whole, and went past it
    by up to one request's spans."""
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")  # 17 spans
        assert telemetry.pipeline().flush(10)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [
        sum(len(c["spans"]) for r in line["resourceSpans"] for c in r["scopeSpans"])
        for line in lines
    ] == [5, 5, 5, 2]


def test_the_file_is_renamed_when_full_and_a_new_one_started(tmp_path):
    """FILE_MAX_BYTES: an export that would take the file past it renames the
    file FILE_PATH.1 (replacing the one before) first, so the disk holds at
    most about twice it, the newest spans."""
    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    # One request's spans are one line: /async/'s about 4 KB, /async-to-sync/'s
    # 8 KB, the default stack's under ASGI about 30 KB.
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE={**settings, "FILE_MAX_BYTES": 35_000}) as (asgi, wsgi):
        wsgi_request(wsgi, "/async/")
        assert telemetry.pipeline().flush(10)
        assert spans_in(path) == [["/async/"]] and not older.exists()
        wsgi_request(wsgi, "/async-to-sync/")
        assert telemetry.pipeline().flush(10)
        assert spans_in(path) == [["/async/"], ["/async-to-sync/"]]
        run_asgi(asgi, "/sync/")
        assert telemetry.pipeline().flush(10)
        assert spans_in(older) == [["/async/"], ["/async-to-sync/"]]
        assert spans_in(path) == [["/sync/"]]
        run_asgi(asgi, "/sync/?again")
        assert telemetry.pipeline().flush(10)
        assert spans_in(older) == [["/sync/"]]
        assert spans_in(path) == [["/sync/"]]
    # None: no limit.
    path.unlink()
    older.unlink()
    with project(SWITCHTRACE={**settings, "FILE_MAX_BYTES": None}) as (asgi, _wsgi):
        for _ in range(3):
            run_asgi(asgi, "/sync/")
        assert telemetry.pipeline().flush(10)
    assert [p for line in spans_in(path) for p in line] == ["/sync/"] * 3
    assert not older.exists()


def test_writers_of_one_file_rotate_it_once(tmp_path, caplog):
    """Writers of one file (the exporters of a server's workers: what they
    share is the file) that find it full at the same time rename it once, not
    twice: the later one appends to the file the first started, rather than
    renaming that one over the spans the first put aside. A file that cannot
    be renamed is appended to past the limit, and a warning says so once."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    first, second = FileSpanExporter(path, 10), FileSpanExporter(path, 10)
    first.export(EncodedSpans("a" * 8, 1))  # "aaaaaaaa\n", 9 bytes: full for another
    # The second has opened the file and found it full, when the first
    # renames it and starts a new one.
    opened_before = os.open(path, os.O_WRONLY | os.O_APPEND)
    first.export(EncodedSpans("b" * 8, 1))
    assert older.read_text() == "a" * 8 + "\n" and path.read_text() == "b" * 8 + "\n"
    try:  # not this line's file any more, and not renamed again
        assert second._room(opened_before, 9) is False
    finally:
        os.close(opened_before)
    assert older.read_text() == "a" * 8 + "\n" and path.read_text() == "b" * 8 + "\n"
    assert second.export(EncodedSpans("c" * 8, 1)) is SpanExportResult.SUCCESS
    assert older.read_text() == "b" * 8 + "\n" and path.read_text() == "c" * 8 + "\n"
    # FILE_PATH.1 cannot be replaced (here a directory that is not empty).
    older.unlink()
    (older / "kept").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="switchtrace"):
        for line in ("d" * 8, "e" * 8):
            assert first.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert path.read_text() == "".join(c * 8 + "\n" for c in "cde")
    assert [r.getMessage() for r in caplog.records] == [
        f"switchtrace: {path} reached SWITCHTRACE['FILE_MAX_BYTES'] (10 bytes) and cannot be "
        f"renamed to {path}.1 (Is a directory): spans are appended to it past that size"
    ]


def test_a_file_another_writer_renames_first_is_not_unrenamable(tmp_path, monkeypatch, caplog):
    """Two writers of one file find it full at once, and the other renames it
    between this one's look at the file and its own rename: that rename
    finds no file. It was taken for a file that cannot be renamed: a warning
    said so (No such file or directory), and the line went to the file just
    put aside, FILE_PATH.1. It goes to the new file, without a word."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    exporter = FileSpanExporter(path, 10)
    exporter.export(EncodedSpans("a" * 8, 1))
    replace = os.replace

    def the_other_writer_first(source, destination):
        monkeypatch.setattr(os, "replace", replace)
        replace(source, destination)  # the other writer's rename
        replace(source, destination)

    monkeypatch.setattr(os, "replace", the_other_writer_first)
    with caplog.at_level("WARNING", logger="switchtrace"):
        assert exporter.export(EncodedSpans("b" * 8, 1)) is SpanExportResult.SUCCESS
    assert caplog.records == []
    assert older.read_text() == "a" * 8 + "\n" and path.read_text() == "b" * 8 + "\n"


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_writers_take_turns_renaming_a_full_file(tmp_path, monkeypatch):
    """Between one writer's look at the full file and its rename, another
    writer (another worker, which found the same file full) renamed it and
    started a new one: the first then renamed that new file over the spans
    the other had put aside in FILE_PATH.1. They now take turns, a lock on
    the full file held from the look to the rename: the other writer waits
    (here, asking not to wait, it is refused), and finds the file renamed."""
    import fcntl

    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    exporter = FileSpanExporter(path, 10)
    exporter.export(EncodedSpans("a" * 8, 1))
    replace = os.replace
    other_writer = []

    def the_other_writer_in_between(source, destination):
        monkeypatch.setattr(os, "replace", replace)
        full = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(full, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other_writer.append("waits")
        else:
            replace(path, older)
            path.write_text("x" * 8 + "\n")
            other_writer.append("renamed")
        finally:
            os.close(full)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", the_other_writer_in_between)
    assert exporter.export(EncodedSpans("b" * 8, 1)) is SpanExportResult.SUCCESS
    assert other_writer == ["waits"]
    assert older.read_text() == "a" * 8 + "\n" and path.read_text() == "b" * 8 + "\n"


def test_a_line_goes_to_the_file_at_the_path_however_often_others_rename_it(tmp_path):
    """Another writer (its own descriptors, as another worker has) renames
    the full file between each of this one's opens and its turn, five times
    over: the line still goes to the file at the path, within the limit.
    After three it was appended to what this one had open, unlooked at:
    into FILE_PATH.1, put aside already, past the limit, behind newer lines."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"

    def line(text: str) -> EncodedSpans:
        return EncodedSpans('{"resourceSpans":[],"x":"' + text + '"}', 1)  # 30 bytes: one a file

    this, other = FileSpanExporter(path, 50), FileSpanExporter(path, 50)
    other.export(line("b0"))
    opened = this._open

    def renamed_by_the_other_meanwhile():
        got = opened()
        if renames[0] < 5:
            renames[0] += 1
            other.export(line(f"b{renames[0]}"))  # renames the full file
        return got

    renames = [0]
    this._open = renamed_by_the_other_meanwhile
    assert this.export(line("A")) is SpanExportResult.SUCCESS
    assert renames == [5]
    assert [json.loads(p.read_text())["x"] for p in (tmp_path / "traces.jsonl.1", path)] == [
        "b5", "A"]  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_writers_take_turns_on_a_file_and_a_pipe_not_on_a_device(tmp_path, monkeypatch):
    """A device (/dev/null, a terminal) is one inode for every process of
    the machine: a lock there would have unrelated processes take turns,
    and one stopped while it holds it hold up the others. An unlock that
    raises anything still closes the descriptor."""
    import fcntl

    from switchtrace.exporters import otlp_json
    from switchtrace.exporters.encode import EncodedSpans

    taken: list[int] = []

    class Noting:
        LOCK_EX, LOCK_UN, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_UN, fcntl.LOCK_NB

        @staticmethod
        def flock(descriptor, operation):
            if operation == fcntl.LOCK_EX:
                taken.append(descriptor)
            fcntl.flock(descriptor, operation)

    monkeypatch.setattr(otlp_json, "fcntl", Noting)
    fifo = tmp_path / "shipper"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for path, turns in (("/dev/null", 0), (tmp_path / "t.jsonl", 1), (fifo, 1)):
            taken.clear()
            exporter = otlp_json.FileSpanExporter(path)
            assert exporter.export(EncodedSpans('{"resourceSpans":[]}', 1)).name == "SUCCESS"
            assert len(taken) == turns, path
    finally:
        os.close(reader)

    class Interrupted(BaseException):
        pass

    def unlock(descriptor):
        raise Interrupted

    monkeypatch.setattr(otlp_json, "_unlock_file", unlock)
    descriptors = len(os.listdir("/proc/self/fd"))
    with pytest.raises(Interrupted):
        otlp_json.FileSpanExporter(tmp_path / "t.jsonl").export(EncodedSpans("{}", 1))
    assert len(os.listdir("/proc/self/fd")) == descriptors


def test_a_file_path_that_is_a_symlink_stays_one(tmp_path):
    """A FILE_PATH that is a symbolic link (to a file on a larger disk) has
    the file it links to renamed, beside it: renaming the link itself put
    the link aside as FILE_PATH.1 and started a plain file where the link
    was, so from the first rotation on the spans went to the link's
    directory and the linked file was never renamed again."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    (tmp_path / "logs").mkdir()
    (tmp_path / "app").mkdir()
    path = tmp_path / "app" / "traces.jsonl"
    path.symlink_to(tmp_path / "logs" / "traces.jsonl")
    exporter = FileSpanExporter(path, 10)
    for line in ("a" * 8, "b" * 8, "c" * 8):
        assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert path.is_symlink()
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == ["traces.jsonl"]
    assert (tmp_path / "logs" / "traces.jsonl.1").read_text() == "b" * 8 + "\n"
    assert (tmp_path / "logs" / "traces.jsonl").read_text() == "c" * 8 + "\n"


@pytest.fixture
def shared(tmp_path):
    return directory_every_user_may_write(tmp_path)


def _refused(uid: int, what: str = "a file") -> str:
    return (
        f"it is {what} of another user (uid {uid}) in a directory every user may write, where "
        f"only a file, named pipe or link of this process's user (uid {os.geteuid()}) or of the "
        f"directory's owner (uid {os.geteuid()}) is appended to"
    )


def test_another_users_file_in_a_shared_directory_is_not_appended_to(shared):
    """Put there first, at FILE_PATH, by another user: it received every
    request's spans (paths, queries), readable by that user."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    planted = shared / "traces.jsonl"
    planted.write_text("planted\n")
    planted.chmod(0o666)
    os.chown(planted, NOBODY, NOBODY)
    exporter = FileSpanExporter(planted, 10)
    assert exporter.export(EncodedSpans("a" * 8, 1)) is SpanExportResult.FAILURE
    assert exporter.failure() == f"cannot append to {planted}: {_refused(NOBODY)}"
    assert planted.read_text() == "planted\n"


def test_another_users_link_in_a_shared_directory_is_not_followed(shared, tmp_path):
    """A link another user put at FILE_PATH, to a file of this user's: the
    file was appended to and, once full, renamed away (FILE_MAX_BYTES), a
    new one of spans made in its place."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    victim = tmp_path / "important.db"
    victim.write_text("x" * 20)
    link = shared / "traces.jsonl"
    link.symlink_to(victim)
    os.lchown(link, NOBODY, NOBODY)
    exporter = FileSpanExporter(link, 10)
    for line in ("a" * 8, "b" * 8):
        assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.FAILURE
    assert exporter.failure() == f"cannot append to {link}: {_refused(NOBODY, 'a symbolic link')}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["important.db", "shared"]
    assert victim.read_text() == "x" * 20


@pytest.mark.parametrize("owner", ["this process's user", "the directory's owner"])
def test_a_file_and_a_link_of_ones_own_in_a_shared_directory_are_appended_to(
    shared, tmp_path, owner
):
    """/tmp/traces.jsonl made by the server itself, or a link to a larger
    disk made by its user or by the directory's owner (root, for /tmp)."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    if owner == "the directory's owner":
        os.chown(shared, NOBODY, NOBODY)
    (tmp_path / "logs").mkdir()
    link = shared / "link.jsonl"
    link.symlink_to(tmp_path / "logs" / "traces.jsonl")
    plain = shared / "traces.jsonl"
    for path in (plain, link):
        for line in ("a" * 8, "b" * 8):
            assert FileSpanExporter(path, 10).export(EncodedSpans(line, 1)).name == "SUCCESS"
        if owner == "the directory's owner":
            os.lchown(path, NOBODY, NOBODY)
        assert FileSpanExporter(path, 10).export(EncodedSpans("c" * 8, 1)).name == "SUCCESS"
    assert plain.read_text() == link.read_text() == "c" * 8 + "\n"
    assert (shared / "traces.jsonl.1").read_text() == "b" * 8 + "\n"
    assert (tmp_path / "logs" / "traces.jsonl.1").read_text() == "b" * 8 + "\n"
    assert link.is_symlink()


def test_a_hard_link_in_a_shared_directory_is_not_appended_to(shared, tmp_path):
    """Another user's second name, in /tmp, for a file of this user's (on
    the same disk, where protected_hardlinks is not set): the file's owner
    is this user, yet it was appended to and renamed away."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    victim = tmp_path / "settings.py"
    victim.write_text("SECRET_KEY = 'x'\n")
    path = shared / "traces.jsonl"
    os.link(victim, path)
    exporter = FileSpanExporter(path, 10)
    assert exporter.export(EncodedSpans("a" * 30, 1)) is SpanExportResult.FAILURE
    assert exporter.failure() == (
        f"cannot append to {path}: it is a file with 2 names (hard links) in a directory every "
        "user may write, where only a file of one name is appended to"
    )
    assert victim.read_text() == "SECRET_KEY = 'x'\n"
    assert sorted(p.name for p in shared.iterdir()) == ["traces.jsonl"]


def test_where_a_link_of_ones_own_leads_in_a_shared_directory_is_checked(shared, tmp_path):
    """The server's own link, to a name in /tmp that another user took first:
    that user received the spans. A path through a link and ``..`` is in
    the directory the system finds, not the one its text names."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    taken = shared / "real.jsonl"
    taken.write_text("")
    os.chown(taken, NOBODY, NOBODY)
    (tmp_path / "app").mkdir()
    link = tmp_path / "app" / "traces.jsonl"
    link.symlink_to(taken)
    (shared / "sub").mkdir()
    (tmp_path / "app" / "into").symlink_to(shared / "sub")
    dotted = tmp_path / "app" / "into" / ".." / "real.jsonl"  # shared/real.jsonl
    for path in (link, dotted):
        exporter = FileSpanExporter(path)
        assert exporter.export(EncodedSpans("a" * 8, 1)) is SpanExportResult.FAILURE
        assert exporter.failure() == f"cannot append to {path}: {_refused(NOBODY)}"
    assert taken.read_text() == ""


def test_each_step_of_a_chain_of_links_through_a_shared_directory_is_checked(shared, tmp_path):
    """The server's own link to a name in /tmp not made yet, where another
    user then put a link to a file of the server's user: only the last
    name's directory was looked at (not a shared one), and the file was
    appended to and renamed away."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter, foreign

    (tmp_path / "private").mkdir()
    victim = tmp_path / "private" / "victim.log"
    victim.write_text("precious\n")
    path = tmp_path / "private" / "traces.jsonl"
    path.symlink_to(shared / "traces.jsonl")
    (shared / "traces.jsonl").symlink_to(victim)
    os.lchown(shared / "traces.jsonl", NOBODY, NOBODY)
    assert foreign(str(path)) == _refused(NOBODY, "a symbolic link")
    exporter = FileSpanExporter(path, 10)
    for line in ("a" * 8, "b" * 8):
        assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.FAILURE
    assert exporter.failure() == f"cannot append to {path}: {_refused(NOBODY, 'a symbolic link')}"
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["traces.jsonl", "victim.log"]


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or not os.stat("/dev/shm").st_mode & 0o002,
    reason="no /dev/shm that every user may write",
)
def test_another_users_link_in_dev_shm_is_refused_as_in_tmp(shared, tmp_path):
    """A link under /dev was taken for a stream of the process's (as
    /dev/stdout is one), and followed unchecked: /dev/shm is a directory
    every user may write, as /tmp is."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    victim = tmp_path / "victim.log"
    victim.write_text("precious\n")
    link = tempfile.mktemp(dir="/dev/shm", prefix="switchtrace-test-")
    os.symlink(victim, link)
    try:
        os.lchown(link, NOBODY, NOBODY)
        exporter = FileSpanExporter(link, 10)
        assert exporter.export(EncodedSpans("a" * 8, 1)) is SpanExportResult.FAILURE
        shm = os.stat("/dev/shm")
        assert exporter.failure() == (
            f"cannot append to {link}: it is a symbolic link of another user (uid {NOBODY}) in a "
            "directory every user may write, where only a file, named pipe or link of this "
            f"process's user (uid 0) or of the directory's owner (uid {shm.st_uid}) is appended to"
        )
    finally:
        os.unlink(link)
    assert victim.read_text() == "precious\n"


def test_the_process_stdout_is_appended_to_whatever_file_it_is(shared):
    """/dev/stdout, the server's output, sent to another user's file in /tmp
    (or to one deleted since): the file behind the link was judged as a
    FILE_PATH of its own, refused (E008 at startup), or, deleted, made again
    under the name '... (deleted)'. It is the server's output, as it is."""
    output = shared / "server.log"
    output.write_text("")
    os.chown(output, NOBODY, NOBODY)
    script = textwrap.dedent(
        """
        import os, sys
        from switchtrace.django_app.conf import _unwritable
        from switchtrace.exporters.encode import EncodedSpans
        from switchtrace.exporters.otlp_json import FileSpanExporter

        assert _unwritable("/dev/stdout") is None
        exporter = FileSpanExporter("/dev/stdout", 10)
        assert exporter.export(EncodedSpans("a" * 8, 1)).name == "SUCCESS", exporter.failure()
        linked = [FileSpanExporter(link, 10) for link in sys.argv[2:]]  # links of one's own to it
        for each in linked:
            assert each.export(EncodedSpans("l" * 8, 1)).name == "SUCCESS", each.failure()
        os.unlink(sys.argv[1])
        for each in [exporter, *linked]:
            assert each.export(EncodedSpans("b" * 8, 1)).name == "SUCCESS", each.failure()
        os.lseek(1, 0, os.SEEK_SET)
        sys.stderr.write(os.pread(1, 100, 0).decode())
        """
    )
    links = {"stdout": "/dev/stdout", "fd": "/dev/fd/1", "relative": "../" * 20 + "proc/self/fd/1"}
    for name, target in links.items():
        (shared / name).symlink_to(target)
    with open(output, "r+") as out:
        child = subprocess.run(
            [sys.executable, "-c", script, str(output), *(str(shared / name) for name in links)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            cwd=shared,
        )
    assert child.returncode == 0, child.stderr
    assert child.stderr == "a" * 8 + "\n" + ("l" * 8 + "\n") * 3 + ("b" * 8 + "\n") * 4
    assert sorted(os.listdir(shared)) == sorted(links)  # nothing made beside them


@pytest.mark.parametrize("what", ["a file", "a symbolic link", "a named pipe"])
def test_another_users_file_made_between_the_look_and_the_open_is_refused(
    shared, tmp_path, monkeypatch, what
):
    """Not there when the exporter looked, another user's by the open: a
    link is not followed there, and what is opened is checked (a named
    pipe, read by that user, received the spans)."""
    from switchtrace.exporters import otlp_json
    from switchtrace.exporters.encode import EncodedSpans

    path = shared / "traces.jsonl"
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    looked = os.lstat
    planted = []
    readers: list[int] = []

    def lstat(name, *args, **kwargs):
        if os.fspath(name) != str(path) or planted:
            return looked(name, *args, **kwargs)
        planted.append(what)
        # The look finds nothing; another user's file or link is there at once.
        if what == "a file":
            path.write_text("planted\n")
        elif what == "a symbolic link":
            path.symlink_to(victim)
        else:
            os.mkfifo(path)
            readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        os.lchown(path, NOBODY, NOBODY)
        raise FileNotFoundError(2, "No such file or directory", name)

    exporter = otlp_json.FileSpanExporter(path)
    monkeypatch.setattr(otlp_json.os, "lstat", lstat)
    assert exporter.export(EncodedSpans("a" * 8, 1)) is SpanExportResult.FAILURE
    monkeypatch.undo()
    assert planted == [what]
    assert exporter.failure() == f"cannot append to {path}: {_refused(NOBODY, what)}"
    assert victim.read_text() == "kept\n"
    if what == "a file":
        assert path.read_text() == "planted\n"
    for reader in readers:
        assert os.read(reader, 100) == b""  # nothing written (and no writer left)
        os.close(reader)


def test_a_file_path_of_the_process_stdout_is_never_renamed(tmp_path):
    """FILE_PATH /dev/stdout (or a link to it) of a server whose output goes
    to a file: the file behind it is the server's own log, which rotating
    renamed (through /proc/self/fd/1) again at every export, to app.log.1,
    app.log.1.1, ..., as the file the descriptor names kept its size. A path
    under /proc, a link under /dev, or a link to one, is appended to and
    never renamed."""
    (tmp_path / "stdout").symlink_to("/dev/stdout")
    script = textwrap.dedent(
        """
        import sys
        from switchtrace.exporters.encode import EncodedSpans
        from switchtrace.exporters.otlp_json import FileSpanExporter

        for path in sys.argv[1:]:
            exporter = FileSpanExporter(path, 10)
            for line in ("a" * 8, "b" * 8):
                assert exporter.export(EncodedSpans(line, 1)).name == "SUCCESS"
        """
    )
    with open(tmp_path / "app.log", "w") as out:
        subprocess.run(
            [sys.executable, "-c", script, "/dev/stdout", str(tmp_path / "stdout")],
            stdout=out,
            check=True,
            cwd=tmp_path,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", "stdout"]
    assert (tmp_path / "app.log").read_text() == ("a" * 8 + "\n" + "b" * 8 + "\n") * 2


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="no writable /dev/shm")
def test_a_regular_file_under_dev_is_rotated_and_a_device_never_renamed(tmp_path):
    """A file in /dev/shm (spans kept in memory) is a file like any other:
    FILE_MAX_BYTES bounds it, as it does a link to it, whose file is renamed
    beside it. /dev/null, a device, is never renamed (as root, renaming it
    would take it from every process)."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    assert FileSpanExporter("/dev/null", 10).max_bytes is None
    assert FileSpanExporter("/dev/stdout", 10).max_bytes is None
    shm = tempfile.mkdtemp(dir="/dev/shm", prefix="switchtrace-test-")
    try:
        (tmp_path / "link").symlink_to(os.path.join(shm, "linked.jsonl"))
        for path, renamed in (
            (os.path.join(shm, "traces.jsonl"), os.path.join(shm, "traces.jsonl.1")),
            (str(tmp_path / "link"), os.path.join(shm, "linked.jsonl.1")),
        ):
            exporter = FileSpanExporter(path, 10)
            assert exporter.max_bytes == 10
            for line in ("a" * 8, "b" * 8):
                assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
            with open(renamed) as older, open(path) as newer:
                assert (older.read(), newer.read()) == ("a" * 8 + "\n", "b" * 8 + "\n")
        assert (tmp_path / "link").is_symlink()
    finally:
        shutil.rmtree(shm)


def test_the_file_is_renamed_only_once_a_line_would_take_it_past_max_bytes(tmp_path):
    """A line that takes the file to max_bytes exactly is appended; the next
    one, past it, goes to a new file. The exporter writes each line as it
    is given (force_flush has nothing to wait for), and keeps no descriptor
    of the file open between exports."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    exporter = FileSpanExporter(path, 18)
    for line in ("a" * 8, "b" * 8):  # 9 bytes each: 18
        assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert path.read_text() == "a" * 8 + "\n" + "b" * 8 + "\n" and not older.exists()
    assert exporter.force_flush() is True
    assert exporter.export(EncodedSpans("c" * 8, 1)) is SpanExportResult.SUCCESS
    assert older.read_text() == "a" * 8 + "\n" + "b" * 8 + "\n"
    assert path.read_text() == "c" * 8 + "\n"
    if os.path.isdir("/proc/self/fd"):
        names = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                names.add(os.readlink(f"/proc/self/fd/{fd}"))
        assert not {str(path), str(older)} & names


def test_a_file_that_cannot_be_renamed_the_first_time_is_appended_to(tmp_path, caplog):
    """An exporter whose first export finds the file full (written before
    it was made) and FILE_PATH.1 impossible to replace appends past the
    limit and says so once (the warning of a file that cannot be renamed
    was keyed to an earlier rotation)."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    path.write_text("a" * 8 + "\n")
    (tmp_path / "traces.jsonl.1" / "kept").mkdir(parents=True)
    exporter = FileSpanExporter(path, 10)
    with caplog.at_level("WARNING", logger="switchtrace"):
        for line in ("b" * 8, "c" * 8):
            assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert path.read_text() == "".join(c * 8 + "\n" for c in "abc")
    warning = (
        f"switchtrace: {path} reached SWITCHTRACE['FILE_MAX_BYTES'] (10 bytes) and cannot be "
        f"renamed to {path}.1 (Is a directory): spans are appended to it past that size"
    )
    assert [r.getMessage() for r in caplog.records] == [warning]
    # Renamed once FILE_PATH.1 can be replaced; said again when it no longer can.
    older = tmp_path / "traces.jsonl.1"
    (older / "kept").rmdir()
    older.rmdir()
    with caplog.at_level("WARNING", logger="switchtrace"):
        assert exporter.export(EncodedSpans("d" * 8, 1)) is SpanExportResult.SUCCESS
        assert older.read_text() == "".join(c * 8 + "\n" for c in "abc")
        older.unlink()
        (older / "kept").mkdir(parents=True)
        assert exporter.export(EncodedSpans("e" * 8, 1)) is SpanExportResult.SUCCESS
    assert path.read_text() == "d" * 8 + "\n" + "e" * 8 + "\n"
    assert [r.getMessage() for r in caplog.records] == [warning, warning]


def test_a_file_renamed_by_another_writer_and_not_yet_started_again(tmp_path):
    """Another writer has renamed the full file and not yet started the new
    one when this one looks: there is nothing to rename, and the line goes
    to a new file at the path."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "traces.jsonl"
    older = tmp_path / "traces.jsonl.1"
    exporter = FileSpanExporter(path, 10)
    exporter.export(EncodedSpans("a" * 8, 1))
    opened_before = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.replace(path, older)  # the other writer's rename
    try:  # not this line's file any more, and nothing to rename
        assert exporter._room(opened_before, 9) is False
    finally:
        os.close(opened_before)
    assert not path.exists()
    assert exporter.export(EncodedSpans("b" * 8, 1)) is SpanExportResult.SUCCESS
    assert older.read_text() == "a" * 8 + "\n" and path.read_text() == "b" * 8 + "\n"


def test_the_exporters_error_is_that_of_its_last_export(tmp_path):
    """FileSpanExporter.error: why the last export failed (what failure()
    words for the pipeline's warning), None before any and after one that
    succeeded."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    path = tmp_path / "gone" / "traces.jsonl"
    exporter = FileSpanExporter(path)
    assert exporter.error is None
    assert exporter.export(EncodedSpans("a", 1)) is SpanExportResult.FAILURE
    assert isinstance(exporter.error, FileNotFoundError)
    assert exporter.failure() == f"cannot append to {path}: No such file or directory"
    path.parent.mkdir()
    assert exporter.export(EncodedSpans("b", 1)) is SpanExportResult.SUCCESS
    assert exporter.error is None
    assert path.read_text() == "b\n"


def refuse_reading(monkeypatch):
    """Files this process may append to and not read (as root, nothing can
    be made so): os.open refuses to open one for reading too."""
    real_open = os.open

    def refusing(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)


def test_a_file_the_exporter_cannot_read_gets_whole_lines(tmp_path, monkeypatch):
    """A file another process wrote to before (ending with a whole line),
    which this one may append to and not read, is appended to without an
    empty line, and so is the next line."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    refuse_reading(monkeypatch)
    path = tmp_path / "traces.jsonl"
    path.write_text("a" * 8 + "\n")
    exporter = FileSpanExporter(path)
    for line in ("b" * 8, "c" * 8):
        assert exporter.export(EncodedSpans(line, 1)) is SpanExportResult.SUCCESS
    assert path.read_text() == "".join(c * 8 + "\n" for c in "abc")


@pytest.mark.parametrize("readable", [True, False])
def test_a_file_is_made_rw_rw_rw_less_the_umask(tmp_path, monkeypatch, readable):
    """As open() makes one: rw-r--r-- under the usual umask, whether this
    process may read the file or not."""
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.otlp_json import FileSpanExporter

    if not readable:
        refuse_reading(monkeypatch)
    path = tmp_path / "traces.jsonl"
    umask = os.umask(0o022)
    try:
        assert FileSpanExporter(path).export(EncodedSpans("a", 1)) is SpanExportResult.SUCCESS
    finally:
        os.umask(umask)
    assert (path.read_text(), path.stat().st_mode & 0o777) == ("a\n", 0o644)


def test_sdk_spans_given_to_the_file_exporter_are_one_otlp_json_line(tmp_path):
    """FileSpanExporter under an SDK span processor (an application's own
    provider): the spans it is given, encoded by to_otlp_json."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from switchtrace.exporters import FileSpanExporter, to_otlp_json

    path = tmp_path / "traces.jsonl"
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("app").start_span("work", attributes={"n": 1}).end()
    [span] = memory.get_finished_spans()
    assert path.read_text() == to_otlp_json([span]) + "\n"
    assert (
        json.loads(path.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"]
        == "work"
    )


CONSOLE_LINE = (
    "GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops, "
    f"{count(ASGI_THREADS, 'thread')}; "
    "top: CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4, "
    "CommonMiddleware 4, MessageMiddleware 4\n"
)


def test_the_console_exporter_prints_one_line_per_request():
    stream = io.StringIO()
    settings = {"ENABLED": True, "EXPORTER": "console"}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        assert telemetry.pipeline() is None
        telemetry._console.stream = stream
        run_asgi(asgi, "/sync/")
    assert stream.getvalue() == CONSOLE_LINE


class BlockedStream(io.StringIO):
    """A stderr nobody reads (a full pipe): each write blocks until released
    (10 s at most, so that a write on the request's path shows as a request
    that waited, not as a hung test)."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.returned = 0
        self.writers = []

    def write(self, text):
        self.writers.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)
        self.returned += 1
        return super().write(text)


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_blocked_stderr_holds_up_no_request(server):
    """The console line was formatted and written on the request's path (under
    ASGI on the event loop, every request with it): a stderr pipe nobody
    reads held up the server. It is written by switchtrace's own thread now,
    and what is queued is written at shutdown."""
    stream = BlockedStream()
    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "console"}) as (asgi, wsgi):
        console = telemetry._console
        console.stream = stream
        for _ in range(2):
            if server == "asgi":
                assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
            else:
                assert wsgi_request(wsgi, "/sync/").figures() == (0, 0, 0, 0)
        assert stream.returned == 0  # the requests were served: the line waits
        stream.release.set()
    # Leaving the settings shut the console down: both lines written.
    assert stream.writers == ["switchtrace-console"] * 2
    line = (
        CONSOLE_LINE
        if server == "asgi"
        else "GET /sync/ 200: 0 switches (0 before headers), 0 hops, 0 loops, 0 threads\n"
    )
    assert stream.getvalue() == line * 2
    assert (console.written, console.dropped, console.failed) == (2, 0, 0)


@contextlib.contextmanager
def console_writing_its_first_line(stream):
    """The console exporter with a queue of one record, writing to ``stream``
    (a BlockedStream), once it is writing the line of a first request."""
    settings = {"ENABLED": True, "EXPORTER": "console", "QUEUE_SIZE": 1}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        console = telemetry._console
        console.stream = stream
        run_asgi(asgi, "/sync/")
        assert stream.entered.wait(10)  # the first line is being written
        yield asgi, console


def test_the_console_queue_is_bounded_and_its_drops_counted(caplog):
    stream = BlockedStream()
    with caplog.at_level("WARNING", logger="switchtrace"):
        with console_writing_its_first_line(stream) as (asgi, console):
            run_asgi(asgi, "/sync/")  # queued
            run_asgi(asgi, "/sync/")  # the queue is full: dropped
            run_asgi(asgi, "/sync/")
            assert console.dropped == 2
            stream.release.set()
            assert console.flush(10)
    assert stream.getvalue() == CONSOLE_LINE * 2
    assert (console.written, console.dropped, console.failed) == (2, 2, 0)
    # Told by the console's thread once the first line was written (one
    # warning a minute at most).
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: console queue full (1 record); the lines of 2 requests dropped so far"
    ]
    assert [r.threadName for r in caplog.records] == ["switchtrace-console"]


def test_the_console_queue_full_warning_is_not_written_on_the_requests_path():
    """The queue fills when the stream is blocked, and the stream is usually
    stderr, where the warning of the lines dropped goes too (logging's
    handler of last resort, a console handler): logged on the request's path
    (under ASGI on the event loop), that warning held up the request, and the
    server with it, as long as the stream was blocked. The console's thread
    logs it, once it is free again."""
    import logging

    stream = BlockedStream()
    handler = logging.StreamHandler(stream)  # stderr, where the lines go too
    logger = logging.getLogger("switchtrace")
    logger.addHandler(handler)
    try:
        with console_writing_its_first_line(stream) as (asgi, console):
            run_asgi(asgi, "/sync/")  # queued
            run_asgi(asgi, "/sync/")  # the queue is full: dropped
            assert console.dropped == 1
            stream.release.set()
            assert console.flush(10)
    finally:
        logger.removeHandler(handler)
    assert stream.writers == ["switchtrace-console"] * 3
    assert stream.getvalue() == (
        CONSOLE_LINE
        + "switchtrace: console queue full (1 record); the lines of 1 request dropped so far\n"
        + CONSOLE_LINE
    )


def test_a_console_line_the_stream_refuses_is_counted(caplog):
    read, write = os.pipe()
    os.close(read)
    stream = io.TextIOWrapper(io.FileIO(write, "w"))
    try:
        with caplog.at_level("WARNING", logger="switchtrace"):
            with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "console"}) as (asgi, _wsgi):
                console = telemetry._console
                console.stream = stream
                assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
                assert console.flush(10)
    finally:
        # Closed here, not left to a later test's collection (ResourceWarning).
        with contextlib.suppress(BrokenPipeError):  # its line, still buffered
            stream.close()
    assert (console.written, console.dropped, console.failed) == (0, 0, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: a console line could not be written (BrokenPipeError: [Errno 32] "
        "Broken pipe); 1 line lost so far"
    ]


def test_a_console_exporter_shut_down_flushes_at_once_what_it_wrote():
    """flush() once its thread has stopped: True, nothing being queued (its
    lines written before the shutdown)."""
    from switchtrace import tracer
    from switchtrace.exporters import ConsoleReporter

    stream = io.StringIO()
    console = ConsoleReporter(stream=stream)
    with tracer.recording() as record:
        pass
    console(record)
    console.shutdown()
    assert not console._worker.is_alive()
    assert console.flush(10) is True
    assert (console.written, console.dropped) == (1, 0)
    assert len(stream.getvalue().splitlines()) == 1


def test_a_detached_console_exporter_prints_nothing_until_attached_again():
    stream = io.StringIO()
    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "console"}) as (asgi, _wsgi):
        telemetry._console.stream = stream
        telemetry.detach()
        assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
        assert stream.getvalue() == ""
        telemetry.attach()
        run_asgi(asgi, "/sync/")
    assert stream.getvalue() == CONSOLE_LINE  # the second request's line alone


def test_format_record_names_the_view_and_adapters(records):
    with project("sync-only") as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    assert format_record(record, components.resolve) == (
        "GET /sync/ 200: 12 switches (10 before headers), 12 hops, 0 loops, "
        f"{count(ASGI_THREADS, 'thread')}; "
        "top: request_started 2, middleware chain 2, XFrameOptionsMiddleware 2, "
        "CsrfViewMiddleware 2, sync_view 2"
    )


def test_format_record_counts_one_loop_and_one_thread_in_the_singular(records):
    with project("none") as (_asgi, wsgi):
        wsgi_request(wsgi, "/async/")
    [record] = records
    assert format_record(record, components.resolve) == (
        "GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; "
        "top: async_view 2"
    )


def test_exporter_none_makes_no_spans_and_keeps_the_headers():
    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"}) as (asgi, _wsgi):
        assert telemetry.pipeline() is None
        assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)


def test_a_detached_pipeline_makes_no_spans_until_attached_again(tmp_path):
    # switchtrace bench --overhead switches modes every round and keeps one
    # pipeline (its thread, its caches) for the whole run, as a server does.
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        telemetry.detach()
        assert telemetry.pipeline() is None
        assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)
        assert pipeline.flush(10) and pipeline.records == 0
        assert not path.exists()
        telemetry.attach()
        assert telemetry.pipeline() is pipeline
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10) and pipeline.records == 1
        # Configured again with the same options while detached: the same
        # pipeline is attached again, not a new one built.
        telemetry.detach()
        telemetry.configure(get_config().export)
        assert telemetry.pipeline() is pipeline
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10) and pipeline.records == 2
        telemetry.detach()
    # Settings changed back: the detached pipeline is shut down with them.
    assert not pipeline._worker.is_alive()
    assert telemetry.pipeline() is not pipeline
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert len(json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 17


def test_a_detached_block_makes_no_spans_and_leaves_the_exporter_as_it_was(tmp_path):
    """telemetry.detached(), around switchtrace explain --measure's requests:
    none of the block's requests is exported, the exporter is attached again
    after it (not when it was detached already, nor after a block inside
    another), and with no exporter at all (EXPORTER "none") nothing is
    attached after it."""
    path = tmp_path / "traces.jsonl"
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(path)}
    with project(SWITCHTRACE=settings) as (asgi, _wsgi):
        pipeline = telemetry.pipeline()
        with telemetry.detached():
            assert telemetry.pipeline() is None
            run_asgi(asgi, "/sync/")
            with telemetry.detached():
                pass
            assert telemetry.pipeline() is None
            run_asgi(asgi, "/sync/")
        assert telemetry.pipeline() is pipeline
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10) and pipeline.records == 1
        telemetry.detach()
        with telemetry.detached():
            pass
        assert telemetry.pipeline() is None
        telemetry.attach()
    assert len(path.read_text().splitlines()) == 1
    with project(SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"}) as (asgi, _wsgi):
        with telemetry.detached():
            run_asgi(asgi, "/sync/")
        assert telemetry.pipeline() is None
        assert run_asgi(asgi, "/sync/").figures() == (30, 30, 0, 1)


def test_a_pipeline_replaced_gets_no_more_records(tmp_path):
    """Settings changed (back to the suite's): the pipeline shut down is no
    longer a listener, so the requests after do not fill its queue (whose
    records no thread takes: its queue full, it would warn of drops)."""
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with project(SWITCHTRACE=settings):
        pipeline = telemetry.pipeline()
    with project() as (asgi, _wsgi):
        assert telemetry.pipeline() is not pipeline
        run_asgi(asgi, "/sync/")
    assert pipeline._queue.qsize() == 0
    assert (pipeline.records, pipeline.dropped) == (0, 0)


def test_switchtrace_disabled_shuts_the_pipeline_down(tmp_path):
    """ENABLED turned off (a setting changed): no pipeline, and its thread
    has stopped."""
    from django.test import override_settings

    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with project(SWITCHTRACE=settings):
        pipeline = telemetry.pipeline()
        with override_settings(SWITCHTRACE={"ENABLED": False}):
            assert telemetry.pipeline() is None
            assert not pipeline._worker.is_alive()


SETUP = """
import os, sys
sys.path[:0] = [{root!r} + "/src", {root!r}, {example!r}]
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
"""
REQUEST = """
import django
django.setup()
from django.core.handlers.wsgi import WSGIHandler
from switchtrace.django_app import telemetry
from tests.support import wsgi_request
result = wsgi_request(WSGIHandler(), "/async/")
pipeline = telemetry.pipeline()
"""


def run_script(before: str, after: str, env: dict[str, str], tmp_path) -> str:
    return run_in_example([textwrap.dedent(before), REQUEST, textwrap.dedent(after)], env, tmp_path)


def run_in_example(parts: list[str], env: dict[str, str], tmp_path, *args: str) -> str:
    """``parts`` run in a process of its own with the example project's
    settings (its spans to a file in ``tmp_path``), given ``args``: what it
    printed, once it has exited 0."""
    script = "\n".join([SETUP.format(root=str(ROOT), example=str(EXAMPLE)), *parts])
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={
            "PATH": "/usr/bin:/bin",
            "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "t.jsonl"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_application_provider_is_used_and_nothing_is_added(tmp_path):
    after = """
    pipeline.flush(10)
    print(pipeline.own_provider, pipeline.provider is app_provider,
          trace.get_tracer_provider() is app_provider,
          len(app_provider._active_span_processor._span_processors),
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    assert run_script(GLOBAL_APP_PROVIDER, after, {}, tmp_path) == (
        "False True True 1 ['GET async/', 'async_to_sync async_view']"
    )


@pytest.mark.parametrize(
    ("path", "printed"),
    [
        ("/sync/", "(30, 30, 0, 1) 30 30 16 True []"),
        # The body, from a sync iterator: a sync_to_async of Django's.
        ("/stream/", "(30, 30, 0, 1) 32 30 17 True []"),
    ],
)
def test_an_asgi_server_span_ended_with_the_last_body_message(path, printed, tmp_path):
    """opentelemetry-instrumentation-asgi's middleware, the provider the
    application's global one: its SERVER span ends in its send, with the
    response's last body message, before Django closes the response. The
    span has the figures of that moment as its whole-request counts (a
    streaming body's switches included: it had those of the headers), the
    switch spans of the close under it all the same; the thread asgiref
    starts after it (from 3.12, to join the request's) was an event added
    to that span when the spans were made, which the SDK refused with a
    warning, "Tried calling _add_event on an ended span.", on every
    request."""
    request = """
    import logging
    logged = []
    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())
    logging.getLogger().addHandler(Keep(logging.WARNING))
    import django
    django.setup()
    from django.core.asgi import get_asgi_application
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from switchtrace.django_app import telemetry
    from tests.support import run_asgi
    result = run_asgi(OpenTelemetryMiddleware(get_asgi_application()), sys.argv[1])
    assert telemetry.pipeline().flush(10)
    spans = app_exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    ours = [s for s in spans if s.name.startswith(("sync_to_async", "async_to_sync"))]
    print(result.figures(), server.attributes["switchtrace.context_switches"],
          server.attributes["switchtrace.context_switches_before_headers"],
          len(ours), {s.context.trace_id for s in ours} == {server.context.trace_id}, logged)
    """
    parts = [GLOBAL_APP_PROVIDER, textwrap.dedent(request)]
    assert run_in_example(parts, {}, tmp_path, path) == printed


def test_an_application_provider_set_after_startup_is_used_from_then_on(tmp_path):
    """As a worker sets it in gunicorn's post_fork hook under --preload (what
    OpenTelemetry's documentation advises for pre-forking servers), after
    the app, switchtrace's pipeline with it, was loaded in the master."""
    after = """
    pipeline.flush(10)
    print(pipeline.own_provider, pipeline.provider is app_provider,
          trace.get_tracer_provider() is app_provider,
          sorted(s.name for s in app_exporter.get_finished_spans()),
          os.path.exists(os.environ["SWITCHTRACE_EXAMPLE_TRACES"]))
    """
    parts = [
        "import django",
        "django.setup()",
        GLOBAL_APP_PROVIDER,
        REQUEST,
        textwrap.dedent(after),
    ]
    assert run_in_example(parts, {}, tmp_path) == (
        "False True True ['GET async/', 'async_to_sync async_view'] False"
    )


def test_a_provider_named_in_the_environment_is_left_for_the_application_to_make(tmp_path):
    """OTEL_PYTHON_TRACER_PROVIDER set: ``trace.get_tracer_provider()`` makes
    the provider it names and sets it as the global one. switchtrace asked
    it whether the application had set one (its checks and settings, then
    each pipeline): that made the global provider, one without a processor,
    taken as the application's (switchtrace's spans lost), and the
    application's own ``set_tracer_provider`` refused ("Overriding of
    current TracerProvider is not allowed")."""
    after = """
    from django.core.checks import run_checks
    run_checks()
    unset = trace._TRACER_PROVIDER is None
    pipeline.flush(10)
    mine = pipeline.own_provider
    {provider}
    trace.set_tracer_provider(app_provider)
    wsgi_request(WSGIHandler(), "/async/")
    pipeline.flush(10)
    with open(os.environ["SWITCHTRACE_EXAMPLE_TRACES"]) as traces:
        written = len(traces.readlines())
    print(unset, mine, trace.get_tracer_provider() is app_provider, written,
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    after = after.format(provider=textwrap.indent(APP_PROVIDER, "    ").strip())
    env = {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}
    assert run_script("from opentelemetry import trace", after, env, tmp_path) == (
        "True True True 1 ['GET async/', 'async_to_sync async_view']"
    )


def test_a_provider_named_in_the_environment_once_made_is_the_applications(tmp_path):
    """The provider OTEL_PYTHON_TRACER_PROVIDER names, made the global one by
    the first ``trace.get_tracer()`` (the application's, an
    instrumentation's): the application's, used from the next request on,
    its spans going where the application's go (nowhere, until it adds a
    processor)."""
    after = """
    trace.get_tracer("myapp")
    environment_provider = trace._TRACER_PROVIDER
    wsgi_request(WSGIHandler(), "/async/")
    pipeline.flush(10)
    mine = pipeline.own_provider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    app_exporter = InMemorySpanExporter()
    environment_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    wsgi_request(WSGIHandler(), "/async/")
    pipeline.flush(10)
    with open(os.environ["SWITCHTRACE_EXAMPLE_TRACES"]) as traces:
        written = sum(
            len(json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"])
            for line in traces
        )
    print(type(environment_provider).__name__, mine, pipeline.provider is environment_provider,
          written, sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    env = {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}
    assert run_script("import json\nfrom opentelemetry import trace", after, env, tmp_path) == (
        "TracerProvider False True 2 ['GET async/', 'async_to_sync async_view']"
    )


@pytest.mark.parametrize("before", [0, 1])
def test_an_application_provider_set_after_startup_gets_the_last_spans_at_exit(before, tmp_path):
    """Its exit hook (the SDK's shutdown_on_exit), registered after
    switchtrace's, ran first: the records still queued at exit were handed to
    a provider already shut down, their spans lost untold (here the span
    thread is held by the first record it gives the application's provider
    while the last five requests end). With a request before the provider
    was set, the span thread may be first to see it, before any request."""
    script = """
    import atexit, json, os, time

    def spans():  # the application's, and those switchtrace wrote to its file
        path = os.environ["SWITCHTRACE_EXAMPLE_TRACES"]
        lines = open(path).readlines() if os.path.exists(path) else []
        ours = (json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"] for line in lines)
        print(len(app_exporter.get_finished_spans()) + sum(map(len, ours)))

    atexit.register(spans)  # runs last
    import django
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from opentelemetry.sdk.trace import SpanProcessor
    from tests.support import wsgi_request
    {provider}
    class Slow(SpanProcessor):
        def on_end(self, span, waited=[]):
            if not waited:
                waited.append(time.sleep(0.5))
    app_provider.add_span_processor(Slow())
    for _ in range({before}):
        wsgi_request(WSGIHandler(), "/async/")
    trace.set_tracer_provider(app_provider)
    for _ in range(6):
        wsgi_request(WSGIHandler(), "/async/")
    """
    provider = textwrap.indent(APP_PROVIDER, "    ").strip()
    script = textwrap.dedent(script.format(provider=provider, before=before))
    # (A request before it: its spans ours, in our file, or the application's,
    # as the span thread saw the provider then.)
    assert run_in_example([script], {}, tmp_path) == str(2 * (before + 6))


def test_the_exit_hook_registered_again_while_the_exit_hooks_run_still_runs(tmp_path):
    """The span thread registers it again as it follows the application's
    provider, which may be while Python runs its exit hooks (a request
    ended then): one registered then never runs, and when that one took
    the first's place (unregistered, registered again), nothing queued was
    exported, nor the loss told. Here an exit hook of the application's
    sets its provider and registers it again as the thread would; the
    request's spans, waiting for their batch, are written all the same."""
    script = """
    import atexit, os, time

    def written():  # registered first: runs last
        path = os.environ["SWITCHTRACE_EXAMPLE_TRACES"]
        print(len(open(path).readlines()) if os.path.exists(path) else 0)

    atexit.register(written)
    import django
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from switchtrace.django_app import telemetry
    from tests.support import wsgi_request
    {provider}
    pipeline = telemetry.pipeline()

    def applications_exit_hook():
        trace.set_tracer_provider(app_provider)
        pipeline._register_exit_hook_again()

    wsgi_request(WSGIHandler(), "/async/")
    while not pipeline.records:  # its spans laid out, waiting for their batch
        time.sleep(0.01)
    atexit.register(applications_exit_hook)
    """
    provider = textwrap.indent(APP_PROVIDER, "    ").strip()
    script = textwrap.dedent(script.format(provider=provider))
    assert run_in_example([script], {"OTEL_BSP_SCHEDULE_DELAY": "60000"}, tmp_path) == "1"


def test_otel_sdk_disabled_turns_spans_off_not_headers(tmp_path):
    after = "print(pipeline, result.figures())"
    assert run_script("", after, {"OTEL_SDK_DISABLED": "true"}, tmp_path) == "None (2, 2, 1, 1)"


def test_otel_traces_exporter_chooses_where_spans_go(tmp_path):
    """OpenTelemetry's variable was ignored: none still wrote every request's
    spans to the file, console too."""
    after = """
    print(pipeline and pipeline.options.exporter, telemetry._console is not None,
          result.figures(), os.path.exists(os.environ["SWITCHTRACE_EXAMPLE_TRACES"]))
    """
    environ = {"OTEL_TRACES_EXPORTER": "none"}
    assert run_script("", after, environ, tmp_path) == "None False (2, 2, 1, 1) False"
    environ = {"OTEL_TRACES_EXPORTER": "console"}
    assert run_script("", after, environ, tmp_path) == "None True (2, 2, 1, 1) False"
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    assert run_script("", after, environ, tmp_path) == "otlp False (2, 2, 1, 1) False"


@pytest.mark.parametrize("value", ["none", "zipkin"])
def test_otel_traces_exporter_is_the_application_providers_concern(tmp_path, value):
    """An application's provider set before Django starts (as
    opentelemetry-instrument sets one, with the exporters it read this
    variable for) makes switchtrace's spans: the variable is not read again."""
    before = GLOBAL_APP_PROVIDER
    after = """
    pipeline.flush(10)
    print(pipeline.provider is app_provider, result.figures(),
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    assert run_script(before, after, {"OTEL_TRACES_EXPORTER": value}, tmp_path) == (
        "True (2, 2, 1, 1) ['GET async/', 'async_to_sync async_view']"
    )


def test_otel_traces_sampler_is_honoured(tmp_path):
    after = """
    pipeline.flush(10)
    import pathlib
    path = pathlib.Path(os.environ["SWITCHTRACE_EXAMPLE_TRACES"])
    print(pipeline.options.exporter, path.exists() and path.read_text() != "")
    """
    assert run_script("", after, {"OTEL_TRACES_SAMPLER": "always_off"}, tmp_path) == "file False"
    assert run_script("", after, {"OTEL_TRACES_SAMPLER": "always_on"}, tmp_path) == "file True"


def test_otel_service_name_and_endpoint_choose_otlp(tmp_path):
    after = (
        "print(pipeline.options.exporter, pipeline.options.service_name, pipeline.options.protocol)"
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    assert run_script("", after, env, tmp_path) == "otlp shop grpc"


def test_the_json_encoder_writes_what_the_sdk_encoder_encodes():
    """to_otlp_json against opentelemetry-exporter-otlp's protobuf encoding of
    the same spans: parsed back, the two messages are equal field for field."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from switchtrace.exporters import to_otlp_json

    pipeline = telemetry.pipeline()
    # Earlier tests' requests may still have spans on their way.
    assert pipeline.flush(10)
    pipeline.exporter.clear()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with project("sync-only") as (asgi, wsgi):
        wsgi_request(wsgi, "/async-to-sync/", HTTP_TRACEPARENT=traceparent)
        run_asgi(asgi, "/sync/")
        assert pipeline.flush(10)
    spans = pipeline.exporter.get_finished_spans()
    assert len(spans) == (1 + 3) + (1 + 6)
    ours = json.loads(to_otlp_json(spans))
    for resource in ours["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    parsed = json_format.ParseDict(ours, trace_service_pb2.ExportTraceServiceRequest())
    assert parsed == encode_spans(spans)


def test_a_sampler_variable_is_not_switchtraces_concern_under_an_application_provider(tmp_path):
    """switchtrace.E009 is about the sampler switchtrace's own provider would
    build from OTEL_TRACES_SAMPLER. An application that set its provider
    before Django started (opentelemetry-instrument does) samples
    switchtrace's spans with its own sampler: a value there that the Python
    SDK does not know (another language's, a variable shared by a
    deployment) disabled switchtrace, the headers with it."""
    before = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider, sampling
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider(sampler=sampling.ALWAYS_ON)
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(app_provider)
    """
    after = """
    pipeline.flush(10)
    print(pipeline.provider is app_provider, result.figures(),
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    env = {"OTEL_TRACES_SAMPLER": "parentbased_jaeger_remote"}
    assert run_script(before, after, env, tmp_path) == (
        "True (2, 2, 1, 1) ['GET async/', 'async_to_sync async_view']"
    )


@pytest.mark.parametrize(
    "env",
    [
        # The gRPC exporter takes an endpoint without a scheme.
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
        # FILE_PATH in a directory that does not exist (a read-only working
        # directory in a container, with the default FILE_PATH).
        {"SWITCHTRACE_EXAMPLE_TRACES": "/nonexistent/t.jsonl"},
    ],
    ids=["endpoint", "protocol", "timeout", "file_path"],
)
def test_what_only_switchtraces_own_exporter_reads_is_not_checked_under_an_application_provider(
    env, tmp_path
):
    """switchtrace.E006 and switchtrace.E008 are about the exporter
    switchtrace's own provider would make. Under the application's provider,
    set before Django started, switchtrace makes none: a value only that
    exporter would have refused (the application's own exporters read the
    OTEL_EXPORTER_OTLP_* variables, and take some switchtrace's does not)
    disabled switchtrace, the headers with it."""
    after = """
    pipeline.flush(10)
    print(pipeline.provider is app_provider, result.figures(),
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    assert run_script(GLOBAL_APP_PROVIDER, after, env, tmp_path) == (
        "True (2, 2, 1, 1) ['GET async/', 'async_to_sync async_view']"
    )


APP_PROVIDER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
app_exporter = InMemorySpanExporter()
app_provider = TracerProvider()
app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
"""
#: The same, the application's global provider.
GLOBAL_APP_PROVIDER = APP_PROVIDER + "trace.set_tracer_provider(app_provider)\n"


def test_a_request_the_application_sampler_left_out_gets_no_trace_of_switchtraces(tmp_path):
    """opentelemetry-instrumentation-django's span of a request, which the
    application's sampler (parent-based, as OTEL_TRACES_SAMPLER's
    parentbased_traceidratio) did not sample: switchtrace's spans are made
    under it, and left out too. switchtrace made its own request span, a
    root, sampled again: a trace of a request the application had left out
    (a ratio of 0.5 traced about 75 % of requests). Here the root sampler
    samples only switchtrace's request spans, which a root of theirs would
    be. A sampled incoming traceparent: Django's span is sampled, and
    switchtrace's nest under it."""
    before = f"""
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
    class SwitchtracesOnly(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                          links=None, trace_state=None):
            if "switchtrace.context_switches" in (attributes or {{}}):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return SamplingResult(Decision.DROP)
        def get_description(self):
            return "SwitchtracesOnly"
    app_provider.sampler = ParentBased(SwitchtracesOnly())
    trace.set_tracer_provider(app_provider)
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    DjangoInstrumentor().instrument()
    """
    after = """
    # Beside the request of no traceparent (REQUEST's): a traceparent that
    # cannot be read, one of trace id 0, and a sampled one that the
    # application's propagator does not read (B3 only): under the
    # application's unsampled span all the same.
    from opentelemetry import propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for traceparent in ["garbage", "00-" + "0" * 32 + parent[35:]]:
        wsgi_request(WSGIHandler(), "/async/", HTTP_TRACEPARENT=traceparent)
    w3c = propagate.get_global_textmap()
    propagate.set_global_textmap(W3CBaggagePropagator())
    wsgi_request(WSGIHandler(), "/async/", HTTP_TRACEPARENT=parent)
    pipeline.flush(10)
    propagate.set_global_textmap(w3c)
    left_out = sorted(s.name for s in app_exporter.get_finished_spans())
    wsgi_request(WSGIHandler(), "/async/", HTTP_TRACEPARENT=parent)
    pipeline.flush(10)
    spans = app_exporter.get_finished_spans()
    print(pipeline.own_provider, result.figures(), left_out,
          sorted((s.name, s.kind.name) for s in spans),
          {f"{s.context.trace_id:032x}" for s in spans})
    """
    assert run_script(before, after, {}, tmp_path) == (
        "False (2, 2, 1, 1) [] [('GET async/', 'SERVER'), ('async_to_sync async_view', "
        "'INTERNAL')] {'0af7651916cd43dd8448eb211c80319c'}"
    )


def test_a_span_left_in_the_context_is_taken_only_if_it_has_not_ended(tmp_path):
    """A keep-alive connection's next request under uvicorn runs in a copy of
    the previous request's context (without --reset-contextvars), its span
    in it. One its sampler left out is taken for the request's, whatever
    traceparent came with the request (an instrumentation makes the
    request's span its unsampled child: the application's decision, which
    its sampler is asked again; this one is not parent-based, and samples
    switchtrace's there). One that has ended (sampled, or recorded and not
    sampled) is not taken: switchtrace's request span is a root."""
    before = f"""
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, SamplingResult, Sampler
    class RecordOnlyStale(Sampler):
        def should_sample(self, parent_context, trace_id, name, *args, **kwargs):
            if name == "stale":
                return SamplingResult(Decision.RECORD_ONLY)
            return ALWAYS_ON.should_sample(parent_context, trace_id, name, *args, **kwargs)
        def get_description(self):
            return "RecordOnlyStale"
    app_provider.sampler = RecordOnlyStale()
    trace.set_tracer_provider(app_provider)
    """
    after = """
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    def traced(stale, **environ):
        pipeline.flush(10)
        app_exporter.clear()
        with trace.use_span(stale, end_on_exit=False):
            wsgi_request(WSGIHandler(), "/async/", **environ)
        pipeline.flush(10)
        spans = app_exporter.get_finished_spans()
        ids = {s.context.trace_id for s in spans}
        return len(spans), [f"{i:032x}" for i in ids], [s.name for s in spans if s.parent is None]
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    dropped = NonRecordingSpan(SpanContext(7, 9, is_remote=False, trace_flags=TraceFlags(0)))
    print(traced(dropped, HTTP_TRACEPARENT=parent))
    ended = app_provider.get_tracer("app").start_span("stale")
    ended.end()
    count, ids, roots = traced(ended)
    print(count, ids != [f"{ended.get_span_context().trace_id:032x}"], roots,
          ended.get_span_context().trace_flags.sampled)
    """
    assert run_script(before, after, {}, tmp_path).splitlines() == [
        "(2, ['00000000000000000000000000000007'], [])",
        "2 True ['GET async/'] False",
    ]


@pytest.mark.parametrize("when", ["before startup", "after startup"])
def test_a_sample_rate_the_application_provider_does_not_read_is_logged(tmp_path, when):
    """SAMPLE_RATE is the share of requests switchtrace's own provider
    samples. Under the application's provider (set before Django starts, as
    opentelemetry-instrument does, or after, in gunicorn's post_fork hook)
    its sampler decides: here it records every request, whatever the 0.0
    asked for, and the log says the key is not used, once."""
    before = f"""
    import logging
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
    from django.conf import settings
    settings.SWITCHTRACE["SAMPLE_RATE"] = 0.0
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    if {when == "before startup"!r}:
        trace.set_tracer_provider(app_provider)
    else:
        import django
        django.setup()
        from switchtrace.django_app import telemetry
        assert telemetry.pipeline().own_provider
        trace.set_tracer_provider(app_provider)
    """
    after = """
    pipeline.flush(10)
    print(pipeline.own_provider, sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    assert run_script(before, after, {}, tmp_path).splitlines() == [
        "WARNING switchtrace: SWITCHTRACE['SAMPLE_RATE'] (0.0) is not used: the application's "
        "TracerProvider makes switchtrace's spans and its sampler decides which requests are "
        "recorded (set the sampler there, or OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG "
        "for opentelemetry-instrument)",
        "False ['GET async/', 'async_to_sync async_view']",
    ]


@pytest.mark.parametrize(
    ("exception", "shown"),
    [
        ("KeyError", "KeyError: 'async_to_sync async_view'"),
        # Not an Exception: it ended switchtrace's span thread, silently, and
        # no later request had spans.
        ("SystemExit", "SystemExit: async_to_sync async_view"),
    ],
)
def test_an_application_span_processor_raising_is_its_error_not_switchtraces(
    exception, shown, tmp_path
):
    """Under the application's provider, switchtrace's spans go through its
    span processors. One that raised was logged as a switchtrace internal
    error (and failed a test suite that watches for those). It is logged
    once as the application's, naming where it raised; the requests' spans
    are counted as dropped, and every span started was ended (its other
    processors exported them)."""
    before = f"""
    import logging
    class Lines(logging.Handler):
        def emit(self, record):
            print(record.levelname, record.getMessage())
    logging.getLogger().addHandler(Lines())  # the project configures "switchtrace"'s
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    from opentelemetry.sdk.trace import SpanProcessor
    class Refusing(SpanProcessor):
        def on_end(self, span):
            if span.name.startswith("async_to_sync"):
                raise {exception}(span.name)
    app_provider.add_span_processor(Refusing())
    trace.set_tracer_provider(app_provider)
    """
    after = """
    result = wsgi_request(WSGIHandler(), "/async/")
    pipeline.flush(10)
    print(pipeline.own_provider, pipeline.records, pipeline.dropped,
          sorted(s.name for s in app_exporter.get_finished_spans()))
    """
    lines = run_script(before, after, {}, tmp_path).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        "WARNING switchtrace: the application's OpenTelemetry code raised while switchtrace "
        "made a request's spans, in __main__.Refusing.on_end (<string>, line "
    )
    assert lines[0].endswith(
        f"): {shown}; that request's spans are dropped (logged once for each place and "
        "exception type)"
    )
    assert lines[1] == (
        "False 0 2 ['GET async/', 'GET async/', 'async_to_sync async_view', "
        "'async_to_sync async_view']"
    )
    # The second request's, which its warning (once for each place) did not
    # tell, is told as the process ends.
    assert lines[2] == (
        "WARNING switchtrace: shut down with the spans of 2 requests dropped in all (the spans "
        "of 1 request dropped since the last warning)"
    )


def test_a_request_whose_spans_the_application_refused_is_let_go(tmp_path):
    """The traceback of what the application's span processor raised stayed
    with switchtrace's export thread until the next such error, and with it
    the frames that made the request's spans: its record, and everything
    its crossings hold (a view's objects, the request, the response)."""
    before = f"""
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    from opentelemetry.sdk.trace import SpanProcessor
    class Refusing(SpanProcessor):
        def on_end(self, span):
            if span.name.startswith("async_to_sync"):
                raise RuntimeError(span.name)
    app_provider.add_span_processor(Refusing())
    trace.set_tracer_provider(app_provider)
    import weakref
    from switchtrace import tracer
    refs = []
    tracer.add_listener(lambda record: refs.append(weakref.ref(record)))
    """
    after = """
    assert pipeline.flush(10)
    import gc
    gc.collect()
    print(pipeline.dropped, [ref() is None for ref in refs])
    """
    assert run_script(before, after, {}, tmp_path) == "1 [True]"


#: The log's records printed, one a line (the project configures the
#: "switchtrace" logger's own handler).
LOG_LINES = """import logging
    class Lines(logging.Handler):
        def emit(self, record):
            print(record.levelname, record.getMessage())
    logging.getLogger().addHandler(Lines())"""


def test_an_application_span_processor_raising_is_named_at_the_line_that_raised(tmp_path):
    """The warning named the line its function's frame had last run, which
    is not the one that raised when the exception went through a ``finally``
    (or a ``with``'s cleanup) there: here the ``finally``'s last line."""
    (tmp_path / "app_otel.py").write_text(
        textwrap.dedent(
            """\
            import threading
            from opentelemetry.sdk.trace import SpanProcessor
            class Indexing(SpanProcessor):
                def __init__(self):
                    self.lock = threading.Lock()
                    self.seen = {}
                def on_end(self, span):
                    self.lock.acquire()
                    try:
                        self.seen[span.name] += 1
                    finally:
                        self.lock.release()
            """
        )
    )
    before = f"""
    {LOG_LINES}
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    sys.path.insert(0, {str(tmp_path)!r})
    from app_otel import Indexing
    app_provider.add_span_processor(Indexing())
    trace.set_tracer_provider(app_provider)
    """
    after = """
    pipeline.flush(10)
    print(pipeline.records, pipeline.dropped)
    """
    assert run_script(before, after, {}, tmp_path).splitlines() == [
        "WARNING switchtrace: the application's OpenTelemetry code raised while switchtrace "
        "made a request's spans, in app_otel.Indexing.on_end "
        f"({tmp_path / 'app_otel.py'}, line 10): KeyError: 'async_to_sync async_view'; "
        "that request's spans are dropped (logged once for each place and exception type)",
        "0 1",
    ]


def _register_sampler(tmp_path, entry_point: str) -> None:
    """An installed package's sampler for OTEL_TRACES_SAMPLER, as the SDK's
    configuration finds it (``tmp_path`` on ``sys.path``)."""
    info = tmp_path / "app_sampler-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: app-sampler\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[opentelemetry_traces_sampler]\n{entry_point}\n")


@pytest.mark.parametrize(
    ("decision", "exported"), [("DROP", False), ("RECORD_ONLY", False), ("RECORD_AND_SAMPLE", True)]
)
def test_an_application_samplers_decision_is_followed(tmp_path, decision, exported):
    """A package's sampler deciding RECORD_ONLY: the SDK's provider records
    such a span for its processors but exports none (not sampled); no span
    of switchtrace's is exported either, as for DROP."""
    (tmp_path / "app_sampler.py").write_text(
        textwrap.dedent(
            """\
            from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
            class Deciding(Sampler):
                def __init__(self, decision):
                    self.decision = decision
                def get_description(self):
                    return f"Deciding {self.decision.name}"
                def should_sample(self, parent_context, trace_id, name, *args, **kwargs):
                    return SamplingResult(self.decision)
            def deciding(argument):
                return Deciding(Decision[argument])
            """
        )
    )
    _register_sampler(tmp_path, "app_deciding = app_sampler:deciding")
    before = f"""
    sys.path.insert(0, {str(tmp_path)!r})
    """
    after = """
    pipeline.flush(10)
    import pathlib
    path = pathlib.Path(os.environ["SWITCHTRACE_EXAMPLE_TRACES"])
    print(pipeline.provider.sampler.get_description(), path.exists() and path.read_text() != "")
    """
    env = {"OTEL_TRACES_SAMPLER": "app_deciding", "OTEL_TRACES_SAMPLER_ARG": decision}
    assert run_script(before, after, env, tmp_path) == f"Deciding {decision} {exported}"


def test_an_application_sampler_raising_is_named_as_the_applications(tmp_path):
    """switchtrace's own provider samples with the sampler a package
    registers for OTEL_TRACES_SAMPLER, and calls its ``should_sample``
    itself: one that raises is the application's error, logged once naming
    where it raised, and the request's spans are counted as dropped."""
    (tmp_path / "app_sampler.py").write_text(
        textwrap.dedent(
            """\
            from opentelemetry.sdk.trace.sampling import Sampler
            class Refusing(Sampler):
                def get_description(self):
                    return "Refusing"
                def should_sample(self, parent_context, trace_id, name, *args, **kwargs):
                    raise KeyError(name)
            def refusing(argument):
                return Refusing()
            """
        )
    )
    _register_sampler(tmp_path, "app_refusing = app_sampler:refusing")
    before = f"""
    {LOG_LINES}
    sys.path.insert(0, {str(tmp_path)!r})
    """
    after = """
    pipeline.flush(10)
    print(pipeline.own_provider, pipeline.provider.sampler.get_description(),
          pipeline.records, pipeline.dropped)
    """
    assert run_script(
        before, after, {"OTEL_TRACES_SAMPLER": "app_refusing"}, tmp_path
    ).splitlines() == [
        "WARNING switchtrace: the application's OpenTelemetry code raised while switchtrace "
        "made a request's spans, in app_sampler.Refusing.should_sample "
        f"({tmp_path / 'app_sampler.py'}, line 6): KeyError: 'GET async/'; "
        "that request's spans are dropped (logged once for each place and exception type)",
        "True Refusing 0 1",
    ]


APP_PROCESSORS = """\
from opentelemetry.sdk.trace import SpanProcessor
class Base(SpanProcessor):
    def on_end(self, span):
        raise KeyError(span.name)
class Inheriting(Base):
    pass
class Overriding(Base):
    def on_end(self, span):
        super().on_end(span)
class WithClassmethod(SpanProcessor):
    @classmethod
    def check(cls, span):
        raise KeyError(span.name)
    def on_end(self, span):
        self.check(span)
def check(span):
    raise KeyError(span.name)
class WithFunction(SpanProcessor):
    def on_end(self, span):
        check(span)
"""


@pytest.mark.parametrize(
    ("processor", "where"),
    [
        ("Inheriting", "Base.on_end (line 4)"),
        ("Overriding", "Base.on_end (line 4)"),
        ("WithClassmethod", "WithClassmethod.check (line 13)"),
        ("WithFunction", "check (line 17)"),
    ],
)
def test_an_application_span_processor_raising_is_named_by_its_qualified_name(
    processor, where, tmp_path
):
    """The function that raised, named as Python 3.11 on names it
    (``co_qualname``), on Python 3.10 too: its class found from its first
    argument, the one of the instance's classes whose function runs that
    code (a base class's, a classmethod's), else its name alone."""
    (tmp_path / "app_otel.py").write_text(APP_PROCESSORS)
    before = f"""
    {LOG_LINES}
    {textwrap.indent(APP_PROVIDER, "    ").strip()}
    sys.path.insert(0, {str(tmp_path)!r})
    from app_otel import {processor}
    app_provider.add_span_processor({processor}())
    trace.set_tracer_provider(app_provider)
    """
    after = """
    pipeline.flush(10)
    print(pipeline.records, pipeline.dropped)
    """
    name, line = where.split(" (")
    assert run_script(before, after, {}, tmp_path).splitlines() == [
        "WARNING switchtrace: the application's OpenTelemetry code raised while switchtrace "
        f"made a request's spans, in app_otel.{name} ({tmp_path / 'app_otel.py'}, {line}: "
        "KeyError: 'async_to_sync async_view'; that request's spans are dropped (logged once "
        "for each place and exception type)",
        "0 1",
    ]
