"""A request body too large to keep in memory. Django 6.0 (ticket #36281)
made ASGIHandler.read_body write such a body to its temporary file in
``sync_to_async``, once for each body message after the one that takes it
past FILE_UPLOAD_MAX_MEMORY_SIZE, before Django sends request_started:
switches the request's figures count, named after the handler, and that
``switchtrace explain`` lists as a conditional cause. Earlier Djangos, and
WSGI, write it where they are."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
from concurrent.futures import ThreadPoolExecutor

import django
import pytest
from asgiref.sync import sync_to_async

from switchtrace.django_app.conf import MIDDLEWARE_PATH
from switchtrace.django_app.predict import predict
from switchtrace.example import Result, asgi_request, run_in_server_loop

from ..support import ASGI_THREADS
from ..test_predict_support import AsyncOnly
from .test_components import SIGNAL, described
from .test_middleware import project

#: Django writes a large body in sync_to_async (checked against predict's
#: reading of ASGIHandler.read_body's code by the tests below).
WRITES_IN_SYNC_TO_ASYNC = django.VERSION >= (6, 0)
LIMIT = 1000
#: Ten messages of 600 bytes: the second takes the body past LIMIT (written
#: in the event loop, as the body file rolls over to disk), the last eight
#: are written in sync_to_async.
MESSAGES = [bytes([n]) * 600 for n in range(10)]
BODY = b"".join(MESSAGES)
WRITES = 8 if WRITES_IN_SYNC_TO_ASYNC else 0
BODY_WRITE = (
    "sync_to_async",
    "SpooledTemporaryFile.write",
    "handler",
    "ASGIHandler.read_body",
    True,
)


async def post(handler, path: str, messages: list[bytes]) -> Result:
    """A POST through an ASGI application, its body in ``messages``."""
    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(sum(map(len, messages))).encode()),
    ]
    return await asgi_request(handler, path, headers, method="POST", body=messages)


def post_wsgi(handler, path: str, body: bytes) -> Result:
    from django.test.client import RequestFactory

    environ = RequestFactory().post(path, body, content_type="application/octet-stream").environ
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=int(status.split()[0]), headers=dict(headers))

    response = handler(environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return Result(captured["status"], captured["headers"], content)


def echoed(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def test_predict_tells_djangos_that_write_a_large_body_in_sync_to_async():
    def body_causes(server):
        prediction = predict(server, False, [MIDDLEWARE_PATH])
        return [(c.switches, c.loops) for c in prediction.conditional if c.when == "body"]

    assert body_causes("asgi") == [(2, 0)] * WRITES_IN_SYNC_TO_ASYNC
    assert body_causes("wsgi") == []


def test_each_body_message_written_in_sync_to_async_costs_two_switches(records):
    # Django writes with thread_sensitive=False, on the loop's default
    # executor: given one of a single thread, the first request starts it and
    # the second, measured, starts none. (With more, whether a write starts a
    # thread is a race: a worker counts itself idle only once it found the
    # queue empty, which may be after the loop, woken by the result, queued
    # the next write.)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    try:
        with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (asgi, _wsgi):
            results = [loop.run_until_complete(post(asgi, "/body/", MESSAGES)) for _ in range(2)]
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    result = results[1]
    assert (result.status, result.body) == (200, echoed(BODY))
    # The request_started signal and the sync view: 4 switches without a body.
    # No thread started for the writes: the default executor's is there.
    assert result.figures() == (4 + 2 * WRITES, 4 + 2 * WRITES, 0, 1)
    record = records[1]
    assert (record.context_switches, record.threads_started) == (6 + 2 * WRITES, ASGI_THREADS)
    assert described(record) == [
        *[BODY_WRITE] * WRITES,
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "body_view", "view", "body_view", True),
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False),
    ]
    writes = [(c.thread_sensitive, c.executor, c.parent) for c in record.crossings[:WRITES]]
    assert writes == [(False, "loop_default", None)] * WRITES
    # Predicted: the request's figures and one conditional cause per write.
    prediction = predict("asgi", False, [MIDDLEWARE_PATH])
    conditional = sum(c.switches for c in prediction.conditional if c.when == "body")
    assert prediction.switches + WRITES * conditional == record.context_switches


def test_a_body_that_fits_in_memory_costs_nothing(records):
    messages = [b"x" * 500, b"y" * 500]  # LIMIT bytes: never rolls over
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (asgi, _wsgi):
        result = run_in_server_loop(post(asgi, "/body/", messages))
    assert (result.body, result.figures()) == (echoed(b"".join(messages)), (4, 4, 0, 1))
    assert [c for c in described(records[0]) if c == BODY_WRITE] == []


def test_under_wsgi_a_large_body_costs_nothing(records):
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (_asgi, wsgi):
        result = post_wsgi(wsgi, "/body/", BODY)
    assert (result.status, result.body, result.figures()) == (200, echoed(BODY), (0, 0, 0, 0))
    assert records[0].crossings == []


def test_a_views_own_bridge_of_a_spooled_files_write_is_the_views(records):
    # In one record: Django's writes of the body (the handler's), and the same
    # method bridged the same way by the view (the view's).
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (asgi, _wsgi):
        result = run_in_server_loop(post(asgi, "/spooled-write/", MESSAGES))
    assert (result.status, result.body) == (200, str(len(BODY)).encode())
    own = ("sync_to_async", "SpooledTemporaryFile.write", "view", "spooled_write_view", True)
    assert described(records[0])[WRITES:] == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        own,
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False),
    ]
    assert described(records[0])[:WRITES] == [BODY_WRITE] * WRITES


async def _spool() -> None:
    with tempfile.SpooledTemporaryFile(max_size=1) as spooled:
        spooled.write(b"ab")  # rolled over to disk
        await sync_to_async(spooled.write, thread_sensitive=False)(b"cd")


class SpoolingMiddleware(AsyncOnly):
    """An async middleware that bridges a SpooledTemporaryFile's write after
    the view, as Django's read_body does before it."""

    async def __call__(self, request):
        response = await self.get_response(request)
        await _spool()
        return response


class SpoolingBeforeMiddleware(AsyncOnly):
    """The same before the view, after Django read the body."""

    async def __call__(self, request):
        await _spool()
        return await self.get_response(request)


def spooled_writes(records, middleware: str) -> list[tuple]:
    """The SpooledTemporaryFile writes of a large POST to /body/, with
    ``middleware`` below switchtrace's, as described."""
    middleware_paths = [MIDDLEWARE_PATH, f"{__name__}.{middleware}"]
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT, MIDDLEWARE=middleware_paths) as (
        asgi,
        _,
    ):
        result = run_in_server_loop(post(asgi, "/body/", MESSAGES))
    assert (result.status, result.body) == (200, echoed(BODY))
    return [c for c in described(records[0]) if c[1] == "SpooledTemporaryFile.write"]


OTHER_WRITE = (
    "sync_to_async",
    "SpooledTemporaryFile.write",
    "other",
    "SpooledTemporaryFile.write",
    True,
)


def test_a_middlewares_bridge_of_a_spooled_files_write_after_the_view_is_its_own(records):
    # Told apart from Django's writes in the same record, though described
    # once per call site: the same method, bridged the same way, no view's.
    assert spooled_writes(records, "SpoolingMiddleware") == [BODY_WRITE] * WRITES + [OTHER_WRITE]


def test_a_middlewares_bridge_of_a_spooled_files_write_before_the_view_is_its_own(records):
    # Before the view as Django's writes are, but after Django read the body
    # (and sent request_started): not ASGIHandler.read_body's, on any Django.
    writes = spooled_writes(records, "SpoolingBeforeMiddleware")
    assert writes == [BODY_WRITE] * WRITES + [OTHER_WRITE]


class BodySubRequestMiddleware(AsyncOnly):
    """An async middleware that, once the view answered /spooled-write/,
    serves a sub-request: a large POST to /body/ through an ASGIHandler."""

    async def __call__(self, request):
        from django.core.handlers.asgi import ASGIHandler

        response = await self.get_response(request)
        if request.path == "/spooled-write/":
            inner = await post(ASGIHandler(), "/body/", MESSAGES)
            assert inner.body == echoed(BODY)
        return response


def test_a_sub_requests_writes_of_its_body_are_read_bodys(records):
    # The sub-request's body is written by Django's read_body, after the
    # view ran and in the middleware's own time: named so all the same, and
    # the view's own bridge of the same method stays the view's.
    middleware = [MIDDLEWARE_PATH, f"{__name__}.BodySubRequestMiddleware"]
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT, MIDDLEWARE=middleware) as (asgi, _):
        result = run_in_server_loop(post(asgi, "/spooled-write/", MESSAGES))
    assert (result.status, result.body) == (200, str(len(BODY)).encode())
    own = ("sync_to_async", "SpooledTemporaryFile.write", "view", "spooled_write_view", True)
    writes = [c for c in described(records[0]) if c[1] == "SpooledTemporaryFile.write"]
    assert writes == [BODY_WRITE] * WRITES + [own] + [BODY_WRITE] * WRITES


@pytest.mark.skipif(not WRITES_IN_SYNC_TO_ASYNC, reason="Django < 6.0 writes in the event loop")
def test_the_spans_of_the_writes_name_the_handler(records, spans):
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (asgi, _wsgi):
        run_in_server_loop(post(asgi, "/body/", MESSAGES))
    named = [
        (s.name, s.attributes["switchtrace.component.kind"], s.attributes["switchtrace.component"])
        for s in spans()
        if s.name == "sync_to_async SpooledTemporaryFile.write"
    ]
    assert (
        named
        == [("sync_to_async SpooledTemporaryFile.write", "handler", "ASGIHandler.read_body")]
        * WRITES
    )


def test_explain_lists_the_cause_under_asgi_on_django_6():
    from switchtrace.django_app.explain import _render_case

    out = io.StringIO()
    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT):
        _render_case(predict("asgi", False, [MIDDLEWARE_PATH]), out)
    line = (
        "  +2  per body message after the one that takes the request's body past "
        "FILE_UPLOAD_MAX_MEMORY_SIZE (1,000 bytes): Django writes each to the body's file on "
        "disk in sync_to_async (Django ticket #36281)\n"
    )
    assert (line in out.getvalue()) is WRITES_IN_SYNC_TO_ASYNC


def test_a_client_that_leaves_mid_body_leaves_a_finished_record_with_its_writes(records):
    # Three messages, then the client is gone: Django's read_body raises
    # RequestAborted, and the handler returns without a response.
    messages = [
        *({"type": "http.request", "body": m, "more_body": True} for m in MESSAGES[:3]),
        {"type": "http.disconnect"},
    ]
    scope = {"type": "http", "method": "POST", "path": "/body/", "headers": [], "query_string": b""}
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    with project("none", FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT) as (asgi, _wsgi):
        run_in_server_loop(asgi(scope, receive, send))
    [record] = records
    writes = 1 if WRITES_IN_SYNC_TO_ASYNC else 0
    assert (sent, record.finished, record.context_switches) == ([], True, 2 * writes)
    assert described(record) == [BODY_WRITE] * writes
