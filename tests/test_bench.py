"""What ``switchtrace bench`` computes, checks and prints, called with
constructed inputs (nothing is measured here): its statistics and ratios,
and its tables."""

from __future__ import annotations

import argparse
import io

import pytest

from switchtrace import bench


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


def test_latencies_time_each_request_through_the_servers_handler():
    """The ASGI handler for asgi, the WSGI one for wsgi, ``between`` after
    each request, and each time within the call's."""
    import time

    served = []

    async def asgi(scope, receive, send):
        served.append(("asgi", scope["path"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi(environ, start_response):
        served.append(("wsgi", environ["PATH_INFO"]))
        start_response("200 OK", [])
        return io.BytesIO(b"ok")  # iterated, then closed

    for server in ("asgi", "wsgi"):
        served.clear()
        start = time.perf_counter()
        times = bench._latencies(
            (asgi, wsgi), server, "/x/", 3, lambda: served.append(("between", ""))
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
        bench._latencies((unfinished, None), "asgi", "/stream/", 1, lambda: None)
    assert str(raised.value) == "/stream/: the response was never complete"


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
    assert out.getvalue().splitlines()[3:] == [
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
