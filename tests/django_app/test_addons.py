"""switchtrace beside the add-ons projects run in staging, each real.

sentry-sdk's Django integration patches some of what switchtrace patches
(the handlers' ``__call__``, ``BaseHandler.get_response``, ``Thread.start``,
``ThreadPoolExecutor.submit``) with functions closing over what they found,
and wraps every middleware. It is initialised once per process and cannot
be undone, so each case runs in a process of its own.

Checked with sentry-sdk 2.x and 3.x. 3.x sends no transactions: it streams
its spans (envelope items of type ``span``, each request's root a segment
span, its children naming their segment), under the same names as 2.x's
transactions and their spans; the scripts read either as one request's
name and its spans'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "project"

#: Sentry's requests as the fake transport got them, whichever sentry-sdk:
#: for each, in the order they arrived (3.x's flusher may send two at once,
#: in any order), its trace id, its name and its spans' names
#: (switchtrace's middleware's aside), sorted.
SENTRY_REQUESTS = r"""
import time


def sentry_requests(items, expected):
    deadline = time.monotonic() + 10
    # 3.x's flusher thread may still be handing over what it took from its
    # buffer when flush() returns: wait for each request's segment span.
    while time.monotonic() < deadline and sum(
        [t == "transaction" for t, _ in items]
        + [s["is_segment"] for t, p in items if t == "span" for s in p["items"]]
    ) < expected:
        time.sleep(0.05)
    time.sleep(0.2)  # (for any more to arrive, which the tests would count)
    requests, children = [], {}
    for kind, payload in list(items):
        if kind == "transaction":
            requests.append([payload["contexts"]["trace"]["trace_id"], payload["transaction"],
                             [s["description"] for s in payload.get("spans", [])]])
            continue
        for span in payload["items"]:
            if span["is_segment"]:
                requests.append([span["trace_id"], span["name"], span["span_id"]])
            else:
                segment = span["attributes"]["sentry.segment.id"]["value"]
                children.setdefault(segment, []).append(span["name"])
    for request in requests:
        if isinstance(request[2], str):
            request[2] = children.pop(request[2], [])
        request[2] = sorted(name for name in request[2] if "switchtrace" not in name)
    assert not children, children  # every span's segment arrived
    return requests
"""


SENTRY_SCRIPT = (
    SENTRY_REQUESTS
    + r"""
import json, logging, os, sys

order = sys.argv[1]
items = []  # (type, payload): 2.x's transactions, 3.x's streamed spans


def init_sentry():
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.transport import Transport

    class Kept(Transport):
        # Called from the thread that flushes (3.x's span batcher's too).
        def capture_envelope(self, envelope):
            for item in envelope.items:
                if item.type in ("transaction", "span"):
                    items.append((item.type, json.loads(item.payload.get_bytes())))

    sentry_sdk.init(
        dsn="http://key@127.0.0.1:9/1",
        traces_sample_rate=1.0,
        transport=Kept,
        integrations=[DjangoIntegration(middleware_spans=True)],
    )


if order == "sentry first":  # sentry_sdk.init() in settings.py, as its docs say
    init_sentry()
import django

django.setup()  # switchtrace.django_app's ready() installs switchtrace
if order == "switchtrace first":  # sentry_sdk.init() in asgi.py, after get_asgi_application()
    init_sentry()

import sentry_sdk
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test.utils import override_settings

from switchtrace import tracer
from switchtrace.example import asgi_request, run_in_server_loop, wsgi_request
from switchtrace.tracer import guard

swallowed = []
guard.set_error_hook(lambda exc, where: swallowed.append(f"{where}: {exc!r}"))
logged = []
logging_handler = logging.Handler(logging.WARNING)
logging_handler.emit = lambda record: logged.append(f"{record.name}: {record.getMessage()}")
logging.getLogger().addHandler(logging_handler)  # switchtrace's, sentry_sdk.errors
records = []
tracer.add_listener(records.append)
FIGURES = ("X-Context-Switches", "X-Thread-Hops", "X-Event-Loops", "X-Threads-Started")
first = []  # the process's first request's X-Threads-Started


def serve():
    asgi, wsgi = ASGIHandler(), WSGIHandler()
    phase = []
    for server, path in (("asgi", "/sync/"), ("wsgi", "/async/")):
        for _ in range(2):  # the second: a worker's first request may start one more thread
            records.clear()
            if server == "asgi":
                response = run_in_server_loop(asgi_request(asgi, path))
            else:
                response = wsgi_request(wsgi, path)
            if not first:
                first.append(response.headers.get("X-Threads-Started"))
        phase.append(
            [
                server,
                [response.headers.get(name) for name in FIGURES],
                [(r.context_switches, r.thread_hops, r.event_loops_created) for r in records],
            ]
        )
    return phase


phases = [serve()]
with override_settings(SWITCHTRACE={"ENABLED": False}):
    phases.append(serve())
phases.append(serve())
sentry_sdk.flush()
print(json.dumps({"phases": phases, "first": first, "requests": sentry_requests(items, 12),
                  "swallowed": swallowed, "logged": logged, "sentry": sentry_sdk.VERSION}))
"""
)


def run_script(script: str, arg: str):
    """``script`` run with ``arg`` under the test settings: the JSON of its
    last line."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", script, arg],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


SENTRY_THREADS_SCRIPT = r"""
import json, sys

import django

django.setup()
import sentry_sdk

if sys.argv[1] == "sentry":
    # After switchtrace, with its default integrations: ThreadingIntegration
    # wraps every function submitted to a ThreadPoolExecutor.
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=1.0)

from django.core.handlers.wsgi import WSGIHandler

from switchtrace import tracer
from switchtrace.example import wsgi_request
from switchtrace.tracer import guard

swallowed = []
guard.set_error_hook(lambda exc, where: swallowed.append(f"{where}: {exc!r}"))
records = []
tracer.add_listener(records.append)
wsgi_request(WSGIHandler(), "/to-thread-bridging/")
[record] = records
record.describe()
index = {id(c): i for i, c in enumerate(record.crossings)}
print(json.dumps({
    "crossings": [
        [c.mechanism, c.qualname, index.get(id(c.parent)), c.threads_started]
        for c in record.crossings
    ],
    "swallowed": swallowed,
}))
"""


def test_an_offload_through_sentrys_submit_wrapper_is_asyncio_to_thread_of_its_function():
    """sentry-sdk set up after switchtrace wraps asyncio.to_thread's partial
    in a function of its own: the offload read as run_in_executor of
    sentry's wrapped_fn, and what the function did (a bridge back, a thread
    it started) as the view's, not the offload's."""
    with_sentry, without = (run_script(SENTRY_THREADS_SCRIPT, arg) for arg in ("sentry", "none"))
    # (mechanism, bridged code, parent's index): the async_to_sync the
    # offload's function makes is the offload's child.
    assert [crossing[:3] for crossing in with_sentry["crossings"]] == [
        ["async_to_sync", "to_thread_bridging_view", None],
        ["asyncio.to_thread", "to_thread_bridging_view.<locals>.work", 0],
        ["async_to_sync", "to_thread_bridging_view.<locals>.work.<locals>.inner", 1],
    ]
    # The threads each started too (the offload's own Thread, and the one
    # asgiref starts for its async_to_sync, the offload's), as without it.
    assert with_sentry == without
    assert with_sentry["crossings"][1][3] == 2
    assert with_sentry["swallowed"] == []


#: The example project's middleware, each a span of sentry's.
MIDDLEWARE_CLASSES = (
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.security.SecurityMiddleware",
)
#: What sentry-sdk names a request's spans (its middleware_spans, its
#: signals' and its view's), 2.x and 3.x alike: under ASGI, /sync/ ...
ASGI_SPANS = sorted(
    [
        *(f"{name}.__acall__" for name in MIDDLEWARE_CLASSES),
        "django.middleware.csrf.CsrfViewMiddleware.process_view",
        # request_started's receivers, and request_finished's
        "django.db.reset_queries",
        "django.db.close_old_connections",
        "django.core.handlers.base.reset_urlconf",
        "django.core.cache.close_caches",
        "django.db.close_old_connections",
        "project.views.sync_view",
    ]
)
#: ... and under WSGI, /async/ (request_finished's receivers run as the
#: server closes the response, after sentry's span for the request ended).
WSGI_SPANS = sorted(
    [
        *(f"{name}.__call__" for name in MIDDLEWARE_CLASSES),
        "django.middleware.csrf.CsrfViewMiddleware.process_view",
        "django.db.reset_queries",
        "django.db.close_old_connections",
        "project.views.async_view",
    ]
)


def sentry_major() -> int:
    from importlib.metadata import version

    return int(version("sentry-sdk").split(".")[0])


@pytest.mark.parametrize("order", ["sentry first", "switchtrace first"])
def test_sentry_sdk_with_tracing_either_order_and_switchtrace_turned_off_and_on(order):
    result = run_script(SENTRY_SCRIPT, order)
    assert int(result["sentry"].split(".")[0]) == sentry_major()
    on = [
        # README's worked example: 30 before the headers, 32 in all.
        ["asgi", ["30", "30", "0", "1"], [[32, 32, 0]]],
        ["wsgi", ["2", "2", "1", "1"], [[2, 2, 1]]],
    ]
    # Turned off, nothing is recorded and no response carries the figures;
    # turned on again, every crossing and thread counts once, as before.
    off = [["asgi", [None] * 4, []], ["wsgi", [None] * 4, []]]
    assert result["phases"] == [on, off, on]
    assert result["swallowed"] == []
    # Set up after Django, sentry's patches are over switchtrace's: turned
    # off, switchtrace says once for each that it is left in place (2.x and
    # 3.x patch the same seven); set up before, nothing to say.
    assert result["logged"] == [
        f"switchtrace: switchtrace: <class '{where}'>.{name} was patched again by someone "
        "else; left as it is (said once)"
        for where, name in [
            ("django.core.handlers.base.BaseHandler", "make_view_atomic"),
            ("django.core.handlers.asgi.ASGIHandler", "__call__"),
            ("django.core.handlers.base.BaseHandler", "get_response_async"),
            ("django.core.handlers.base.BaseHandler", "get_response"),
            ("django.core.handlers.wsgi.WSGIHandler", "__call__"),
            ("threading.Thread", "start"),
            ("concurrent.futures.thread.ThreadPoolExecutor", "submit"),
        ]
        if order == "switchtrace first"
    ]
    # The first request (ASGI's /sync/) starts asgiref's executor's thread,
    # and what sentry-sdk starts on its first traced request, if switchtrace
    # sees it: set up in settings.py, sentry's handler is inside
    # switchtrace's, and its monitor thread (2.x), its monitor and span
    # flusher threads (3.x) count; set up after Django, its handler is
    # outside, where its monitor starts, and 3.x's flusher, which starts
    # with the first of its spans that ends, in the request, alone counts.
    assert result["first"] == [
        {
            ("sentry first", 2): "2",
            ("sentry first", 3): "3",
            ("switchtrace first", 2): "1",
            ("switchtrace first", 3): "2",
        }[order, sentry_major()]
    ]
    # sentry's own requests (2.x's transactions, 3.x's segment spans): one a
    # request, each its own trace, their spans the same whether switchtrace
    # is on, off or on again (its middleware's aside).
    requests = result["requests"]
    assert len({trace_id for trace_id, _, _ in requests}) == 12
    assert sorted([name, spans] for _, name, spans in requests) == sorted(
        [["/sync/", ASGI_SPANS]] * 6 + [["/async/", WSGI_SPANS]] * 6
    )


SENTRY_TRACE_SCRIPT = (
    SENTRY_REQUESTS
    + r"""
import json, sys
import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.transport import Transport

items = []


class Kept(Transport):
    def capture_envelope(self, envelope):
        for item in envelope.items:
            if item.type in ("transaction", "span"):
                items.append((item.type, json.loads(item.payload.get_bytes())))


sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=1.0, transport=Kept,
                integrations=[DjangoIntegration()])
import django

django.setup()
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler

from switchtrace.django_app import telemetry
from switchtrace.example import asgi_request, run_in_server_loop, wsgi_request

TRACE, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
incoming = {"traceparent": f"00-{TRACE}-{PARENT}-01", "sentry-trace": f"{TRACE}-{PARENT}-1"}
run_in_server_loop(asgi_request(ASGIHandler(), "/sync/"))
run_in_server_loop(asgi_request(ASGIHandler(), "/sync/",
                                headers=[(k.encode(), v.encode()) for k, v in incoming.items()]))
wsgi_request(WSGIHandler(), "/async/")
wsgi_request(WSGIHandler(), "/async/", HTTP_TRACEPARENT=incoming["traceparent"],
             HTTP_SENTRY_TRACE=incoming["sentry-trace"])
sentry_sdk.flush()
pipeline = telemetry.pipeline()
assert pipeline.flush(10)
ours = {}
for span in pipeline.exporter.get_finished_spans():
    if span.parent is None or span.parent.is_remote:  # switchtrace's request span
        ours[span.name] = ours.get(span.name, []) + [
            [format(span.context.trace_id, "032x"),
             span.parent and format(span.parent.span_id, "016x")]]
print(json.dumps({"sentry": [[t, n] for t, n, _ in sentry_requests(items, 4)], "ours": ours}))
"""
)


def test_sentry_and_switchtrace_continue_an_incoming_trace_each_from_its_own_header():
    """With no trace context sent, sentry's request and switchtrace's are
    traces of their own (sentry-sdk makes no OpenTelemetry span, 3.x as
    2.x: switchtrace finds none to nest under); sent both ways, the
    ``sentry-trace`` header that sentry reads and the ``traceparent`` that
    switchtrace's propagator reads, they are one trace."""
    result = run_script(SENTRY_TRACE_SCRIPT, "")
    trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    sentry, ours = result["sentry"], result["ours"]
    assert sorted(name for _, name in sentry) == ["/async/", "/async/", "/sync/", "/sync/"]
    assert sorted(ours) == ["GET async/", "GET sync/"]  # (the routes, as Django writes them)
    for sentry_name, name in (("/sync/", "GET sync/"), ("/async/", "GET async/")):
        (alone, alone_parent), (sent, sent_parent) = ours[name]
        assert (sent, sent_parent, alone_parent) == (trace, parent, None)
        [sentry_alone] = [t for t, n in sentry if n == sentry_name and t != trace]
        assert [t for t, n in sentry if n == sentry_name and t == trace] == [trace]
        assert len({sentry_alone, alone, trace}) == 3
