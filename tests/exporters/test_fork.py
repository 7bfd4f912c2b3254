"""A forked child (a pre-forking server's worker) gets a span thread for each
pipeline in use, and for no other: not for one shut down, and the at-fork
hook keeps no pipeline alive. os.fork runs in a subprocess of its own."""

from __future__ import annotations

import json
import textwrap

import pytest

from ..support import run_script

SCRIPT = textwrap.dedent(
    """
    import gc, json, os, sys, threading, weakref
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
    from switchtrace.exporters.spans import KIND_SERVER, PlannedSpan, PlannedSpans

    options = ExportOptions(exporter="file", file_path=sys.argv[1])
    gone = SpanPipeline(options)
    gone.shutdown()
    gone_ref = weakref.ref(gone)
    del gone
    kept = SpanPipeline(options)  # shut down, still referenced
    kept.shutdown()
    kept_thread = kept._worker
    live = SpanPipeline(options)
    gc.collect()

    def threads():
        return sorted(t.name for t in threading.enumerate())

    parent = {{"collected": gone_ref() is None, "threads": threads()}}
    pid = os.fork()
    if pid == 0:
        # The child's own spans, through the live pipeline's new thread.
        planned = PlannedSpans(
            1, "", None, [PlannedSpan(2, None, False, "child", KIND_SERVER, 1, 2, (), (), None, ())]
        )
        live._emit = lambda record: live.writer.spans(planned)
        class Record:
            extra = {{}}
        live(Record())
        child = {{
            "threads": threads(),
            "flushed": live.flush(10),
            "kept": kept._worker.is_alive(),
            "kept_thread_started": kept._worker is not kept_thread,
        }}
        print(json.dumps(child), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{**parent, "status": status}}), flush=True)
    """
)


def test_a_forked_child_gets_a_thread_for_each_live_pipeline_only(tmp_path):
    path = tmp_path / "traces.jsonl"
    stdout = run_script(SCRIPT, path)
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert parent == {
        "collected": True,
        "threads": ["MainThread", "switchtrace-spans"],
        "status": 0,
    }
    assert child == {
        "threads": ["MainThread", "switchtrace-spans"],
        "flushed": True,
        "kept": False,
        "kept_thread_started": False,
    }
    [line] = path.read_text().splitlines()
    [span] = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["name"] == "child"


CONSOLE_SCRIPT = textwrap.dedent(
    """
    import io, json, os, sys, threading
    sys.path[:0] = [{src!r}]
    from switchtrace import tracer
    from switchtrace.exporters.console import ConsoleReporter

    shut = ConsoleReporter(stream=io.StringIO())
    shut.shutdown()
    stream = io.StringIO()
    live = ConsoleReporter(stream=stream)
    with tracer.recording() as record:
        pass

    def threads():
        return sorted(t.name for t in threading.enumerate())

    parent = threads()
    pid = os.fork()
    if pid == 0:
        live(record)
        print(json.dumps({{"threads": threads(), "flushed": live.flush(10),
                          "written": stream.getvalue()}}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"threads": parent, "status": status}}), flush=True)
    """
)


def test_a_forked_child_gets_a_console_thread_for_each_live_console_exporter():
    """The console exporter writes from its own thread: a pre-forking
    server's worker (gunicorn --preload) gets one, or its lines would queue
    up unwritten."""
    stdout = run_script(CONSOLE_SCRIPT)
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert parent == {"threads": ["MainThread", "switchtrace-console"], "status": 0}
    assert child == {
        "threads": ["MainThread", "switchtrace-console"],
        "flushed": True,
        "written": "BLOCK : 0 switches, 0 hops, 0 loops, 0 threads\n",
    }


CONSOLE_LOSSES_SCRIPT = textwrap.dedent(
    """
    import io, logging, os, sys
    sys.path[:0] = [{src!r}]
    logging.basicConfig(level=logging.WARNING, format="%(process)d %(message)s", stream=sys.stdout)
    from switchtrace import tracer
    from switchtrace.exporters.console import ConsoleReporter

    stream = io.StringIO()
    stream.close()  # every line refused
    console = ConsoleReporter(stream=stream)
    with tracer.recording() as record:
        pass
    console(record)
    console.flush(10)  # told: the first warning
    console(record)
    console.flush(10)  # untold, within the minute
    pid = os.fork()
    if pid == 0:
        print("child", os.getpid(), console.written, console.dropped, console.failed, flush=True)
        console(record)
        console.flush(10)  # the child's own, within the minute of the parent's warning
        console.shutdown()
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    console.shutdown()
    print("parent", os.getpid(), status, flush=True)
    """
)


def test_a_forked_child_tells_its_own_console_losses_not_its_parents():
    """A pre-forking server's worker forked from a process whose console had
    lost lines: the child's counts start at nothing, and each process tells
    its own losses at its shutdown."""
    stdout = run_script(CONSOLE_LOSSES_SCRIPT)
    refused, child, child_told, parent_told, parent = stdout.splitlines()
    parent_pid, child_pid = parent.split()[1], child.split()[1]
    assert parent == f"parent {parent_pid} 0"
    assert refused.startswith(f"{parent_pid} switchtrace: a console line could not be written")
    assert refused.endswith("; 1 line lost so far")
    assert child == f"child {child_pid} 0 0 0"
    assert child_told == f"{child_pid} switchtrace: console shut down with 1 line lost in all"
    assert parent_told == (
        f"{parent_pid} switchtrace: console shut down with 2 lines lost in all "
        "(1 line lost since the last warning)"
    )


LOCKED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline

    pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=sys.argv[1]))
    exporter = pipeline.exporter
    # The parent's span thread is in an export as the process forks: the
    # exporter's lock is held (here by the main thread, which forks).
    exporter._lock.acquire()
    pid = os.fork()
    if pid == 0:
        locked = exporter._lock.locked()
        result = None if locked else exporter.export(EncodedSpans('{{"child":1}}', 1)).name
        print(json.dumps({{"locked": locked, "result": result}}), flush=True)
        os._exit(0)
    exporter._lock.release()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"status": status}}), flush=True)
    """
)


def test_a_forked_child_can_append_while_the_parent_was_appending(tmp_path):
    """A worker forked while the parent's span thread held the file
    exporter's lock (in an export) has the lock as it was at the fork, and
    no thread to release it: without a new lock (_at_fork_reinit) the
    child's first export waited for ever, and its span thread with it."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(LOCKED_SCRIPT, path)
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert child == {"locked": False, "result": "SUCCESS"}
    assert parent == {"status": 0}
    assert path.read_text() == '{"child":1}\n'


FILE_LOCKED_SCRIPT = textwrap.dedent(
    """
    import fcntl, json, os, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline

    path, case = sys.argv[1:]
    what, then = case.split("-")
    write, replace = os.write, os.replace
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()

    def forking(*args):
        # The process forks while its span thread appends or renames the
        # full file, holding the file's lock (here the main thread exports),
        # on a descriptor the child gets a copy of.
        if os.fork() == 0:
            write(ready_w, b"x")
            os.read(done_r, 1)  # a worker that lives on
            os._exit(0)
        os.read(ready_r, 1)
        if then == "ends":
            os._exit(0)  # ended before its append or rotation did (killed, say)
        os.write, os.replace = write, replace
        return (write if what == "append" else replace)(*args)

    appender = os.fork()
    if appender == 0:
        if then == "ends":
            # The pipeline's at-fork hook has the child close its copy.
            options = ExportOptions(exporter="file", file_path=path, file_max_bytes=20)
            exporter = SpanPipeline(options).exporter
        else:
            # No pipeline, no hook: the parent's unlock frees it.
            exporter = FileSpanExporter(path, 20)
        exporter.export(EncodedSpans('{{"parent":1}}', 1))
        if what == "append":
            os.write = forking
        else:
            os.replace = forking
        exporter.export(EncodedSpans('{{"parent":2}}', 1))  # rotates, then appends
        os._exit(0)
    os.waitpid(appender, 0)
    # Another worker's append: the file's lock is free, or it would wait
    # (the one that was locked, renamed by the rotation that went on).
    other = os.open(path + (".1" if case == "rotation-lives" else ""), os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        free = True
    except BlockingIOError:
        free = False
    os.close(other)
    os.write(done_w, b"x")
    print(json.dumps({{"free": free}}), flush=True)
    """
)


@pytest.mark.parametrize(
    ("case", "left"),
    [
        ("append-ends", ""),
        ("rotation-ends", '{"parent":1}\n'),
        ("append-lives", '{"parent":2}\n'),
        ("rotation-lives", '{"parent":2}\n'),
    ],
)
def test_a_forked_child_does_not_keep_the_file_lock_the_parent_held(tmp_path, case, left):
    """Appenders to one file take turns with its lock (flock), which belongs
    to the open file, and a forked child has a descriptor of the parent's:
    forked while the parent's span thread appended, and the parent ended
    before the append did, the child would hold the lock as long as it
    lived (no thread of its own closes that descriptor), and every other
    appender would wait for it. So for a rotation, which takes the full
    file's lock too, between its look at the path and its rename (before
    review22: lock not free). A parent that lives on unlocks the file for
    every copy of its descriptor, also where no at-fork hook closes the
    child's (an exporter outside the span pipeline)."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(FILE_LOCKED_SCRIPT, path, case)
    assert json.loads(stdout) == {"free": True}
    assert path.read_text() == left


APP_PROVIDER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    sys.path[:0] = [{src!r}]
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from switchtrace import tracer
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline

    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(app_provider)
    pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=sys.argv[1]))
    pid = os.fork()
    if pid == 0:
        with tracer.recording() as record:
            pass
        pipeline(record)
        print(json.dumps({{
            "own_provider": pipeline.own_provider,
            "threads": sorted(t.name for t in threading.enumerate()),
            "flushed": pipeline.flush(10),
            "spans": len(app_exporter.get_finished_spans()),
        }}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"status": status}}), flush=True)
    """
)


def test_a_forked_child_gets_a_thread_for_a_pipeline_of_the_applications_provider(tmp_path):
    """A pipeline whose spans the application's provider makes (set before
    the pipeline was) has no exporter of switchtrace's: a forked child gets
    its thread all the same, and the child's spans are made."""
    stdout = run_script(APP_PROVIDER_SCRIPT, tmp_path / "unused.jsonl")
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert child == {
        "own_provider": False,
        "threads": ["MainThread", "switchtrace-spans"],
        "flushed": True,
        "spans": 1,
    }
    assert parent == {"status": 0}
    assert not (tmp_path / "unused.jsonl").exists()


FAILING_HOOK_SCRIPT = textwrap.dedent(
    """
    import io, json, os, sys, threading
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters.console import ConsoleReporter
    from switchtrace.tracer import guard

    swallowed = []
    guard.set_error_hook(lambda exc, where: swallowed.append((where, repr(exc))))
    broken = ConsoleReporter(stream=io.StringIO())

    def fails():
        raise RuntimeError("no thread")

    broken._after_fork_in_child = fails
    live = ConsoleReporter(stream=io.StringIO())
    pid = os.fork()
    if pid == 0:
        threads = sorted(t.name for t in threading.enumerate())
        print(json.dumps({{"threads": threads, "swallowed": swallowed}}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"status": status}}), flush=True)
    """
)


def test_a_worker_whose_thread_cannot_be_started_after_fork_is_told_and_the_others_are_not():
    """The at-fork hook starting one exporter's thread raises: it is logged
    as switchtrace's internal error, and the other exporters get their
    threads all the same."""
    stdout = run_script(FAILING_HOOK_SCRIPT)
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert child == {
        "threads": ["MainThread", "switchtrace-console"],
        "swallowed": [["switchtrace-console thread after fork", "RuntimeError('no thread')"]],
    }
    assert parent == {"status": 0}


HOOKLESS_SCRIPT = textwrap.dedent(
    """
    import ctypes, io, json, os, sys, threading
    sys.path[:0] = [{src!r}]
    from switchtrace import tracer
    from switchtrace.exporters.console import ConsoleReporter
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
    from switchtrace.exporters.spans import KIND_SERVER, PlannedSpan, PlannedSpans
    from switchtrace.tracer import guard

    swallowed = []
    guard.set_error_hook(lambda exc, where: swallowed.append((where, repr(exc))))
    path, case = sys.argv[1:]
    pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=path))
    stream = io.StringIO()
    console = ConsoleReporter(stream=stream)
    # fork() from C, as uWSGI's master forks its workers: no at-fork hook of
    # Python's runs in the child (PyDLL: the GIL stays held across the call).
    fork = ctypes.PyDLL(None).fork
    parents = (pipeline._worker, console._worker)
    starts = []
    start = threading.Thread.start

    before_start = []

    def counted(thread):
        starts.append(thread.name)
        for hook in before_start:
            hook(thread)
        start(thread)

    threading.Thread.start = counted

    def planned(record):
        # One span, named after the record's kind.
        span = PlannedSpan(2, None, False, record.kind, KIND_SERVER, 1, 2, (), (), None, ())
        return PlannedSpans(1, "", None, [span])

    pipeline._emit = lambda record: pipeline.writer.spans(planned(record))

    def send(name):
        with tracer.recording(name) as record:
            pass
        pipeline(record)
        console(record)

    pid = fork()
    if pid == 0:
        out = {{"hooked": pipeline._worker is not parents[0] or console._worker is not parents[1]}}
        if case == "records":
            send("child")
            out["flushed"] = [pipeline.flush(10), console.flush(10)]
            out["written"] = stream.getvalue()
        elif case == "at-once":
            # The child's first two requests, on two of its threads: one
            # thread for each exporter all the same.
            inside, second = threading.Event(), threading.Event()
            adopt = pipeline._after_fork_in_child

            def slow_adopt():
                inside.set()
                second.wait(5)
                threading.Event().wait(0.2)  # the second is at the door
                adopt()

            pipeline._after_fork_in_child = slow_adopt

            def first():
                send("first")

            def other():
                inside.wait(5)
                second.set()
                send("second")

            threads = [threading.Thread(target=first), threading.Thread(target=other)]
            for thread in threads:
                start(thread)
            for thread in threads:
                thread.join()
            out["flushed"] = [pipeline.flush(10), console.flush(10)]
        elif case == "flush-while-starting":
            # Another thread's record, then its flush, while the first record
            # starts the span thread: the flush waits for that thread, whose
            # start was not yet done (before, it answered at once, False).
            starting = threading.Event()

            def slow_start(thread):
                if thread.name == "switchtrace-spans":
                    starting.set()
                    threading.Event().wait(0.2)  # the other is at the door

            before_start.append(slow_start)
            flushed = []

            def other():
                starting.wait(5)
                with tracer.recording("second") as record:
                    pass
                pipeline(record)
                flushed.append(pipeline.flush(10))

            thread = threading.Thread(target=other)
            start(thread)
            send("first")
            thread.join()
            out["flushed"] = [*flushed, console.flush(10)]
        else:
            # Shut down with no record of its own: it does not wait for the
            # parent's thread, which is not in this process.
            joined = []
            for parent in parents:
                parent.join = lambda timeout=None, name=parent.name: joined.append(name)
            pipeline.shutdown()
            console.shutdown()
            out["joined"] = joined
            out["flushed"] = [pipeline.flush(10), console.flush(10)]
        out["starts"] = starts
        out["dropped"] = [pipeline.dropped, console.dropped]
        out["swallowed"] = swallowed
        print(json.dumps(out), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"status": status, "starts": starts}}), flush=True)
    """
)


@pytest.mark.parametrize(
    ("case", "child", "lines"),
    [
        (
            "records",
            {
                "flushed": [True, True],
                "written": "CHILD : 0 switches, 0 hops, 0 loops, 0 threads\n",
                "starts": ["switchtrace-spans", "switchtrace-console"],
            },
            ["child"],
        ),
        (
            "at-once",
            {"flushed": [True, True], "starts": ["switchtrace-spans", "switchtrace-console"]},
            ["first", "second"],
        ),
        (
            "flush-while-starting",
            {"flushed": [True, True], "starts": ["switchtrace-spans", "switchtrace-console"]},
            ["first", "second"],
        ),
        ("shut-down", {"joined": [], "flushed": [True, True], "starts": []}, []),
    ],
)
def test_a_child_forked_past_the_at_fork_hooks_gets_its_threads_on_its_first_record(
    tmp_path, case, child, lines
):
    """uWSGI forks its workers from C, from the master that loaded the
    application (unless py-call-osafterfork or py-call-uwsgi-fork-hooks):
    no at-fork hook runs there, and the threads of the span pipeline and
    the console exporter are the master's, not in the worker. Before, the
    worker's records waited in the queue, never exported, until shutdown's
    time ran out (5 s spent joining a thread that is not there, then
    counted as dropped). Now the child's first record (or flush) starts
    them, once however many of its threads come at once, and a shutdown
    with no record of its own waits for nothing."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(HOOKLESS_SCRIPT, path, case)
    got, parent = (json.loads(line) for line in stdout.splitlines())
    assert got == {"hooked": False, **child, "dropped": [0, 0], "swallowed": []}
    assert parent == {"status": 0, "starts": []}
    names = sorted(
        span["name"]
        for line in (path.read_text().splitlines() if path.exists() else [])
        for span in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    )
    assert names == lines


EXPORTING_SCRIPT = textwrap.dedent(
    """
    import ctypes, json, logging, os, sys, threading
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
    from switchtrace.exporters.spans import KIND_SERVER, PlannedSpan, PlannedSpans

    pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=sys.argv[1]))
    span = PlannedSpan(2, None, False, "parent", KIND_SERVER, 1, 2, (), (), None, ())
    pipeline._emit = lambda record: pipeline.writer.spans(PlannedSpans(1, "", None, [span]))
    exporting, go_on = threading.Event(), threading.Event()
    export = pipeline.exporter.export

    def held(batch):
        exporting.set()
        go_on.wait(10)
        return export(batch)

    pipeline.exporter.export = held

    class Record:
        extra = {{}}

    pipeline(Record())
    flushing = threading.Thread(target=pipeline.flush, args=(10,))
    flushing.start()
    exporting.wait(10)
    # The parent's span thread is in an export as uWSGI's master forks.
    pid = ctypes.PyDLL(None).fork()
    if pid == 0:
        warnings = []

        class Handler(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())

        logging.getLogger("switchtrace").addHandler(Handler())
        pipeline.shutdown()
        print(json.dumps({{"warnings": warnings, "failed": pipeline.failed}}), flush=True)
        os._exit(0)
    go_on.set()
    flushing.join()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"status": status, "exported": pipeline.exported}}), flush=True)
    """
)


def test_a_child_forked_past_the_at_fork_hooks_during_an_export_tells_of_no_export_of_its_own(
    tmp_path,
):
    """Forked from C while the parent's span thread was in an export: the
    child's copy of the pipeline says an export is in progress, in a thread
    the child does not have (which still looks alive there, no hook having
    told threading of the fork). Shut down with no record of its own, it
    warns of no spans not exported: they are the parent's, which exports
    them."""
    path = tmp_path / "traces.jsonl"
    stdout = run_script(EXPORTING_SCRIPT, path)
    child, parent = (json.loads(line) for line in stdout.splitlines())
    assert child == {"warnings": [], "failed": 0}
    assert parent == {"status": 0, "exported": 1}
    [line] = path.read_text().splitlines()
    [span] = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["name"] == "parent"
