"""switchtrace.testing in this process: recordings as the pytest plugin
nests them (the ``switchtrace`` fixture, a marker, ``assert_max_switches``
inside a test), and what a recording waits for.

The waits are checked without timing: a recording asked to wait an hour
that waits at all hangs the test, which pytest-timeout then fails."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
from wsgiref.util import setup_testing_defaults

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, AsyncRequestFactory, Client, override_settings

from switchtrace import testing, tracer
from switchtrace.django_app import integration
from switchtrace.testing import assert_max_switches, client_patcher, over_budget, record_requests


def paths(records) -> list[str]:
    return [record.attributes["url.path"] for record in records]


def test_a_recording_inside_another_leaves_the_outer_one_recording():
    """The inner recording's end leaves the test client's patches on while
    the outer one records (taken off, a request made after the block would
    escape the outer one: a marker's budget, around a test whose block has
    a budget of its own); the last recording's end takes them off."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer:
            with record_requests() as inner:
                Client().get("/async-to-sync/")
            assert client_patcher.installed
            Client().get("/sync/")
        assert not client_patcher.installed
        # And the patches of Django's handlers, which switchtrace off does not use.
        assert not integration.patcher.installed
    assert paths(inner) == ["/async-to-sync/"]
    assert paths(outer) == ["/async-to-sync/", "/sync/"]


def test_a_test_clients_request_has_a_servers_attributes():
    """Its path as Django reads it (under WSGI, SCRIPT_NAME and PATH_INFO,
    read as UTF-8: '/café/' was recorded as '/cafÃ©/', and the mount left
    out), its scheme and its query, as a server's request has them."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as recorded:
            Client().get("/café/", {"q": "1"})
            Client().get("/sync/", SCRIPT_NAME="/app")
            asyncio.run(AsyncClient().get("/sync/", {"q": "2"}, secure=True))
    assert [
        (r.attributes["url.path"], r.attributes["url.scheme"], r.attributes.get("url.query"))
        for r in recorded
    ] == [("/café/", "http", "q=1"), ("/app/sync/", "http", None), ("/sync/", "https", "q=2")]


#: Long enough that a wait which should not happen hangs the test.
AN_HOUR = 3600.0


def open_wsgi_request(path: str):
    """A raw WSGI call whose response is not closed yet: its request is
    begun and not finished until the body returned is closed."""
    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    return WSGIHandler()(environ, lambda status, headers: None)


class ServedElsewhere(threading.Thread):
    """A request begun on a thread of its own (as a live server's is),
    finished when the test releases it."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.begun = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        body = open_wsgi_request(self.path)
        self.begun.set()
        self.release.wait()
        body.close()

    def __enter__(self) -> ServedElsewhere:
        self.start()
        self.begun.wait()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()
        self.join()


def test_settle_returns_when_the_request_it_waits_for_ends():
    """Woken by the request's end, not by its timeout. The request is
    released while the test holds the recording's lock, so that it can end
    only once settle waits."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records, ServedElsewhere("/sync/") as served:
            finished, running = records.split()
            assert (finished, paths(running)) == ([], ["/sync/"])
            with records._changed:
                served.release.set()
                records.settle(AN_HOUR)
            assert paths(records) == ["/sync/"]


def test_the_end_of_a_recording_waits_for_a_request_served_elsewhere():
    """As the end of a budget's block does: a live server's request ends
    after its client has the body (request_finished, the response's close),
    and was not the recording's when that came after the block. The request
    is released while the test holds the recording's lock, so that it can
    end only once the block's end waits."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        served = ServedElsewhere("/sync/")
        with record_requests() as records:
            served.__enter__()
            records._changed.acquire()
            served.release.set()
        records._changed.release()
        served.join()
    assert paths(records) == ["/sync/"]


def test_settle_does_not_wait_for_a_request_begun_on_the_recordings_thread():
    """Nothing else would finish it: a raw WSGI call whose body the test has
    not closed yet."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            body = open_wsgi_request("/sync/")
            try:
                records.settle(AN_HOUR)
                finished, running = records.split()
                assert (finished, paths(running)) == ([], ["/sync/"])
            finally:
                body.close()
    assert paths(records) == ["/sync/"]


def test_a_request_settle_gave_up_on_is_not_waited_for_again():
    """Given up (still running at the end of a wait), a request is not
    waited for by the next settle; it is still the recording's when it
    ends."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            with ServedElsewhere("/sync/"):
                records.settle(0)
                records.settle(AN_HOUR)
                finished, running = records.split()
                assert (finished, paths(running)) == ([], ["/sync/"])
            assert paths(records) == ["/sync/"]


def test_a_request_running_at_a_restart_is_not_the_recordings_when_it_ends():
    """The fixture's restart as the test function is called: a request its
    other fixtures began is not the test's, even if it ends in the test."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            body = open_wsgi_request("/sync/")
            records.restart()
            body.close()
            Client().get("/async/")
            assert records.split() == (records[:], [])
    assert paths(records) == ["/async/"]


def test_an_ended_recording_takes_no_more_requests():
    """Its listeners go with it: one left behind would hold every request
    made after it (here one an outer recording still records)."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer:
            with record_requests() as inner:
                pass
            body = open_wsgi_request("/sync/")
            try:
                assert inner.split() == ([], [])
            finally:
                body.close()
            assert inner.split() == ([], [])
    assert paths(outer) == ["/sync/"]


def test_a_request_still_running_when_a_recording_ends_is_not_added_to_it():
    """Its records are those finished when it ended (a budget's, judged then):
    the recording's listener goes with it, rather than take that request when
    it finishes, and keep the recording referenced for the rest of the run."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer:
            with record_requests() as inner:
                Client().get("/sync/")
                running = open_wsgi_request("/async/")
            running.close()
    assert paths(inner) == ["/sync/"]
    assert paths(outer) == ["/sync/", "/async/"]


def test_budgets_in_two_threads_each_judge_the_requests_made_in_their_own():
    """Each thread's block takes its own thread's requests: the other's were
    in its records too, and a request within its budget failed the other
    block's."""
    both_in, both_made = threading.Barrier(2), threading.Barrier(2)
    outcomes: dict[str, list[str] | BaseException] = {}

    def budgeted(path: str, budget: int) -> None:
        try:
            with assert_max_switches(budget) as records:
                both_in.wait()
                Client().get(path)
                both_made.wait()
            outcomes[path] = paths(records)
        except BaseException as exc:
            outcomes[path] = exc
            both_in.abort()
            both_made.abort()

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        threads = [
            threading.Thread(target=budgeted, args=("/sync/", 0)),
            threading.Thread(target=budgeted, args=("/async-to-sync/", 6)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"/sync/": ["/sync/"], "/async-to-sync/": ["/async-to-sync/"]}


def test_a_request_from_a_thread_without_a_budget_is_the_open_blocks():
    """A thread the test started (or a live server's) has no block of its
    own: its requests are those of every block open meanwhile."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer, record_requests() as inner:
            thread = threading.Thread(target=Client().get, args=("/sync/",))
            thread.start()
            thread.join()
    assert (paths(outer), paths(inner)) == (["/sync/"], ["/sync/"])


def test_a_block_inside_async_to_sync_leaves_the_request_the_outer_blocks_too():
    """The inner block is opened on asgiref's thread, which runs the test's
    coroutine in a copy of its context: the request made there is both
    blocks', the thread's and the context's."""

    @async_to_sync
    async def inner_block():
        with record_requests() as inner:
            await AsyncClient().get("/sync/")
        return inner

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer:
            inner = inner_block()
    assert (paths(outer), paths(inner)) == (["/sync/"], ["/sync/"])


def test_a_request_in_a_context_copied_before_a_block_opened_is_that_blocks_too():
    """An asyncio test runner's context may be a copy made before the
    marker's block opened (anyio's, made at its first async fixture;
    IsolatedAsyncioTestCase's, at its __init__), naming only the fixture's
    block: a request its sync_to_async thread made was the fixture's alone,
    and the marker's budget passed it. Both blocks were opened on the same
    thread: the request is both's."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as fixtures:
            runners = contextvars.copy_context()
            with record_requests() as markers:
                thread = threading.Thread(target=runners.run, args=(Client().get, "/sync/"))
                thread.start()
                thread.join()
    assert (paths(fixtures), paths(markers)) == (["/sync/"], ["/sync/"])


def test_a_request_in_a_context_naming_no_block_is_its_threads_blocks():
    """A test runner's context copied before any block opened names none:
    the request made on the thread of an open block is that block's, not
    also another thread's block's."""
    others_open, done = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        with record_requests() as others:
            others_open.set()
            done.wait(timeout=10)
        seen["other"] = paths(others)

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        runners = contextvars.copy_context()
        other = threading.Thread(target=other_thread)
        other.start()
        try:
            others_open.wait(timeout=10)
            with record_requests() as mine:
                runners.run(Client().get, "/sync/")
        finally:
            done.set()
            other.join()
    assert (paths(mine), seen["other"]) == (["/sync/"], [])


def test_a_recording_leaves_no_context_variable_behind():
    """Its key is taken out of the context by unsetting the variable it set
    (asgiref visits every variable of the context at each crossing: one
    left behind made every later crossing of the test's a little dearer)."""
    from switchtrace.testing import _opened_here

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests():
            assert _opened_here in contextvars.copy_context()
            with record_requests():
                pass
        assert _opened_here not in contextvars.copy_context()


def test_a_budget_entered_again_while_open_says_so():
    """One object, two blocks open at once (nested, or in two threads): the
    inner block's end left the outer one judging nothing, and a request over
    budget passed. Used again after its block, it judges the new block."""
    budget = assert_max_switches(5)
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with pytest.raises(AssertionError, match="1 of 1 request exceeded the budget of 5"):
            with budget:
                Client().get("/async-to-sync/")
                with pytest.raises(RuntimeError) as reentered:
                    with budget:
                        pass
        with budget as records:
            Client().get("/sync/")
    assert paths(records) == ["/sync/"]
    assert str(reentered.value) == (
        "this assert_max_switches(5) is already open (a block of it not ended, in this "
        "thread or another): each block needs its own, call assert_max_switches(5) again"
    )


def test_a_streaming_body_the_test_reads_is_outside_the_test_clients_request():
    """The test Client returns a streaming response unread, its request
    finished and no longer current: reading the body (an async generator,
    through async_to_sync) and closing it are the test's, not the
    request's (left open until the close, it took the read's switch)."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            response = Client().get("/async-stream/")
            assert tracer.current_record() is None
            assert [record.context_switches for record in records.split()[0]] == [2]
            assert b"".join(response) == b"chunk 0\nchunk 1\nchunk 2\n"
            response.close()
    assert [
        (record.context_switches, record.at_headers.context_switches) for record in records
    ] == [(2, 2)]


def test_the_test_clients_requests_keep_the_events_max_events_allows():
    """As a server's do: the test clients' records kept every event, and
    their exported spans were not those of the same request on a server."""
    settings = {"ENABLED": False, "MAX_EVENTS": 2}
    with override_settings(SWITCHTRACE=settings, MIDDLEWARE=[]):
        with record_requests() as records:
            Client().get("/async-to-sync/")
            asyncio.run(AsyncClient().get("/async-to-sync/"))
    assert [(record.kind, record.context_switches) for record in records] == [
        (tracer.WSGI, 6),
        (tracer.ASGI, 12),
    ]
    assert [(record.max_events, len(record.crossings), record.dropped) for record in records] == [
        (2, 2, 3),
        (2, 2, 4),
    ]


def test_a_handlers_get_response_async_called_outside_a_request_is_left_alone():
    """As a test calls it with a request of its own (an AsyncRequestFactory's):
    no request is being recorded there, and none is begun."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            handler = BaseHandler()
            handler.load_middleware(is_async=True)
            request = AsyncRequestFactory().get("/sync/")
            response = asyncio.run(handler.get_response_async(request))
            assert (response.status_code, response.content) == (200, b"Hello, world\n")
            assert records.split() == ([], [])


def test_over_budget_judges_a_plain_list_of_records():
    """Its records as a list (not a recording, which it settles first): a
    request over the budget is named, one at it is not."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            Client().get("/async-to-sync/")
            Client().get("/sync/")
    assert over_budget(list(records), 6) is None
    assert over_budget(list(records), 5) == (
        "1 of 2 requests exceeded the budget of 5 context switches per request:\n"
        "  GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, 3 loops, "
        "3 threads; top: async_to_sync_view \u2192 noop 6"
    )


class _UnshowableBudget:
    def __repr__(self):
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("budget", "shown"),
    [
        (-(10**5000), "<int object>"),  # past int's str() limit: repr() raises
        (-(10**300), repr(-(10**300))[:197] + "..."),
        (_UnshowableBudget(), "<_UnshowableBudget object>"),
    ],
    ids=["int-past-the-str-limit", "long-int", "broken-repr"],
)
def test_a_budget_that_repr_cannot_show_is_named_all_the_same(budget, shown):
    """The message naming a bad budget was the repr()'s own error: 'Exceeds
    the limit (4300 digits) for integer string conversion', or the
    RuntimeError of the object's __repr__ (found fuzzing the budgets)."""
    with pytest.raises(ValueError) as caught:
        assert_max_switches(budget)
    assert str(caught.value) == (
        f"the budget must be a non-negative integer (context switches per request), not {shown}"
    )


def test_a_block_that_raises_fails_with_its_own_error_not_the_budgets():
    """The block's error is the failure, even with a request over the
    budget in it; and the recording ends (the patches come off)."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with pytest.raises(KeyError, match="the test's own"):
            with assert_max_switches(0):
                Client().get("/async-to-sync/")
                raise KeyError("the test's own")
        assert not client_patcher.installed


def test_a_budgets_failure_is_raised_once_its_recording_has_ended():
    """The patches are off while the failure is held (by pytest, to report
    it): ended only when the generator is collected, the recording would
    outlive the failure's traceback, which refers to it."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with pytest.raises(AssertionError) as failure:
            with assert_max_switches(5):
                Client().get("/async-to-sync/")
        assert not client_patcher.installed
        assert str(failure.value).startswith(
            "1 of 1 request exceeded the budget of 5 context switches per request:\n"
            "  GET /async-to-sync/ 200: 6 switches"
        )


def test_the_async_clients_headers_failing_in_switchtrace_leave_the_request_its_status(
    swallowed, monkeypatch
):
    """Noting the AsyncClient request's headers (integration.at_headers)
    raising: the failure is swallowed and reported once, the test gets its
    response, and the record its status (which a budget's failure names)
    all the same."""

    def broken(record, response):
        raise ZeroDivisionError("switchtrace bug")

    monkeypatch.setattr(integration, "at_headers", broken)
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            response = asyncio.run(AsyncClient().get("/sync/"))
    assert (response.status_code, response.content) == (200, b"Hello, world\n")
    assert [
        (record.attributes["url.path"], record.attributes.get("http.response.status_code"))
        for record in records
    ] == [("/sync/", 200)]
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("test client headers", ZeroDivisionError)
    ]
    swallowed.clear()


def test_django_s_debug_page_shows_no_frame_of_switchtraces():
    """The project's exception raised while Django resolves the URL (a path
    converter's), through the test client: the frames of the debug page
    (Sentry reads the same flag) were switchtrace's wrappers' too."""
    import sys

    from django.views.debug import ExceptionReporter

    with override_settings(ROOT_URLCONF="tests.locale_urls"):
        with record_requests():
            try:
                Client().get("/item/boom/")
            except KeyError:
                exc_info = sys.exc_info()
    frames = ExceptionReporter(None, *exc_info).get_traceback_frames()
    files = [frame["filename"] for frame in frames]
    assert files[-1].endswith("locale_urls.py")
    assert [name for name in files if "switchtrace" in name] == []


def test_a_test_clients_request_is_exported_as_a_servers(spans):
    """Its request span has the server, client and network attributes a
    server's has, and the URL excluded URLs are searched in has its host
    ('http:///sync/' it was, so that OTEL_PYTHON_DJANGO_EXCLUDED_URLS
    'testserver/sync' left the server's /sync/ out, not the client's)."""
    from opentelemetry import trace

    from switchtrace.exporters.spans import request_url

    with record_requests() as recorded:
        Client().get("/sync/", HTTP_USER_AGENT="tests")
        asyncio.run(AsyncClient().get("/sync/", headers={"user-agent": "tests"}))
    assert [request_url(record) for record in recorded] == ["http://testserver/sync/"] * 2
    servers = [s for s in spans() if s.kind is trace.SpanKind.SERVER]
    assert [
        (s.attributes["server.address"], s.attributes["user_agent.original"]) for s in servers
    ] == [("testserver", "tests")] * 2


def test_a_request_still_running_when_judged_fails_a_budget_it_is_within_so_far():
    """What it will cost is not known: it passed, judged on its figures so
    far (the request's line said it was still running only when over). The
    outer recording holds Django's handlers patched until the body is
    closed, which finishes the request."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests():
            with pytest.raises(AssertionError) as failure:
                with assert_max_switches(10):
                    body = open_wsgi_request("/async-to-sync/")
            body.close()
        assert tracer.current_record() is None
    assert str(failure.value) == (
        "1 of 1 request was still running when judged against the budget of 10 context "
        "switches per request, which counts the whole request: let each end in the test (a "
        "Channels HttpCommunicator: await communicator.wait()); its figures so far:\n"
        "  GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, 3 loops, "
        "3 threads; top: async_to_sync_view \u2192 noop 6"
    )


async def _get_by_hand(path: str, held: bool = False, wsgi: bool = False):
    """Django's ASGI handler driven in this loop as Channels'
    HttpCommunicator drives it: the response read, the application left
    running (the response's close, in a sync_to_async, still to come);
    ``held``: its send of the body's last message never returns (until the
    application is cancelled there); ``wsgi``: Django's WSGI handler under
    asgiref's WsgiToAsgi instead."""
    from asgiref.wsgi import WsgiToAsgi
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    from switchtrace.example import http_scope

    scope = http_scope(path)
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    answered = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()
            if held:
                await asyncio.Event().wait()

    handler = WsgiToAsgi(WSGIHandler()) if wsgi else ASGIHandler()
    application = asyncio.ensure_future(handler(scope, receive, send))
    await answered.wait()
    assert not application.done()
    return application


@pytest.mark.parametrize("wsgi", [False, True])
def test_records_of_an_async_block_wait_for_the_requests_its_event_loop_still_runs(wsgi):
    """``async with record_requests()``, as ``async with
    assert_max_switches()``: a request the block drives in its event loop,
    still running when the block ends, is waited for with the loop running
    (record_requests() had no async form: its block could not let the loop
    end such a request)."""
    applications = []

    async def block():
        async with record_requests() as recorded:
            applications.append(await _get_by_hand("/sync/", wsgi=wsgi))
        return recorded

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        recorded = asyncio.run(block())
    # ASGI: request_started, the view, the close; WsgiToAsgi: its three sends.
    assert [(record.finished, record.context_switches) for record in recorded] == [(True, 6)]
    assert [application.done() for application in applications] == [True]


#: record_requests()' warning of one request its plain block left running.
LEFT_RUNNING = (
    "record_requests(): 1 request begun in the block was still running when it ended, in the "
    "event loop that a plain 'with' does not let run, and is not among its records: let each "
    "end in the block (a Channels HttpCommunicator: await communicator.wait()), or use "
    "'async with record_requests()', which waits for them with the loop running"
)


@pytest.mark.parametrize("wsgi", [False, True])
def test_records_of_a_plain_block_in_an_event_loop_warn_of_the_requests_it_left(wsgi, monkeypatch):
    """A plain ``with record_requests()`` in async code cannot let its loop
    end the requests it drives there (Channels' HttpCommunicator, before
    its wait()): they are not among its records, which was silent (an
    empty list), where a budget fails as still running. It warns, naming
    the async form."""
    import warnings

    monkeypatch.setattr(testing, "SETTLE_SECONDS", 0.2)  # (WsgiToAsgi's: another thread's)
    applications = []

    async def block():
        with record_requests() as recorded:
            applications.append(await _get_by_hand("/sync/", wsgi=wsgi))
        await applications[0]
        return recorded

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            recorded = asyncio.run(block())
    assert recorded == []
    # (RuntimeWarnings only: an earlier test's garbage, collected meanwhile,
    # may warn of an unclosed file.)
    assert [(w.filename, str(w.message)) for w in warned if w.category is RuntimeWarning] == [
        (
            __file__,
            LEFT_RUNNING,
        )
    ]
    assert tracer.current_record() is None


def test_records_of_a_plain_block_warn_of_a_request_run_in_a_context_of_its_own():
    """asgiref's ApplicationCommunicator (Channels' HttpCommunicator) runs
    the application in a new, empty context: its request, begun on the
    block's thread and left to its loop, is warned of as well. And a
    recording restarted forgets it."""
    import warnings

    from asgiref.testing import ApplicationCommunicator
    from django.core.handlers.asgi import ASGIHandler

    from switchtrace.example import http_scope

    async def block():
        with record_requests() as recorded:
            communicator = ApplicationCommunicator(ASGIHandler(), http_scope("/sync/"))
            await communicator.send_input({"type": "http.request", "body": b""})
            start = await communicator.receive_output(10)
            await communicator.receive_output(10)  # the body: not yet closed
        left = dict(recorded._open), set(recorded._in_its_context)
        await communicator.wait(10)
        recorded.restart()
        return recorded, start, left

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            recorded, start, (opened, in_its_context) = asyncio.run(block())
    assert start["status"] == 200
    assert [str(w.message) for w in warned if w.category is RuntimeWarning] == [LEFT_RUNNING]
    assert [record.kind for record in opened] == ["asgi"]
    assert in_its_context == set()  # (its context is a new one)
    assert (recorded, recorded._open, recorded._in_its_context) == ([], {}, set())


def test_records_of_a_plain_block_warn_of_no_request_the_loop_could_not_end(monkeypatch):
    """No warning for what the block's loop could not have ended either:
    requests that ended in the block, a WSGI one its code left open (only
    it can close it), another thread's (a live server's, given up on after
    SETTLE_SECONDS, as with 'async with'); none outside a running loop.
    And a budget's plain block says it in its failure alone: a warning
    under -W error took the failure's place."""
    import warnings

    monkeypatch.setattr(testing, "SETTLE_SECONDS", 0.2)
    bodies = []

    async def block():
        with record_requests() as recorded:
            application = await _get_by_hand("/sync/")
            await application
            bodies.append(open_wsgi_request("/sync/"))
        bodies[0].close()
        elsewhere = ServedElsewhere("/sync/")
        with record_requests() as other:
            elsewhere.__enter__()  # its request still served as the block ends
        elsewhere.__exit__(None, None, None)
        return recorded, other

    async def budget():
        with assert_max_switches(10):
            await _get_by_hand("/sync/")

    gc.collect()  # (an earlier test's unclosed files warned of now, not below)
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            recorded, other = asyncio.run(block())
            with record_requests() as plain:
                body = open_wsgi_request("/sync/")
            body.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(AssertionError, match=r"^1 of 1 request was still running"):
                asyncio.run(budget())
    assert [w.message for w in warned if w.category is RuntimeWarning] == []
    assert [r.context_switches for r in recorded] == [6]
    # What finished is in the list alone (the WSGI request left open to
    # the block's end is not, nor was it warned of).
    assert [r.kind for r in recorded._in_its_context] == [r.kind for r in recorded._open]
    assert [r.kind for r in recorded._open] == ["wsgi"]
    assert (other, plain) == ([], [])


@pytest.mark.parametrize(("budget", "outcome"), [(5, "failed"), (6, "passed")])
def test_an_async_budget_waits_for_a_request_its_event_loop_still_runs(budget, outcome):
    """A budget around an async test (as a decorator or ``async with``):
    the request it drives in its own event loop, still running when the
    test ends, is waited for, the loop running, and judged whole: a sync
    view under ASGI, 4 switches when the response was read (the
    request_started signal's and the view's), 6 once closed. (It was judged
    on its 4, and passed a budget of 5.)"""
    applications = []

    @assert_max_switches(budget)
    async def decorated():
        applications.append(await _get_by_hand("/sync/"))

    async def block():
        async with assert_max_switches(budget):
            applications.append(await _get_by_hand("/sync/"))

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        for test in (decorated, block):
            if outcome == "passed":
                asyncio.run(test())
            else:
                with pytest.raises(AssertionError) as failure:
                    asyncio.run(test())
                message = str(failure.value)
                assert message.startswith(
                    "1 of 1 request exceeded the budget of 5 context switches per request:\n"
                    "  GET /sync/ 200: 6 switches (4 before headers), 6 hops, 0 loops, "
                )
                assert message.endswith(
                    "; top: request_started 2, sync_view 2, HttpResponse.close 2"
                )
    assert [application.done() for application in applications] == [True, True]


@pytest.mark.parametrize(("budget", "outcome"), [(5, "failed"), (6, "passed")])
def test_an_async_budget_waits_for_a_wsgi_to_asgi_request_its_event_loop_ends(
    budget, outcome, monkeypatch
):
    """The same with Django's WSGI handler under asgiref's WsgiToAsgi: the
    request begins in the adapter's sync_to_async thread, and only the
    test's event loop ends it. The wait held the loop (the whole
    SETTLE_SECONDS), then failed the budget, however large, as still
    running."""
    monkeypatch.setattr("switchtrace.testing.SETTLE_SECONDS", 30.0)
    applications = []

    async def block():
        async with assert_max_switches(budget):
            applications.append(await _get_by_hand("/sync/", wsgi=True))

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        if outcome == "passed":
            asyncio.run(block())
        else:
            with pytest.raises(AssertionError) as failure:
                asyncio.run(block())
            assert str(failure.value).startswith(
                "1 of 1 request exceeded the budget of 5 context switches per request:\n"
                "  GET /sync/ 200: 6 switches"
            )
    assert [application.done() for application in applications] == [True]


def test_an_async_budget_does_not_wait_for_a_wsgi_request_begun_in_its_thread(monkeypatch):
    """Only the test's code can close its response: the loop running does
    not end it (it waited the whole SETTLE_SECONDS for it)."""
    monkeypatch.setattr(testing, "SETTLE_SECONDS", AN_HOUR)
    bodies = []

    async def test():
        async with assert_max_switches(10):
            bodies.append(open_wsgi_request("/sync/"))

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests():
            with pytest.raises(AssertionError) as failure:
                asyncio.run(test())
            bodies[0].close()
    assert str(failure.value) == (
        "1 of 1 request was still running when judged against the budget of 10 context "
        "switches per request, which counts the whole request: let each end in the test (a "
        "Channels HttpCommunicator: await communicator.wait()); its figures so far:\n"
        "  GET /sync/ 200: 0 switches (0 before headers), 0 hops, 0 loops, 0 threads"
    )


def test_the_plugins_recording_does_not_wait_at_its_end(monkeypatch):
    """The fixture's teardown, after the test: nothing reads its figures
    then (the marker's budget and the fixture's figures wait as they are
    read), and a live server's request left running (a stream, a long
    poll) would have held every such test for SETTLE_SECONDS."""
    from switchtrace.pytest_plugin import _recording

    monkeypatch.setattr(testing, "SETTLE_SECONDS", AN_HOUR)
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests():  # (Django's handlers held patched until the request ends)
            stack, records = _recording()
            with stack:
                served = ServedElsewhere("/sync/").__enter__()
            finished, running = records.split()
            served.__exit__(None, None, None)
    assert (finished, paths(running)) == ([], ["/sync/"])


def test_a_request_cancelled_before_it_ended_is_judged_on_its_figures_and_says_so():
    """Its application cancelled once the response was read (as a Channels
    HttpCommunicator that the test lets go of cancels it), the request ends
    without its response's close: 4 switches of its 6, judged on those (a
    test may cancel a request on purpose), its line saying it raised. (Held
    in its last send, it is cancelled before the close begins, on every
    run: cancelled after it, it had 4 or 6 switches as the close's thread
    raced the cancellation.)"""

    async def test(budget):
        async with assert_max_switches(budget):
            application = await _get_by_hand("/sync/", held=True)
            application.cancel()

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        asyncio.run(test(4))
        with pytest.raises(AssertionError) as failure:
            asyncio.run(test(3))
    assert str(failure.value).startswith(
        "1 of 1 request exceeded the budget of 3 context switches per request:\n"
        "  GET /sync/ 200 (raised asyncio.exceptions.CancelledError): 4 switches (4 before "
        "headers), 4 hops, 0 loops, "
    )


def test_a_request_still_open_when_djangos_handlers_are_unpatched_is_ended():
    """switchtrace disabled, the last recording's end takes the patches off:
    a request still open then (a raw WSGI call whose body the test has not
    closed) would never end, and stayed current in the thread it began in,
    taking what ran there once a recording patched again (hundreds of
    switches, over the next tests)."""
    from asgiref.sync import sync_to_async

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests():
            body = open_wsgi_request("/async-to-sync/")
            [record] = [tracer.current_record()]
        assert not integration.patcher.installed
        assert record.finished and tracer.current_record() is None
        figures = record.totals()
        with record_requests():
            asyncio.run(sync_to_async(str)())
        body.close()
    assert record.totals() == figures == tracer.Figures(6, 6, 3, 3)


def test_a_request_left_open_while_another_threads_recording_holds_the_patches_is_ended():
    """The same, with two threads' recordings: the test's ends first, with
    the request open, while the other thread's holds the patches on; when
    that one ends and takes them off, the request was left open, current in
    the test's thread (a later recording there added its 4 switches and 1
    loop to it)."""
    from asgiref.sync import sync_to_async

    other_open, test_done = threading.Event(), threading.Event()

    def other():
        with record_requests():
            other_open.set()
            test_done.wait(10)

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        thread = threading.Thread(target=other)
        thread.start()
        assert other_open.wait(10)
        with record_requests():
            body = open_wsgi_request("/async-to-sync/")
            [record] = [tracer.current_record()]
        assert integration.patcher.installed and not record.finished
        test_done.set()
        thread.join(10)
        assert not integration.patcher.installed
        assert record.finished
        with record_requests():
            # (Still current in this thread until a recording begins here.)
            assert tracer.current_record() is None
            asyncio.run(sync_to_async(str)())
        body.close()
    assert record.totals() == tracer.Figures(6, 6, 3, 3)


def test_requests_left_open_by_two_recordings_while_another_holds_the_patches_are_ended():
    """Two recordings, each on a thread of its own, leave a request open
    while a third thread's recording holds the patches on: when that one
    ends, both are ended (the second one's leaving had dropped the first's,
    which stayed current in its thread)."""
    other_open, test_done = threading.Event(), threading.Event()

    def other():
        with record_requests():
            other_open.set()
            test_done.wait(10)

    left, bodies = [], []

    def leave_one_open():
        with record_requests():
            bodies.append(open_wsgi_request("/async-to-sync/"))
            left.append(tracer.current_record())

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        holder = threading.Thread(target=other)
        holder.start()
        try:
            assert other_open.wait(10)
            for _ in range(2):
                leaving = threading.Thread(target=leave_one_open)
                leaving.start()
                leaving.join()
            assert [record.finished for record in left] == [False, False]
        finally:
            test_done.set()
            holder.join(10)
        assert not integration.patcher.installed
        assert [record.finished for record in left] == [True, True]
        for body in bodies:
            body.close()


def test_a_request_left_open_with_switchtrace_enabled_is_not_kept(monkeypatch):
    """Enabled, the patches stay on and a request left open ends as any
    does (or never, and is collected): the recording kept every one, for
    a recording that would take the patches off, which none does."""
    import gc
    import weakref

    monkeypatch.setattr("switchtrace.testing.SETTLE_SECONDS", 0.01)  # (never ends)
    left = []
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[]):
        for _ in range(3):
            with record_requests() as recorded:
                # In a thread the test starts, its response never closed.
                thread = threading.Thread(target=lambda: list(open_wsgi_request("/sync/")))
                thread.start()
                thread.join()
            [record] = recorded.split()[1]
            left.append(weakref.ref(record))
            del record, recorded
        gc.collect()
        assert [ref() for ref in left] == [None, None, None]


def test_a_switchtrace_setting_changed_is_read_without_the_app():
    """Budgets need no switchtrace app in INSTALLED_APPS; the receiver of
    setting_changed that its ready() connects then is not there: the first
    SWITCHTRACE read was kept for the whole run (one test's MAX_EVENTS 0 in
    every later test's records, or a later test's change ignored)."""
    from django.core.signals import setting_changed

    from switchtrace.django_app import apps as app_module
    from switchtrace.django_app.conf import get_config

    before = get_config().max_events
    assert before != 0
    assert setting_changed.disconnect(dispatch_uid="switchtrace.setting_changed")
    try:
        with override_settings(SWITCHTRACE={**settings.SWITCHTRACE, "MAX_EVENTS": 0}):
            assert get_config().max_events == 0
        assert get_config().max_events == before
    finally:
        setting_changed.connect(
            app_module._setting_changed, dispatch_uid="switchtrace.setting_changed"
        )


@pytest.mark.parametrize("form", ["with", "async with"])
def test_a_recording_interrupted_while_it_waits_still_ends(form, monkeypatch):
    """Ctrl-C (or pytest-timeout's signal) while the end of a recording
    waits for a request another thread serves: the recording ended all the
    same (the plain ``with`` left it open, the test client patched)."""

    def interrupted(self, timeout=None):
        raise KeyboardInterrupt

    async def interrupted_async(self, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(testing.Recorded, "settle", interrupted)
    monkeypatch.setattr(testing.Recorded, "asettle", interrupted_async)

    # Kept (as a traceback's frame keeps it): not ended by its collection.
    recording = record_requests()

    async def block():
        async with recording:
            pass

    with pytest.raises(KeyboardInterrupt):
        if form == "with":
            with recording:
                pass
        else:
            asyncio.run(block())
    assert (testing._users, testing._open_on, client_patcher.installed) == (0, {}, False)


def test_budgets_without_the_app_leave_nothing_patched_under_an_enabling_setting(tmp_path):
    """Without the app in INSTALLED_APPS nothing applies SWITCHTRACE: a
    recording inside override_settings(SWITCHTRACE={"ENABLED": True}) left
    the patches on when it ended, for the rest of the run (every later
    request recorded)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import django
        from django.conf import settings

        settings.configure(SECRET_KEY="x", INSTALLED_APPS=[], MIDDLEWARE=[])
        django.setup()
        from django.test import override_settings

        from switchtrace import testing
        from switchtrace.django_app import integration

        with testing.assert_max_switches(50):
            pass
        with override_settings(SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"}):
            with testing.assert_max_switches(50):
                print(integration.patcher.installed)
            print(integration.patcher.installed)
        print(integration.patcher.installed)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "True\nFalse\nFalse\n", "")


def test_a_start_listeners_base_exception_leaves_no_async_client_coroutine_unawaited():
    """The AsyncClient's call was made before its record opened, and never
    closed when the record's start raised."""
    from .support import raised_by_a_start_listener

    with record_requests() as records:
        assert raised_by_a_start_listener(lambda: asyncio.run(AsyncClient().get("/sync/"))) == []
    [record] = records  # (ended: every record opened is, once)
    assert record.finished


class EndListenerStop(BaseException):
    pass


def test_every_request_left_open_is_ended_when_a_listener_raises_a_base_exception(
    swallowed, caplog, monkeypatch
):
    """Two requests left open, ended as the recording's block ends: an end
    listener's BaseException (a KeyboardInterrupt, a test's pytest.fail())
    out of the first comes out of the block once the second is ended too,
    and the second one's is logged, not lost."""
    import logging

    def stop(record):
        raise EndListenerStop(f"{record.attributes['url.path']} {left.index(record)}")

    monkeypatch.setattr("switchtrace.testing.SETTLE_SECONDS", 0.01)  # (never end)
    bodies = []
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        tracer.add_listener(stop)
        try:
            with caplog.at_level(logging.ERROR, logger="switchtrace"):
                with pytest.raises(EndListenerStop) as raised:
                    with record_requests() as recorded:
                        for _ in range(2):  # (each on a thread of its own, gone)
                            thread = threading.Thread(
                                target=lambda: bodies.append(open_wsgi_request("/sync/"))
                            )
                            thread.start()
                            thread.join()
                        left = recorded.split()[1]
        finally:
            tracer.remove_listener(stop)
    for body in bodies:
        body.close()
    assert paths(left) == ["/sync/", "/sync/"]
    assert all(record.finished for record in left)
    assert str(raised.value) == "/sync/ 0"
    assert [repr(r.exc_info[1]) for r in caplog.records] == ["EndListenerStop('/sync/ 1')"]
    assert [repr(exc) for _where, exc in swallowed] == ["EndListenerStop('/sync/ 1')"]
    swallowed.clear()


@pytest.mark.parametrize(
    ("budget", "shown"), [(-1, "-1"), (True, "True"), ("3", "'3'"), (2.5, "2.5")]
)
def test_the_fixtures_budget_is_checked_as_the_decorators_is(budget, shown):
    """The pytest plugin's ``switchtrace.assert_max_switches(n)``: -1 read
    as 'exceeded the budget of -1', 2.5 passed, '3' raised a bare
    TypeError."""
    from switchtrace.pytest_plugin import SwitchTraceFixture

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as recorded:
            Client().get("/async/")
    with pytest.raises(ValueError) as caught:
        SwitchTraceFixture(recorded).assert_max_switches(budget)
    assert str(caught.value) == (
        f"the budget must be a non-negative integer (context switches per request), not {shown}"
    )


def test_one_decorated_coroutine_function_runs_twice_at_once():
    """Each call has a budget of its own (as a ContextDecorator makes one
    per call): the second of two gathered calls found the first one's open."""

    @assert_max_switches(10)
    async def check(path):
        await AsyncClient().get(path)

    async def both():
        return await asyncio.gather(check("/async/"), check("/sync/"))

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        assert asyncio.run(both()) == [None, None]


def test_a_test_clients_request_that_raises_out_is_told_as_raised():
    """A view raising SystemExit through the test Client, an AsyncClient
    request cancelled by wait_for: the budget's line says what it raised,
    as a server's record does (error.type)."""
    from switchtrace.testing import describe_requests

    async def cancelled():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(AsyncClient().get("/slow/"), 0.05)

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as recorded:
            with pytest.raises(SystemExit):
                Client().get("/exiting/")
            asyncio.run(cancelled())
    assert [r.attributes.get("error.type") for r in recorded] == [
        "SystemExit",
        "asyncio.exceptions.CancelledError",
    ]
    assert [line.split(":")[0] for line in describe_requests(recorded)] == [
        "GET /exiting/ (raised SystemExit)",
        "GET /slow/ (raised asyncio.exceptions.CancelledError)",
    ]


def test_a_block_that_raises_in_a_loop_with_a_request_running_is_not_warned_of():
    """A plain ``with record_requests()`` block in a loop, a request it
    began still running, that raises: its own exception comes out, with no
    warning (under -W error the warning replaced it) and no wait first."""
    import warnings

    async def block():
        running = []
        with pytest.raises(KeyError, match="the block's own"):
            with record_requests():
                running.append(await _get_by_hand("/sync/"))
                raise KeyError("the block's own")
        await running[0]

    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            asyncio.run(block())
    assert [str(w.message) for w in warned if w.category is RuntimeWarning] == []


def test_a_budget_whose_block_failed_to_open_opens_again(monkeypatch):
    """The settings not ready as the block was entered: the same budget's
    next block said 'already open'."""
    from django.core.exceptions import ImproperlyConfigured

    from switchtrace.django_app import conf

    real = conf.get_config

    def not_ready():
        monkeypatch.setattr(conf, "get_config", real)
        raise ImproperlyConfigured("settings not ready")

    monkeypatch.setattr(conf, "get_config", not_ready)
    budget = assert_max_switches(5)
    with pytest.raises(ImproperlyConfigured):
        with budget:
            pass
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]), budget as recorded:
        Client().get("/async/")
    assert [record.context_switches for record in recorded] == [2]
