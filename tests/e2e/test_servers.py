"""The issue's table, over real servers on loopback: uvicorn for ASGI, gunicorn
(gthread workers, forked after the app is loaded in each worker) for WSGI;
and for ASGI also gunicorn's own ASGI worker and uvicorn's worker in
gunicorn (forked, with and without --preload) and hypercorn, granian for
both, and uWSGI and waitress for WSGI.

Headers are read off the HTTP responses; request totals come from the records
the servers write through a listener (tests/e2e/apps.py)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import time

import h11
import httpx
import pytest

from .servers import Server

# (server, variant, path) -> (X-Context-Switches, X-Thread-Hops, X-Event-Loops,
# X-Threads-Started), request total of context switches.
TABLE = {
    ("uvicorn", "shipped", "/sync/"): ((30, 30, 0, 1), 32),
    ("uvicorn", "sync-only", "/sync/"): ((10, 10, 0, 1), 12),
    ("uvicorn", "shipped", "/async/"): ((28, 28, 0, 1), 30),
    ("uvicorn", "sync-only", "/async/"): ((8, 8, 0, 1), 10),
    ("gunicorn", "shipped", "/sync/"): ((0, 0, 0, 0), 0),
    ("gunicorn", "shipped", "/async/"): ((2, 2, 1, 1), 2),
    ("gunicorn", "shipped", "/async-to-sync/"): ((6, 6, 3, 3), 6),
    ("gunicorn", "shipped", "/asyncio-run/"): ((2, 0, 1, 0), 2),
}
# Routes outside the table, measured the same way, for the mixed load.
MORE = {
    ("uvicorn", "shipped", "/async-to-sync/"): ((36, 36, 0, 1), 38),
    ("uvicorn", "shipped", "/asyncio-run/"): ((32, 30, 1, 1), 34),
    ("uvicorn", "shipped", "/async-io/"): ((28, 28, 0, 1), 30),
    ("uvicorn", "sync-only", "/async-to-sync/"): ((16, 16, 0, 1), 18),
    ("uvicorn", "sync-only", "/asyncio-run/"): ((12, 10, 1, 1), 14),
    ("gunicorn", "shipped", "/async-io/"): ((2, 2, 1, 1), 2),
}
# uvicorn's default loop when uvloop is installed: a C event loop whose
# methods cannot be patched; the figures must not change.
UVLOOP = {
    ("uvicorn-uvloop", variant, path): figures
    for (kind, variant, path), figures in {**TABLE, **MORE}.items()
    if kind == "uvicorn" and variant == "shipped"
}
# gunicorn --preload: installed before fork(); each worker must count its own.
PRELOAD = {
    ("gunicorn-preload", variant, path): figures
    for (kind, variant, path), figures in {**TABLE, **MORE}.items()
    if kind == "gunicorn"
}
# ASGI under other servers: gunicorn's own ASGI worker, uvicorn's server in
# gunicorn's forked workers (with --preload too: installed before fork()),
# hypercorn and granian. The figures are Django's and asgiref's, whatever
# serves them.
OTHER_ASGI = {
    (other, variant, path): figures
    for (kind, variant, path), figures in {**TABLE, **MORE}.items()
    if kind == "uvicorn" and variant == "shipped"
    for other in (
        "gunicorn-asgi",
        "gunicorn-uvicorn",
        "gunicorn-uvicorn-preload",
        "hypercorn",
        "granian",
    )
}
# WSGI under granian: the view runs on threads Rust started, which Python
# meets there first. Under uWSGI: in workers its master forks from C after
# loading the application (no at-fork hook of Python's runs there), also
# with threads of its own in each. Under waitress: one process, on its pool
# of threads. Under gunicorn's gevent workers: threads are greenlets. Under
# its default sync workers: one request at a time in each.
OTHER_WSGI = {
    (other, variant, path): figures
    for (kind, variant, path), figures in {**TABLE, **MORE}.items()
    if kind == "gunicorn"
    for other in (
        "granian-wsgi",
        "uwsgi",
        "uwsgi-threads",
        "waitress",
        "gunicorn-gevent",
        "gunicorn-sync",
    )
}
EXPECTED = {**TABLE, **MORE, **UVLOOP, **PRELOAD, **OTHER_ASGI, **OTHER_WSGI}
SERVERS = sorted({(kind, variant) for kind, variant, _path in EXPECTED})


@pytest.fixture(scope="module", params=SERVERS, ids=lambda s: f"{s[0]}-{s[1]}")
def server(request, tmp_path_factory):
    kind, variant = request.param
    records = tmp_path_factory.mktemp(f"{kind}-{variant}") / "records.jsonl"
    srv = Server(kind, variant, records)
    yield srv
    srv.stop()
    assert "switchtrace: internal error" not in srv.output()


def read_records(server: Server, expected: int | set[str]) -> dict[str, dict]:
    """Records by query string, once there are ``expected`` of them (or
    those of the queries ``expected``); waits for WSGI records finished
    after the reply."""
    deadline = time.monotonic() + 10
    while True:
        lines = server.records.read_text().splitlines() if server.records.exists() else []
        found = {r["query"]: r for r in map(json.loads, lines) if r["query"]}
        found.pop("ready", None)
        done = expected <= found.keys() if isinstance(expected, set) else len(found) >= expected
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def figures(response: httpx.Response | dict[str, str]) -> tuple[int, ...]:
    headers = response.headers if isinstance(response, httpx.Response) else response
    return tuple(
        int(headers[h])
        for h in ("X-Context-Switches", "X-Thread-Hops", "X-Event-Loops", "X-Threads-Started")
    )


def routes_of(server: Server) -> list[str]:
    return [p for (k, v, p) in EXPECTED if (k, v) == (server.kind, server.variant)]


def test_each_route_gives_the_tables_figures(server):
    routes = routes_of(server)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in routes:
            response = client.get(f"{path}?seq-{path}")
            assert response.status_code == 200
            assert figures(response) == EXPECTED[server.kind, server.variant, path][0], path
    # This test's own (the module's tests share the server and its records).
    recorded = read_records(server, {f"seq-{path}" for path in routes})
    for path in routes:
        record = recorded[f"seq-{path}"]
        headers, total = EXPECTED[server.kind, server.variant, path]
        assert record["at_headers"] == list(headers), path
        assert record["totals"][0] == total, path


def test_fifty_concurrent_mixed_requests_each_carry_their_own_figures(server):
    routes = routes_of(server)
    if server.kind == "gunicorn-gevent":
        # Concurrent requests that cross fail there with asgiref's "You
        # cannot use AsyncToSync in the same thread as an async event loop",
        # with or without switchtrace (asgiref#443: greenlets share the OS
        # thread, whose running loop asyncio keeps): greenlets at once.
        routes = ["/sync/"]
    plan = [(n, routes[n % len(routes)]) for n in range(50)]
    random.Random(37177).shuffle(plan)

    async def fire():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.get(f"{path}?c{n}") for n, path in plan))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 50
    for (n, path), response in zip(plan, responses, strict=True):
        assert figures(response) == EXPECTED[server.kind, server.variant, path][0], (n, path)
    recorded = read_records(server, {f"c{n}" for n in range(50)})
    for n, path in plan:
        headers, total = EXPECTED[server.kind, server.variant, path]
        assert recorded[f"c{n}"]["at_headers"] == list(headers), (n, path)
        assert recorded[f"c{n}"]["totals"][0] == total, (n, path)


def pipelined(server: Server, paths: list[str], tag: str) -> list[h11.Response]:
    """``paths`` requested on one connection in one write (HTTP/1.1
    pipelining), each with the query ``{tag}{n}``; the responses, read off
    the connection in order."""
    wire = "".join(
        f"GET {path}?{tag}{n} HTTP/1.1\r\nHost: t\r\n\r\n" for n, path in enumerate(paths)
    )
    reader = h11.Connection(h11.CLIENT)
    responses = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(wire.encode())
        for path in paths:
            # The request as h11 needs to have seen it to read its response.
            reader.send(h11.Request(method="GET", target=path, headers=[("Host", "t")]))
            reader.send(h11.EndOfMessage())
            while not isinstance(event := reader.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    reader.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    responses.append(event)
                elif isinstance(event, h11.ConnectionClosed):
                    return responses
            if reader.our_state is h11.MUST_CLOSE:  # the server closes after one
                return responses
            reader.start_next_cycle()
    return responses


def test_pipelined_requests_each_carry_their_own_figures(server):
    """uvicorn starts a connection's next request, pipelined or read while
    the previous one was answered, inside the send of that one's last body
    message, in a task copying its context: it was taken for a sub-request
    of it, sent without headers, its crossings counted in the previous
    request (and the one after it had no figures at headers)."""
    if server.kind in ("gunicorn-sync", "uwsgi", "uwsgi-threads"):
        pytest.skip(f"{server.kind} closes the connection after one response")
    routes = routes_of(server)
    paths = [routes[n % len(routes)] for n in range(2 * len(routes))]
    # The copied context holds the previous request's asgiref
    # ThreadSensitiveContext, still open, which Django's ASGIHandler then
    # enters instead of its own: the request's thread-sensitive code runs on
    # that request's thread if it is still there, which starts none (so with
    # switchtrace disabled too).
    assert_each_pipelined_has_its_figures(server, paths, threads_inherited="uvicorn" in server.kind)


def test_pipelined_requests_under_uvicorn_reset_contextvars_each_start_a_thread(tmp_path):
    """uvicorn's --reset-contextvars (0.45) starts each request in a context
    of its own: no asgiref ThreadSensitiveContext of the request before
    comes with it, and every request has all of its route's figures."""
    server = Server(
        "uvicorn", "shipped", tmp_path / "records.jsonl", extra_args=["--reset-contextvars"]
    )
    try:
        paths = ["/sync/", "/async/", "/sync/", "/async-to-sync/", "/asyncio-run/", "/sync/"]
        assert_each_pipelined_has_its_figures(server, paths, threads_inherited=False)
    finally:
        server.stop()
    assert "switchtrace: internal error" not in server.output()


def test_a_request_pipelined_after_one_through_wsgi_to_asgi_is_a_request_of_its_own(tmp_path):
    """asgiref's WsgiToAsgi sends from its thread through async_to_sync,
    whose task copies that thread's context, the WSGI request current
    there; uvicorn starts the next request inside the last send: another
    application's (a router's) thread was counted in the WSGI request (7
    switches, 7 hops, 1 thread), or its own WSGI request ended it early."""
    server = Server(
        "uvicorn",
        "shipped",
        tmp_path / "records.jsonl",
        extra_args=["--lifespan", "off"],
        application="tests.e2e.adapted:application",
    )
    try:
        for connection in range(3):
            responses = pipelined(server, ["/sync/", "/other/"], f"c{connection}-")
            assert [r.status_code for r in responses] == [200, 200]
            sent = {name.decode().title(): value.decode() for name, value in responses[0].headers}
            assert figures(sent) == (0, 0, 0, 0)
            assert not any(name.lower().startswith(b"x-") for name, _ in responses[1].headers)
        recorded = read_records(server, {f"c{n}-0" for n in range(3)})
    finally:
        server.stop()
    assert "switchtrace: internal error" not in server.output()
    # Only WsgiToAsgi's three sends (the start, the body, the last empty one).
    assert sorted(recorded) == ["c0-0", "c1-0", "c2-0"]
    assert [recorded[f"c{n}-0"]["totals"][:4] for n in range(3)] == [[6, 6, 0, 0]] * 3


def assert_each_pipelined_has_its_figures(server, paths, threads_inherited):
    """``paths`` pipelined on one connection: each response has its route's
    figures, at headers and in its record, and its record its route's total.
    With ``threads_inherited``, a request after the first may start no
    thread (the one of the request before serves it)."""
    responses = pipelined(server, paths, "p")
    assert [r.status_code for r in responses] == [200] * len(paths)
    recorded = read_records(server, {f"p{n}" for n in range(len(paths))})
    for n, (path, response) in enumerate(zip(paths, responses, strict=True)):
        headers, total = EXPECTED[server.kind, server.variant, path]
        shown = figures({name.decode().title(): value.decode() for name, value in response.headers})
        if n and threads_inherited:
            assert shown[3] in (0, headers[3]), (n, path)
            headers = (*headers[:3], shown[3])
        assert shown == headers, (n, path)
        assert recorded[f"p{n}"]["at_headers"] == list(headers), (n, path)
        assert recorded[f"p{n}"]["totals"][0] == total, (n, path)


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-asgi"])
def test_a_client_that_times_out_leaves_a_closed_record_and_a_working_server(kind, tmp_path):
    """The client gives up on /slow/ (it sleeps 5 s) after 0.3 s: the server
    tells Django, which cancels the view (Django >= 5.0); the record is
    closed all the same."""
    server = Server(kind, "shipped", tmp_path / "records.jsonl")
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(server.url + "/slow/?gave-up", timeout=0.3)
        response = httpx.get(server.url + "/sync/?after", timeout=10)
        recorded = read_records(server, 2)
    finally:
        server.stop()
    assert figures(response) == (30, 30, 0, 1)
    gave_up = recorded["gave-up"]
    assert gave_up["path"] == "/slow/"
    from django.core.handlers.asgi import ASGIHandler

    if hasattr(ASGIHandler, "listen_for_disconnect"):
        # Django >= 5.0 cancels the view: no response, so no headers; the
        # crossings before the (async) view — request_started, six
        # process_request, process_view — and request_finished on the way out.
        assert gave_up["at_headers"] is None
        assert gave_up["totals"][:3] == [2 + 12 + 2 + 2, 18, 0]
    elif kind == "gunicorn-asgi":
        # Django 4.2 lets the view run; gunicorn's ASGI worker cancels the
        # application 3 s after the client left (--asgi-disconnect-grace-
        # period), the view still sleeping: no response, no request_finished.
        assert gave_up["at_headers"] is None
        assert gave_up["totals"][:3] == [2 + 12 + 2, 16, 0]
    else:
        # Django 4.2 lets the view finish and answers nobody: the whole request.
        assert gave_up["at_headers"][:3] == [28, 28, 0]
        assert gave_up["totals"][:3] == [30, 30, 0]


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-asgi"])
def test_a_large_upload_costs_two_switches_a_message_written_to_disk(kind, tmp_path):
    """Django >= 6.0 writes a body past FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB)
    to disk in sync_to_async, once for each body message the server hands
    over after that (as many as its reads of the socket: not known in
    advance), before request_started; earlier Djangos write it in the event
    loop. Here CsrfViewMiddleware refuses the POST, after the body was read:
    30 switches before the headers, 32 in all, without a write."""
    import django

    server = Server(kind, "shipped", tmp_path / "records.jsonl")
    try:
        response = httpx.post(server.url + "/sync/?upload", content=bytes(10 << 20), timeout=30)
        [record] = read_records(server, 1).values()
    finally:
        server.stop()
    assert response.status_code == 403
    writes = record["body_writes"]
    assert (writes > 0) is (django.VERSION >= (6, 0))
    assert figures(response)[:3] == (30 + 2 * writes, 30 + 2 * writes, 0)
    assert record["at_headers"][:3] == list(figures(response)[:3])
    assert record["totals"][0] == 32 + 2 * writes


def _spans(traces) -> list[dict]:
    if not traces.exists():
        return []
    return [
        span
        for line in traces.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def test_a_running_uvicorn_writes_its_spans_and_sigterm_then_loses_none(tmp_path):
    """SIGTERM (docker compose stop, systemd, Kubernetes): uvicorn shuts down
    gracefully, then raises the signal again with its default action, which
    skips the exit hooks. The spans are written while it runs (batches wait
    half a second, not the SDK's five), so none is lost."""

    server = Server("uvicorn", "shipped", tmp_path / "records.jsonl")
    traces = tmp_path / "traces.jsonl"
    try:
        response = httpx.get(server.url + "/sync/?before-sigterm", timeout=10)
        # The ready probe's request and this one: 16 crossings and the
        # request span each, written while the server runs.
        deadline = time.monotonic() + 10
        while len(_spans(traces)) < 2 * 17 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_spans(traces)) == 2 * 17
    finally:
        server.stop()  # SIGTERM
    assert figures(response) == (30, 30, 0, 1)
    assert server.process.returncode == -signal.SIGTERM  # as without switchtrace
    assert len(_spans(traces)) == 2 * 17


def test_uvicorn_stopped_by_sigint_writes_the_spans_still_queued(tmp_path):
    """SIGINT (docker-compose.yml's stop_signal for uvicorn): after the
    graceful shutdown the exit hooks run, and write what is queued."""

    server = Server("uvicorn", "shipped", tmp_path / "records.jsonl")
    response = _sigint_once_recorded(server, "before-sigint")
    assert figures(response) == (30, 30, 0, 1)
    assert len(_spans(tmp_path / "traces.jsonl")) == 2 * 17


def _sigint_once_recorded(
    server: Server, query: str, path: str = "/sync/", signum: int = signal.SIGINT
) -> httpx.Response:
    """The server's response to one request; SIGINT (or ``signum``) once
    the request's record has ended, and the server stopped."""
    try:
        response = httpx.get(server.url + f"{path}?{query}", timeout=10)
        assert query in read_records(server, 1)
        if server.kind.startswith("uwsgi"):
            assert server.wait_idle()
        server.process.send_signal(signum)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    return response


def test_uvicorn_with_workers_loses_the_spans_still_queued_even_on_sigint(tmp_path):
    """uvicorn --workers: its supervisor stops each worker with SIGTERM,
    whatever signal stopped it (SIGINT here, as Ctrl-C), and each raises it
    again with its default action after its graceful shutdown, past every
    exit hook: the spans still waiting for their batch are lost (here the
    batch waits a minute), as uvicorn alone loses them on SIGTERM. Those
    written while it runs are kept (the README says so)."""

    server = Server(
        "uvicorn-workers",
        "shipped",
        tmp_path / "records.jsonl",
        extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    response = _sigint_once_recorded(server, "before-sigint")
    assert figures(response) == (30, 30, 0, 1)
    assert server.process.returncode == 0
    assert _spans(tmp_path / "traces.jsonl") == []
    assert "switchtrace" not in server.output()
    # Batches waiting half a second, as by default: written while it runs.
    running = tmp_path / "running"
    running.mkdir()
    server = Server("uvicorn-workers", "shipped", running / "records.jsonl")
    try:
        httpx.get(server.url + "/sync/?while-running", timeout=10)
        deadline = time.monotonic() + 10
        while len(_trace_of(running / "traces.jsonl", "while-running")) < 17:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.process.send_signal(signal.SIGINT)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    assert len(_trace_of(running / "traces.jsonl", "while-running")) == 17


def _trace_of(traces, query: str) -> list[dict]:
    """The spans of the trace whose request span has ``query``."""
    spans = _spans(traces)
    trace_ids = {
        span["traceId"]
        for span in spans
        for attribute in span["attributes"]
        if attribute["key"] == "url.query" and attribute["value"]["stringValue"] == query
    }
    return [span for span in spans if span["traceId"] in trace_ids]


def _sigterm_after(
    kind: str, url: str, tmp_path, workers: int = 2
) -> tuple[Server, httpx.Response, object]:
    """The server (stopped), its response to one request sent right before
    its SIGTERM, and its spans' file. The spans wait a minute for their
    batch: only the shutdown at the worker's exit writes them."""
    server = Server(
        kind,
        "shipped",
        tmp_path / "records.jsonl",
        workers=workers,
        extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    try:
        response = httpx.get(server.url + url, timeout=10)
        if kind.startswith("granian"):
            # granian stops a worker without waiting for what a request does
            # after its response is sent (Django closing the response,
            # request_finished), with or without switchtrace: the request's
            # record would never end, and nothing of it be exported.
            assert url.partition("?")[2] in read_records(server, 1)
        server.process.terminate()
        server.process.wait(timeout=10)
    finally:
        server.stop()
    return server, response, tmp_path / "traces.jsonl"


@pytest.mark.parametrize(
    ("kind", "spans"),
    [
        ("gunicorn", 1),
        ("gunicorn-gevent", 1),
        ("gunicorn-sync", 1),
        ("gunicorn-asgi", 17),
        ("gunicorn-uvicorn", 17),
        ("hypercorn", 17),
        ("granian", 17),
        ("granian-wsgi", 1),
    ],
)
def test_sigterm_right_after_a_request_loses_none_of_its_spans(kind, spans, tmp_path):
    """SIGTERM (docker compose stop, systemd, Kubernetes) while the request's
    spans still wait for their batch. gunicorn sends its workers SIGTERM: its
    gthread workers, and its ASGI worker once its event loop has stopped,
    exit through the exit hooks, which write them; uvicorn's
    worker raises the signal again with its default action after its
    graceful shutdown, as uvicorn does, unless a post_worker_init hook has
    set a handler (the example project's gunicorn.conf.py). hypercorn
    returns from its graceful shutdown. granian's workers, which
    multiprocessing forks, return from theirs and leave by os._exit, past
    the exit hooks before Python 3.13: multiprocessing's finalizers write
    them."""
    server, response, traces = _sigterm_after(kind, "/sync/?before-sigterm", tmp_path)
    assert figures(response) == EXPECTED[kind, "shipped", "/sync/"][0]
    assert server.process.returncode == 0
    assert len(_trace_of(traces, "before-sigterm")) == spans
    assert "switchtrace" not in server.output()


def test_gunicorn_with_uvicorns_worker_on_sigterm_after_an_error_response_exits_cleanly(
    tmp_path,
):
    """Django logs a 404 in sync_to_async(thread_sensitive=False): the event
    loop's default executor then exists, and shutting it down takes more
    than one turn of the loop. The hook's SystemExit, raised from a callback
    of the loop when uvicorn raised SIGTERM again at the end of its graceful
    shutdown, came after the main task had ended: the loop's stale
    stop() then broke uvicorn's shutdown_default_executor() ("Event loop
    stopped before Future completed"), and the worker died with a traceback,
    exit code 255."""
    server, response, traces = _sigterm_after(
        "gunicorn-uvicorn", "/nowhere/?before-sigterm", tmp_path, workers=1
    )
    assert response.status_code == 404
    assert server.process.returncode == 0
    output = server.output()
    assert "Exception in worker process" not in output, output
    assert "exited with code" not in output, output
    # Written by the exit hooks: the request's, its 12 middleware crossings,
    # request_started's and the response's close, and Django's handling of
    # the 404 (response_for_exception and log_response).
    names = [span["name"] for span in _trace_of(traces, "before-sigterm")]
    assert len(names) == 17
    assert {"GET", "sync_to_async response_for_exception", "sync_to_async log_response"} <= set(
        names
    )


def test_under_granian_wsgi_a_view_runs_on_a_thread_python_did_not_start(tmp_path):
    """granian runs WSGI views on threads its Rust runtime started: Python
    names such a thread Dummy-N when it first meets it, and it is not
    counted as a thread the request started (the executor's thread of the
    async view's async_to_sync is)."""
    _, response, traces = _sigterm_after("granian-wsgi", "/async/?dummy", tmp_path, workers=1)
    assert figures(response) == (2, 2, 1, 1)
    spans = _trace_of(traces, "dummy")
    attributes = {
        span["name"]: {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
        for span in spans
    }
    assert sorted(attributes) == ["GET async/", "async_to_sync async_view"]
    crossing = attributes["async_to_sync async_view"]
    assert re.fullmatch(r"Dummy-\d+", crossing["switchtrace.caller.thread.name"])
    assert re.fullmatch(r"ThreadPoolExecutor-\d+_0", crossing["thread.name"])
    assert crossing["switchtrace.threads.started"] == "1"
    assert attributes["GET async/"]["switchtrace.threads_started"] == "1"


def test_gunicorns_asgi_worker_stopped_by_sigint_loses_none_of_its_spans(tmp_path):
    """gunicorn stopped by SIGINT (Ctrl-C) sends its workers SIGQUIT, which
    its ASGI worker takes for an immediate shutdown: its event loop stops
    and the worker exits through the exit hooks, which write the spans
    still waiting for their batch (here a minute). (uvicorn's worker does
    not act on SIGQUIT: gunicorn kills it after --graceful-timeout.)"""
    server = Server(
        "gunicorn-asgi",
        "shipped",
        tmp_path / "records.jsonl",
        extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    response = _sigint_once_recorded(server, "before-sigint", "/async-to-sync/")
    assert figures(response) == (36, 36, 0, 1)
    assert server.process.returncode == 0
    spans = _trace_of(tmp_path / "traces.jsonl", "before-sigint")
    assert len(spans) == 20
    assert sum(span["name"] == "async_to_sync noop" for span in spans) == 3
    assert "switchtrace" not in server.output()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc")
def test_gunicorn_with_uvicorns_worker_on_ctrl_c_loses_none_of_its_spans(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group:
    gunicorn's master and its workers. uvicorn's worker leaves SIGINT at its
    default action, as it does SIGTERM, and raises it again after its
    graceful shutdown: the worker died by it, and the request's spans still
    waiting for their batch (here a minute) with it, all 17. The example
    project's post_worker_init hook now takes SIGINT as it takes SIGTERM."""
    server = Server(
        "gunicorn-uvicorn",
        "shipped",
        tmp_path / "records.jsonl",
        workers=1,
        extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    try:
        response = httpx.get(server.url + "/sync/?ctrl-c", timeout=10)
        assert "ctrl-c" in read_records(server, {"ctrl-c"})
        workers = _children(server.process.pid)
        assert len(workers) == 1
        for pid in [server.process.pid, *workers]:  # the terminal's process group
            os.kill(pid, signal.SIGINT)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    assert figures(response) == EXPECTED["gunicorn-uvicorn", "shipped", "/sync/"][0]
    assert len(_trace_of(tmp_path / "traces.jsonl", "ctrl-c")) == 17
    assert "switchtrace" not in server.output()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT], ids=["sigint", "sigquit"])
def test_uwsgi_stopped_right_after_a_request_loses_none_of_its_spans(signum, tmp_path):
    """uWSGI's master loads the application, then forks its workers from C,
    past Python's at-fork hooks: the span thread and its queue were the
    master's, and the workers' spans were never written (none in a
    minute, and each worker's shutdown waited its 5 s for a thread not in
    it, then told of the spans it lost). The worker's first record starts
    its own thread now. Stopped by SIGINT or SIGQUIT (`uwsgi --stop`, what
    its docs give systemd) once the request has ended, each worker writes
    what is queued at its exit; the spans wait a minute for their batch."""
    server = Server(
        "uwsgi",
        "shipped",
        tmp_path / "records.jsonl",
        extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    response = _sigint_once_recorded(server, "before-stop", "/async-to-sync/", signum)
    assert figures(response) == (6, 6, 3, 3)
    assert server.process.returncode == 0
    spans = _trace_of(tmp_path / "traces.jsonl", "before-stop")
    assert sorted(span["name"] for span in spans) == [
        "GET async-to-sync/",
        *["async_to_sync noop"] * 3,
    ]
    assert "switchtrace" not in server.output()


def test_waitress_on_sigint_writes_the_spans_still_queued_and_dies_by_sigterm(tmp_path):
    """waitress leaves SIGTERM at its default action: the process dies by
    it, past the exit hooks, and the spans still waiting for their batch
    (here a minute) are lost, as with Django's runserver. Stopped by SIGINT
    (Ctrl-C), it returns through them: each one is written."""
    quiet = {"OTEL_BSP_SCHEDULE_DELAY": "60000"}
    (tmp_path / "sigint").mkdir()
    server = Server("waitress", "shipped", tmp_path / "sigint" / "records.jsonl", extra_env=quiet)
    response = _sigint_once_recorded(server, "before-sigint", "/async-to-sync/")
    assert figures(response) == (6, 6, 3, 3)
    assert server.process.returncode == 0
    spans = _trace_of(tmp_path / "sigint" / "traces.jsonl", "before-sigint")
    assert sorted(span["name"] for span in spans) == [
        "GET async-to-sync/",
        *["async_to_sync noop"] * 3,
    ]
    assert "switchtrace" not in server.output()
    (tmp_path / "sigterm").mkdir()
    server = Server("waitress", "shipped", tmp_path / "sigterm" / "records.jsonl", extra_env=quiet)
    try:
        response = httpx.get(server.url + "/async-to-sync/?before-sigterm", timeout=10)
        assert "before-sigterm" in read_records(server, 1)
    finally:
        server.stop()
    assert figures(response) == (6, 6, 3, 3)
    assert server.process.returncode == -signal.SIGTERM  # as without switchtrace
    assert _spans(tmp_path / "sigterm" / "traces.jsonl") == []
