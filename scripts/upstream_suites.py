"""Run asgiref's and Django's own test suites without and with switchtrace.

Fetches the source distributions of the installed Django and asgiref from the
package index, then runs asgiref's test suite and these Django test apps:

    handlers asgi async middleware middleware_exceptions deprecation
    requests_tests test_client signals decorators

twice: without switchtrace, and with it installed and enabled. Django's
runtests.py overrides MIDDLEWARE and INSTALLED_APPS, so switchtrace is loaded
before Django, from a sitecustomize module on PYTHONPATH. Every test must end
the same way in both runs; a difference names the test and exits 1. The run
with switchtrace must also have recorded requests, and no switchtrace-internal
error may have been swallowed, in the test process or in any process its tests
start.

asgiref's suite makes no Django request: its crossings are recorded as one
record opened in the test process's main thread as it starts. It holds what a
request's record would: every crossing made in a context copied from that one
(asgiref's tests, pytest-asyncio's runners), not those made in a thread started
with threading.Thread or in code run in a new, empty contextvars.Context
(asgiref.testing.ApplicationCommunicator runs the application it tests so);
see the README's known limits. The sitecustomize module is loaded by every
Python process started with this PYTHONPATH: a process a test starts with
multiprocessing's "spawn" (three in asgiref 3.13's suite) keeps a record of its
own and reports it apart, under its process id.

    python scripts/upstream_suites.py [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from switchtrace.plural import count

DJANGO_APPS = (
    "handlers asgi async middleware middleware_exceptions deprecation requests_tests "
    "test_client signals decorators"
).split()

SITECUSTOMIZE = """
import atexit, os, sys
if os.environ.get("SWITCHTRACE_UPSTREAM") == "1":
    from switchtrace import tracer
    from switchtrace.django_app import integration
    from switchtrace.tracer import guard

    counts = {"requests": 0, "switches": 0, "errors": 0}

    def _count(record):
        counts["requests"] += 1
        counts["switches"] += record.context_switches

    def _error(exc, where):
        counts["errors"] += 1
        print(f"switchtrace internal error in {where}: {exc!r}", file=sys.stderr)

    integration.install()
    tracer.add_listener(_count)
    guard.set_error_hook(_error)
    _everything = None
    if os.environ.get("SWITCHTRACE_UPSTREAM_RECORD_ALL") == "1":
        # No Django request in this suite: record every crossing the process
        # makes, as if it all were one request.
        _everything, _token = tracer.start_request("suite", max_events=0)

    # The process the script started, or one started by its tests (its
    # report, on a stderr the tests may capture, would otherwise be taken for
    # the test process's).
    _started_by_tests = str(os.getppid()) != os.environ.get("SWITCHTRACE_UPSTREAM_PARENT")

    @atexit.register
    def _report():
        if _everything is not None:
            counts["switches"] = _everything.context_switches
        started = f" (process {os.getpid()} started by the tests)" if _started_by_tests else ""
        print(
            "switchtrace{started}: recorded {requests} requests, {switches} context switches, "
            "{errors} internal errors".format(started=started, **counts),
            file=sys.stderr,
        )
"""

DJANGO_LINE = re.compile(
    r"^(\w+) \(([\w.]+)\) \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)"
)
SUMMARY = re.compile(r"^(Ran \d+ tests?.*|OK.*|FAILED.*|=* ?\d+ (passed|failed).*)$")
PYTEST_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")
REPORT = re.compile(
    r"switchtrace(?P<started> \(process \d+ started by the tests\))?: recorded (?P<requests>\d+) "
    r"requests, (?P<switches>\d+) context switches, (?P<errors>\d+) internal errors"
)


def fetch(work: Path) -> tuple[Path, Path]:
    django_version, asgiref_version = version("django"), version("asgiref")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
         f"django=={django_version}", f"asgiref=={asgiref_version}", "-d", str(work)],
        check=True,
    )  # fmt: skip
    for archive in work.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else (
                tar.extractall(work)
            )
    django = next(p for p in work.iterdir() if p.is_dir() and p.name.lower().startswith("django-"))
    asgiref = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("asgiref-"))
    print(f"Django {django_version} and asgiref {asgiref_version} sources in {work}")
    return django, asgiref


def run(
    command: list[str], cwd: Path, site: Path, active: bool, record_all: bool
) -> tuple[dict[str, str], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "SWITCHTRACE_UPSTREAM": "1" if active else "0",
        "SWITCHTRACE_UPSTREAM_RECORD_ALL": "1" if record_all else "0",
        "SWITCHTRACE_UPSTREAM_PARENT": str(os.getpid()),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    text = out.stdout + out.stderr
    outcomes: dict[str, str] = {}
    for line in text.splitlines():
        if m := DJANGO_LINE.match(line):
            outcomes[f"{m.group(2)}"] = m.group(3).split()[0]
        elif m := PYTEST_LINE.match(line):
            outcomes[m.group(2)] = m.group(1)
    summary = [
        re.sub(r" in [\d.]+s.*", "", line.strip()) for line in text.splitlines()
        if SUMMARY.match(line.strip())
    ]  # fmt: skip
    outcomes["(exit status)"] = str(out.returncode)
    outcomes["(summary)"] = " / ".join(summary)
    return outcomes, text


def compare(name: str, command: list[str], cwd: Path, site: Path, record_all: bool) -> bool:
    without, _ = run(command, cwd, site, active=False, record_all=record_all)
    with_, text = run(command, cwd, site, active=True, record_all=record_all)
    reports = [
        (m["started"] is not None, int(m["requests"]), int(m["switches"]), int(m["errors"]))
        for m in REPORT.finditer(text)
    ]
    own = [report for report in reports if not report[0]]
    started = [report for report in reports if report[0]]
    tests = len(without) - 2
    print(f"{name}: {without['(summary)']}; exit status {without['(exit status)']} without "
          f"switchtrace, {with_['(exit status)']} with it "
          f"({tests} test outcomes compared)")  # fmt: skip
    ok = True
    if tests == 0:
        print(f"  {name}: no test outcome could be read")
        ok = False
    for test in sorted(set(without) | set(with_)):
        if without.get(test) != with_.get(test):
            print(f"  DIFFERS: {test}: {without.get(test)} without, {with_.get(test)} with")
            ok = False
    if len(own) != 1:
        print(f"  switchtrace reported {len(own)} times for the test process: was it loaded?")
        return False
    _, requests, switches, errors = own[0]
    print(f"  with switchtrace: {count(requests, 'request')} recorded, "
          f"{count(switches, 'context switch', 'context switches')} recorded, "
          f"{count(errors, 'internal error')}")  # fmt: skip
    if started:
        # Not added to the test process's figures: each is a record of its own.
        each = [r[2] for r in started]
        apart = f" ({' + '.join(map(str, each))})" if len(each) > 1 else ""
        print(f"  {count(len(started), 'process', 'processes')} the tests started, recorded "
              f"apart: {count(sum(r[1] for r in started), 'request')}, "
              f"{count(sum(each), 'context switch', 'context switches')}{apart}, "
              f"{count(sum(r[3] for r in started), 'internal error')}")  # fmt: skip
    if (switches if record_all else requests) == 0:
        # A suite run with switchtrace that recorded nothing proves nothing.
        print(f"  {name}: switchtrace recorded no {'switch' if record_all else 'request'}")
        ok = False
    return ok and errors + sum(r[3] for r in started) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="where to fetch and unpack (default: a temporary dir)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="switchtrace-upstream-"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "pytest-asyncio", "tblib"], check=True
    )
    django, asgiref = fetch(work)
    site = work / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    results = [
        compare(
            "asgiref",
            [
                sys.executable,
                "-m",
                "pytest",
                "tests",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:switchtrace",
                # switchtrace is imported by sitecustomize before pytest, which
                # then cannot assertion-rewrite the package of switchtrace's
                # pytest plugin and says so in a warning the run without it
                # lacks: ignored in both runs (the plugin plays no part here).
                "-W",
                "ignore::pytest.PytestAssertRewriteWarning",
                "-rA",
                "-q",
            ],
            asgiref,
            site,
            record_all=True,
        ),
        compare(
            "Django",
            [sys.executable, "runtests.py", "--parallel=1", "-v", "2", *DJANGO_APPS],
            django / "tests",
            site,
            record_all=False,
        ),
    ]
    if all(results):
        print("Same results with and without switchtrace.")
        return 0
    print("Results differ (see above).")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
