"""The switchtrace command, run as users run it: the console script and
``python -m switchtrace`` in subprocesses."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchtrace.bench import compare, overhead_export
from switchtrace.exporters import ExportOptions

from .conftest import EXAMPLE
from .support import ASGI_THREADS

SCRIPT = shutil.which("switchtrace", path=str(Path(sys.executable).parent))


def run(
    args: list[str], tmp_path: Path, how: str = "script", **environ: str
) -> subprocess.CompletedProcess:
    command = [SCRIPT] if how == "script" else [sys.executable, "-m", "switchtrace"]
    env = {
        **os.environ,
        "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "traces.jsonl"),
        "SWITCHTRACE_EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
        **environ,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        command + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def demo_sync_section(text: str) -> tuple[str, list[list[str]]]:
    """The demo's /sync/ table, and its rows' first seven cells."""
    section = text[text.index("/sync/ — ") : text.index("/async/ — ")]
    return section, [line.split()[:7] for line in section.splitlines()[2:8]]


def spans_in(traces: Path) -> int:
    """How many spans a file exporter's file holds."""
    return sum(
        len(scope["spans"])
        for export in map(json.loads, traces.read_text().splitlines())
        for resource in export["resourceSpans"]
        for scope in resource["scopeSpans"]
    )


@pytest.mark.parametrize("how", ["script", "module"])
def test_demo(how, tmp_path):
    out = run(["demo"], tmp_path, how)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    text = out.stdout
    section, rows = demo_sync_section(text)
    threads = str(ASGI_THREADS)
    assert rows == [
        ["ASGI", "shipped", "32", "(30)", "32", "0", threads],
        ["ASGI", "sync-only", "12", "(10)", "12", "0", threads],
        ["ASGI", "none", "6", "(4)", "6", "0", threads],
        ["WSGI", "shipped", "0", "(0)", "0", "0", "0"],
        ["WSGI", "sync-only", "0", "(0)", "0", "0", "0"],
        ["WSGI", "none", "0", "(0)", "0", "0", "0"],
    ]
    assert (
        "  → Under ASGI the shipped middleware costs 30 switches per request before the "
        "headers (32 in all); made sync-only 10, without middleware 4. Under WSGI: 0.\n"
    ) in section
    assert "CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4" in section
    assert "three new" not in text
    assert "Under WSGI: 6, with 3 new event loops and 3 new threads." in text
    assert (  # /async-stream/: the stream is read after the headers
        "Under WSGI: 2 before the headers (4 in all), with 2 new event loops and 2 new threads."
    ) in text
    # The spans the file holds, every one of them: the demo's count is
    # switchtrace's own exporter's.
    spans = spans_in(tmp_path / "traces.jsonl")
    assert text.endswith(
        f"\n{spans} spans went to {tmp_path / 'traces.jsonl'} (OTLP JSON, one export per line).\n"
    )


def test_demo_with_every_request_sampled_out_says_no_spans_were_made(tmp_path):
    """It said 'Spans of every request went over OTLP ... to <endpoint>.' when
    the sampler kept none and nothing listened at the endpoint."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(
        ["demo"], tmp_path, OTEL_TRACES_SAMPLER="always_off",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.endswith(
        "\nNo spans were made: the sampler kept none of the requests "
        "(SWITCHTRACE['SAMPLE_RATE'], or OTEL_TRACES_SAMPLER when it is None).\n"
    )


def _spans_said(text: str) -> int:
    """The count of the demo's last line ('N spans went ...')."""
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    count, _, rest = last.partition(" ")
    assert rest.startswith(("span went ", "spans went ")), last
    return int(count)


@pytest.mark.parametrize("sample_rate", [0, 1])
def test_demo_through_the_sdk_processor_counts_its_spans(sample_rate, tmp_path):
    """A copy of the example project exporting to the memory exporter (the
    SDK's processor, as an OTLP exporter without the encoded-spans hook): the
    demo said 'Spans of every request went to the memory exporter.' whatever
    the sampler kept, SAMPLE_RATE 0 included. It now says how many spans the
    exporter took, the same as the file exporter's, or that none were made."""
    project = tmp_path / "project-copy"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("*.jsonl", "*.sqlite3", "__pycache__")
    )
    with open(project / "project" / "settings.py", "a") as settings:
        settings.write(
            f'SWITCHTRACE = {{**SWITCHTRACE, "EXPORTER": "memory", "SAMPLE_RATE": {sample_rate}}}\n'
        )
    out = run(["demo", "--project", str(project)], tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    if sample_rate == 0:
        assert out.stdout.endswith(
            "\nNo spans were made: the sampler kept none of the requests "
            "(SWITCHTRACE['SAMPLE_RATE'], or OTEL_TRACES_SAMPLER when it is None).\n"
        )
        return
    assert out.stdout.endswith(" went to the memory exporter.\n"), out.stdout[-200:]
    (tmp_path / "file").mkdir()
    to_file = run(["demo"], tmp_path / "file")
    assert (to_file.returncode, to_file.stderr) == (0, "")
    assert _spans_said(out.stdout) == _spans_said(to_file.stdout) > 0


def test_bench_in_process_json(tmp_path):
    args = ["bench", "--servers", "asgi,wsgi", "--endpoints", "/sync/", "--variants",
            "shipped,sync-only", "--concurrency", "1,4", "--requests", "8", "--rounds", "2",
            "--warmup", "2", "--json"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    # It measures switches and latency, not span export: no spans written
    # where the project's FILE_PATH points (the checkout, outside the tests).
    assert not (tmp_path / "traces.jsonl").exists()
    results = json.loads(out.stdout)
    assert (results["format"], results["mode"], results["driver"]) == (1, "matrix", "in-process")
    cells = {(c["server"], c["variant"]): c for c in results["cells"]}
    assert sorted(cells) == [
        ("asgi", "shipped"),
        ("asgi", "sync-only"),
        ("wsgi", "shipped"),
        ("wsgi", "sync-only"),
    ]
    assert [cells[k]["switches"] for k in sorted(cells)] == [30, 10, 0, 0]
    for cell in cells.values():
        assert set(cell["seq_us"]) == {"median", "min", "max"}
        assert cell["seq_us"]["min"] <= cell["seq_us"]["median"] <= cell["seq_us"]["max"]
        assert set(cell["req_per_s"]) == {"4"}
        assert set(cell["peak_threads"]) == {"1", "4"}
    # Baselines: an impossibly fast one flags every cell; a slow one, none.
    fast = json.loads(out.stdout)
    for cell in fast["cells"]:
        cell["seq_us"] = {"median": 0.001, "min": 0.001, "max": 0.001}
        cell["req_per_s"] = {"4": {"median": 1e9, "min": 1e9, "max": 1e9}}
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    slow = json.loads(out.stdout)
    for cell in slow["cells"]:
        cell["seq_us"] = {"median": 1e9, "min": 1e9, "max": 1e9}
        cell["req_per_s"] = {"4": {"median": 0.001, "min": 0.001, "max": 0.001}}
    (tmp_path / "slow.json").write_text(json.dumps(slow))
    quick = ["bench", "--servers", "wsgi", "--endpoints", "/sync/", "--variants", "none",
             "--concurrency", "1,4", "--requests", "5", "--rounds", "1",
             "--warmup", "0"]  # fmt: skip
    flagged = run([*quick, "--variants", "shipped", "--compare", "fast.json"], tmp_path)
    assert flagged.returncode == 1
    lines = flagged.stderr.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["slower", "slower"]
    assert "WSGI shipped /sync/: seq" in lines[0]
    assert "WSGI shipped /sync/: c=4" in lines[1]
    assert lines[2:] == ["compared 1 cell with fast.json: 1 slower"]
    calm = run([*quick, "--variants", "shipped", "--compare", "slow.json"], tmp_path)
    assert (calm.returncode, calm.stderr) == (0, "compared 1 cell with slow.json: none slower\n")
    # It said nothing of the cells it could not compare (the baseline has no 'none').
    partly = run([*quick, "--variants", "shipped,none", "--compare", "slow.json"], tmp_path)
    assert (partly.returncode, partly.stderr) == (
        0,
        "compared 1 cell with slow.json (of this run's 2; the others are not in it): none slower\n",
    )


def test_bench_counts_the_switches_without_a_sequential_level(tmp_path):
    """--concurrency without 1: every cell said 0 switches, loops and threads."""
    args = ["bench", "--servers", "asgi,wsgi", "--endpoints", "/sync/,/async/", "--variants",
            "shipped", "--concurrency", "3", "--requests", "6", "--rounds", "1",
            "--warmup", "1", "--json"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    cells = {
        (c["server"], c["endpoint"]): (c["switches"], c["hops"], c["loops"])
        for c in json.loads(out.stdout)["cells"]
    }
    assert cells == {
        ("asgi", "/sync/"): (30, 30, 0),
        ("asgi", "/async/"): (28, 28, 0),
        ("wsgi", "/sync/"): (0, 0, 0),
        ("wsgi", "/async/"): (2, 2, 1),
    }


@pytest.mark.parametrize("driver", ["in-process", "server"])
def test_bench_says_nothing_of_the_streams_served_under_the_other_server(driver, tmp_path):
    """The example's /stream/ (a sync iterator) under ASGI and /async-stream/
    under WSGI, served so on purpose: Django's warning of each (as demo
    leaves them out), in-process and from the servers, was on stderr."""
    args = ["bench", "--driver", driver, "--endpoints", "/stream/,/async-stream/", "--variants",
            "none", "--concurrency", "1", "--requests", "1", "--rounds", "1", "--warmup", "0",
            "--json"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert len(json.loads(out.stdout)["cells"]) == 4


def test_bench_serves_concurrent_asgi_requests_after_wsgi_ones(tmp_path):
    """In-process, the WSGI requests' async_to_sync runs in the command's
    main thread: under asgiref before 3.9 (whose Local keeps one dict that
    every copy of the context shares) the concurrent ASGI requests then took
    each other's executor, and the run failed with asgiref's RuntimeError or
    ValueError, or hung. (The suite's Python 3.10 environment has asgiref
    3.8.1.)"""
    args = ["bench", "--servers", "wsgi,asgi", "--endpoints", "/async/", "--variants",
            "shipped,sync-only", "--concurrency", "5", "--requests", "10", "--rounds", "2",
            "--warmup", "1", "--json"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    cells = {(c["server"], c["variant"]): c["switches"] for c in json.loads(out.stdout)["cells"]}
    assert cells == {
        ("wsgi", "shipped"): 2,
        ("wsgi", "sync-only"): 2,
        ("asgi", "shipped"): 28,
        ("asgi", "sync-only"): 8,
    }


def test_bench_text_header_counts_in_words(tmp_path):
    """It said '1 rounds of 1 requests'."""
    args = ["bench", "--servers", "wsgi", "--endpoints", "/sync/", "--variants", "none",
            "--concurrency", "1", "--requests", "1", "--rounds", "1", "--warmup", "0"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    assert lines[0] == (
        "switchtrace bench (in-process; 1 round of 1 request; no spans exported; medians, "
        "min-max over rounds)"
    )
    assert lines[3].split() == ["c=1", "seq", "us/req", "conc", "req/s", "peak", "thr",
                                "switches", "loops", "threads"]  # fmt: skip
    row = lines[4].split()
    assert row[:3] + row[5:6] + row[7:] == ["WSGI", "none", "/sync/", "-", "0", "0", "0"]


def test_bench_measures_the_default_concurrency_levels(tmp_path):
    """Without --concurrency: 1 (the sequential figure), 50 and 200, as
    --help says (with --requests' default, 200: no fewer is taken)."""
    args = ["bench", "--servers", "wsgi", "--endpoints", "/sync/", "--variants", "none",
            "--rounds", "1", "--warmup", "0", "--json"]  # fmt: skip
    out = run(args, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    [cell] = json.loads(out.stdout)["cells"]
    assert json.loads(out.stdout)["requests"] == 200
    assert sorted(cell["peak_threads"], key=int) == ["1", "50", "200"]
    assert sorted(cell["req_per_s"], key=int) == ["50", "200"]
    assert set(cell["seq_us"]) == {"median", "min", "max"}


def test_bench_over_real_servers(tmp_path):
    args = ["bench", "--driver", "server", "--endpoints", "/async/", "--variants", "shipped",
            "--concurrency", "1,3", "--requests", "6", "--rounds", "1", "--warmup", "1",
            "--json"]  # fmt: skip
    out = run(args, tmp_path, "module")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert results["driver"] == "server"
    by_server = {c["server"]: c for c in results["cells"]}
    assert (by_server["asgi"]["switches"], by_server["asgi"]["loops"]) == (28, 0)
    assert (by_server["wsgi"]["switches"], by_server["wsgi"]["loops"]) == (2, 1)
    assert all(c["peak_threads"]["3"] > 1 for c in results["cells"])
    assert not (tmp_path / "traces.jsonl").exists()  # the servers export no spans either


def test_bench_overhead_mode(tmp_path):
    (tmp_path / "tmp").mkdir()
    args = ["bench", "--overhead", "--servers", "asgi", "--endpoints", "/sync/",
            "--requests", "5", "--rounds", "2", "--warmup", "1", "--json"]  # fmt: skip
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = run(args, tmp_path, TMPDIR=str(tmp_path / "tmp"))
    took, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    rows = json.loads(out.stdout)["rows"]
    # Each round's back-to-back requests took part of the command's time and
    # of its CPU time: all of them together (a row's two rounds, min + max)
    # no more than the whole.
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    for figure, whole in (("us_per_request", took), ("cpu_us_per_request", cpu)):
        spent = sum(r[figure]["min"] + r[figure]["max"] for r in rows) * 5 / 1e6
        assert 0 < spent <= whole, (figure, spent, whole)
    assert rows[0]["cpu_ratio"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    # opentelemetry-instrumentation-django and -asgi are in the test extra.
    assert [r["mode"] for r in rows] == [
        "disabled", "headers only", "full spans", "opentelemetry-instrumentation-django"
    ]  # fmt: skip
    assert rows[0]["ratio"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert rows[0]["latency_ratio"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert all(r["us_per_request"]["median"] > 0 for r in rows)
    assert all(0 < r["latency_us"]["min"] <= r["latency_us"]["max"] for r in rows)
    # Every round's requests had their spans written in that round.
    assert [r.get("exported_per_request") for r in rows] == [None, None] + [
        {"median": 1.0, "min": 1.0, "max": 1.0}
    ] * 2
    # The full-spans mode's spans went to a temporary file, not to FILE_PATH,
    # and every temporary file is gone.
    assert not (tmp_path / "traces.jsonl").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_bench_overhead_through_real_servers(tmp_path):
    """--overhead --driver server: one uvicorn or gunicorn process per mode.
    Every request the full-spans servers got (their start-up probe, to the
    first endpoint, the warm-up, both rounds' back-to-back and timed
    requests: 1 + 1 + 2 * (3 + 3) = 14 there, 13 at the other; the probe
    was counted at /sync/ whatever the first was) left its request span in
    their file."""
    (tmp_path / "tmp").mkdir()
    args = ["bench", "--overhead", "--driver", "server", "--servers", "wsgi,asgi",
            "--endpoints", "/async/,/sync/", "--requests", "3", "--rounds", "2", "--warmup",
            "1", "--json"]  # fmt: skip
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = run(args, tmp_path, TMPDIR=str(tmp_path / "tmp"))
    took, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr
    # opentelemetry-instrumentation-django is in the test extra.
    assert out.stderr == (
        "switchtrace bench: note: no opentelemetry-instrumentation-django row: it is measured "
        "in-process only (without --driver server)\n"
    )
    results = json.loads(out.stdout)
    assert (results["mode"], results["driver"]) == ("overhead", "server")
    rows = results["rows"]
    assert [(r["server"], r["endpoint"], r["mode"]) for r in rows] == [
        (server, endpoint, mode)
        for server in ("wsgi", "asgi")
        for endpoint in ("/async/", "/sync/")
        for mode in ("disabled", "headers only", "full spans")
    ]
    one = {"median": 1.0, "min": 1.0, "max": 1.0}
    for row in rows:
        assert row["variant"] == "shipped"
        assert 0 < row["us_per_request"]["min"] <= row["us_per_request"]["max"]
        assert 0 < row["latency_us"]["min"] <= row["latency_us"]["max"]
        assert row["cpu_us_per_request"]["min"] > 0
        if row["mode"] == "disabled":
            assert row["ratio"] == row["latency_ratio"] == row["cpu_ratio"] == one
        assert row.get("exported_per_request") == (one if row["mode"] == "full spans" else None)
        assert "served" not in row
    # Each round's back-to-back requests took part of the command's time, and
    # of the CPU time of the servers (waited for by the command, as it is by
    # this test): all of them together (a row's two rounds, min + max) no more
    # than the whole.
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    for figure, whole in (("us_per_request", took), ("cpu_us_per_request", cpu)):
        spent = sum(r[figure]["min"] + r[figure]["max"] for r in rows) * 3 / 1e6
        assert 0 < spent <= whole, (figure, spent, whole)
    # The spans went to a temporary file, not to FILE_PATH, and it is gone
    # with the settings module written for the servers.
    assert not (tmp_path / "traces.jsonl").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_bench_overhead_through_servers_without_opentelemetry_instrumentation(tmp_path):
    """The instrumentation packages are optional (README, "Speed"): without
    any (no opentelemetry.instrumentation package at all), find_spec of
    opentelemetry.instrumentation.django raised, and the command ended with
    "error: ModuleNotFoundError", as if the project had raised. There is no
    row of theirs, and no note of it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nsys.modules['opentelemetry.instrumentation'] = None\n"
    )
    args = ["bench", "--overhead", "--driver", "server", "--servers", "wsgi",
            "--endpoints", "/sync/", "--requests", "1", "--rounds", "1", "--warmup", "0",
            "--json"]  # fmt: skip
    path = [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    out = run(args, tmp_path, PYTHONPATH=os.pathsep.join(path))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    rows = json.loads(out.stdout)["rows"]
    assert [r["mode"] for r in rows] == ["disabled", "headers only", "full spans"]


def test_bench_overhead_through_servers_to_the_settings_collector(tmp_path):
    """With an OTLP collector configured (OTEL_EXPORTER_OTLP_ENDPOINT), the
    full-spans uvicorn exports there, every request's spans whatever
    OTEL_TRACES_SAMPLER says: its probe, the warm-up and 1 + 1 requests, 17
    spans each (16 crossings and the request's); the other modes' servers
    none. What reached the collector is not counted: no
    exported_per_request. One request a round: its mode is checked on the
    round's only answer."""
    from .exporters.receiver import HttpReceiver

    receiver = HttpReceiver()
    args = ["bench", "--overhead", "--driver", "server", "--servers", "asgi",
            "--endpoints", "/sync/", "--requests", "1", "--rounds", "1", "--warmup", "1",
            "--json"]  # fmt: skip
    try:
        out = run(
            args,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER="always_off",
        )
    finally:
        receiver.stop()
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert [row["mode"] for row in rows] == ["disabled", "headers only", "full spans"]
    assert all("exported_per_request" not in row for row in rows)
    assert receiver.received.span_count == 4 * 17
    assert not (tmp_path / "traces.jsonl").exists()


def test_bench_overhead_servers_stop_without_losing_spans(tmp_path):
    """The full-spans uvicorn is stopped with SIGINT: with SIGTERM it raises
    the signal again after its graceful shutdown, whose default action skips
    the exit hooks, and the spans of its last half second were lost (all 11
    of these: its start-up probe and 10 requests)."""
    import asyncio

    from switchtrace import bench

    driver = bench.OverheadServers(EXAMPLE, "shipped", tmp_path)
    try:
        driver.open_modes(["asgi"])
        _pid, port = driver.address("asgi", "full spans")
        asyncio.run(bench._http_load("127.0.0.1", port, "/sync/", 10, 1))
    finally:
        driver.close()
    assert bench._request_spans(tmp_path / "spans-asgi.jsonl") == {"/sync/": 11}
    assert not (tmp_path / "spans-wsgi.jsonl").exists()


def test_bench_overhead_server_settings():
    """What each mode's server changes in the project's settings."""
    from switchtrace.bench import OVERHEAD_MODE, OVERHEAD_SPANS, overhead_settings

    project = {
        "MIDDLEWARE": [
            "switchtrace.django_app.middleware.SwitchTraceMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        "SWITCHTRACE": {"ENABLED": True, "EXPORTER": "console", "SAMPLE_RATE": 0.1},
    }
    assert overhead_settings(project, {OVERHEAD_MODE: "disabled"}) == {
        "MIDDLEWARE": ["django.middleware.common.CommonMiddleware"],
        "SWITCHTRACE": {"ENABLED": False, "EXPORTER": "console", "SAMPLE_RATE": 0.1},
    }
    assert overhead_settings(project, {OVERHEAD_MODE: "headers only"}) == {
        "SWITCHTRACE": {"ENABLED": True, "EXPORTER": "none", "SAMPLE_RATE": 0.1},
    }
    spans = {OVERHEAD_MODE: "full spans", OVERHEAD_SPANS: "/scratch/spans-asgi.jsonl"}
    assert overhead_settings(project, spans) == {
        "SWITCHTRACE": {
            "ENABLED": True, "EXPORTER": "file", "SAMPLE_RATE": 1.0,
            "FILE_PATH": "/scratch/spans-asgi.jsonl", "FILE_MAX_BYTES": None,
        },
    }  # fmt: skip
    # To the OTLP collector the settings name: only the sampling changes.
    otlp = {**project, "SWITCHTRACE": {"ENABLED": True, "ENDPOINT": "http://127.0.0.1:4318"}}
    assert overhead_settings(otlp, {OVERHEAD_MODE: "full spans"}) == {
        "SWITCHTRACE": {"ENABLED": True, "ENDPOINT": "http://127.0.0.1:4318", "SAMPLE_RATE": 1.0}
    }
    # The project's own dict is left as it was.
    assert project["SWITCHTRACE"] == {"ENABLED": True, "EXPORTER": "console", "SAMPLE_RATE": 0.1}
    with pytest.raises(ValueError) as raised:
        overhead_settings(project, {OVERHEAD_MODE: "fast"})
    assert str(raised.value) == (
        "SWITCHTRACE_BENCH_OVERHEAD='fast'; allowed: disabled, headers only, full spans"
    )


def test_bench_overhead_servers_must_answer_as_their_mode():
    """A server whose settings did not take its mode would be measured under
    another's name: the bench stops (exit status 1, one line)."""
    from switchtrace.bench import ServerFailed, _check_mode

    _check_mode("asgi", "/sync/", "disabled", None)
    _check_mode("asgi", "/sync/", "full spans", (30, 30, 0, 1))
    with pytest.raises(ServerFailed) as raised:
        _check_mode("wsgi", "/async/", "headers only", None)
    assert str(raised.value) == (
        "the WSGI server with switchtrace headers only sent no X-Context-Switches on /async/"
    )
    with pytest.raises(ServerFailed) as raised:
        _check_mode("asgi", "/sync/", "disabled", (30, 30, 0, 1))
    assert str(raised.value) == (
        "the ASGI server with switchtrace disabled sent its headers on /sync/"
    )


def figures(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high}


def test_bench_overhead_text_through_servers():
    from switchtrace.bench import render_overhead

    row = {
        "server": "wsgi", "endpoint": "/sync/", "variant": "shipped", "mode": "headers only",
        "us_per_request": figures(900, 800, 1000), "ratio": figures(1.1, 1.0, 1.2),
        "latency_us": figures(950, 900, 1000), "latency_ratio": figures(1.12, 1.05, 1.2),
    }  # fmt: skip
    out = io.StringIO()
    render_overhead({"driver": "server", "rounds": 2, "requests": 5, "rows": [row]}, out)
    assert out.getvalue().splitlines() == [
        "switchtrace bench --overhead --driver server (2 interleaved rounds of 5 requests back "
        "to back and as many timed alone; medians (min-max) over rounds)",
        "  each mode served by its own uvicorn (ASGI) or gunicorn (WSGI) process on loopback, "
        "driven over HTTP",
        "  wall: µs per request, ratio to disabled | cpu: the server's CPU µs per request (its "
        "span thread's too), ratio to disabled",
        "  latency: µs until the client has the whole response, each request sent alone once "
        "the server is idle (its CPU still for 2 ms), ratio to disabled",
        # A ratio is not that of the medians shown (it seemed a wrong figure).
        "  ratio: each round's figure over disabled's in that round; their median (min-max), "
        "not the medians' ratio",
        "  WSGI shipped /sync/ headers only",
        # No CPU figure where the system could not say (not Linux).
        "      wall       900.0 (800.0-1000.0)  x1.100 (1.000-1.200)   cpu               not "
        "measured",
        "      latency    950.0 (900.0-1000.0)  x1.120 (1.050-1.200)",
    ]


def test_bench_overhead_text_shows_latency_next_to_wall_and_cpu():
    from switchtrace.bench import render_overhead

    row = {
        "server": "asgi", "endpoint": "/sync/", "variant": "shipped", "mode": "full spans",
        "us_per_request": figures(5000, 4000, 6000), "ratio": figures(1.3, 1.1, 1.5),
        "cpu_us_per_request": figures(5100, 4100, 6100), "cpu_ratio": figures(1.31, 1.2, 1.4),
        "latency_us": figures(4400, 4200, 4800), "latency_ratio": figures(1.14, 1.05, 1.2),
        "pipeline_cpu_us_per_request": figures(600, 500, 700),
    }  # fmt: skip
    out = io.StringIO()
    render_overhead({"rounds": 3, "requests": 10, "rows": [row]}, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "switchtrace bench --overhead (3 interleaved rounds of 10 requests back to back, the "
        "spans' export included, and as many timed alone; medians (min-max) over rounds)"
    )
    assert lines[3].startswith("  ratio: each round's figure over disabled's")
    assert lines[4] == "  ASGI shipped /sync/ full spans"
    # The span thread's CPU is part of the back-to-back figures: its line
    # follows theirs, not the latency's (which leaves it out, between requests).
    assert lines[5].split()[0] == "wall"
    assert lines[6].strip() == (
        "of which switchtrace's span thread: 600.0 (500.0-700.0) CPU µs per request"
    )
    assert lines[7].split() == ["latency", "4400.0", "(4200.0-4800.0)", "x1.140", "(1.050-1.200)"]


def test_no_opentelemetry_django_row_under_asgi_without_its_asgi_package(
    tmp_path, monkeypatch, capsys
):
    """Without opentelemetry-instrumentation-asgi its middleware lets ASGI
    requests through untraced: the row would compare a middleware that makes
    no span. (None in sys.modules is how Python refuses a module's import.)"""
    import opentelemetry.instrumentation

    from switchtrace import bench

    name = "opentelemetry.instrumentation.django"
    imported = name in sys.modules
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.asgi", None)
    try:
        with bench._otel_django("shipped", str(tmp_path), ["wsgi", "asgi"]) as otel:
            assert otel is None
    finally:
        if not imported:
            # Imported here without the asgi package, its middleware would let
            # the ASGI requests of the tests after this one through untraced.
            for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[module]
            vars(opentelemetry.instrumentation).pop("django", None)
    assert capsys.readouterr().err == (
        "switchtrace bench: note: no opentelemetry-instrumentation-django row: it makes "
        "no span for ASGI requests without opentelemetry-instrumentation-asgi (pip install "
        "opentelemetry-instrumentation-asgi, or --servers wsgi)\n"
    )


def test_bench_overhead_waits_for_opentelemetry_django_spans_in_their_round(tmp_path):
    # Its batch processor exports every 5 s on its own thread: unflushed, its
    # spans were written in whichever mode's round was running then.
    (tmp_path / "tmp").mkdir()
    args = ["bench", "--overhead", "--servers", "wsgi", "--endpoints", "/sync/",
            "--requests", "3", "--rounds", "3", "--warmup", "2", "--json"]  # fmt: skip
    out = run(args, tmp_path, TMPDIR=str(tmp_path / "tmp"))
    assert out.returncode == 0, out.stderr
    rows = {r["mode"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["opentelemetry-instrumentation-django"]["exported_per_request"] == {
        "median": 1.0, "min": 1.0, "max": 1.0
    }  # fmt: skip
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("sample_rate", [None, 0.0, 0.25, 1.0])
@pytest.mark.parametrize("exporter", ["file", "none", "otlp"])
def test_bench_overhead_makes_every_requests_spans_whatever_the_settings_sample(
    exporter, sample_rate
):
    """A SAMPLE_RATE or OTEL_TRACES_SAMPLER that keeps some or no request's
    spans measured some spans, or headers only, under 'full spans' (and its
    exported_per_request counted the records, sampled out or not: 1.0)."""
    configured = ExportOptions(
        exporter=exporter,
        endpoint="http://127.0.0.1:4318",
        sample_rate=sample_rate,
        excluded_urls=re.compile("sync"),
    )
    spans = overhead_export(configured, "/scratch/spans.jsonl")
    assert spans == dataclasses.replace(
        configured,
        exporter="otlp" if exporter == "otlp" else "file",
        file_path=configured.file_path if exporter == "otlp" else "/scratch/spans.jsonl",
        sample_rate=1.0,
        excluded_urls=None,
    )
    assert overhead_export(None, "/s.jsonl") == ExportOptions(file_path="/s.jsonl", sample_rate=1.0)


@pytest.mark.parametrize(
    "environ",
    [{"OTEL_TRACES_SAMPLER": "always_off"}, {"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "sync"}],
)
def test_bench_overhead_compares_every_requests_span_whatever_the_sampler(tmp_path, environ):
    """OTEL_TRACES_SAMPLER=always_off: opentelemetry-instrumentation-django's
    row measured a middleware that made no span (exported_per_request 0);
    so did a URL OTEL_PYTHON_DJANGO_EXCLUDED_URLS leaves out, in the full
    spans' row too."""
    args = ["bench", "--overhead", "--servers", "wsgi", "--endpoints", "/sync/",
            "--requests", "3", "--rounds", "2", "--warmup", "1", "--json"]  # fmt: skip
    out = run(args, tmp_path, **environ)
    assert out.returncode == 0, out.stderr
    rows = {r["mode"]: r for r in json.loads(out.stdout)["rows"]}
    for mode in ("opentelemetry-instrumentation-django", "full spans"):
        assert rows[mode]["exported_per_request"] == {"median": 1.0, "min": 1.0, "max": 1.0}


def test_bench_overhead_exports_spans_whatever_the_settings_export(tmp_path):
    # OTEL_SDK_DISABLED makes the project export nothing: the full-spans mode
    # measured headers only under its name.
    args = ["bench", "--overhead", "--servers", "asgi", "--endpoints", "/sync/",
            "--requests", "3", "--rounds", "2", "--warmup", "1", "--json"]  # fmt: skip
    out = run(args, tmp_path, OTEL_SDK_DISABLED="true")
    assert out.returncode == 0, out.stderr
    full = next(r for r in json.loads(out.stdout)["rows"] if r["mode"] == "full spans")
    assert full["exported_per_request"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert full["pipeline_cpu_us_per_request"]["min"] > 0
    assert not (tmp_path / "traces.jsonl").exists()


def test_bench_overhead_counts_the_requests_whose_spans_were_delivered(tmp_path):
    """A collector refusing every export (404 here): exported_per_request
    counted the records the span thread dealt with, and said 1.0 of a run
    whose spans all went nowhere; opentelemetry-instrumentation-django's
    row counted the spans handed to its exporter, written or not."""
    from .exporters.receiver import HttpReceiver

    receiver = HttpReceiver()
    receiver.received.mode = "not_found"
    args = ["bench", "--overhead", "--servers", "wsgi", "--endpoints", "/async/",
            "--requests", "3", "--rounds", "2", "--warmup", "1", "--json"]  # fmt: skip
    try:
        out = run(args, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    finally:
        receiver.stop()
    assert out.returncode == 0, out.stderr
    rows = {r["mode"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["full spans"]["exported_per_request"] == {"median": 0.0, "min": 0.0, "max": 0.0}
    assert rows["opentelemetry-instrumentation-django"]["exported_per_request"] == {
        "median": 1.0, "min": 1.0, "max": 1.0
    }  # fmt: skip
    assert receiver.received.posts >= 1
    assert receiver.received.span_count == 0


BAD_INPUT = [
    (["bench", "--endpoints", "/nope/"],
     "argument --endpoints: unknown endpoint '/nope/'; allowed: /sync/"),
    (["bench", "--variants", "fast"],
     "argument --variants: unknown middleware variant 'fast'; allowed: shipped, sync-only, none"),
    (["bench", "--driver", "docker"],
     "argument --driver: invalid choice: 'docker' (choose from"),
    (["bench", "--concurrency", "0"],
     "argument --concurrency: invalid concurrency '0'; allowed: integers from 1 to 1000"),
    (["bench", "--concurrency", "99999999999"],
     "argument --concurrency: invalid concurrency '99999999999'; allowed: integers from 1"),
    (["bench", "--concurrency", "1,,2"],
     "argument --concurrency: invalid concurrency '1,,2'; allowed: integers from 1"),
    (["bench", "--requests", "-3"],
     "argument --requests: invalid value '-3'; allowed: a positive integer"),
    (["bench", "--compare", "missing.json"], "--compare: missing.json does not exist"),
    (["bench", "--compare", "shape.json"],
     "--compare: shape.json is not a result of 'switchtrace bench --json'"),
    (["bench", "--overhead", "--compare", "shape.json"],
     "--compare goes with the matrix, not with --overhead"),
    (["bench", "--overhead", "--concurrency", "50"],
     "--overhead serves one request at a time; --concurrency gave 50; allowed: 1, or no "
     "--concurrency"),
    (["bench", "--overhead", "--variants", "sync-only,none"],
     "--overhead measures one middleware variant; --variants gave 2 (sync-only, none); "
     "allowed: one of shipped, sync-only, none"),
    (["demo", "--project", "nowhere"],
     "switchtrace demo: error: --project nowhere is not the example project (no such "
     "directory); allowed: the examples/project directory of a switchtrace checkout, or a "
     "copy of it"),
    (["demo", "--project", "."],
     "switchtrace demo: error: --project . is not the example project (it has no "
     "project/settings.py)"),
    (["explain", "--project", "."],
     "switchtrace explain: error: --project . is not the example project (it has no "
     "project/settings.py), and DJANGO_SETTINGS_MODULE is not set; for a project of your own, "
     "set it too, e.g. DJANGO_SETTINGS_MODULE=mysite.settings switchtrace explain --project ."),
    (["explode"], "argument COMMAND: invalid choice: 'explode'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_status_2(args, message, tmp_path):
    (tmp_path / "shape.json").write_text('{"cells": "no"}')
    out = run(args, tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3  # argparse adds its usage line


def cell(seq, rps):
    return {"server": "asgi", "endpoint": "/sync/", "variant": "shipped", "seq_us": seq,
            "req_per_s": {"50": rps}}  # fmt: skip


def stat(median, low, high):
    return {"median": median, "min": low, "max": high}


def test_compare_flags_only_what_is_slower_beyond_both_spreads():
    baseline = {"cells": [cell(stat(100, 90, 110), stat(1000, 900, 1100))]}
    overlapping = {"cells": [cell(stat(115, 105, 130), stat(950, 850, 1000))]}
    assert compare(overlapping, baseline) == []
    slower = {"cells": [cell(stat(140, 130, 150), stat(700, 650, 800))]}
    assert compare(slower, baseline) == [
        "ASGI shipped /sync/: seq 140.0 us/req, was 100.0 (every round slower than the "
        "baseline's slowest)",
        "ASGI shipped /sync/: c=50 700 req/s, was 1000 (every round slower than the "
        "baseline's slowest)",
    ]
    assert compare(slower, baseline, tolerance=0.5) == []


#: What explain says on stderr when it explains the example project for want
#: of DJANGO_SETTINGS_MODULE (a checkout's: these tests run in one).
EXPLAINING_THE_EXAMPLE = (
    "switchtrace explain: DJANGO_SETTINGS_MODULE is not set: explaining switchtrace's example "
    f"project, {EXAMPLE} (for a project of your own, set "
    "it, e.g. DJANGO_SETTINGS_MODULE=mysite.settings switchtrace explain)\n"
)


def test_explain_says_it_explains_the_example_project(tmp_path):
    """Without DJANGO_SETTINGS_MODULE, run from a project of one's own with
    switchtrace installed from a checkout, explain explained the checkout's
    example project and said so nowhere: its figures passed for the
    project's. It says so before them (on bad input, its error is one line alone).
    Given the project (--project), it says nothing."""
    out = run(["explain"], tmp_path)
    assert (out.returncode, out.stderr) == (0, EXPLAINING_THE_EXAMPLE)
    assert out.stdout.splitlines()[0] == "MIDDLEWARE: 8 entries"
    # Named by the variable (set for the demo, say): the same.
    out = run(["explain"], tmp_path, SWITCHTRACE_EXAMPLE_PROJECT=str(EXAMPLE))
    assert (out.returncode, out.stderr) == (0, EXPLAINING_THE_EXAMPLE)
    out = run(["explain", "--project", str(EXAMPLE)], tmp_path)
    assert (out.returncode, out.stderr) == (0, "")


def test_explain_predicts_and_measures(tmp_path):
    out = run(["explain", "--url", "/sync/", "--measure"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "/sync/ → sync_view (sync view)"
    assert (
        "ASGI, sync view: 32 switches (30 before the headers), 32 hops, 0 event loops created"
        in lines
    )
    assert (
        "WSGI, sync view: 0 switches (0 before the headers), 0 hops, 0 event loops created" in lines
    )
    assert lines.count("  measured: 32 switches, 32 hops, 0 loops (as predicted)") == 1
    assert lines.count("  measured: 0 switches, 0 hops, 0 loops (as predicted)") == 1
    assert (
        "     → mark XFrameOptionsMiddleware sync-only (async_capable = False), or rewrite "
        "XFrameOptionsMiddleware as a sync-and-async middleware (an async __call__ for an "
        "async get_response) (made sync-only it saves 20: Django then runs every "
        "sync-capable middleware above it synchronously too; rewritten it saves 2)"
    ) in lines


@pytest.mark.parametrize(
    "url, measured",
    [
        ("/stream/", "34 switches, 34 hops, 0 loops"),
        ("/async-stream/", "4 switches, 4 hops, 2 loops"),
    ],
)
def test_explain_measures_a_stream_of_the_other_kind_without_djangos_warning(
    url, measured, tmp_path
):
    """Django warns of a stream of the other kind of iterator than the
    server's (/stream/ under ASGI, /async-stream/ under WSGI): its two lines
    came amid the output, one pointing at switchtrace's code; the prediction
    already says what it costs."""
    out = run(["explain", "--url", url, "--measure"], tmp_path)
    assert (out.returncode, out.stderr) == (0, EXPLAINING_THE_EXAMPLE)
    assert (
        f"  measured: {measured} (as predicted, with 2 of the conditional switches listed above)"
        in out.stdout.splitlines()
    )


def test_explain_through_manage_py(tmp_path):
    from .conftest import EXAMPLE

    env = {**os.environ, "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "t.jsonl")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "manage.py", "switchtrace_explain", "--url", "/async/"]
    out = subprocess.run(
        [*command, "--measure"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert (
        "WSGI, async view: 2 switches (2 before the headers), 2 hops, 1 event loop created\n"
        "  2  an async view under WSGI runs in async_to_sync, with a new event loop and thread\n"
        "     → serve it under ASGI, or make the view sync\n"
        "  +2  when the response streams from an asynchronous iterator: Django reads it all in "
        "one async_to_sync under WSGI, with a new event loop and thread\n"
        "  measured: 2 switches, 2 hops, 1 loop (as predicted)\n"
    ) in out.stdout
    bad = subprocess.run(
        [*command[:3], "--url", "/nowhere/"], cwd=EXAMPLE, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2  # bad input, as for switchtrace explain
    assert bad.stderr.strip() == (
        "CommandError: the URL '/nowhere/' does not resolve to a view; allowed: a URL of "
        "ROOT_URLCONF 'project.urls'"
    )


@pytest.mark.parametrize("how", ["script", "module"])
def test_explain_finds_the_settings_module_in_the_current_directory(how, tmp_path):
    """Run from a project's directory with DJANGO_SETTINGS_MODULE set, as
    manage.py is: the console script finds the project there too, as
    ``python -m switchtrace`` does (Python puts the directory on its path)."""
    package = tmp_path / "mysite"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "SECRET_KEY = 'x'\nROOT_URLCONF = 'mysite.urls'\n"
        "MIDDLEWARE = ['switchtrace.django_app.middleware.SwitchTraceMiddleware']\n"
    )
    (package / "urls.py").write_text(
        "from django.http import HttpResponse\nfrom django.urls import path\n\n\n"
        "def ping(request):\n    return HttpResponse('pong')\n\n\n"
        "urlpatterns = [path('ping/', ping)]\n"
    )
    command = [SCRIPT] if how == "script" else [sys.executable, "-m", "switchtrace"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    out = subprocess.run(
        [*command, "explain", "--url", "/ping/"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "/ping/ → ping (sync view)"


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (["explain", "--url", "/nowhere/"], {},
         "switchtrace explain: error: the URL '/nowhere/' does not resolve to a view; allowed: "
         "a URL of ROOT_URLCONF 'project.urls'"),
        (["explain", "--measure"], {}, "switchtrace explain: error: --measure needs --url"),
        # (It said "--measure needs --url", given one.)
        (["explain", "--url", "", "--measure"], {},
         "switchtrace explain: error: --url '' is not a path; allowed: a path of the project "
         "beginning with '/', optionally with a query string, e.g. /sync/ or /search/?q=x"),
        (["explain"], {"DJANGO_SETTINGS_MODULE": "tests.broken_settings"},
         "switchtrace explain: error: MIDDLEWARE entry 'shop.middleware.Missing' cannot be "
         "imported: No module named 'shop'"),
    ],
)  # fmt: skip
def test_explain_bad_input(args, environ, message, tmp_path):
    from .conftest import EXAMPLE, ROOT

    extra = {**environ}
    if environ:
        # The inherited PYTHONPATH kept: it may name the checkout under test.
        extra["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]
        )
    command = [SCRIPT, *args]
    env = {**os.environ, "SWITCHTRACE_EXAMPLE_TRACES": str(tmp_path / "t.jsonl"), **extra}
    if not environ:
        env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == message
    assert out.stdout == ""


def test_the_demo_reading_says_when_wsgi_switches_after_the_headers():
    """An async stream under WSGI: the view's async_to_sync before the
    headers, and one more reading the stream after them, with its own loop
    and thread; the loops and threads are the whole request's."""
    from switchtrace.demo import Case, reading

    def case(server, variant, before, switches, loops, threads):
        return Case(server, variant, 200, before, switches, switches, loops, threads, [])

    cases = [
        case("ASGI", "shipped", 28, 30, 0, 2),
        case("ASGI", "sync-only", 8, 10, 0, 2),
        case("ASGI", "none", 2, 4, 0, 2),
        case("WSGI", "shipped", 2, 4, 2, 2),
        case("WSGI", "sync-only", 2, 4, 2, 2),
        case("WSGI", "none", 2, 4, 2, 2),
    ]
    assert reading(cases) == (
        "Under ASGI the shipped middleware costs 28 switches per request before the headers "
        "(30 in all); made sync-only 8, without middleware 2. Under WSGI: 2 before the "
        "headers (4 in all), with 2 new event loops and 2 new threads."
    )


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_project_help_names_where_the_example_project_is_found(command, tmp_path):
    """--help said "default: examples/project", where a switchtrace
    installed from a wheel serves the copy it carries, run from any
    directory (the README's search order)."""
    out = run([command, "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "--project PROJECT the example project (default: $SWITCHTRACE_EXAMPLE_PROJECT, else "
        "examples/project of the switchtrace checkout or of the current directory, else the "
        "copy installed with switchtrace)"
    ) in " ".join(out.stdout.split())


def test_the_installed_examples_database_is_removed_without_the_exit_hooks(tmp_path, monkeypatch):
    """The installed example's database, in a temporary directory the exit
    hooks remove: the command line ends with os._exit (interrupted; a view
    explain left running), which runs none, after removing it itself."""
    import tempfile

    from switchtrace import example

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    database = Path(example._temporary_database())
    database.write_bytes(b"")
    assert database.parent.parent == tmp_path
    example.remove_temporary()
    assert list(tmp_path.iterdir()) == []
