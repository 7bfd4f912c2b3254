"""switchtrace beside the add-ons projects run in staging, each real.

sentry-sdk's Django integration patches some of what switchtrace patches
(the handlers' ``__call__``, ``BaseHandler.get_response``, ``Thread.start``,
``ThreadPoolExecutor.submit``) with functions closing over what they found,
and wraps every middleware. It is initialised once per process and cannot
be undone, so each case runs in a process of its own.
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

SENTRY_SCRIPT = r"""
import json, os, sys

order = sys.argv[1]
transactions = []


def init_sentry():
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.transport import Transport

    class Kept(Transport):
        def capture_envelope(self, envelope):
            for item in envelope.items:
                payload = item.payload.json
                if payload and payload.get("type") == "transaction":
                    transactions.append(payload)

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
records = []
tracer.add_listener(records.append)
FIGURES = ("X-Context-Switches", "X-Thread-Hops", "X-Event-Loops", "X-Threads-Started")


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
spans = [
    sorted(s["description"] for s in t.get("spans", []) if "switchtrace" not in s["description"])
    for t in transactions
]
print(json.dumps({"phases": phases, "transactions": len(transactions), "spans": spans,
                  "swallowed": swallowed}))
"""


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


@pytest.mark.parametrize("order", ["sentry first", "switchtrace first"])
def test_sentry_sdk_with_tracing_either_order_and_switchtrace_turned_off_and_on(order):
    result = run_script(SENTRY_SCRIPT, order)
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
    # sentry's own transactions: one a request, their spans the same
    # whether switchtrace is on, off or on again (its middleware's aside).
    assert result["transactions"] == 12
    spans = result["spans"]
    assert spans[0:4] == spans[4:8] == spans[8:12]
    assert any("SessionMiddleware" in name for name in spans[0])
