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

It also counts, the same way, what ``benchmarks/switch_cost.py``'s
bookkeeping measurement times: switchtrace's patches around minimal
stand-ins for asgiref's bodies, ``--calls`` traced calls against as many
plain ones, per switch (a call is two switches); and what recording adds to
real bridge calls (``switch_cost.py``'s end-to-end measurement: asgiref's
own ``sync_to_async`` and ``async_to_sync``, an executor's thread and the
event loop), ``--bridge-calls`` recorded calls against as many with
switchtrace uninstalled, per switch. Set side by side, they show what the
real path costs beyond the stand-ins. With ``--floors``, the same count for
``switch_cost.py``'s floors (bare patches, layers only, context variable
only): what the patch points cost before anything is recorded. With
``--compiled``, the same count for ``switch_cost.py --compiled``'s variants
(the recording written in C, built once for the run: needs a C compiler).

    python benchmarks/instructions.py [--requests 200] [--calls 20000] [--bridge-calls 2000]
                                      [--repeats 2] [--floors] [--compiled] [--json]

Needs valgrind (Debian: ``apt-get install valgrind``); about 1-2 minutes a
child on the machine these figures were measured on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("disabled", "installed", "headers only", "full spans")
MECHANISMS = ("sync_to_async", "async_to_sync")
#: switch_cost.py's end-to-end measurements, by mechanism.
BRIDGES = {"sync_to_async": "sync_to_async", "async_to_sync": "async_to_sync (outer loop)"}
WARMUP = 30
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
#: Where a child finds compiled_floor's extension, built by the parent.
COMPILED_PATH = "SWITCHTRACE_COMPILED_FLOOR"


def serve(
    mode: str,
    requests: int,
    traces: str,
    measured: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> None:
    """Serve ``requests`` measured requests in ``mode`` (inside valgrind),
    inside ``measured()``, after the warm-up (bytecodes.py counts there)."""
    from switchtrace import bench, example

    example.setup(ROOT / "examples" / "project")
    from django.test.utils import override_settings

    from switchtrace.django_app import integration, telemetry

    settings = {"ENABLED": True, "EXPORTER": "none"}
    if mode == "full spans":
        settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": traces}
    # The app applies the setting as it changes: patches installed, export set.
    with override_settings(SWITCHTRACE=settings):
        if mode == "disabled":
            integration.uninstall()
        middleware = mode in ("headers only", "full spans")
        with example.handlers("shipped", switchtrace_middleware=middleware) as handlers:
            for count, around in ((WARMUP, contextlib.nullcontext), (requests, measured)):
                with around():
                    bench._serve(handlers, "asgi", "/sync/", count, "shipped")
                    pipeline = telemetry.pipeline()
                    if pipeline is not None and not pipeline.flush(120):
                        raise SystemExit("the span pipeline did not flush")


def stand_ins(mechanism: str, traced: bool, calls: int) -> None:
    """switch_cost.py's bookkeeping measurement: ``calls`` calls after a
    warm-up (inside valgrind)."""
    import switch_cost  # this script's folder is on sys.path

    measure = switch_cost.BOOKKEEPING[mechanism]
    measure(WARMUP * 10, traced)
    if calls:
        measure(calls, traced)


def bridges(mechanism: str, variant: str, calls: int) -> None:
    """``calls`` real bridge calls after a warm-up, switchtrace uninstalled
    or recording (inside valgrind)."""
    import switch_cost

    from switchtrace import tracer

    measure = switch_cost.MECHANISMS[BRIDGES[mechanism]]
    if variant in switch_cost.COMPILED:
        import compiled_floor

        floor = compiled_floor.Floor(compiled_floor.load(Path(os.environ[COMPILED_PATH])))
        tracer.uninstall()
        with floor.recording(variant):
            measure(WARMUP, False)
            if calls:
                measure(calls, False)
        return
    if variant == "uninstalled" or variant in switch_cost.FLOORS:
        tracer.uninstall()
    else:
        tracer.install()
    recording = variant == "recording"
    with contextlib.ExitStack() as stack:
        if variant in switch_cost.FLOORS:
            stack.enter_context(switch_cost.bare_patches(variant))
        measure(WARMUP, recording)
        if calls:
            measure(calls, recording)


#: The children's arguments (after ``--child``), by kind.
CHILDREN = {
    "requests": "requests MODE COUNT TRACES",
    "bridges": "bridges MECHANISM VARIANT COUNT",
    "stand-ins": "stand-ins MECHANISM plain|traced COUNT",
}


def child_arguments(argv: list[str]) -> str | None:
    """What is wrong with a child's arguments, or None: a mode, mechanism or
    variant misspelt would otherwise measure another one."""
    if not argv or argv[0] not in CHILDREN or len(argv) != 4:
        usage = "; ".join(f"--child {form}" for form in CHILDREN.values())
        return f"arguments {' '.join(argv)!r}; expected {usage}"
    kind = argv[0]
    if kind == "requests":
        choices = [("MODE", argv[1], MODES)]
        count = argv[2]
    else:
        import switch_cost  # this script's folder is on sys.path

        sides = ("uninstalled", "recording", *switch_cost.FLOORS, *switch_cost.COMPILED)
        choices = [
            ("MECHANISM", argv[1], MECHANISMS),
            ("VARIANT", argv[2], sides)
            if kind == "bridges"
            else ("side", argv[2], ("plain", "traced")),
        ]
        count = argv[3]
    for name, given, allowed in choices:
        if given not in allowed:
            return f"{kind}: {name} {given!r}; allowed: {', '.join(allowed)}"
    if kind == "bridges" and argv[2] in switch_cost.COMPILED and not os.environ.get(COMPILED_PATH):
        return f"bridges: VARIANT {argv[2]!r} needs ${COMPILED_PATH}, the extension's file"
    if not count.isdigit():
        return f"{kind}: COUNT {count!r}; allowed: 0 or a positive integer"
    return None


def child(argv: list[str]) -> None:
    wrong = child_arguments(argv)
    if wrong is not None:
        print(f"instructions.py: error: --child {wrong}", file=sys.stderr)
        raise SystemExit(2)
    if argv[0] == "requests":
        serve(argv[1], int(argv[2]), argv[3])
    elif argv[0] == "bridges":
        bridges(argv[1], argv[2], int(argv[3]))
    else:
        stand_ins(argv[1], argv[2] == "traced", int(argv[3]))
    # Leave without the interpreter's shutdown, whose work is not measured.
    sys.stdout.flush()
    os._exit(0)


def count(valgrind: str, work: Path, *what: str) -> int:
    """Instructions valgrind counted for one child."""
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={work / 'callgrind.out'}",
        sys.executable,
        __file__,
        "--child",
        *what,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    found = COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"instructions.py: the child {what} failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def rotated(items: tuple[str, ...], by: int) -> tuple[str, ...]:
    """Each repeat in another order, so that no mode always runs first."""
    by %= len(items)
    return items[by:] + items[:by]


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1:])
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=positive, default=200)
    parser.add_argument("--calls", type=positive, default=20000)
    parser.add_argument("--bridge-calls", type=positive, default=2000)
    parser.add_argument("--repeats", type=positive, default=2)
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also count switch_cost.py's floors on real bridge calls",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also count switch_cost.py --compiled's variants on real bridge calls",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        parser.exit(2, "instructions.py: error: valgrind not found on PATH\n")
    per_request: dict[str, list[float]] = {mode: [] for mode in MODES}
    per_switch: dict[str, list[float]] = {mechanism: [] for mechanism in MECHANISMS}
    real: dict[str, list[float]] = {mechanism: [] for mechanism in MECHANISMS}
    floors: tuple[str, ...] = ()
    import switch_cost  # this script's folder is on sys.path

    if args.floors:
        floors = switch_cost.FLOORS
    if args.compiled:
        floors += switch_cost.COMPILED
    floor: dict[str, dict[str, list[float]]] = {
        variant: {mechanism: [] for mechanism in MECHANISMS} for variant in floors
    }
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        traces = str(work / "traces.jsonl")
        if args.compiled:
            import compiled_floor

            try:
                os.environ[COMPILED_PATH] = str(compiled_floor.build(work))
            except compiled_floor.Unavailable as exc:
                parser.error(str(exc))
        for repeat in range(args.repeats):
            for mode in rotated(MODES, repeat):
                base = count(valgrind, work, "requests", mode, "0", traces)
                total = count(valgrind, work, "requests", mode, str(args.requests), traces)
                per_request[mode].append((total - base) / args.requests)
                print(f"  {repeat + 1} {mode}: {per_request[mode][-1]:,.0f}", file=sys.stderr)
            for mechanism in MECHANISMS:
                added = {}
                for side in ("plain", "traced"):
                    base = count(valgrind, work, "stand-ins", mechanism, side, "0")
                    total = count(valgrind, work, "stand-ins", mechanism, side, str(args.calls))
                    added[side] = (total - base) / args.calls
                per_switch[mechanism].append((added["traced"] - added["plain"]) / 2)
                done = per_switch[mechanism][-1]
                print(f"  {repeat + 1} {mechanism}: {done:,.0f} a switch", file=sys.stderr)
                added = {}
                for variant in rotated(("uninstalled", "recording", *floors), repeat):
                    calls = str(args.bridge_calls)
                    base = count(valgrind, work, "bridges", mechanism, variant, "0")
                    total = count(valgrind, work, "bridges", mechanism, variant, calls)
                    added[variant] = (total - base) / args.bridge_calls
                real[mechanism].append((added["recording"] - added["uninstalled"]) / 2)
                done = real[mechanism][-1]
                print(f"  {repeat + 1} {mechanism}, real: {done:,.0f} a switch", file=sys.stderr)
                for variant in floors:
                    done = (added[variant] - added["uninstalled"]) / 2
                    floor[variant][mechanism].append(done)
                    print(f"  {repeat + 1} {mechanism}, {variant}: {done:,.0f}", file=sys.stderr)
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
    switches = {
        mechanism: {"added_per_switch": statistics.median(values), "all": values}
        for mechanism, values in per_switch.items()
    }
    bridge_switches = {
        mechanism: {"added_per_switch": statistics.median(values), "all": values}
        for mechanism, values in real.items()
    }
    floor_switches = {
        variant: {
            mechanism: {"added_per_switch": statistics.median(values), "all": values}
            for mechanism, values in by_mechanism.items()
        }
        for variant, by_mechanism in floor.items()
    }
    if args.json:
        results = {
            "requests": args.requests,
            "calls": args.calls,
            "bridge_calls": args.bridge_calls,
            "repeats": args.repeats,
        }
        tables = {
            "rows": rows,
            "stand_ins": switches,
            "bridges": bridge_switches,
            "floors": floor_switches,
        }
        print(json.dumps({**results, **tables}))
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
    tables_shown = [
        (f"switch_cost.py's stand-ins ({args.calls} calls)", switches),
        (f"real bridge calls ({args.bridge_calls} calls)", bridge_switches),
    ]
    for variant, table in floor_switches.items():
        tables_shown.append((f"real bridge calls, {variant} ({args.bridge_calls} calls)", table))
    for title, table in tables_shown:
        print(f"Instructions added per switch, {title}")
        for mechanism, figures in table.items():
            each = ", ".join(f"{v:,.0f}" for v in figures["all"])
            print(f"  {mechanism:<13} {figures['added_per_switch']:>12,.0f}  (each: {each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
