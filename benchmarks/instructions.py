"""Instructions per request, counted by valgrind: a figure the machine's load
does not move.

Wall and CPU times on a shared two-core machine wander by more than the cost
being measured (``switchtrace bench --overhead`` reports ratios whose min-max
spans 0.5-2.0). Instructions executed do not depend on the neighbours. This
script runs the example project's ASGI default-stack sync-view request
(Django's ``ASGIHandler`` driven in-process, as ``switchtrace bench`` does)
under ``valgrind --tool=callgrind`` in a child process for each mode, twice:
with no measured request and with ``--requests`` of them, both after the
same warm-up; the difference divided by the number of requests is the
instructions per request, interpreter start-up and warm-up excluded. Modes
are interleaved within each repeat; reported are medians over repeats and
the ratio to switchtrace disabled.

Modes: switchtrace disabled (patches removed, no middleware); installed (the
patches record every request, no middleware, nothing exported); headers only
(the middleware too, ``EXPORTER: "none"``); full spans (the file exporter,
the span thread's work included: each child waits until its spans are
written).

What this does not show: valgrind runs one thread at a time, so the cost of
threads waiting for the GIL (a busy span thread delays the request's thread
hops) is not in these figures; ``switchtrace bench --overhead`` measures
that, with the machine's noise.

    python benchmarks/instructions.py [--requests 200] [--repeats 2] [--json]

Needs valgrind (Debian: ``apt-get install valgrind``); about 1-2 minutes a
child on the machine these figures were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("disabled", "installed", "headers only", "full spans")
WARMUP = 30
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(mode: str, requests: int, traces: str) -> None:
    """Serve ``requests`` measured requests in ``mode`` (inside valgrind)."""
    from switchtrace import bench, example

    example.setup(ROOT / "examples" / "project")
    from django.test.utils import override_settings

    from switchtrace.django_app import integration, telemetry
    from switchtrace.django_app.conf import get_config

    settings = {"ENABLED": True, "EXPORTER": "none"}
    if mode == "full spans":
        settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": traces}
    with override_settings(SWITCHTRACE=settings):
        telemetry.configure(get_config().export if mode == "full spans" else None)
        if mode == "disabled":
            integration.uninstall()
        else:
            integration.install()
        middleware = mode in ("headers only", "full spans")
        with example.handlers("shipped", switchtrace_middleware=middleware) as handlers:
            for count in (WARMUP, requests):
                bench._serve(handlers, "asgi", "/sync/", count)
                pipeline = telemetry.pipeline()
                if pipeline is not None and not pipeline.flush(120):
                    raise SystemExit("the span pipeline did not flush")
    # Leave without the interpreter's shutdown, whose work is not a request's.
    sys.stdout.flush()
    os._exit(0)


def count(mode: str, requests: int, valgrind: str, work: Path) -> int:
    """Instructions valgrind counted for one child."""
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={work / 'callgrind.out'}",
        sys.executable,
        __file__,
        "--child",
        mode,
        str(requests),
        str(work / "traces.jsonl"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    found = COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"instructions.py: the {mode!r} child failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]), argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=positive, default=200)
    parser.add_argument("--repeats", type=positive, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        parser.exit(2, "instructions.py: error: valgrind not found on PATH\n")
    per_request: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            # Each repeat in another order (seeded by the repeat), so that no
            # mode always runs first.
            order = MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]
            for mode in order:
                base = count(mode, 0, valgrind, Path(work))
                total = count(mode, args.requests, valgrind, Path(work))
                per_request[mode].append((total - base) / args.requests)
                done = per_request[mode][-1]
                print(f"  repeat {repeat + 1} {mode}: {done:,.0f}", file=sys.stderr)
    base = per_request["disabled"]
    rows = [
        {
            "mode": mode,
            "instructions_per_request": statistics.median(values),
            "all": values,
            "ratio": statistics.median(v / b for v, b in zip(values, base, strict=True)),
        }
        for mode, values in per_request.items()
    ]
    if args.json:
        print(json.dumps({"requests": args.requests, "repeats": args.repeats, "rows": rows}))
        return 0
    print(
        f"Instructions per request, ASGI default stack, /sync/ ({args.requests} requests, "
        f"median of {args.repeats} repeats)"
    )
    for row in rows:
        print(
            f"  {row['mode']:<13} {row['instructions_per_request']:>12,.0f}  "
            f"x{row['ratio']:.3f}  (each: {', '.join(f'{v:,.0f}' for v in row['all'])})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
