"""10,000 requests at 200 concurrent connections against the example project
under uvicorn and under gunicorn, switchtrace enabled with spans going to a
real OTLP receiver on loopback: zero errors, every response's headers equal to
its route's figures, resident memory flat after warm-up.

Bounded in count (10,000 requests) and time (pytest-timeout), loopback only."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from switchtrace.bench import read_response

from ..e2e.servers import Server
from ..exporters.receiver import GrpcReceiver

REQUESTS = 10_000
WARMUP = 1_000
CONCURRENCY = 200
# Route -> (X-Context-Switches, X-Thread-Hops, X-Event-Loops, X-Threads-Started),
# middleware "none" (the fastest variant: the load is on switchtrace, not Django).
ROUTES = {
    "uvicorn": {"/sync/": (4, 4, 0, 1), "/async/": (2, 2, 0, 1), "/async-to-sync/": (10, 10, 0, 1)},
    "gunicorn": {"/sync/": (0, 0, 0, 0), "/async/": (2, 2, 1, 1), "/async-to-sync/": (6, 6, 3, 3)},
}
#: Allowed growth of the servers' resident memory from after the warm-up to
#: the end (a leak of request records would be 10-30 kB a request, 100+ MB).
RSS_GROWTH_BOUND_MB = 16


def rss_mb(pid: int) -> float:
    """Resident memory of a server and its worker processes."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def fire(port: int, plan: list[str]) -> list[tuple[str, int, tuple[int, ...]]]:
    """Keep-alive HTTP/1.1 over CONCURRENCY connections; (path, status, figures)."""
    queue = list(reversed(plan))
    results: list[tuple[str, int, tuple[int, ...]]] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                path = queue.pop()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode())
                status, headers = await read_response(reader)
                figures = tuple(
                    int(headers[h])
                    for h in (
                        "x-context-switches", "x-thread-hops", "x-event-loops",
                        "x-threads-started",
                    )
                )  # fmt: skip
                results.append((path, status, figures))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return results


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_ten_thousand_requests_at_two_hundred_connections(kind, tmp_path, capsys):
    receiver = GrpcReceiver()
    receiver.received.keep = False
    routes = ROUTES[kind]
    rng = random.Random(200)
    plan = [rng.choice(list(routes)) for _ in range(REQUESTS)]
    server = Server(
        kind,
        "none",
        tmp_path / "records.jsonl",
        workers=2,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "SWITCHTRACE_TEST_RECORDS": "/dev/null",
        },
        threads=CONCURRENCY // 2,
    )
    try:
        warm = asyncio.run(fire(server.port, plan[:WARMUP]))
        after_warmup = rss_mb(server.process.pid)
        rest = asyncio.run(fire(server.port, plan[WARMUP:]))
        at_end = rss_mb(server.process.pid)
        spans = receiver.received.span_count
    finally:
        server.stop()
        receiver.stop()
    results = warm + rest
    assert len(results) == REQUESTS
    assert [status for _, status, _ in results if status != 200] == []
    wrong = [(path, figures) for path, _, figures in results if figures != routes[path]]
    assert wrong == []
    growth = at_end - after_warmup
    with capsys.disabled():
        print(
            f"\n{kind}: {REQUESTS} requests, {CONCURRENCY} connections, 0 errors; RSS "
            f"{after_warmup:.1f} MB after {WARMUP}, {at_end:.1f} MB at the end "
            f"(+{growth:.1f} MB); {spans} spans received"
        )
    assert growth < RSS_GROWTH_BOUND_MB
    assert spans > 0
