"""A process that multiprocessing starts (granian's workers, uvicorn's and
hypercorn's --workers, Django's parallel test runner) writes the spans still
waiting for their batch when its target returns. One that multiprocessing
forks leaves by os._exit, past atexit's hooks (before Python 3.13; on 3.13
past those of its parent, which it clears): multiprocessing's own finalizers
run there. The script runs in a process of its own; its children wait 60 s
for a batch (OTEL_BSP_SCHEDULE_DELAY), so nothing they queue is written but
by the shutdown at their exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, sys
    sys.path[:0] = [{src!r}]
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline
    from switchtrace.exporters.spans import KIND_SERVER, PlannedSpan, PlannedSpans

    class Record:
        extra = {{}}

    def send(pipeline, name):
        # One span, queued: the pipeline's thread writes it with its batch.
        planned = PlannedSpans(
            1, "", None, [PlannedSpan(2, None, False, name, KIND_SERVER, 1, 2, (), (), None, ())]
        )
        pipeline._emit = lambda record: pipeline.writer.spans(planned)
        pipeline(Record())

    def pipeline_of_its_own(path, name):
        send(SpanPipeline(ExportOptions(exporter="file", file_path=path)), name)

    def shut_down_before(path, name):
        pipeline = SpanPipeline(ExportOptions(exporter="file", file_path=path))
        pipeline.shutdown()
        send(pipeline, name)  # after its shutdown: not taken
        from multiprocessing import util
        print(json.dumps({{"finalizers": len(util._finalizer_registry)}}), flush=True)

    def parents_pipeline(name):
        send(PARENT, name)

    def parents_shut_down(path, name):
        PARENT.shutdown()
        send(PARENT, name)  # after its shutdown: not taken
        from multiprocessing import util
        print(json.dumps({{"finalizers": len(util._finalizer_registry)}}), flush=True)

    def grandchild(context, path, name):
        process = multiprocessing.get_context(context).Process(
            target=parents_pipeline, args=(name + "'s child",)
        )
        process.start()
        process.join()
        send(PARENT, name)

    if __name__ == "__main__":
        case, context, path = sys.argv[1:]
        if case == "parents-shut":
            # Imported before the pipeline is made (only by Process.start
            # otherwise): the after-fork call is registered in the parent.
            import multiprocessing.util
        if case in ("parents", "parents-shut", "grandchild"):
            PARENT = SpanPipeline(ExportOptions(exporter="file", file_path=path))
        target, args = {{
            "own": (pipeline_of_its_own, (path, "child")),
            "shut": (shut_down_before, (path, "child")),
            "parents": (parents_pipeline, ("child",)),
            "parents-shut": (parents_shut_down, (path, "child")),
            "grandchild": (grandchild, (context, path, "child")),
        }}[case]
        process = multiprocessing.get_context(context).Process(target=target, args=args)
        process.start()
        process.join(30)
        print(json.dumps({{"exitcode": process.exitcode}}), flush=True)
    """
)


def run(tmp_path: Path, case: str, context: str) -> tuple[list[dict], list[str]]:
    """What the script printed, and the names of the spans in the file."""
    script = tmp_path / "script.py"  # a file: spawn imports the parent's __main__
    script.write_text(SCRIPT.format(src=str(SRC)))
    traces = tmp_path / "traces.jsonl"
    out = subprocess.run(
        [sys.executable, str(script), case, context, str(traces)],
        env={"PATH": "/usr/bin:/bin", "OTEL_BSP_SCHEDULE_DELAY": "60000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "switchtrace" not in out.stderr
    names = [
        span["name"]
        for line in (traces.read_text().splitlines() if traces.exists() else ())
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    return [json.loads(line) for line in out.stdout.splitlines()], names


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_a_child_writes_the_spans_of_its_own_pipeline_when_its_target_returns(tmp_path, context):
    """granian's workers (forked on Python 3.13 and before, spawned on 3.14)
    load the application, and so make the pipeline, in the child."""
    printed, names = run(tmp_path, "own", context)
    assert printed == [{"exitcode": 0}]
    assert names == ["child"]


def test_a_forked_child_writes_the_spans_of_the_parents_pipeline_when_its_target_returns(
    tmp_path,
):
    """A pipeline made before multiprocessing forks (Django's test runner
    with --parallel, forking after setup): the child's thread is its own
    (the at-fork hook), and so are the spans queued there; the parent's
    pipeline has none, and writes none at its exit."""
    printed, names = run(tmp_path, "parents", "fork")
    assert printed == [{"exitcode": 0}]
    assert names == ["child"]


def test_a_child_forked_by_a_forked_child_writes_its_spans_and_so_does_its_parent(tmp_path):
    printed, names = run(tmp_path, "grandchild", "fork")
    assert printed == [{"exitcode": 0}]
    assert sorted(names) == ["child", "child's child"]


@pytest.mark.parametrize("case", ["shut", "parents-shut"])
def test_a_pipeline_shut_down_in_the_child_leaves_no_finalizer_behind(tmp_path, case):
    """Shut down before the child's end (settings reloaded, tests): nothing
    of switchtrace's is left for multiprocessing to run, or to hold; also of
    a pipeline made in the parent once multiprocessing.util was imported,
    whose finalizer the child registers once (the at-fork hook and
    multiprocessing's after-fork call both run there)."""
    printed, names = run(tmp_path, case, "fork")
    assert printed == [{"finalizers": 0}, {"exitcode": 0}]
    assert names == []
