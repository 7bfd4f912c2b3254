"""switchtrace's figures against an independent count, over generated
configurations: MIDDLEWARE stacks of every kind of middleware, in any order,
and views bridging every way, served by Django's real WSGIHandler and
ASGIHandler (``tests/oracle_app.py``), each request counted by the oracle of
``tests/oracle.py`` (the profiler's events of asgiref's and asyncio's own
functions; no switchtrace code) and by switchtrace.

Both count the same run of each request, so every figure is compared
exactly, threads started too: where a thread starts depends on scheduling
(the loop's default executor starts one when it finds no idle worker), the
oracle sees the same start that switchtrace does.

They run in a process of their own (``python -m tests.oracle_run``): the
oracle's profiler must be set before every thread a request may use is
started, which the threads earlier tests left behind were not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..oracle_app import DJANGOS, VIEWS
from ..support import ASGI_THREADS

ROOT = Path(__file__).resolve().parents[2]

#: Every view under both servers twice over (generate() goes round them),
#: each time under another drawn middleware stack.
SEEDS = range(4 * len(VIEWS))

#: The README's worked example (the seven startproject middleware), as the
#: oracle alone counts it: (server, URL) -> figures at the headers, in all
#: (switches, hops, loops created, threads started).
WORKED_EXAMPLE = {
    ("asgi", "/sync/"): ((30, 30, 0, 1), (32, 32, 0, ASGI_THREADS)),
    ("asgi", "/async/"): ((28, 28, 0, 1), (30, 30, 0, ASGI_THREADS)),
    ("wsgi", "/sync/"): ((0, 0, 0, 0), (0, 0, 0, 0)),
    ("wsgi", "/async/"): ((2, 2, 1, 1), (2, 2, 1, 1)),
    ("wsgi", "/async-to-sync/?k=3"): ((6, 6, 3, 3), (6, 6, 3, 3)),
    ("wsgi", "/asyncio-run/?k=1"): ((2, 0, 1, 0), (2, 0, 1, 0)),
}


@pytest.fixture(scope="module")
def outcomes():
    """Every request's outcome, by seed (or by (server, URL) for the worked
    example): two requests through the same handlers."""
    worked_example = [
        json.dumps({"server": server, "middleware": DJANGOS, "url": url})
        for server, url in WORKED_EXAMPLE
    ]
    out = subprocess.run(
        [sys.executable, "-m", "tests.oracle_run", *worked_example, *map(str, SEEDS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-5000:]
    by_case: dict[object, list[dict]] = {}
    for line in out.stdout.splitlines():
        outcome = json.loads(line)
        configuration = outcome["configuration"]
        seed = outcome["seed"]
        case = (configuration["server"], configuration["url"]) if seed is None else seed
        by_case.setdefault(case, []).append(outcome)
    return by_case


@pytest.mark.parametrize(("server", "url"), list(WORKED_EXAMPLE))
def test_the_oracle_counts_the_worked_example(outcomes, server, url):
    """The oracle itself, held to the README's figures."""
    at_headers, total = WORKED_EXAMPLE[server, url]
    for outcome in outcomes[server, url]:
        assert outcome["status"] == 200
        assert tuple(outcome["oracle_at_headers"]) == at_headers
        assert tuple(outcome["oracle"]) == total


@pytest.mark.parametrize("seed", SEEDS)
def test_switchtrace_counts_what_the_oracle_counts(outcomes, seed):
    first, second = outcomes[seed]
    described = first["described"]
    reproduce = f"python -m tests.oracle_run {seed}  # {described}"
    view = first["configuration"]["url"].split("/")[1]
    status = {"raise": 500, "not-found": 404}.get(view, 200)
    for number, outcome in enumerate((first, second), 1):
        where = f"request {number} of {reproduce}"
        assert outcome["swallowed"] == [], where
        assert outcome["status"] == status, where
        [record] = outcome["records"]
        # switches, hops, loops created, threads started
        assert record == outcome["oracle"], f"record totals, {where}"
        assert outcome["headers"] == outcome["oracle_at_headers"], f"headers, {where}"
