"""scripts/upstream_suites.py's reading of switchtrace's figures, on a small
suite shaped as asgiref's is: a test process whose own tests cross, and a test
that starts a process with multiprocessing's "spawn", which loads the same
sitecustomize module and reports a record of its own on a stderr that pytest
captures (and shows, under -rA, before the test process's report)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "upstream_suites", Path(__file__).parents[1] / "scripts" / "upstream_suites.py"
)
assert spec is not None and spec.loader is not None
upstream_suites = importlib.util.module_from_spec(spec)
spec.loader.exec_module(upstream_suites)

CROSSINGS = """
import asyncio

from asgiref.sync import async_to_sync


def bridge():
    async_to_sync(asyncio.sleep)(0)
"""

SUITE = """
import multiprocessing

import crossings


def test_crossings():
    for _ in range(3):
        crossings.bridge()
    process = multiprocessing.get_context("spawn").Process(target=crossings.bridge)
    process.start()
    process.join()
    assert process.exitcode == 0
"""

SWALLOWED = """

def test_swallowed():
    from switchtrace.tracer import guard

    try:
        raise RuntimeError("a stand-in for an error in switchtrace's bookkeeping")
    except RuntimeError:
        guard.swallow("test_swallowed")
"""


def compare(tmp_path: Path, suite: str) -> bool:
    (tmp_path / "crossings.py").write_text(CROSSINGS)
    (tmp_path / "test_suite.py").write_text(suite)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(upstream_suites.SITECUSTOMIZE)
    command = [
        sys.executable, "-m", "pytest", "test_suite.py", "-p", "no:cacheprovider",
        "-p", "no:switchtrace", "-p", "no:django", "-rA", "-q",
        # as the script runs asgiref's suite (see there)
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]  # fmt: skip
    return upstream_suites.compare("small", command, tmp_path, site, record_all=True)


def test_figures_are_the_test_process_s(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Each async_to_sync from the main thread: there and back, 2 switches.
    assert compare(tmp_path, SUITE) is True
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  with switchtrace: 0 requests recorded, 6 context switches recorded, 0 internal errors",
        "  1 process the tests started, recorded apart: 0 requests, 2 context switches, "
        "0 internal errors",
    ]


def test_an_internal_error_of_the_test_process_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert compare(tmp_path, SUITE + SWALLOWED) is False
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  with switchtrace: 0 requests recorded, 6 context switches recorded, 1 internal error",
        "  1 process the tests started, recorded apart: 0 requests, 2 context switches, "
        "0 internal errors",
    ]


def test_a_run_that_records_nothing_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert compare(tmp_path, "def test_nothing():\n    pass\n") is False
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  with switchtrace: 0 requests recorded, 0 context switches recorded, 0 internal errors",
        "  small: switchtrace recorded no switch",
    ]
