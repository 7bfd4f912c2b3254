"""What ``switchtrace bench`` computes, checks and prints, called with
constructed inputs (no figure is measured here): its statistics and ratios,
its tables, the baseline of --compare and the comparison, and its
arguments; its drivers and load generators, driven against applications
and a loopback server of the tests' own, and reading real processes; and
how its runs set themselves up."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time

import pytest

from switchtrace import bench, cli


def stat(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high}


# -- statistics and ratios -------------------------------------------------------


def test_spread_is_the_median_min_and_max():
    assert bench.spread([3.0, 1.0, 2.0, 10.0]) == stat(2.5, 1.0, 10.0)
    assert bench.spread([7.0]) == stat(7.0, 7.0, 7.0)


def interleave(rounds, servers, endpoints, modes, table):
    """_interleaved over ``table`` ({figure: {(server, endpoint, mode): [a
    round's value, ...]}}): each call of measure adds its round's values,
    as the benchmark's measure does. The calls, in order, and the rows."""
    calls = []
    figures = {name: {} for name in table}

    def measure(server, endpoint, mode):
        calls.append((server, endpoint, mode))
        for name, values in table.items():
            if (server, endpoint, mode) in values:
                done = figures[name].setdefault((server, endpoint, mode), [])
                done.append(values[server, endpoint, mode][len(done)])

    args = argparse.Namespace(rounds=rounds, servers=servers, endpoints=endpoints)
    rows = bench._interleaved(args, "shipped", modes, measure, figures)
    return calls, rows


def test_interleaved_shuffles_the_modes_every_round_with_a_fixed_seed():
    modes = ["disabled", "headers only", "full spans"]
    calls, _rows = interleave(3, ["wsgi", "asgi"], ["/sync/"], modes, {})
    # Every cell once a round, a server's modes together, in random.Random(0)'s order.
    assert calls == [
        ("wsgi", "/sync/", "headers only"), ("wsgi", "/sync/", "full spans"),
        ("wsgi", "/sync/", "disabled"), ("asgi", "/sync/", "headers only"),
        ("asgi", "/sync/", "full spans"), ("asgi", "/sync/", "disabled"),
        ("wsgi", "/sync/", "headers only"), ("wsgi", "/sync/", "full spans"),
        ("wsgi", "/sync/", "disabled"), ("asgi", "/sync/", "full spans"),
        ("asgi", "/sync/", "disabled"), ("asgi", "/sync/", "headers only"),
        ("wsgi", "/sync/", "headers only"), ("wsgi", "/sync/", "disabled"),
        ("wsgi", "/sync/", "full spans"), ("asgi", "/sync/", "full spans"),
        ("asgi", "/sync/", "headers only"), ("asgi", "/sync/", "disabled"),
    ]  # fmt: skip


def test_interleaved_ratios_are_the_rounds_own():
    """Each round's figure is divided by disabled's in the same round, and
    the spread taken over those ratios: 5/4 would be the ratio of the
    medians. A round where disabled measured 0 has no ratio; a figure
    missing for a mode, or measured in fewer rounds than disabled's, is
    left out of its row."""
    wsgi = ("wsgi", "/sync/")
    table = {
        "us_per_request": {
            (*wsgi, "disabled"): [4.0, 1.0, 8.0],
            (*wsgi, "full spans"): [4.0, 5.0, 8.0],
        },
        "cpu_us_per_request": {
            (*wsgi, "disabled"): [2.0, 0.0, 4.0],
            (*wsgi, "full spans"): [3.0, 9.0, 8.0],
        },
        "latency_us": {(*wsgi, "disabled"): [1.0, 2.0, 4.0]},
    }
    _calls, rows = interleave(3, ["wsgi"], ["/sync/"], ["disabled", "full spans"], table)
    assert rows == [
        {
            "server": "wsgi", "endpoint": "/sync/", "variant": "shipped", "mode": "disabled",
            "us_per_request": stat(4.0, 1.0, 8.0), "ratio": stat(1.0, 1.0, 1.0),
            "cpu_us_per_request": stat(2.0, 0.0, 4.0), "cpu_ratio": stat(1.0, 1.0, 1.0),
            "latency_us": stat(2.0, 1.0, 4.0), "latency_ratio": stat(1.0, 1.0, 1.0),
        },
        {
            "server": "wsgi", "endpoint": "/sync/", "variant": "shipped", "mode": "full spans",
            "us_per_request": stat(5.0, 4.0, 8.0), "ratio": stat(1.0, 1.0, 5.0),
            "cpu_us_per_request": stat(8.0, 3.0, 9.0), "cpu_ratio": stat(1.75, 1.5, 2.0),
        },
    ]  # fmt: skip


def test_interleaved_leaves_out_what_disabled_did_not_measure():
    """A figure disabled has not (its server's CPU unreadable), or that
    disabled measured 0 in every round, gives no ratio; a mode measured in
    fewer rounds than disabled (cannot be compared round by round) gives
    neither figure nor ratio."""
    cell = ("asgi", "/async/")
    table = {
        "us_per_request": {(*cell, "disabled"): [0.0, 0.0], (*cell, "headers only"): [3.0, 5.0]},
        "cpu_us_per_request": {(*cell, "headers only"): [1.0, 2.0]},
    }
    _calls, rows = interleave(2, ["asgi"], ["/async/"], ["disabled", "headers only"], table)
    assert rows == [
        {"server": "asgi", "endpoint": "/async/", "variant": "shipped", "mode": "disabled",
         "us_per_request": stat(0.0, 0.0, 0.0)},
        {"server": "asgi", "endpoint": "/async/", "variant": "shipped", "mode": "headers only",
         "us_per_request": stat(4.0, 3.0, 5.0)},
    ]  # fmt: skip
    uneven = {"latency_us": {(*cell, "disabled"): [2.0, 2.0], (*cell, "full spans"): [3.0]}}
    figures = {"latency_us": {key: list(values) for key, values in uneven["latency_us"].items()}}
    args = argparse.Namespace(rounds=0, servers=["asgi"], endpoints=["/async/"])
    rows = bench._interleaved(args, "none", ["disabled", "full spans"], lambda *cell: None, figures)
    assert rows == [
        {"server": "asgi", "endpoint": "/async/", "variant": "none", "mode": "disabled",
         "latency_us": stat(2.0, 2.0, 2.0), "latency_ratio": stat(1.0, 1.0, 1.0)},
        {"server": "asgi", "endpoint": "/async/", "variant": "none", "mode": "full spans"},
    ]  # fmt: skip


def test_the_requests_whose_spans_were_delivered():
    """The records dealt with, in the share of their spans delivered: 10
    records whose 170 spans made it all, 30 of 40 (a quarter of the spans
    refused), 4 of 8 (half), none, or no span at all (nothing to share
    out)."""
    assert bench._delivered((5, 100, 2), (15, 270, 2)) == 10.0
    assert bench._delivered((5, 100, 2), (45, 610, 172)) == 30.0
    assert bench._delivered((0, 0, 0), (8, 68, 68)) == 4.0
    assert bench._delivered((0, 0, 0), (4, 0, 68)) == 0.0
    assert bench._delivered((3, 9, 1), (3, 9, 1)) == 0.0


def test_the_span_threads_cpu_per_record():
    assert bench._cpu_us_per_record((10, 4_000_000), (14, 6_000_000)) == 500.0
    assert bench._cpu_us_per_record((0, 0), (1, 2_500)) == 2.5
    assert bench._cpu_us_per_record((14, 6_000_000), (14, 6_000_100)) is None


def _apps(served: list[tuple[str, str]]):
    """An ASGI and a WSGI application answering 'ok', each listing in
    ``served`` the requests it got: (its kind, the path)."""

    async def asgi(scope, receive, send):
        served.append(("asgi", scope["path"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi(environ, start_response):
        served.append(("wsgi", environ["PATH_INFO"]))
        start_response("200 OK", [])
        return io.BytesIO(b"ok")  # iterated, then closed

    return asgi, wsgi


def test_latencies_time_each_request_through_the_servers_handler():
    """The ASGI handler for asgi, the WSGI one for wsgi, ``between`` after
    each request, and each time within the call's."""
    served: list[tuple[str, str]] = []
    asgi, wsgi = _apps(served)
    for server in ("asgi", "wsgi"):
        served.clear()
        start = time.perf_counter()
        times = bench._latencies(
            (asgi, wsgi), server, "/x/", 3, "none", lambda: served.append(("between", ""))
        )
        took = time.perf_counter() - start
        assert served == [(server, "/x/"), ("between", "")] * 3
        assert len(times) == 3
        assert all(0 < t for t in times)
        assert sum(times) <= took


def test_latencies_of_a_response_never_complete_is_an_error():
    async def unfinished(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"o", "more_body": True})

    with pytest.raises(RuntimeError) as raised:
        bench._latencies((unfinished, None), "asgi", "/stream/", 1, "none", lambda: None)
    assert str(raised.value) == "/stream/: the response was never complete"


class ScriptedDriver:
    """A driver whose runs answer as ``script`` says for the cell's variant,
    the concurrency level and the round ((elapsed s, latencies s, peak
    threads, each response's figures)), so that what measure makes of them
    is exact. The calls it got, in order."""

    def __init__(self, script, warmup):
        self.script, self.warmup, self.calls, self.done = script, warmup, [], {}

    def run(self, server, variant, endpoint, requests, concurrency):
        self.calls.append((server, endpoint, variant, requests, concurrency))
        if requests == self.warmup:  # (the tests' warm-up and rounds differ in size)
            return 1.0, [1.0] * requests, 1, [None] * requests
        key = (variant, concurrency)
        self.done[key] = self.done.get(key, -1) + 1
        return self.script[key][self.done[key]]


def test_the_matrix_is_the_spread_over_rounds_of_each_cells_figures():
    """Sequential: the median latency of a round (µs), its spread over the
    rounds; under load: requests per second (requests / elapsed); the peak
    threads of each level over the rounds; the switches, hops, loops and
    threads started: the median (low) of the responses that sent them, 0
    where none did."""
    counted = [(31, 30, 1, 2), None, (30, 30, 0, 2), (32, 31, 0, 3)]
    script = {
        ("shipped", 1): [(9.0, [0.0625, 0.25, 0.125], 3, counted),
                         (9.0, [0.5, 0.5, 0.25], 5, counted)],
        ("shipped", 2): [(0.5, [1.0] * 5, 7, counted), (0.25, [1.0] * 5, 6, counted)],
        ("none", 1): [(9.0, [0.125], 1, [None]), (9.0, [0.125], 1, [None])],
        ("none", 2): [(1.0, [1.0] * 5, 4, [None] * 5), (1.0, [1.0] * 5, 4, [None] * 5)],
    }  # fmt: skip
    args = argparse.Namespace(
        servers=["asgi"], endpoints=["/sync/"], variants=["shipped", "none"],
        concurrency=[1, 2], rounds=2, warmup=1, requests=5,
    )  # fmt: skip
    driver = ScriptedDriver(script, warmup=1)
    progress = bench.Progress(8, io.StringIO())
    cells = bench.measure(args, driver, progress)
    assert cells == [
        {"server": "asgi", "endpoint": "/sync/", "variant": "shipped",
         "seq_us": stat(312500.0, 125000.0, 500000.0), "req_per_s": {"2": stat(15.0, 10.0, 20.0)},
         "peak_threads": {"1": 5, "2": 7}, "switches": 31, "hops": 30, "loops": 1,
         "threads_started": 2},
        {"server": "asgi", "endpoint": "/sync/", "variant": "none",
         "seq_us": stat(125000.0, 125000.0, 125000.0), "req_per_s": {"2": stat(5.0, 5.0, 5.0)},
         "peak_threads": {"1": 1, "2": 4}, "switches": 0, "hops": 0, "loops": 0,
         "threads_started": 0},
    ]  # fmt: skip
    # The warm-up, one request at a time, then every cell once a level and round.
    assert driver.calls == [
        ("asgi", "/sync/", "shipped", 1, 1), ("asgi", "/sync/", "none", 1, 1),
    ] + [
        ("asgi", "/sync/", variant, 5, level)
        for _round in range(2) for level in (1, 2) for variant in ("shipped", "none")
    ]  # fmt: skip
    assert progress.done == 8


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_matrix_names_each_cell_on_the_progress_line(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    script = {("shipped", 1): [(1.0, [0.5], 2, [None])], ("shipped", 3): [(1.0, [0.5], 2, [None])]}
    args = argparse.Namespace(
        servers=["wsgi"], endpoints=["/async-io/"], variants=["shipped"], concurrency=[1, 3],
        rounds=1, warmup=0, requests=1,
    )  # fmt: skip
    terminal = Terminal()
    bench.measure(args, ScriptedDriver(script, warmup=0), bench.Progress(2, terminal))
    steps = [step.split("  (~")[0] for step in terminal.getvalue().split("\r\x1b[K")[1:]]
    assert steps == ["[1/2] WSGI /async-io/ shipped c=1", "[2/2] WSGI /async-io/ shipped c=3"]


def test_the_progress_line_fits_the_terminal_and_needs_one(monkeypatch):
    """Cut to the terminal's width (a line that wraps is not cleared by a
    carriage return: each step left a row behind); none on a terminal that
    cannot move its cursor back (TERM=dumb), nor with standard error closed
    (2>&-: bound when the module was imported, it was None, and the command
    ended with AttributeError)."""
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.delenv("TERM", raising=False)
    terminal = Terminal()
    progress = bench.Progress(2, terminal)
    progress.step("WSGI /a-long-endpoint-name/ shipped c=1")
    assert (
        terminal.getvalue() == "\r\x1b[K[1/2] WSGI /a-long-"
    )  # 19 columns: the cursor stays on the line
    monkeypatch.setenv("TERM", "dumb")
    dumb = Terminal()
    bench.Progress(2, dumb).step("WSGI /sync/ shipped c=1")
    assert dumb.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", None)
    closed = bench.Progress(2)
    closed.step("WSGI /sync/ shipped c=1")
    closed.close()
    assert closed.live is False


def test_the_matrix_without_a_warmup_or_a_sequential_level():
    script = {("none", 50): [(2.0, [1.0] * 4, 9, [None] * 4)]}
    args = argparse.Namespace(
        servers=["wsgi"], endpoints=["/async/"], variants=["none"], concurrency=[50],
        rounds=1, warmup=0, requests=4,
    )  # fmt: skip
    driver = ScriptedDriver(script, warmup=0)
    assert bench.measure(args, driver, bench.Progress(1, io.StringIO())) == [
        {"server": "wsgi", "endpoint": "/async/", "variant": "none", "seq_us": None,
         "req_per_s": {"50": stat(2.0, 2.0, 2.0)}, "peak_threads": {"50": 9}, "switches": 0,
         "hops": 0, "loops": 0, "threads_started": 0},
    ]  # fmt: skip
    assert driver.calls == [("wsgi", "/async/", "none", 4, 50)]


def test_the_matrix_counts_the_switches_without_a_sequential_level():
    """The figures of the responses at every level, pooled over levels and
    rounds: a run without --concurrency 1 said 0 switches, 0 loops and 0
    threads for every cell."""
    script = {
        ("shipped", 5): [(1.0, [1.0] * 4, 6, [(2, 2, 1, 1), None, (2, 2, 1, 1), (3, 2, 1, 2)]),
                         (1.0, [1.0] * 4, 6, [(3, 2, 1, 2)] * 4)],
        ("shipped", 9): [(1.0, [1.0] * 4, 9, [(2, 2, 1, 1)] * 4),
                         (1.0, [1.0] * 4, 9, [(4, 3, 2, 2), None, None, None])],
    }  # fmt: skip
    args = argparse.Namespace(
        servers=["wsgi"], endpoints=["/async/"], variants=["shipped"], concurrency=[5, 9],
        rounds=2, warmup=0, requests=4,
    )  # fmt: skip
    [cell] = bench.measure(args, ScriptedDriver(script, warmup=0), bench.Progress(4, io.StringIO()))
    # 6 of (2, 2, 1, 1), 5 of (3, 2, 1, 2), 1 of (4, 3, 2, 2): the sixth of twelve.
    assert (cell["switches"], cell["hops"], cell["loops"], cell["threads_started"]) == (2, 2, 1, 1)
    assert cell["seq_us"] is None


# -- tables ------------------------------------------------------------------------


def test_fmt_is_the_median_and_range_to_the_digits_asked():
    assert bench._fmt(stat(12.345, 10.04, 15.96), 1) == "12.3 (10.0-16.0)"
    assert bench._fmt(stat(999.5, 900.4, 1000.6), 0) == "1000 (900-1001)"
    assert bench._fmt(None, 1) == "-"
    assert bench._fmt({}, 0) == "-"


def matrix_cell(server, variant, seq, rps, peak, switches, loops, threads):
    return {"server": server, "endpoint": "/sync/", "variant": variant, "seq_us": seq,
            "req_per_s": rps, "peak_threads": peak, "switches": switches, "hops": switches,
            "loops": loops, "threads_started": threads}  # fmt: skip


def test_render_prints_a_table_per_concurrency_level():
    results = {
        "driver": "in-process", "rounds": 2, "requests": 50, "python": "3.11.7",
        "django": "5.2", "asgiref": "3.13.0",
        "cells": [
            matrix_cell("asgi", "shipped", stat(412.25, 400.0, 430.75),
                        {"50": stat(2400.4, 2300.6, 2500.5), "200": stat(2100.0, 2000.0, 2200.0)},
                        {"1": 3, "50": 12, "200": 12}, 30, 0, 2),
            matrix_cell("wsgi", "none", None, {"50": stat(9000.0, 8999.5, 9100.0)},
                        {"50": 50}, 0, 0, 0),
        ],
    }  # fmt: skip
    out = io.StringIO()
    bench.render(results, out)
    assert out.getvalue().splitlines() == [
        "switchtrace bench (in-process; 2 rounds of 50 requests; no spans exported; medians, "
        "min-max over rounds)",
        "Python 3.11.7, Django 5.2, asgiref 3.13.0",
        "",
        "c=50                          seq us/req        conc req/s  peak thr  switches  loops"
        "  threads",
        "ASGI shipped /sync/  412.2 (400.0-430.8)  2400 (2301-2500)        12        30      0"
        "        2",
        "WSGI none /sync/                       -  9000 (9000-9100)        50         0      0"
        "        0",
        "",
        "c=200                         seq us/req        conc req/s  peak thr  switches  loops"
        "  threads",
        "ASGI shipped /sync/  412.2 (400.0-430.8)  2100 (2000-2200)        12        30      0"
        "        2",
        "WSGI none /sync/                       -                 -         -         0      0"
        "        0",
    ]


def test_render_of_a_sequential_run_has_one_table():
    """Concurrency 1 alone: no level has a req/s figure, and the one table
    is c=1's."""
    results = {
        "driver": "server", "rounds": 1, "requests": 1, "python": "3.13.0", "django": "6.1",
        "asgiref": "3.13.0",
        "cells": [matrix_cell("wsgi", "sync-only", stat(80.0, 80.0, 80.0), {}, {"1": 1}, 0, 0, 0)],
    }  # fmt: skip
    out = io.StringIO()
    bench.render(results, out)
    assert out.getvalue().splitlines()[2:] == [
        "",
        "c=1                          seq us/req  conc req/s  peak thr  switches  loops  threads",
        "WSGI sync-only /sync/  80.0 (80.0-80.0)           -         1         0      0        0",
    ]


def overhead_row(mode, **figures):
    return {"server": "asgi", "endpoint": "/sync/", "variant": "shipped", "mode": mode,
            "us_per_request": stat(5000.04, 4000.25, 6000.75), "ratio": stat(1.3, 1.1, 1.5),
            "latency_us": stat(4400, 4200, 4800), "latency_ratio": stat(1.0, 1.0, 1.0),
            **figures}  # fmt: skip


def test_render_overhead_prints_every_figure_of_a_row():
    rows = [
        overhead_row(
            "full spans",
            cpu_us_per_request=stat(5100.06, 4100.5, 6100),
            cpu_ratio=stat(1.3125, 1.2, 1.4),
            pipeline_cpu_us_per_request=stat(600.05, 500.5, 700.25),
        ),
        # Disabled's CPU read as 0 in every round (a clock's tick is 10 ms): no ratio.
        overhead_row("disabled", cpu_us_per_request=stat(0, 0, 0)),
    ]
    out = io.StringIO()
    bench.render_overhead({"rounds": 1, "requests": 1, "rows": rows}, out)
    assert out.getvalue().splitlines()[4:] == [
        "  ASGI shipped /sync/ full spans",
        "      wall     5000.0 (4000.2-6000.8)  x1.300 (1.100-1.500)   cpu     5100.1 "
        "(4100.5-6100.0)  x1.312 (1.200-1.400)",
        "      of which switchtrace's span thread: 600.0 (500.5-700.2) CPU µs per request",
        "      latency  4400.0 (4200.0-4800.0)  x1.000 (1.000-1.000)",
        "  ASGI shipped /sync/ disabled",
        "      wall     5000.0 (4000.2-6000.8)  x1.300 (1.100-1.500)   cpu               not "
        "measured",
        "      latency  4400.0 (4200.0-4800.0)  x1.000 (1.000-1.000)",
    ]


# -- the baseline of --compare -------------------------------------------------------


def baseline_file(tmp_path, data) -> str:
    path = tmp_path / "base.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def good(**fields):
    return {"server": "asgi", "endpoint": "/sync/", "variant": "shipped",
            "seq_us": stat(100, 90, 110), "req_per_s": {"50": stat(1000, 900, 1100)},
            **fields}  # fmt: skip


def refused(tmp_path, data) -> str:
    path = baseline_file(tmp_path, data)
    with pytest.raises(bench.BadBaseline) as raised:
        bench.load_baseline(path)
    return str(raised.value).replace(path, "base.json")


def test_a_baseline_is_taken_whole_with_every_kind_of_figure(tmp_path):
    data = {"format": 1, "mode": "matrix", "driver": "server", "cells": [
        good(),
        good(server="wsgi", seq_us=None, req_per_s={}),
        good(variant="none", seq_us=stat(1, 0.5, 2), req_per_s={"007": stat(3, 2.5, 4)}),
    ]}  # fmt: skip
    loaded = bench.load_baseline(baseline_file(tmp_path, data))
    # A level's key as a run writes it, so that this run's finds it.
    data["cells"][2]["req_per_s"] = {"7": stat(3, 2.5, 4)}
    assert loaded == data


def test_a_path_that_cannot_be_read_says_why(tmp_path):
    (tmp_path / "file").write_text("{}")
    with pytest.raises(bench.BadBaseline) as raised:
        bench.load_baseline(str(tmp_path / "file" / "base.json"))
    assert str(raised.value) == (
        f"--compare: {tmp_path / 'file' / 'base.json'} cannot be read (Not a directory)"
    )


SHAPE = (
    "--compare: base.json is not a result of 'switchtrace bench --json' (expected an object "
    "with format 1, mode 'matrix' and a cells list)"
)


@pytest.mark.parametrize(
    "data",
    [
        [],
        "null",
        {"format": 2, "mode": "matrix", "cells": []},
        {"mode": "matrix", "cells": []},
        {"format": 1, "mode": "matrix", "cells": {}},
        {"format": 1, "mode": "overhead", "cells": []},
        {"format": 1, "cells": []},
    ],
)
def test_a_baseline_of_another_shape_is_refused(data, tmp_path):
    assert refused(tmp_path, data) == SHAPE


def matrix(*cells):
    return {"format": 1, "mode": "matrix", "cells": list(cells)}


CELL_ALLOWED = "allowed: an object with server, endpoint, variant, seq_us and req_per_s"
STAT_ALLOWED = "an object of numbers median, min and max"


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (None, f"cell 1 is null; {CELL_ALLOWED}"),
        (True, f"cell 1 is a boolean; {CELL_ALLOWED}"),
        (2.5, f"cell 1 is the number 2.5; {CELL_ALLOWED}"),
        ("x" * 50, f"cell 1 is the string '{'x' * 40}'; {CELL_ALLOWED}"),
        ([good()], f"cell 1 is a list; {CELL_ALLOWED}"),
        (good(variant={}), "cell 1: field variant is an object; allowed: a string"),
        (good(server=None), "cell 1: field server is null; allowed: a string"),
        ({"server": "asgi", "variant": "none"},
         "cell 1: field endpoint is missing; allowed: a string"),
        ({k: v for k, v in good().items() if k != "seq_us"},
         "cell 1 (asgi shipped /sync/): field seq_us is missing; allowed: null or "
         f"{STAT_ALLOWED}"),
        (good(seq_us=[]),
         f"cell 1 (asgi shipped /sync/): field seq_us is a list; allowed: null or {STAT_ALLOWED}"),
        (good(seq_us={"median": 1, "min": 1}),
         "cell 1 (asgi shipped /sync/): field seq_us.max is missing; allowed: a number, finite "
         "and not negative"),
        (good(seq_us={"median": False, "min": 1, "max": 1}),
         "cell 1 (asgi shipped /sync/): field seq_us.median is a boolean; allowed: a number, "
         "finite and not negative"),
        (good(req_per_s=None),
         "cell 1 (asgi shipped /sync/): field req_per_s is null; allowed: an object of "
         f"concurrency level: {STAT_ALLOWED}"),
        (good(req_per_s={"50": stat(1, 1, 1), "0": stat(1, 1, 1)}),
         "cell 1 (asgi shipped /sync/): req_per_s has the key '0'; allowed: a concurrency level "
         "(a positive integer)"),
        (good(req_per_s={"5a": stat(1, 1, 1)}),
         "cell 1 (asgi shipped /sync/): req_per_s has the key '5a'; allowed: a concurrency "
         "level (a positive integer)"),
        # An Arabic-Indic five: a digit to str.isdigit, no concurrency level.
        (good(req_per_s={"\u0665": stat(1, 1, 1)}),
         "cell 1 (asgi shipped /sync/): req_per_s has the key '\u0665'; allowed: a concurrency "
         "level (a positive integer)"),
        (good(req_per_s={"50": 7}),
         "cell 1 (asgi shipped /sync/): field req_per_s.50 is the number 7; allowed: "
         f"{STAT_ALLOWED}"),
        (good(req_per_s={"50": {"median": 1, "min": "1", "max": 1}}),
         "cell 1 (asgi shipped /sync/): field req_per_s.50.min is the string '1'; allowed: a "
         "number, finite and not negative"),
    ],
)  # fmt: skip
def test_a_baseline_cell_names_its_wrong_field(cell, message, tmp_path):
    assert refused(tmp_path, matrix(good(), cell)) == f"--compare: base.json: {message}"


# -- the comparison ------------------------------------------------------------------


def cell(server="asgi", variant="shipped", seq=None, **rps):
    return {"server": server, "endpoint": "/sync/", "variant": variant, "seq_us": seq,
            "req_per_s": {level[1:]: value for level, value in rps.items()}}  # fmt: skip


def test_slower_means_beyond_the_tolerance_and_both_spreads():
    baseline = {"cells": [cell(seq=stat(100, 90, 100), c50=stat(1000, 1000, 1100))]}

    def slower(current, tolerance):
        return bench.slower_cells({"cells": [current]}, baseline, tolerance)

    # At the bound: not slower (tolerances exact in binary, so are the bounds).
    assert slower(cell(seq=stat(130, 125, 140), c50=stat(950, 700, 800)), 0.25) == {}
    assert slower(cell(seq=stat(130, 100, 140), c50=stat(950, 800, 1000)), 0.0) == {}
    # Just beyond it.
    assert slower(cell(seq=stat(130, 126, 140), c50=stat(750, 700, 799)), 0.25) == {
        "ASGI shipped /sync/": [
            "ASGI shipped /sync/: seq 130.0 us/req, was 100.0 (every round slower than the "
            "baseline's slowest)",
            "ASGI shipped /sync/: c=50 750 req/s, was 1000 (every round slower than the "
            "baseline's slowest)",
        ]
    }
    assert slower(cell(seq=stat(130, 101, 140)), 0.0) == {
        "ASGI shipped /sync/": [
            "ASGI shipped /sync/: seq 130.0 us/req, was 100.0 (every round slower than the "
            "baseline's slowest)"
        ]
    }
    assert slower(cell(seq=stat(130, 126, 140), c50=stat(750, 700, 799)), 0.5) == {}


def test_only_the_figures_both_runs_have_are_compared():
    """A cell, a level or a sequential figure that one of the runs has not
    is passed over; the others are compared."""
    baseline = {"cells": [
        cell(seq=stat(100, 100, 100), c50=stat(1000, 1000, 1000)),
        cell(variant="none", seq=None, c200=stat(500, 500, 500)),
    ]}  # fmt: skip
    current = {"cells": [
        cell(seq=None, c50=stat(10, 10, 10), c200=stat(1, 1, 1)),
        cell(variant="none", seq=stat(999, 999, 999), c200=stat(500, 500, 500)),
        cell(server="wsgi", seq=stat(999, 999, 999), c50=stat(1, 1, 1)),
    ]}  # fmt: skip
    assert bench.slower_cells(current, baseline) == {
        "ASGI shipped /sync/": [
            "ASGI shipped /sync/: c=50 10 req/s, was 1000 (every round slower than the "
            "baseline's slowest)"
        ]
    }
    assert (
        bench.compare(current, baseline)
        == bench.slower_cells(current, baseline)["ASGI shipped /sync/"]
    )
    assert bench.compare(baseline, baseline) == []


def test_compare_lists_every_slower_cells_lines_in_the_runs_order():
    baseline = {"cells": [cell(variant=v, seq=stat(10, 10, 10)) for v in ("shipped", "none")]}
    current = {"cells": [cell(variant=v, seq=stat(20, 20, 20)) for v in ("none", "shipped")]}
    assert bench.compare(current, baseline) == [
        "ASGI none /sync/: seq 20.0 us/req, was 10.0 (every round slower than the baseline's "
        "slowest)",
        "ASGI shipped /sync/: seq 20.0 us/req, was 10.0 (every round slower than the "
        "baseline's slowest)",
    ]


def test_the_summary_says_how_many_cells_were_compared():
    baseline = {"cells": [cell(variant="shipped"), cell(variant="none")]}
    both = {"cells": [cell(variant="none"), cell(variant="shipped")]}
    assert bench.comparison_summary(both, baseline, "b.json", 0) == (
        "compared 2 cells with b.json: none slower"
    )
    assert bench.comparison_summary(both, baseline, "b.json", 2) == (
        "compared 2 cells with b.json: 2 slower"
    )
    some = {"cells": [cell(variant="none"), cell(variant="sync-only"), cell(server="wsgi")]}
    assert bench.comparison_summary(some, baseline, "b.json", 1) == (
        "compared 1 cell with b.json (of this run's 3; the others are not in it): 1 slower"
    )


def bench_args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(["bench", *argv])


def test_a_run_sharing_a_cell_with_the_baseline_is_compared():
    args = bench_args("--servers", "wsgi,asgi", "--endpoints", "/sync/", "--variants", "none",
                      "--compare", "b.json")  # fmt: skip
    assert bench.no_shared_cell(args, {"cells": [cell(variant="none", c50=stat(9, 9, 9))]}) is None
    assert bench.no_shared_cell(args, {"cells": []}) == (
        "--compare: b.json has none of the cells this run measures, so nothing would be "
        "compared; its cells: none; this run's: WSGI none /sync/, ASGI none /sync/; allowed: "
        "the --servers, --endpoints and --variants of a run that shares a cell with it"
    )


def test_a_run_sharing_no_figure_with_the_baseline_is_refused(tmp_path):
    """Cells in common, but no concurrency level measured by both: the run
    said "compared 1 cell ... none slower" having compared nothing."""
    args = bench_args("--servers", "asgi", "--endpoints", "/sync/", "--variants", "shipped",
                      "--concurrency", "1,200", "--compare", "b.json")  # fmt: skip
    baseline = {"cells": [cell(c50=stat(9, 9, 9)), cell(variant="none", seq=stat(1, 1, 1))]}
    assert bench.no_shared_cell(args, baseline) == (
        "--compare: b.json has no figure at this run's concurrency (1, 200) for the cells "
        "the two share, so nothing would be compared; its levels there: 50; allowed: a "
        "--concurrency with one of them"
    )
    empty = {"cells": [cell()]}
    assert bench.no_shared_cell(args, empty) == (
        "--compare: b.json has no figure at this run's concurrency (1, 200) for the cells "
        "the two share, so nothing would be compared; its levels there: none; allowed: a "
        "--concurrency with one of them"
    )
    # One level in common is enough: sequential (1), or one above it.
    assert bench.no_shared_cell(args, {"cells": [cell(seq=stat(1, 1, 1))]}) is None
    assert (
        bench.no_shared_cell(args, {"cells": [cell(c50=stat(9, 9, 9), c200=stat(9, 9, 9))]}) is None
    )
    # A baseline's level written with zeros in front is the same level, and
    # compared as such.
    padded = {"format": 1, "mode": "matrix", "cells": [cell(c050=stat(9, 9, 9))]}
    loaded = bench.load_baseline(baseline_file(tmp_path, padded))
    fifty = bench_args("--servers", "asgi", "--endpoints", "/sync/", "--variants", "shipped",
                       "--concurrency", "50", "--compare", "b.json")  # fmt: skip
    assert bench.no_shared_cell(fifty, loaded) is None
    assert bench.slower_cells({"cells": [cell(c50=stat(5, 5, 5))]}, loaded) == {
        "ASGI shipped /sync/": [
            "ASGI shipped /sync/: c=50 5 req/s, was 9 (every round slower than the "
            "baseline's slowest)"
        ]
    }
    # Without --concurrency: the default levels, 1, 50 and 200.
    default = bench_args("--servers", "asgi", "--endpoints", "/sync/", "--variants", "shipped",
                         "--compare", "b.json")  # fmt: skip
    assert bench.no_shared_cell(default, {"cells": [cell(c50=stat(9, 9, 9))]}) is None
    assert bench.no_shared_cell(default, {"cells": [cell(c100=stat(9, 9, 9))]}) == (
        "--compare: b.json has no figure at this run's concurrency (1, 50, 200) for the cells "
        "the two share, so nothing would be compared; its levels there: 100; allowed: a "
        "--concurrency with one of them"
    )


# -- arguments -------------------------------------------------------------------------


def test_the_defaults():
    assert vars(bench_args()) == {
        "command": "bench", "servers": ["wsgi", "asgi"],
        "endpoints": ["/sync/", "/async/", "/async-io/"], "variants": None,
        "concurrency": None, "requests": 200, "rounds": 3, "warmup": 20,
        "driver": "in-process", "overhead": False, "json": False, "compare": None,
        "tolerance": None, "project": None,
    }  # fmt: skip


def test_every_option_is_taken():
    args = bench_args(
        "--servers", "asgi", "--endpoints", "/stream/,/sync/", "--variants", "sync-only",
        "--concurrency", "200,1,50,1", "--requests", "1", "--rounds", "2", "--warmup", "0",
        "--server", "--overhead", "--json", "--compare", "b.json", "--tolerance", "0",
        "--project", "p",
    )  # fmt: skip
    assert vars(args) == {
        "command": "bench", "servers": ["asgi"], "endpoints": ["/stream/", "/sync/"],
        "variants": ["sync-only"], "concurrency": [1, 50, 200], "requests": 1, "rounds": 2,
        "warmup": 0, "driver": "server", "overhead": True, "json": True, "compare": "b.json",
        "tolerance": 0.0, "project": "p",
    }  # fmt: skip


def test_a_list_is_its_items_once_each_in_the_order_given():
    parse = bench._choices(("wsgi", "asgi"), "server")
    assert parse(" asgi , wsgi,asgi,") == ["asgi", "wsgi"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown server ''; allowed: wsgi, asgi"),
        (" , ", "unknown server ' , '; allowed: wsgi, asgi"),
        ("wsgi,http,asgi,h2", "unknown server 'http', 'h2'; allowed: wsgi, asgi"),
    ],
)
def test_a_list_of_unknown_items_names_them(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        bench._choices(("wsgi", "asgi"), "server")(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (bench._concurrency, "1000,1", [1, 1000]),
        (bench._concurrency, "7", [7]),
        (bench._positive, "1", 1),
        (bench._positive, " 12 ", 12),
        (bench._non_negative, "0", 0),
        (bench._non_negative, "3", 3),
        (bench._fraction, "0", 0.0),
        (bench._fraction, "10", 10.0),
        (bench._fraction, "0.25", 0.25),
    ],
)
def test_a_number_at_its_bounds_is_taken(parse, text, value):
    assert parse(text) == value


CONCURRENCY = "allowed: integers from 1 to 1000 separated by commas, e.g. 1,50,200"


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (bench._concurrency, "0", f"invalid concurrency '0'; {CONCURRENCY}"),
        (bench._concurrency, "1,1001", f"invalid concurrency '1,1001'; {CONCURRENCY}"),
        (bench._concurrency, "", f"invalid concurrency ''; {CONCURRENCY}"),
        (bench._concurrency, "1,x", f"invalid concurrency '1,x'; {CONCURRENCY}"),
        (bench._positive, "0", "invalid value '0'; allowed: a positive integer"),
        (bench._positive, "x", "invalid value 'x'; allowed: a positive integer"),
        (bench._non_negative, "-1", "invalid value '-1'; allowed: 0 or a positive integer"),
        (bench._non_negative, "x", "invalid value 'x'; allowed: 0 or a positive integer"),
        (bench._fraction, "-0.01", "invalid tolerance '-0.01'; allowed: a number from 0 to 10 "
         "(0.1 = 10 %)"),
        (bench._fraction, "10.01", "invalid tolerance '10.01'; allowed: a number from 0 to 10 "
         "(0.1 = 10 %)"),
        (bench._fraction, "nan", "invalid tolerance 'nan'; allowed: a number from 0 to 10 "
         "(0.1 = 10 %)"),
        (bench._fraction, "x", "invalid tolerance 'x'; allowed: a number from 0 to 10 "
         "(0.1 = 10 %)"),
    ],
)  # fmt: skip
def test_a_number_out_of_bounds_is_refused(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse(text)
    assert str(raised.value) == message


NOWHERE = (
    "switchtrace bench: error: --project nowhere is not the example project (no such "
    "directory); allowed: the examples/project directory of a switchtrace checkout, or a copy "
    "of it\n"
)


@pytest.mark.parametrize(
    "argv",
    [
        ["--overhead", "--concurrency", "1"],
        ["--overhead", "--variants", "none"],
        ["--concurrency", "1,50", "--variants", "none,shipped"],
        ["--tolerance", "0.5", "--compare", "base.json"],
        ["--tolerance", "0", "--compare", "base.json"],
    ],
)
def test_what_goes_together_passes_the_checks(argv, tmp_path, monkeypatch, capsys):
    """Checked before the project is looked for: these get as far as the
    (missing) project."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(matrix(good(variant="none"))))
    assert cli.main(["bench", *argv, "--servers", "asgi", "--project", "nowhere"]) == 2
    assert capsys.readouterr() == ("", NOWHERE)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--overhead", "--concurrency", "2"],
         "--overhead serves one request at a time; --concurrency gave 2; allowed: 1, or no "
         "--concurrency"),
        (["--overhead", "--variants", "sync-only,shipped"],
         "--overhead measures one middleware variant; --variants gave 2 (sync-only, shipped); "
         "allowed: one of shipped, sync-only, none"),
        (["--tolerance", "0", "--overhead"],
         "--tolerance goes with --compare, which it is the tolerance of; allowed: --tolerance "
         "with --compare FILE, or neither"),
        (["--compare", "base.json", "--variants", "shipped", "--endpoints", "/sync/"],
         "--compare: base.json has none of the cells this run measures, so nothing would be "
         "compared; its cells: ASGI none /sync/; this run's: ASGI shipped /sync/; allowed: the "
         "--servers, --endpoints and --variants of a run that shares a cell with it"),
        # The variants default to all three, under --compare too.
        (["--compare", "base.json", "--endpoints", "/async/"],
         "--compare: base.json has none of the cells this run measures, so nothing would be "
         "compared; its cells: ASGI none /sync/; this run's: ASGI shipped /async/, ASGI "
         "sync-only /async/, ASGI none /async/; allowed: the --servers, --endpoints and "
         "--variants of a run that shares a cell with it"),
        (["--compare", "missing.json"], "--compare: missing.json does not exist; allowed: a "
         "file written by 'switchtrace bench --json'"),
    ],
)  # fmt: skip
def test_what_does_not_go_together_is_bad_input(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(matrix(good(variant="none"))))
    assert cli.main(["bench", *argv, "--servers", "asgi", "--project", "nowhere"]) == 2
    assert capsys.readouterr() == ("", f"switchtrace bench: error: {message}\n")


# -- the servers of --driver server -------------------------------------------------------


def test_a_responses_figures_are_its_four_headers():
    headers = {"x-context-switches": "30", "x-thread-hops": "28", "x-event-loops": "0",
               "x-threads-started": "2", "content-length": "12"}  # fmt: skip
    assert bench._figures(headers) == (30, 28, 0, 2)
    del headers["x-threads-started"]
    assert bench._figures(headers) is None


@pytest.mark.parametrize("configured", [{}, {"SWITCHTRACE": None}, {"SWITCHTRACE": "on"}])
def test_the_modes_settings_for_a_project_without_a_switchtrace_dict(configured):
    """SWITCHTRACE missing, or no dict (which the checks report): each mode's
    settings are made from an empty one."""
    project = {"MIDDLEWARE": ["switchtrace.django_app.middleware.SwitchTraceMiddleware"],
               **configured}  # fmt: skip
    modes = [{bench.OVERHEAD_MODE: mode} for mode in bench.OVERHEAD_VARIANTS]
    assert [bench.overhead_settings(project, mode) for mode in modes] == [
        {"MIDDLEWARE": [], "SWITCHTRACE": {"ENABLED": False}},
        {"SWITCHTRACE": {"EXPORTER": "none"}},
        {"SWITCHTRACE": {"SAMPLE_RATE": 1.0}},
    ]


# -- the drivers and load generators -------------------------------------------------------


def _read(data: bytes):
    """read_response on ``data`` through a real StreamReader: what it returns
    (or raises), and the bytes it left."""
    import asyncio

    async def read():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        try:
            result = await bench.read_response(reader)
        except bench.ServerFailed as exc:
            result = exc
        return result, await reader.read()

    return asyncio.run(read())


def test_a_response_is_read_to_the_end_of_its_content_length():
    """Its status and its headers, names lower-cased, values stripped, split at
    the first colon; its body read to its length and no further."""
    response = (
        b"HTTP/1.1 200 OK\r\n"
        b"date: Fri, 04 Dec 2026 13:00:00 GMT\r\n"
        b"Location: http://127.0.0.1:8000/x/\r\n"
        b"X-Context-Switches:  30 \r\n"
        b"Content-Length: 12\r\n"
        b"\r\n"
        b"hello\r\n\r\nold"
    )
    assert _read(response + b"HTTP/1.1 204") == (
        (
            200,
            {
                "date": "Fri, 04 Dec 2026 13:00:00 GMT",
                "location": "http://127.0.0.1:8000/x/",
                "x-context-switches": "30",
                "content-length": "12",
            },
        ),
        b"HTTP/1.1 204",
    )


def test_a_chunked_response_is_read_to_its_last_chunk():
    """Chunk sizes are hexadecimal; each chunk ends with CRLF; the empty one is the last."""
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n10\r\n0123456789abcdef\r\nA\r\n0123456789\r\n0\r\n\r\n"
    )
    assert _read(response + b"next") == ((200, {"transfer-encoding": "chunked"}), b"next")


def test_an_error_response_is_an_error_once_read():
    """400 or more: a failure, or a request the project does not serve (a 404
    was timed as the endpoint's)."""
    for status in (b"500 Internal Server Error", b"503 Service Unavailable", b"404 Not Found",
                   b"400 Bad Request"):  # fmt: skip
        failed, left = _read(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nnoNEXT")
        assert (type(failed), str(failed), left) == (
            bench.ServerFailed,
            "server answered HTTP/1.1 " + status.decode(),
            b"NEXT",
        )
    assert _read(b"HTTP/1.1 399 Whatever\r\nContent-Length: 0\r\n\r\n") == (
        (399, {"content-length": "0"}),
        b"",
    )


def _load_through(requests: int, concurrency: int, pause=None):
    """_http_load against a server of this test's own on loopback, which
    answers the n-th request it gets with n as its X-Context-Switches and
    lists what happened in order: each connection it accepted and closed,
    each request it got, and (through ``pause``) each pause."""
    import asyncio

    events: list[tuple[str, ...]] = []

    async def answer(reader, writer):
        me = str(sum(1 for event in events if event[0] == "open"))
        events.append(("open", me))
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            events.append(("request", me, head.decode()))
            served = sum(1 for event in events if event[0] == "request")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Context-Switches: %d\r\n"
                b"X-Thread-Hops: 7\r\nX-Event-Loops: 1\r\nX-Threads-Started: 0\r\n\r\nok" % served
            )
        events.append(("closed", me))
        writer.close()

    async def load():
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            paused = None if pause is None else (lambda: (events.append(("pause",)), pause()))
            result = await bench._http_load("127.0.0.1", port, "/x/", requests, concurrency, paused)
            for _ in range(1000):  # until the server has seen each connection closed
                if [e[0] for e in events].count("closed") == [e[0] for e in events].count("open"):
                    break
                await asyncio.sleep(0.01)
        return result

    start = time.perf_counter()
    elapsed, latencies, figures = asyncio.run(load())
    took = time.perf_counter() - start
    assert len(latencies) == requests
    assert 0 < sum(latencies) / concurrency <= elapsed <= took
    return events, figures


def test_http_load_sends_the_requests_over_keep_alive_connections():
    """Each request once, over ``concurrency`` connections (no more than there
    are requests), each connection closed after; each response's figures."""
    events, figures = _load_through(5, 2)
    assert sorted(figures) == [(n, 7, 1, 0) for n in range(1, 6)]
    assert sorted(e[0] for e in events) == ["closed"] * 2 + ["open"] * 2 + ["request"] * 5
    assert {e[2] for e in events if e[0] == "request"} == {
        "GET /x/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    }
    assert {e[1] for e in events if e[0] == "request"} == {"0", "1"}
    events, figures = _load_through(2, 5)
    assert [e[0] for e in events].count("open") == 2
    assert sorted(figures) == [(1, 7, 1, 0), (2, 7, 1, 0)]


def test_http_load_pauses_before_each_request():
    events, figures = _load_through(3, 1, pause=lambda: None)
    assert [e[0] for e in events] == ["open"] + ["pause", "request"] * 3 + ["closed"]
    assert figures == [(1, 7, 1, 0), (2, 7, 1, 0), (3, 7, 1, 0)]


def _stalling_server(answers: int, pace: float = 0.0):
    """A loopback server of the test's own that answers its first
    ``answers`` requests (each after ``pace`` seconds), then keeps its
    connections open without answering; what it saw, in order."""
    import asyncio

    events: list[str] = []

    async def answer(reader, writer):
        events.append("open")
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            events.append("request")
            if events.count("request") > answers:
                continue  # read, never answered
            await asyncio.sleep(pace)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        events.append("closed")
        writer.close()

    return events, answer


def _load_stalling(answers: int, requests: int, concurrency: int, stall: float, pace=0.0):
    import asyncio

    events, answer = _stalling_server(answers, pace)

    async def load():
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                return await bench._http_load(
                    "127.0.0.1", port, "/x/", requests, concurrency, stall=stall
                )
            finally:
                for _ in range(1000):  # until the server has seen each connection closed
                    if events.count("closed") == events.count("open"):
                        break
                    await asyncio.sleep(0.01)

    return events, load


def test_http_load_gives_up_on_a_server_that_keeps_its_connections_but_stops_answering():
    """A server that took the requests and answers none for ``stall``
    seconds: Stalled, every connection closed; before, the load waited for
    it for ever (a view waiting for ever, a server stopped with SIGSTOP)."""
    import asyncio

    for answers, requests, concurrency in ((0, 1, 1), (3, 10, 2), (1, 5, 3)):
        events, load = _load_stalling(answers, requests, concurrency, stall=0.3)
        with pytest.raises(bench.Stalled):
            asyncio.run(load())
        assert (events.count("open"), events.count("closed")) == (concurrency, concurrency)
        # Each connection sent one request more than it got answered, no further.
        assert events.count("request") == answers + concurrency


def test_http_load_waits_for_a_slow_server_that_keeps_answering():
    """Stalled is a window without any response, not a limit on the whole
    load: 12 responses, 0.1 s apart, take longer than the 1 s stall. (With
    0.05 s and 0.3 s, the process descheduled for 0.4 s on a loaded box
    came back to a stall.)"""
    import asyncio

    events, load = _load_stalling(12, 12, 1, stall=1.0, pace=0.1)
    elapsed, latencies, figures = asyncio.run(load())
    assert (len(latencies), figures) == (12, [None] * 12)
    assert elapsed > 1.0
    assert events == ["open"] + ["request"] * 12 + ["closed"]


FAMILY = """
import subprocess, sys, threading, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
for _ in range(2):
    threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
sum(range(10**6))
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def family():
    """A process (three threads) and its child (one), both stopped: their
    pids. Killed and waited for after the test."""
    import os
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        for pid in (child, parent.pid):
            os.kill(pid, signal.SIGSTOP)
            while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
                pass
        yield parent.pid, child
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, Linux's CPU clocks")
def test_a_servers_family_threads_and_cpu(family):
    """A server's process and its children (gunicorn's workers): their pids,
    threads, and CPU time, every thread's, to the nanosecond (the sum of
    what the kernel says each thread has run, in /proc/PID/task/TID/schedstat)."""
    import os

    parent, child = family
    assert bench._family(parent) == [parent, child]
    assert bench._family(child) == [child]
    assert bench._threads_of(parent) == 3 + 1
    assert bench._threads_of(child) == 1
    ran = 0
    for pid in (parent, child):
        for task in os.listdir(f"/proc/{pid}/task"):
            ran += int(open(f"/proc/{pid}/task/{task}/schedstat").read().split()[0])
    assert bench._cpu_of(parent) == pytest.approx(ran / 1e9, rel=0, abs=1e-9)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, Linux's CPU clocks")
def test_a_server_gone_has_no_family_threads_or_cpu():
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert bench._family(gone.pid) == [gone.pid]
    assert bench._threads_of(gone.pid) == 0
    assert bench._cpu_of(gone.pid) is None


BUSY_THEN_STOPPED = """
import os, signal, time
print("busy", flush=True)
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's CPU clocks")
def test_waiting_for_a_server_to_be_idle_ends_once_it_is(family):
    """However long its timeout: for a server stopped (its CPU clock still),
    for one gone (its CPU unreadable), and for one busy, then stopped, while
    it waits (each reading compared with the one before, not the first)."""
    import subprocess

    bench._wait_idle(family[0], timeout=600)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    bench._wait_idle(gone.pid, timeout=600)
    busy = subprocess.Popen([sys.executable, "-c", BUSY_THEN_STOPPED], stdout=subprocess.PIPE)
    try:
        assert busy.stdout.readline() == b"busy\n"
        bench._wait_idle(busy.pid, timeout=600)
    finally:
        busy.kill()
        busy.wait()
        busy.stdout.close()


def test_request_spans_counts_the_server_spans_by_path(tmp_path):
    """Spans of kind SERVER (2) alone, by their url.path, over every line,
    resource and scope of an OTLP/JSON file; none in a file not written."""

    def span(kind, **attributes):
        return {
            "kind": kind,
            "attributes": [{"key": k.replace("_", "."), "value": {"stringValue": v}}
                           for k, v in attributes.items()],
        }  # fmt: skip

    lines = [
        {"resourceSpans": [
            {"scopeSpans": [{"spans": [span(2, http_method="GET", url_path="/sync/"),
                                       span(1, url_path="/sync/"), span(3, url_path="/sync/")]},
                            {"spans": [span(2, url_path="/async/")]}]},
            {"scopeSpans": [{"spans": [span(2, url_path="/sync/"), span(2)]}]},
        ]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [span(2, url_path="/sync/")]}]}]},
        {},
    ]  # fmt: skip
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert bench._request_spans(path) == {"/sync/": 3, "/async/": 1}
    assert bench._request_spans(tmp_path / "none.jsonl") == {}


def _figured(n: int) -> list[tuple[str, str]]:
    """The headers of the n-th response: n switches, 1 hop, 0 loops, 2 threads started."""
    return [("X-Context-Switches", str(n)), ("X-Thread-Hops", "1"), ("X-Event-Loops", "0"),
            ("X-Threads-Started", "2")]  # fmt: skip


def _steady_threads() -> int:
    """``bench._threads()`` once the threads of earlier tests have ended
    (a gRPC receiver's, an executor's, winding down one or two tests
    later): the same threads for half a second, within 5 s. One ending
    during a load would lower the peak it is compared with."""
    import threading

    seen, since = set(threading.enumerate()), time.monotonic()
    deadline = since + 5
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        time.sleep(0.05)
        now = set(threading.enumerate())
        if now != seen:
            seen, since = now, time.monotonic()
    return bench._threads()


def test_asgi_load_serves_each_request_once_concurrency_at_a_time():
    """4 requests over 2 workers: they arrive in pairs, each request waiting
    for its pair (so that no worker serves them all); the second request
    starts a thread, which the peak threads count, after the request."""
    import asyncio
    import threading

    arrived: list[str] = []
    pairs = [asyncio.Event(), asyncio.Event()]
    release = threading.Event()
    started: list[threading.Thread] = []

    async def app(scope, receive, send):
        arrived.append(scope["path"])
        n = len(arrived)
        if n % 2 == 0:
            pairs[n // 2 - 1].set()
        await asyncio.wait_for(pairs[(n - 1) // 2].wait(), 60)
        if n == 2:
            started.append(threading.Thread(target=release.wait, daemon=True))
            started[0].start()
        headers = [(k.encode(), v.encode()) for k, v in _figured(n)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    base = _steady_threads()
    start = time.perf_counter()
    try:
        elapsed, latencies, peak, figures = asyncio.run(bench._asgi_load(app, "/x/", 4, 2, "none"))
        took = time.perf_counter() - start
    finally:
        release.set()
        for thread in started:
            thread.join()
    assert arrived == ["/x/"] * 4
    assert sorted(figures) == [(n, 1, 0, 2) for n in range(1, 5)]
    assert peak == base + 1
    assert len(latencies) == 4
    assert 0 < sum(latencies) / 2 <= elapsed <= took


def test_wsgi_load_serves_each_request_once_concurrency_at_a_time():
    """4 requests over 2 threads, in pairs (each waits for its pair): the
    peak threads count both; one at a time they are served in the caller's
    thread. A response without switchtrace's headers has no figures."""
    import threading

    served: list[int] = []
    barrier = threading.Barrier(2, timeout=60)
    lock = threading.Lock()

    def app(environ, start_response, pairs=True):
        with lock:
            served.append(threading.get_ident())
            n = len(served)
        if pairs:
            barrier.wait()
        start_response("200 OK", _figured(n) if n != 3 else [])
        return io.BytesIO(b"ok")  # iterated, then closed

    base = _steady_threads()
    start = time.perf_counter()
    elapsed, latencies, peak, figures = bench._wsgi_load(app, "/x/", 4, 2, "none")
    took = time.perf_counter() - start
    assert len(set(served)) == 2 and threading.get_ident() not in served
    assert sorted(figures, key=str) == [(1, 1, 0, 2), (2, 1, 0, 2), (4, 1, 0, 2), None]
    assert peak == base + 2
    assert len(latencies) == 4
    assert 0 < sum(latencies) / 2 <= elapsed <= took
    served.clear()
    start = time.perf_counter()
    elapsed, latencies, peak, figures = bench._wsgi_load(
        lambda environ, start_response: app(environ, start_response, pairs=False),
        "/x/",
        3,
        1,
        "none",
    )
    took = time.perf_counter() - start
    assert served == [threading.get_ident()] * 3
    assert figures == [(1, 1, 0, 2), (2, 1, 0, 2), None]
    assert peak == base
    assert len(latencies) == 3
    assert 0 < sum(latencies) <= elapsed <= took


def test_a_wsgi_request_raising_under_load_stops_the_run():
    """As one at a time: in the thread pool, the exception was lost with its
    thread, and the run went on with the requests that did not raise (here
    none: an empty result)."""

    def app(environ, start_response):
        raise LookupError("the view's response could not be iterated")

    for concurrency in (1, 2):
        with pytest.raises(LookupError) as raised:
            bench._wsgi_load(app, "/x/", 4, concurrency, "none")
        assert str(raised.value) == "the view's response could not be iterated"


# -- how the runs set themselves up ---------------------------------------------------------


def test_the_results_are_json_or_the_renderers_text(capsys):
    def renderer(results, out):
        out.write(f"rendered {sorted(results)}\n")

    results = {"format": 1, "rows": [{"mode": "disabled"}]}
    bench._emit(results, argparse.Namespace(json=True), renderer)
    assert capsys.readouterr() == (json.dumps(results, indent=2) + "\n", "")
    bench._emit(results, argparse.Namespace(json=False), renderer)
    assert capsys.readouterr() == ("rendered ['format', 'rows']\n", "")


def test_the_versions_named_in_the_results():
    import asgiref

    assert bench._version("asgiref") == asgiref.__version__
    assert bench._version("no-such-distribution-here") == "unknown"


def test_the_servers_of_driver_server_missing(monkeypatch):
    """(None in sys.modules is how Python refuses a module's import.)"""
    assert bench.missing_servers() == []
    monkeypatch.setitem(sys.modules, "gunicorn", None)
    assert bench.missing_servers() == ["gunicorn"]
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert bench.missing_servers() == ["uvicorn", "gunicorn"]


def test_the_matrix_is_served_without_span_export():
    """EXPORTER "none" over the project's own SWITCHTRACE, for the run only;
    no SWITCHTRACE dict (switchtrace disabled) is left as it is."""
    from django.conf import settings
    from django.test.utils import override_settings

    configured = {"ENABLED": True, "EXPORTER": "file", "SAMPLE_RATE": 0.5}
    with override_settings(SWITCHTRACE=configured):
        with bench._no_spans():
            assert settings.SWITCHTRACE == {**configured, "EXPORTER": "none"}
        assert settings.SWITCHTRACE == configured
    for value in (None, "on"):
        with override_settings(SWITCHTRACE=value):
            with bench._no_spans():
                assert settings.SWITCHTRACE == value


def test_the_warm_up_serves_through_the_servers_handler():
    served: list[tuple[str, str]] = []
    asgi, wsgi = _apps(served)
    for server in ("asgi", "wsgi"):
        served.clear()
        bench._serve((asgi, wsgi), server, "/x/", 3, "none")
        assert served == [(server, "/x/")] * 3


# -- the servers' command lines, environments and stopping ----------------------------------


def test_each_server_is_run_with_its_command_and_environment(tmp_path, monkeypatch):
    """uvicorn for ASGI, gunicorn (gthread, one worker, a thread per
    concurrent request, one at least) for WSGI, on loopback; the project
    first on PYTHONPATH, the variant named, and no spans made."""
    import os

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    driver = bench.Servers(tmp_path, 200)
    assert driver._command("asgi", 8001) == [
        sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
        "--port", "8001", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    assert driver._command("wsgi", 8002) == [
        sys.executable, "-m", "gunicorn", "project.wsgi:application", "--bind",
        "127.0.0.1:8002", "--workers", "1", "--worker-class", "gthread", "--threads", "200",
        "--log-level", "warning",
    ]  # fmt: skip
    assert bench.Servers(tmp_path, 0)._command("wsgi", 1)[10:12] == ["--threads", "1"]
    assert driver._environ("wsgi", "sync-only") == {
        **os.environ,
        "SWITCHTRACE_EXAMPLE_MIDDLEWARE": "sync-only",
        "OTEL_SDK_DISABLED": "true",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}/elsewhere",
        # The example's streams served under the other server on purpose:
        # Django's warning of each left out, as in-process.
        "PYTHONWARNINGS": "error::DeprecationWarning,ignore:StreamingHttpResponse must consume",
    }
    assert [driver._name(server, "none") for server in ("asgi", "wsgi")] == [
        "the ASGI server (uvicorn)",
        "the WSGI server (gunicorn)",
    ]


def test_each_overhead_server_is_run_in_its_mode(tmp_path, monkeypatch):
    """The settings module of the run first on PYTHONPATH, the mode named;
    the full-spans servers make every request's spans (whatever OTEL_*
    says) into their own file, or to the settings' collector (no file)."""
    import os

    for name in ("PYTHONPATH", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    folder = tmp_path / "scratch"
    folder.mkdir()
    driver = bench.OverheadServers(tmp_path, "shipped", folder)
    assert (folder / "switchtrace_bench_overhead.py").read_text() == bench.OVERLAY
    assert driver.threads == 1
    assert driver.files == {server: folder / f"spans-{server}.jsonl" for server in ("wsgi", "asgi")}
    common = {
        **os.environ,
        "SWITCHTRACE_EXAMPLE_MIDDLEWARE": "shipped",
        "DJANGO_SETTINGS_MODULE": "switchtrace_bench_overhead",
        "PYTHONPATH": os.pathsep.join([str(folder), str(tmp_path), "x"]),
        "PYTHONWARNINGS": "ignore:StreamingHttpResponse must consume",
    }
    assert driver._environ("asgi", "headers only") == {
        **common, "OTEL_SDK_DISABLED": "true", bench.OVERHEAD_MODE: "headers only"
    }  # fmt: skip
    full = {k: v for k, v in common.items() if not k.startswith("OTEL_TRACES_SAMPLER")}
    assert driver._environ("wsgi", "full spans") == {
        **full, bench.OVERHEAD_MODE: "full spans", bench.OVERHEAD_SPANS: str(driver.files["wsgi"])
    }  # fmt: skip
    to_collector = bench.OverheadServers(tmp_path, "shipped", folder, to_file=False)
    assert to_collector.files is None
    assert to_collector._environ("asgi", "full spans") == {
        **full, bench.OVERHEAD_MODE: "full spans"
    }  # fmt: skip
    assert driver._name("wsgi", "disabled") == (
        "the WSGI server (gunicorn) with switchtrace disabled"
    )


# SIGINT at its default action, the kernel's, not Python's handler: that one
# only sets a flag, read between bytecodes, and a SIGINT sent just after the
# line was read (the last sleeper's) could be taken after the last read and
# before time.sleep began, which then slept on (killed at 10 s, in a CI run).
# The default also holds where SIGINT was inherited ignored (a shell's
# background job).
SLEEPER = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_{}); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); print(flush=True); time.sleep(120)"
)


def test_closing_the_servers_stops_each_with_its_signal(tmp_path):
    """SIGTERM, but SIGINT for --overhead's uvicorn (README, "Servers"); a
    server that does not stop within 10 s is killed; each is waited for and
    no longer the command's to end."""
    import signal
    import subprocess

    matrix = bench.Servers(tmp_path, 1)
    overhead = bench.OverheadServers(tmp_path, "shipped", tmp_path)
    started = []
    for driver, key, handling in ((matrix, "none", "DFL"), (overhead, "disabled", "DFL"),
                                  (overhead, "full spans", "IGN")):  # fmt: skip
        for server in ("wsgi", "asgi"):
            command = [sys.executable, "-c", SLEEPER.format(handling)]
            process = cli.start(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert process.stdout.readline() == b"\n"  # its SIGTERM handled as it says
            driver._servers[server, key] = (process, 0)
            started.append(process)
    try:
        for driver in (matrix, overhead):
            driver.close()
            assert driver._servers == {}
        assert [process.returncode for process in started] == [
            -signal.SIGTERM, -signal.SIGTERM,  # the matrix's wsgi and asgi
            -signal.SIGTERM, -signal.SIGINT,   # --overhead's
            -signal.SIGKILL, -signal.SIGINT,   # ignoring SIGTERM
        ]  # fmt: skip
        assert not cli._children & set(started)
    finally:
        for process in started:
            process.kill()
            process.wait()
            process.stdout.close()


def test_each_overhead_mode_installs_the_patches_and_feeds_the_spans_or_not():
    """In-process, the modes are told apart by the patches (installed for
    headers only and full spans) and the span pipeline (fed records in full
    spans alone). Put back as they were after."""
    from switchtrace.django_app import integration, telemetry

    def state():
        return integration.patcher.installed, telemetry._attached

    was = state()
    try:
        for mode, wanted in (("disabled", (False, False)), ("headers only", (True, False)),
                             ("full spans", (True, True)), (bench.OTEL_DJANGO, (False, False)),
                             ("headers only", (True, False))):  # fmt: skip
            bench._enter(mode)
            assert state() == wanted, mode
    finally:
        (integration.install if was[0] else integration.uninstall)()
        (telemetry.attach if was[1] else telemetry.detach)()
    assert state() == was


def test_overhead_in_process_measures_one_variant_with_switchtrace_but_when_disabled(
    monkeypatch,
):
    """The first variant (run leaves all three when --variants is not given:
    'shipped'), switchtrace's middleware in each mode's handlers but
    disabled's. What it hands to the rounds, with handlers of this test's;
    what it puts back after them."""
    from switchtrace import example
    from switchtrace.django_app import integration, telemetry
    from switchtrace.django_app.conf import get_config

    def handlers(variant, switchtrace_middleware=True):
        return contextlib.nullcontext((variant, switchtrace_middleware))

    def rounds(args, progress, handlers, otel, spans, variant):
        telemetry.configure(spans)  # as the rounds do: the full-spans mode's export
        bench._enter("disabled")  # the last round's mode
        return {"handlers": handlers, "otel": otel, "variant": variant}

    monkeypatch.setattr(example, "handlers", handlers)
    monkeypatch.setattr(bench, "_otel_django", lambda *args: contextlib.nullcontext(None))
    monkeypatch.setattr(bench, "_overhead_rounds", rounds)
    was = integration.patcher.installed, telemetry._attached
    try:
        args = argparse.Namespace(variants=list(example.VARIANTS), servers=["wsgi"])
        assert bench.overhead(args, bench.Progress(0)) == {
            "handlers": {
                "disabled": ("shipped", False),
                "headers only": ("shipped", True),
                "full spans": ("shipped", True),
            },
            "otel": None,
            "variant": "shipped",
        }
        # Then as the settings say: their export, the patches installed if
        # switchtrace is enabled, the export fed.
        config = get_config()
        assert telemetry._options == config.export
        assert config.enabled
        assert (integration.patcher.installed, telemetry._attached) == (True, True)
    finally:
        (integration.install if was[0] else integration.uninstall)()
        (telemetry.attach if was[1] else telemetry.detach)()


def test_the_opentelemetry_django_row_when_it_can_be_measured(monkeypatch, tmp_path, capsys):
    """Without opentelemetry-instrumentation-django: no row, and nothing said.
    Without opentelemetry-instrumentation-asgi, under WSGI alone: the row
    (only ASGI needs that package), served with its middleware in front of
    the variant's, not switchtrace's; Django uninstrumented after. (None in sys.modules is how
    Python refuses a module's import.)"""
    from django.conf import settings
    from django.test.utils import override_settings
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.asgi", None)
    with bench._otel_django("none", str(tmp_path), ["wsgi"]) as otel:
        assert otel is not None
        assert otel.exporter.spans == 0
        # Its middleware alone: the variant's, without switchtrace's.
        assert settings.MIDDLEWARE == [bench.OTEL_DJANGO_MIDDLEWARE]
    assert not DjangoInstrumentor().is_instrumented_by_opentelemetry
    shipped = ["django.middleware.common.CommonMiddleware"]
    with override_settings(STARTPROJECT_MIDDLEWARE=shipped):
        with bench._otel_django("shipped", str(tmp_path), ["wsgi"]):
            assert settings.MIDDLEWARE == [bench.OTEL_DJANGO_MIDDLEWARE, *shipped]
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.django", None)
    with bench._otel_django("none", str(tmp_path), ["wsgi", "asgi"]) as otel:
        assert otel is None
    assert capsys.readouterr() == ("", "")


def test_the_spans_the_full_spans_servers_wrote_per_request_served():
    """Their start-up probe (a request to the first endpoint), the warm-up,
    and each round's requests back to back and alone: 1 + 2 + 2 * 3 * 4 = 27
    on the first endpoint, 26 elsewhere (/sync/ included: the probe was
    counted there, whatever the first); an endpoint without spans in the
    file, 0. The other modes' rows get none."""
    args = argparse.Namespace(warmup=2, rounds=3, requests=4, endpoints=["/async/", "/sync/"])
    rows = [{"server": server, "endpoint": endpoint, "mode": mode}
            for server in ("wsgi", "asgi") for endpoint in ("/sync/", "/async/")
            for mode in ("disabled", "full spans")]  # fmt: skip
    found = {"wsgi": {"/sync/": 26, "/async/": 27}, "asgi": {"/sync/": 13}}
    bench._exported_through_servers(args, rows, found)
    assert [row.get("exported_per_request") for row in rows] == [
        None, stat(1.0, 1.0, 1.0), None, stat(1.0, 1.0, 1.0),
        None, stat(0.5, 0.5, 0.5), None, stat(0.0, 0.0, 0.0),
    ]  # fmt: skip
