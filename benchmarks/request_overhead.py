"""What switchtrace adds to a request: disabled vs headers only vs full spans
(and, when installed, opentelemetry-instrumentation-django on the same request).

The ASGI default-stack sync-view request of the example project, Django's
ASGIHandler driven in-process (as in Django ticket #37177), variants
interleaved round by round. Reports per variant the median µs per request
over the rounds (min-max) and the ratio to "disabled":

- latency: sequential requests, the span pipeline working in its own thread
  meanwhile (what a client sees);
- amortized: the same plus waiting, at the end of the round, until every span
  of the round is built and exported to a file (the whole CPU cost).

    python benchmarks/request_overhead.py [--rounds 15] [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "project")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("SWITCHTRACE_EXAMPLE_MIDDLEWARE", "shipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=200, help="requests per variant per round")
    parser.add_argument("--path", default="/sync/")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")

    traces = Path(tempfile.mkdtemp()) / "traces.jsonl"
    os.environ["SWITCHTRACE_EXAMPLE_TRACES"] = str(traces)
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.test.utils import override_settings

    from switchtrace import tracer
    from switchtrace.django_app import integration, telemetry
    from switchtrace.django_app.conf import MIDDLEWARE_PATH, get_config
    from tests.support import asgi_request

    file_options = get_config().export
    plain_middleware = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]

    def build(middleware):
        with override_settings(MIDDLEWARE=middleware):
            return ASGIHandler()

    handlers = {
        "disabled": build(plain_middleware),
        "headers only": build(settings.MIDDLEWARE),
        "full spans": build(settings.MIDDLEWARE),
    }
    otel = _otel_django_handler(build, plain_middleware)
    if otel is not None:
        handlers["opentelemetry-instrumentation-django"] = otel

    def enter(variant):
        # Outside the timed region: put switchtrace in the variant's state.
        if variant in ("disabled", "opentelemetry-instrumentation-django"):
            telemetry.configure(None)
            integration.uninstall()
            return
        integration.install()
        telemetry.configure(file_options if variant == "full spans" else None)

    async def serve(handler, n):
        for _ in range(n):
            await asgi_request(handler, args.path)

    latency = {v: [] for v in handlers}
    amortized = {v: [] for v in handlers}
    for v, h in handlers.items():  # warm-up
        enter(v)
        asyncio.run(serve(h, 20))
    for _ in range(args.rounds):
        for v, h in handlers.items():
            enter(v)
            start = time.perf_counter_ns()
            asyncio.run(serve(h, args.requests))
            served = time.perf_counter_ns()
            pipeline = telemetry.pipeline()
            if pipeline is not None:
                pipeline.flush(60)
            done = time.perf_counter_ns()
            latency[v].append((served - start) / args.requests / 1e3)
            amortized[v].append((done - start) / args.requests / 1e3)
    enter("disabled")
    telemetry.shutdown()
    tracer.uninstall()

    def summary(samples):
        base = statistics.median(samples["disabled"])
        return {
            v: {
                "median_us": statistics.median(s),
                "min_us": min(s),
                "max_us": max(s),
                "ratio": statistics.median(s) / base,
            }
            for v, s in samples.items()
        }

    results = {"latency": summary(latency), "amortized": summary(amortized)}
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"ASGI {args.path}, startproject middleware, {args.rounds} interleaved rounds of "
        f"{args.requests} requests; µs per request, median (min-max), ratio to disabled"
    )
    for kind, table in results.items():
        print(f"\n{kind}")
        for v, r in table.items():
            print(
                f"  {v:<38} {r['median_us']:8.1f} ({r['min_us']:.1f}-{r['max_us']:.1f})"
                f"  x{r['ratio']:.3f}"
            )
    return 0


OTEL_DJANGO_MIDDLEWARE = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)


def _otel_django_handler(build, middleware):
    """The same request under opentelemetry-instrumentation-django (one server
    span per request, batch-exported to a file), if it is installed."""
    try:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return None
    from switchtrace.exporters import FileSpanExporter

    provider = TracerProvider()
    path = Path(tempfile.mkdtemp()) / "otel-django.jsonl"
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(path)))
    DjangoInstrumentor().instrument(tracer_provider=provider)
    return build([OTEL_DJANGO_MIDDLEWARE, *middleware])


if __name__ == "__main__":
    raise SystemExit(main())
