"""Test-wide setup: the example project on the path, Django configured, and
the guard that turns a swallowed switchtrace error into a failed test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "project"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from switchtrace import tracer  # noqa: E402
from switchtrace.tracer import guard  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_as_from_a_terminal():
    """Ctrl-C and Ctrl-\\ at their defaults, as a terminal's shell starts a
    job, for the suite and the processes it starts (which inherit an ignored
    disposition): a shell's background job without job control (a CI
    runner's ``cmd &``) gets them ignored, and the tests of what Ctrl-C
    does (the command's, the exporters' shutdown, the servers') would then
    wait for one that never comes. (SIGHUP, which nohup ignores: where a
    test sends it, see test_cli_errors._as_a_job.)"""
    import signal

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGQUIT: signal.SIG_DFL}
    before = {
        signum: signal.signal(signum, handler)
        for signum, handler in defaults.items()
        if signal.getsignal(signum) == signal.SIG_IGN
    }
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.fixture(autouse=True, scope="session")
def _working_directory_of_its_own(tmp_path_factory):
    """Settings without FILE_PATH write the file exporter's default,
    switchtrace-traces.jsonl, in the working directory: not the checkout's."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(autouse=True)
def _fail_on_swallowed_errors():
    """switchtrace swallows its own errors in production; here they fail the test."""
    swallowed: list[tuple[str, BaseException]] = []
    previous = guard.set_error_hook(lambda exc, where: swallowed.append((where, exc)))
    yield swallowed
    guard.set_error_hook(previous)
    if swallowed:
        where, exc = swallowed[0]
        pytest.fail(f"switchtrace swallowed {len(swallowed)} error(s); first in {where}: {exc!r}")


@pytest.fixture
def swallowed(_fail_on_swallowed_errors):
    """For tests that provoke an internal error on purpose: they empty this list."""
    return _fail_on_swallowed_errors


@pytest.fixture
def records():
    """Every request record finished during the test."""
    finished: list[tracer.RequestRecord] = []
    tracer.add_listener(finished.append)
    yield finished
    tracer.remove_listener(finished.append)


@pytest.fixture
def spans():
    """Call it for the spans the test suite's memory exporter got since the
    test began (once the pipeline has flushed)."""
    from switchtrace.django_app import telemetry

    pipeline = telemetry.pipeline()
    assert pipeline is not None and pipeline.own_provider
    # Earlier tests' requests may still have spans on their way.
    assert pipeline.flush(10)
    pipeline.exporter.clear()

    def finished():
        assert pipeline.flush(10)
        return list(pipeline.exporter.get_finished_spans())

    return finished
