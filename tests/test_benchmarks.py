"""The benchmark scripts of benchmarks/: what they compute from their samples,
and that they run as the README's commands run them (tiny parameters; no
figure is asserted, and valgrind is never started)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from benchmarks import compiled_floor, switch_cost
from switchtrace import tracer
from switchtrace.tracer import patches

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def script(name: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    # The scripts serve the example project: the test settings' module, set in
    # this process's environment by the test run, must not be inherited (a
    # DJANGO_SETTINGS_MODULE of the environment wins over the example's).
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_ratio_is_the_median_of_the_rounds_ratios():
    # Per round: recording 5/1, 3/4 and 11/10. The median of the medians'
    # ratio (5/4) would pair the first round's recording with the second's
    # uninstalled call.
    samples = {v: [1.0, 4.0, 10.0] for v in switch_cost.VARIANTS}
    samples["recording"] = [5.0, 3.0, 11.0]
    summary = switch_cost._summary(samples)
    assert summary["ratio_recording_to_uninstalled"] == pytest.approx(1.1)
    # What a call is added, halved: a call is two switches.
    assert summary["added_per_switch_ns"] == {"median": 0.5, "min": -0.5, "max": 2.0}


def test_the_bookkeeping_turns_its_order_every_round():
    runs = []

    def measure(calls, traced):
        runs.append(traced)
        return 30.0 if traced else 10.0

    results = switch_cost.run_bookkeeping(4, 7, {"stand-in": measure})
    # The warm-up (traced, plain), then plain first and traced first in turn.
    assert runs == [True, False] + [False, True, True, False] * 2
    assert results["stand-in"] == {
        "plain_per_call_ns": 10.0,
        "traced_per_call_ns": 30.0,
        "added_per_switch_ns": {"median": 10.0, "min": 10.0, "max": 10.0},
    }


def test_switch_cost_prints_what_the_readme_shows():
    out = script("switch_cost.py", "--rounds", "2", "--calls", "20", "--end-to-end-calls", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Bookkeeping: 2 interleaved rounds of 20 calls"
    assert [line.split()[:4] for line in lines[1:3]] == [
        ["sync_to_async", "added", "per", "switch:"],
        ["async_to_sync", "added", "per", "switch:"],
    ]
    assert "End to end: 2 interleaved rounds of 2 calls, µs" in lines
    for label in ("sync_to_async", "async_to_sync (outer loop)", "CPU time, all threads"):
        assert f"  {label}" in out.stdout
    for floor in switch_cost.FLOORS:
        assert out.stdout.count(f"      {floor} alone, per switch ") == 4


def test_switch_cost_json():
    out = script("switch_cost.py", "--rounds", "1", "--calls", "5", "--json")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert list(results) == ["bookkeeping"]
    assert list(results["bookkeeping"]) == ["sync_to_async", "async_to_sync"]


def test_wrapt_dispatch_prints_what_the_readme_shows():
    out = script("wrapt_dispatch.py", "--rounds", "3", "--calls", "10")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("3 rounds of 10 calls, medians per call")
    assert [line.split()[0] for line in lines[1:4]] == ["unpatched", "functools.wraps", "wrapt"]
    assert lines[4].startswith("  functools.wraps adds ")
    assert lines[5].startswith("  wrapt adds ")
    assert lines[6].startswith("  what wrapt adds / what functools.wraps adds: ")
    assert len(lines) == 7


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("switch_cost.py", ["--rounds", "0"],
         "--rounds and --calls must be at least 1, --end-to-end-calls at least 0"),
        ("switch_cost.py", ["--end-to-end-calls", "x"],
         "argument --end-to-end-calls: invalid int value: 'x'"),
        ("switch_cost.py", ["--compiled"],
         "--compiled needs --end-to-end-calls (its variants are end to end)"),
        ("instructions.py", ["--requests", "0"], "argument --requests: must be at least 1, got 0"),
        ("instructions.py", ["--repeats", "two"],
         "argument --repeats: invalid positive value: 'two'"),
        ("bytecodes.py", ["--modes", "installed,headers"],
         "argument --modes: unknown mode 'headers'; allowed: disabled, installed, headers only, "
         "full spans"),
        ("bytecodes.py", ["--top", "0"], "argument --top: must be at least 1, got 0"),
        ("wrapt_dispatch.py", ["--calls", "0"], "argument --calls: must be at least 1, got 0"),
        ("bytecodes.py", ["--driver", "server", "--modes", "installed"],
         "argument --modes: 'installed' is counted in-process only; with --driver server: "
         "disabled, headers only, full spans"),
        ("bytecodes.py", ["--driver", "server", "--servers", "asgi,http"],
         "argument --servers: unknown server 'http'; allowed: asgi, wsgi"),
        ("bytecodes.py", ["--driver", "uvicorn"],
         "argument --driver: invalid choice: 'uvicorn' (choose from 'in-process', 'server')"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_status_2(name, args, message):
    out = script(name, *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"{name}: error: {message}\n"


@pytest.mark.parametrize(
    "child",
    [
        ["requests", "full spans", "2", "TRACES"],
        ["requests", "disabled", "0", "TRACES"],
        ["bridges", "async_to_sync", "bare patches", "2"],
        ["stand-ins", "sync_to_async", "traced", "2"],
    ],
)
def test_the_valgrind_children_run(child, tmp_path):
    # What instructions.py runs under valgrind, run without it.
    child = [str(tmp_path / "traces.jsonl") if a == "TRACES" else a for a in child]
    out = script("instructions.py", "--child", *child)
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (["requests", "headers", "100", "t.jsonl"],
         "requests: MODE 'headers'; allowed: disabled, installed, headers only, full spans"),
        (["bridges", "sync_to_async", "recorded", "2"],
         "bridges: VARIANT 'recorded'; allowed: uninstalled, recording, context variable only, "
         "layers only, bare patches, compiled recording, compiled, copied context"),
        (["bridges", "sync_to_async", "compiled recording", "2"],
         "bridges: VARIANT 'compiled recording' needs $SWITCHTRACE_COMPILED_FLOOR, the "
         "extension's file"),
        (["stand-ins", "async_to_sync", "traced", "-1"],
         "stand-ins: COUNT '-1'; allowed: 0 or a positive integer"),
        (["requests", "disabled", "100"],
         "arguments 'requests disabled 100'; expected --child requests MODE COUNT TRACES; "
         "--child bridges MECHANISM VARIANT COUNT; --child stand-ins MECHANISM plain|traced "
         "COUNT"),
    ],
)  # fmt: skip
def test_a_childs_bad_argument_is_one_line_and_exit_status_2(child, message):
    # A misspelt mode was measured as "installed", a misspelt variant as
    # switchtrace installed and idle.
    out = script("instructions.py", "--child", *child)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"instructions.py: error: --child {message}\n"


def test_bytecodes_finds_switchtraces_code_on_the_request_path_only_when_installed():
    out = script("bytecodes.py", "--requests", "2", "--modes", "installed", "--json")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert results["requests"] == 2
    assert list(results["per_request"]) == ["disabled", "installed"]
    patches = {
        place.split(" ")[1]
        for place in results["functions"]["installed"]
        if place.startswith("switchtrace/tracer/patches.py:")
    }
    # Disabled: none of switchtrace's patches, handler integration or
    # middleware runs (the driver serving the requests is switchtrace's too).
    request_path = ("tracer/", "django_app/integration.py", "django_app/middleware.py")
    ran = results["functions"]["disabled"]
    assert not [p for p in ran if p.startswith(tuple(f"switchtrace/{s}" for s in request_path))]
    # Installed: the patches the request's 16 crossings go through, and
    # asgiref's and Django's code around them in both.
    assert {"__call__", "_arrive", "submit"} <= patches
    assert any(p.startswith("asgiref/sync.py:") for p in results["functions"]["disabled"])
    per_request = results["per_request"]
    assert per_request["installed"] > per_request["disabled"]


def test_bytecodes_prints_what_the_readme_shows():
    out = script("bytecodes.py", "--requests", "1", "--modes", "installed", "--top", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Bytecodes per request, ASGI default stack, /sync/ (1 requests)"
    assert [line.split()[0] for line in lines[1:3]] == ["disabled", "installed"]
    assert lines[3] == "Added per request, by function (the 3 that change most):"
    assert lines[4].split() == ["installed", "function"]
    assert len(lines) == 8


def test_bytecodes_counts_in_every_process_of_the_servers_until_their_spans_are_written():
    out = script("bytecodes.py", "--driver", "server", "--requests", "2", "--json")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert results["requests"] == 2
    modes = ["disabled", "headers only", "full spans"]
    assert {
        server: list(figures["per_request"]) for server, figures in results["servers"].items()
    } == {
        "asgi": modes,
        "wsgi": modes,
    }

    def ran(server, mode, where):
        functions = results["servers"][server]["functions"][mode]
        return sorted({p.split(" ")[1] for p in functions if p.startswith(f"switchtrace/{where}")})

    for server in ("asgi", "wsgi"):
        # Disabled: none of switchtrace's request path; its middleware runs
        # in gunicorn's worker, not in the arbiter the command started.
        assert ran(server, "disabled", "tracer/") == []
        assert ran(server, "disabled", "django_app/middleware.py") == []
        assert "__call__" in ran(server, "headers only", "django_app/middleware.py")
        # The span thread's work for the measured requests is counted: the
        # counting stopped once their spans were in the file.
        assert ran(server, "headers only", "exporters/encode.py") == []
        assert "spans" in ran(server, "full spans", "exporters/encode.py")
    # The sync view crosses under ASGI only (gunicorn's own executor, handed
    # each connection, goes through the executors' patched submit).
    crossing = {"__call__", "_arrive"}
    assert crossing | {"submit"} <= set(ran("asgi", "headers only", "tracer/patches.py"))
    assert not crossing & set(ran("wsgi", "headers only", "tracer/patches.py"))


def test_bytecodes_through_servers_prints_a_table_per_server():
    out = script(
        "bytecodes.py", "--driver", "server", "--servers", "wsgi,asgi", "--modes",
        "headers only", "--requests", "1", "--top", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    blocks = [block.splitlines() for block in out.stdout.split("\n\n")]
    assert [block[0] for block in blocks] == [
        "Bytecodes per request, WSGI default stack through gunicorn, /sync/ (1 requests)",
        "Bytecodes per request, ASGI default stack through uvicorn, /sync/ (1 requests)",
    ]
    for block in blocks:
        assert [line.split()[0] for line in block[1:3]] == ["disabled", "headers"]
        assert block[3:5] == [
            "Added per request, by function (the 2 that change most):",
            "    headers only  function",
        ]
        assert len(block) == 7


# -- switch_cost.py --compiled: the same recording compiled from C -----------


@pytest.fixture(scope="module")
def built_floor(tmp_path_factory):
    """compiled_floor.c built once for the module: (its file, the Floor)."""
    path = compiled_floor.build(tmp_path_factory.mktemp("compiled-floor"))
    return path, compiled_floor.Floor(compiled_floor.load(path))


class Refused(Exception):
    pass


async def _answer():
    return 40


async def _refuse():
    raise Refused("no")


def _bridged(calls):
    # On the executor's thread: two async_to_sync calls back to the loop, the
    # second raising, and a value computed from the first.
    answer = async_to_sync(_answer)()
    try:
        async_to_sync(_refuse)()
    except Refused as exc:
        calls.append(str(exc))
    return answer + 2


def _serve(recording, here):
    """sync_to_async(_bridged) from a task, inside ``recording()``: what the
    bridged code returned, whether the caller's context variable ``here``
    holds what it held before, and the calls' own results; and the record."""
    calls: list[str] = []

    async def main():
        with recording() as record:
            before = here.get()
            result = await sync_to_async(_bridged)(calls)
            return (result, here.get() is before, calls), record

    return asyncio.run(main())


@pytest.mark.parametrize("variant", switch_cost.COMPILED)
def test_the_compiled_floor_records_what_switchtrace_records(built_floor, variant):
    # The measurement compares like with like: for the same calls the C
    # recording counts what switchtrace counts, links each crossing to its
    # parent and takes its times in order, and the bridged code sees the same.
    _, floor = built_floor
    tracer.install()
    traced, expected = _serve(tracer.recording, patches.here)
    tracer.uninstall()
    try:
        compiled, record = _serve(lambda: floor.recording(variant, 10), compiled_floor.here)
    finally:
        tracer.install()
    assert traced == compiled == (42, True, ["no"])
    # 3 crossings, 6 switches, all of them thread hops.
    assert expected.context_switches == expected.thread_hops == 6
    figures = (record.started, record.returned, record.hops_started, record.hops_returned)
    assert figures == (3, 3, 3, 3)
    assert record.dropped == 0
    outer, first, second = record.crossings
    assert [c.mechanism for c in record.crossings] == [0, 1, 1]  # sync_to_async, async_to_sync
    assert outer.parent is None and first.parent is outer and second.parent is outer
    assert outer.func is _bridged and first.func is _answer and second.func is _refuse
    assert outer.target_thread is first.source_thread is second.source_thread
    assert outer.source_thread is first.target_thread is second.target_thread
    assert outer.target_thread is not outer.source_thread
    assert outer.executor is not None and first.executor is None
    for c in record.crossings:
        assert 0 < c.call_ns < c.start_ns <= c.end_ns <= c.return_ns
    assert outer.start_ns < first.call_ns and second.return_ns < outer.end_ns
    assert outer.loop_id == first.loop_id == second.loop_id != 0


def test_the_compiled_floor_counts_but_does_not_keep_past_max_events(built_floor):
    _, floor = built_floor
    tracer.uninstall()
    try:
        _, record = _serve(lambda: floor.recording("compiled recording", 1), compiled_floor.here)
    finally:
        tracer.install()
    assert (record.started, record.returned, record.dropped) == (3, 3, 2)
    assert len(record.crossings) == 1


def test_switch_cost_compiled_prints_its_variants():
    out = script(
        "switch_cost.py", "--rounds", "1", "--calls", "5", "--end-to-end-calls", "3", "--compiled"
    )
    assert out.returncode == 0, out.stderr
    # Wall and CPU time, for each mechanism: the variants' calls, and what
    # each adds per switch.
    for variant in switch_cost.COMPILED:
        assert out.stdout.count(f"      {variant:<24} ") == 4
        assert out.stdout.count(f"      {variant}, per switch ") == 4


def test_the_compiled_valgrind_child_runs(built_floor):
    path, _ = built_floor
    for variant in switch_cost.COMPILED:
        out = script(
            "instructions.py", "--child", "bridges", "sync_to_async", variant, "2",
            SWITCHTRACE_COMPILED_FLOOR=str(path),
        )  # fmt: skip
        assert (out.returncode, out.stderr) == (0, "")


def test_the_compiled_floor_never_replaces_switchtraces_patches(built_floor):
    _, floor = built_floor
    tracer.install()
    patched = vars(switch_cost.SyncToAsync)["__call__"]
    with pytest.raises(RuntimeError, match="switchtrace is installed"):
        with floor.recording("compiled recording"):
            pass
    assert vars(switch_cost.SyncToAsync)["__call__"] is patched


def test_switch_cost_compiled_without_a_compiler_is_one_line_and_exit_status_2(tmp_path):
    out = script("switch_cost.py", "--compiled", "--end-to-end-calls", "1", PATH=str(tmp_path))
    assert (out.returncode, out.stdout) == (2, "")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    message = f"--compiled needs a C compiler; {compiler!r} is not on PATH"
    assert out.stderr == f"switch_cost.py: error: {message}\n"
