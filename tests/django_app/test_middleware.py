"""The middleware and handler integration, through Django's real handlers
driven in-process (the same figures over real servers are in tests/e2e)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from switchtrace import example, tracer
from switchtrace.django_app import headers as headers_module
from switchtrace.django_app.apps import SwitchTraceConfig
from switchtrace.django_app.conf import MIDDLEWARE_PATH
from switchtrace.tracer import guard

from ..support import ASGI_THREADS, asgi_request, run_asgi, run_in_server_loop, wsgi_request

# (server, path, variant) -> (headers: switches, hops, loops, threads), total switches
EXPECTED = {
    ("asgi", "/sync/", "shipped"): ((30, 30, 0, 1), 32),
    ("asgi", "/sync/", "sync-only"): ((10, 10, 0, 1), 12),
    ("asgi", "/async/", "shipped"): ((28, 28, 0, 1), 30),
    ("asgi", "/async/", "sync-only"): ((8, 8, 0, 1), 10),
    ("wsgi", "/sync/", "shipped"): ((0, 0, 0, 0), 0),
    ("wsgi", "/async/", "shipped"): ((2, 2, 1, 1), 2),
    ("wsgi", "/async-to-sync/", "shipped"): ((6, 6, 3, 3), 6),
    ("wsgi", "/asyncio-run/", "shipped"): ((2, 0, 1, 0), 2),
}


#: No span pipeline, whose queue would hold the records for a while.
NO_SPANS = {"ENABLED": True, "EXPORTER": "none"}


def project(variant: str = "shipped", with_switchtrace_middleware: bool = True, **settings):
    """Handlers built for one middleware variant of the example project."""
    return example.handlers(variant, with_switchtrace_middleware, **settings)


def serve(server, handlers, path):
    asgi, wsgi = handlers
    return run_asgi(asgi, path) if server == "asgi" else wsgi_request(wsgi, path)


@pytest.mark.parametrize(("server", "path", "variant"), list(EXPECTED))
def test_the_table_in_process(server, path, variant, records):
    headers, total = EXPECTED[server, path, variant]
    with project(variant) as handlers:
        result = serve(server, handlers, path)
    assert result.status == 200
    assert result.figures() == headers
    [record] = records
    assert record.at_headers == tracer.Figures(*headers)
    assert record.context_switches == total
    assert record.finished


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_the_drivers_note_when_the_client_had_the_whole_response(server):
    """Before Django closes the response (request_finished, here a receiver
    that takes 50 ms): what switchtrace bench --overhead's latency ends at. It
    starts at the handler's call, once the request is built."""
    from django.core.signals import request_finished, request_started

    closed = []

    def slow(sender, **kwargs):
        time.sleep(0.05)
        closed.append(time.perf_counter())

    started = []

    def note_start(sender, **kwargs):
        started.append(time.perf_counter())

    request_started.connect(note_start)
    request_finished.connect(slow)
    try:
        with project("none") as handlers:
            start = time.perf_counter()
            result = serve(server, handlers, "/sync/")
    finally:
        request_finished.disconnect(slow)
        request_started.disconnect(note_start)
    assert result.status == 200
    # From the handler's call, the request built (the WSGI environ, the ASGI
    # scope: the client's and the server's work, not the application's).
    assert start < result.called_at <= started[0] < result.received_at <= closed[0] - 0.05


def test_an_async_view_under_wsgi_with_uvloop_installed_counts_its_loop(records):
    """uvloop.install() in the project: asgiref's loop for the view is
    uvloop's, and X-Event-Loops counts it as it does asyncio's."""
    import uvloop  # in the test extra, for CPython off Windows

    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        with project() as handlers:
            result = serve("wsgi", handlers, "/async/")
    finally:
        asyncio.set_event_loop_policy(before)
    assert result.figures() == EXPECTED["wsgi", "/async/", "shipped"][0] == (2, 2, 1, 1)
    [record] = records
    [crossing] = record.crossings
    assert record.loop_creations[0].crossing is crossing
    assert crossing.loop_created is True


def test_an_async_view_offloading_under_wsgi_counts_every_thread_it_starts(records):
    """asgiref's thread and loop for the view, the loop's default executor's
    worker for asyncio.to_thread, and (asgiref 3.9+) the thread asyncio.run
    starts to shut that executor down, before the headers."""
    from ..tracer.test_counting import ASYNCIO_RUN_IN_ASYNC_TO_SYNC

    threads = 3 if ASYNCIO_RUN_IN_ASYNC_TO_SYNC else 2
    with project("none") as handlers:
        result = serve("wsgi", handlers, "/to-thread/")
    assert result.figures() == (4, 4, 1, threads)
    assert result.headers["Server-Timing"].endswith(f'"Threads started: {threads}"')
    [record] = records
    assert record.totals() == tracer.Figures(4, 4, 1, threads)


def test_an_offload_the_view_gave_up_on_counts_its_return_as_it_did(records):
    """``asyncio.wait_for`` timing out on an ``asyncio.to_thread``: the view
    has control back, and answers, while the function runs on in its
    thread. Its return was counted when the function ended, after the
    response: the header had its start alone, an odd count, and the
    crossing was unfinished. As a cancelled ``sync_to_async``'s, it is
    counted when the view gets its ``CancelledError``: the figures of an
    offload that returned, the crossing closed with that exception."""
    from ..views import GIVEN_UP_RELEASE

    GIVEN_UP_RELEASE.clear()
    try:
        with project("none") as handlers:
            waited = serve("asgi", handlers, "/to-thread/")
            result = serve("asgi", handlers, "/to-thread-given-up/")
    finally:
        GIVEN_UP_RELEASE.set()
    assert result.body == b"gave up"
    # (The threads each started depend on the order: the loop's executor.)
    assert result.figures()[:2] == waited.figures()[:2] == (4, 4)
    given_up = records[-1]
    totals = given_up.totals()
    assert (totals.context_switches, totals.thread_hops) == (6, 6)
    [offload] = [c for c in given_up.crossings if c.mechanism == "asyncio.to_thread"]
    assert (offload.mechanism, offload.exception) == (
        "asyncio.to_thread",
        "asyncio.exceptions.CancelledError",
    )
    assert offload.return_ns is not None


def test_a_context_of_the_codes_own_in_use_elsewhere_is_not_entered(records):
    """A function holding partial(context.run, ...) that a patch of submit
    over ours made (here an executor subclass's own submit) is taken for a
    wrapper around asyncio.to_thread's, whose context the crossing is made
    current in; one the executor's worker was inside at the submit raised
    ("cannot enter context"), logged as switchtrace's internal error, and
    the offload went unrecorded. It is a run_in_executor of the wrapper."""
    with project("none") as handlers:
        result = serve("wsgi", handlers, "/reused-context/")
    assert result.status == 200
    [record] = records
    record.describe()
    assert [(c.mechanism, c.qualname) for c in record.crossings] == [
        ("async_to_sync", "reused_context_view"),
        ("asyncio.to_thread", "held_inside"),
        ("run_in_executor", "WrappingExecutor.submit.<locals>.wrapper"),
    ]


@pytest.mark.parametrize("through", ["client", "get_response", "wsgi_handler"])
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_sub_request_a_view_serves_is_part_of_its_request(server, through, records):
    """A sync view serving a sub-request itself (through the test Client,
    BaseHandler.get_response or a WSGIHandler, as batch API endpoints do),
    then bridging once more: the sub-request's three async_to_sync calls and
    the view's own one are all the request's, in its headers too. The
    sub-request neither freezes the request's figures (WSGI) nor ends its
    record, nor opens one of its own. Under WSGI each async_to_sync makes a
    loop in a thread; under ASGI it goes back to the server's loop, and the
    request counts as /sync/ does (4 switches at the headers, 6 in all)
    eight switches more."""
    with project("none") as handlers:
        result = serve(server, handlers, f"/sub-request/?through={through}")
    assert (result.status, result.body) == (200, b"Hello, world\n")
    [record] = records
    if server == "wsgi":
        assert result.figures() == (8, 8, 4, 4)
        assert record.at_headers == record.totals() == tracer.Figures(8, 8, 4, 4)
    else:
        assert result.figures() == (12, 12, 0, 1)
        assert record.totals() == tracer.Figures(14, 14, 0, ASGI_THREADS)


@pytest.mark.parametrize("through", ["client", "get_response", "wsgi_handler"])
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_sub_request_leaves_the_request_its_route_and_its_view(server, through, records):
    """What Django does for a sub-request the view serves itself (resolving
    its path, calling its view) is not the request's: the request keeps its
    route and its view (they named the sub-request's, in the spans too), and
    its view, still running, makes the async_to_sync after it (the
    sub-request's view, ending, ended the request's)."""
    from switchtrace.django_app import components

    from .. import views

    with project("none") as handlers:
        result = serve(server, handlers, f"/sub-request/?through={through}")
    assert result.status == 200
    [record] = records
    assert record.attributes["http.route"] == "sub-request/"
    assert record.extra["view"] is views.sub_request_view
    [*_, last] = [c for c in record.crossings if c.mechanism == tracer.ASYNC_TO_SYNC]
    assert components.Resolver()(last, record) == tracer.Component("view", "sub_request_view")


#: (server, through) -> the request's figures at its headers, and its
#: switches in all: the async view's own sync_to_async (2), the sub-request's
#: sync view and its three async_to_sync (8); for the test AsyncClient and an
#: ASGIHandler, the sub-request's request_started and its response's close
#: (4; the WSGI request's own request_started is no crossing); under ASGI the
#: request's own request_started (2) and close (2, after its headers); under
#: WSGI the async_to_sync that runs the async view (2, in a new loop).
ASYNC_SUB_REQUEST = {
    ("asgi", "async_client"): ((16, 16, 0, 1), 18),
    ("asgi", "get_response_async"): ((12, 12, 0, 1), 14),
    ("asgi", "asgi_handler"): ((16, 16, 0, 1), 18),
    ("wsgi", "async_client"): ((16, 16, 1, 2), 16),
    ("wsgi", "get_response_async"): ((12, 12, 1, 1), 12),
    ("wsgi", "asgi_handler"): ((16, 16, 1, 1), 16),
}


@pytest.mark.parametrize("through", ["async_client", "get_response_async", "asgi_handler"])
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_sub_request_an_async_view_serves_is_part_of_its_request(server, through, records):
    """An async view serving a sub-request itself (through the test
    AsyncClient, BaseHandler.get_response_async or an ASGIHandler), then
    bridging once more: one record, whose figures count the sub-request's
    crossings (see ASYNC_SUB_REQUEST), whose route and view stay its own (they
    were the sub-request's, and an ASGIHandler opened a record of its own for
    it), and whose view makes the sync_to_async after it. The AsyncClient
    closes its response in the loop's default executor: under WSGI, a new
    loop's, whose thread counts (and, from asgiref 3.9, the one asyncio.run
    starts to shut that executor down); under ASGI, the server's loop's,
    whose thread the same request served before has started."""
    from switchtrace.django_app import components

    from .. import views
    from ..tracer.test_counting import ASYNCIO_RUN_IN_ASYNC_TO_SYNC

    with project("none") as handlers:
        serve(server, handlers, f"/async-sub-request/?through={through}")
        result = serve(server, handlers, f"/async-sub-request/?through={through}")
    assert (result.status, result.body) == (200, b"Hello, world\n")
    [_, record] = records
    (*at_headers, threads), switches = ASYNC_SUB_REQUEST[server, through]
    if server == "wsgi" and through == "async_client" and ASYNCIO_RUN_IN_ASYNC_TO_SYNC:
        threads += 1
    assert result.figures() == (*at_headers, threads)
    assert record.at_headers == tracer.Figures(*at_headers, threads)
    after = ASGI_THREADS - 1 if server == "asgi" else 0  # the thread joining Django's
    assert record.totals() == tracer.Figures(switches, switches, at_headers[2], threads + after)
    assert record.attributes["http.route"] == "async-sub-request/"
    assert record.extra["view"] is views.async_sub_request_view
    [lookup] = [c for c in record.crossings if c.func is views._sub_request_lookup]
    assert components.Resolver()(lookup, record) == tracer.Component(
        "view", "async_sub_request_view"
    )


@pytest.mark.parametrize(
    ("path", "through"),
    [
        ("/async-sub-request/", "async_client"),
        ("/async-sub-request/", "get_response_async"),
        ("/async-sub-request/", "asgi_handler"),
        ("/sub-request/", "client"),
        ("/sub-request/", "get_response"),
        ("/sub-request/", "wsgi_handler"),
    ],
)
def test_a_sub_request_is_part_of_a_request_a_test_client_makes(path, through):
    """Under switchtrace.testing (the pytest plugin's recording), a request
    that Django's test AsyncClient (an async view) or Client (a sync one)
    makes: one record, as on a server, whose headers are frozen when the
    request's own get_response(_async) returns, with the figures its
    response carries (the sub-request's test client opened a record of its
    own, whose crossings the request lost; the AsyncClient's froze the
    request's headers when the sub-request's get_response_async returned).
    The figures are a server's (see ASYNC_SUB_REQUEST; the test Client's: a
    WSGI server's, see test_a_sub_request_a_view_serves_is_part_of_its_request)
    but for the threads: the requests run in one loop, whose default
    executor's thread (the AsyncClient's close) the first one started, and
    outside any ThreadSensitiveContext (the AsyncClient's), but for the
    ASGIHandler's sub-request, whose context starts a thread (and, from
    asgiref 3.12, the one that joins it: ASGI_THREADS). That executor has
    one thread: with more, whether a call (Django 4.2's request_finished,
    sent there by the request and by its sub-request) starts another
    depends on whether the one that ran the last call has had the GIL back
    to say it is idle."""
    from django.test import AsyncClient, Client

    from switchtrace.testing import record_requests

    url = f"{path}?through={through}"

    async def twice():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        await AsyncClient().get(url)
        return await AsyncClient().get(url)

    with project("none"), record_requests() as recorded:
        if path == "/sub-request/":
            Client().get(url)
            response = Client().get(url)
        else:
            response = asyncio.run(twice())
    assert (response.status_code, response.content) == (200, b"Hello, world\n")
    [_, record] = recorded
    if path == "/sub-request/":
        at_headers, switches = (8, 8, 4, 4), 8
    else:
        (*figures, _), switches = ASYNC_SUB_REQUEST["asgi", through]
        at_headers = (*figures, ASGI_THREADS if through == "asgi_handler" else 0)
    assert (record.attributes["url.path"], record.attributes["http.route"]) == (path, path[1:])
    assert record.at_headers == tracer.Figures(*at_headers)
    assert tuple(int(response[name]) for name, *_ in headers_module.HEADERS) == at_headers
    assert record.context_switches == switches


def test_server_timing_has_one_metric_per_figure():
    with project() as handlers:
        result = serve("asgi", handlers, "/sync/")
    assert result.headers["Server-Timing"] == (
        'switchtrace-switches;desc="Context switches: 30", '
        'switchtrace-hops;desc="Thread hops: 30", '
        'switchtrace-loops;desc="Event loops created: 0", '
        'switchtrace-threads;desc="Threads started: 1"'
    )


def test_the_applications_own_server_timing_is_kept():
    with project("none") as handlers:
        result = serve("wsgi", handlers, "/server-timing/")
    assert result.headers["Server-Timing"] == (
        'db;dur=53;desc="Database", '
        'switchtrace-switches;desc="Context switches: 0", '
        'switchtrace-hops;desc="Thread hops: 0", '
        'switchtrace-loops;desc="Event loops created: 0", '
        'switchtrace-threads;desc="Threads started: 0"'
    )


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize("variant", ["shipped", "none"])
def test_an_unclosed_quote_in_the_applications_server_timing_gets_the_metrics_once(server, variant):
    """'db;desc="unclosed, switchtrace-hops': the quote took in every comma
    after it, switchtrace's metrics written after it too, so they were not
    found when the headers were sent, and were added a second time (found
    fuzzing the headers). A quote never closed quotes nothing: the metric
    named as switchtrace's is replaced by them, as in a well-formed value."""
    with project(variant) as handlers:
        result = serve(server, handlers, "/unclosed-server-timing/")
    switches, hops, loops, threads = result.figures()
    assert (server, variant, switches) in {
        ("asgi", "shipped", 30),
        ("asgi", "none", 4),
        ("wsgi", "shipped", 0),
        ("wsgi", "none", 0),
    }
    assert result.headers["Server-Timing"] == (
        'db;desc="unclosed, '
        f'switchtrace-switches;desc="Context switches: {switches}", '
        f'switchtrace-hops;desc="Thread hops: {hops}", '
        f'switchtrace-loops;desc="Event loops created: {loops}", '
        f'switchtrace-threads;desc="Threads started: {threads}"'
    )


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize("shown", [True, False])
def test_headers_of_switchtraces_names_the_application_set_are_switchtraces(server, shown):
    """As the README says: on a response that carries X-Context-Switches,
    the four headers and the switchtrace- metrics are replaced by this
    request's figures, or taken off when it is not shown them; the
    application's other headers and metrics stay."""
    settings = {"ENABLED": True, "SHOW_HEADERS": shown}
    with project(SWITCHTRACE=settings) as handlers:
        result = serve(server, handlers, "/own-figure-headers/")
    assert result.headers["X-Custom"] == "kept"
    if not shown:
        assert result.figures() is None
        assert "X-Thread-Hops" not in result.headers
        assert result.headers["Server-Timing"] == "app;dur=1"
        return
    switches, hops, loops, threads = result.figures()
    # (threads: whether this process's executors had their threads already)
    assert (switches, hops, loops) == ((30, 30, 0) if server == "asgi" else (0, 0, 0))
    assert result.headers["Server-Timing"] == (
        "app;dur=1, "
        f'switchtrace-switches;desc="Context switches: {switches}", '
        f'switchtrace-hops;desc="Thread hops: {hops}", '
        f'switchtrace-loops;desc="Event loops created: {loops}", '
        f'switchtrace-threads;desc="Threads started: {threads}"'
    )


def cached_project(key_prefix: str, **settings):
    """Django's per-site cache with its UpdateCacheMiddleware placed before
    switchtrace's (first, as Django's documentation asks), so that the
    responses it stores carry switchtrace's headers."""
    cache = "django.middleware.cache."
    middleware = [
        f"{cache}UpdateCacheMiddleware",
        "switchtrace.django_app.middleware.SwitchTraceMiddleware",
        f"{cache}FetchFromCacheMiddleware",
    ]
    return project(
        "none",
        MIDDLEWARE=middleware,
        CACHE_MIDDLEWARE_SECONDS=60,
        CACHE_MIDDLEWARE_KEY_PREFIX=key_prefix,
        **settings,
    )


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_response_served_from_the_cache_shows_this_requests_figures_once(server, records):
    """An UpdateCacheMiddleware placed before switchtrace's stores responses
    that carry switchtrace's headers; served again from the cache, a response
    gets the figures of the request that got it, once, next to the
    application's own metrics."""
    with cached_project(f"cached-{server}") as handlers:
        first = serve(server, handlers, "/quoted-server-timing/")
        second = serve(server, handlers, "/quoted-server-timing/")
    # Under ASGI each synchronous hook is a sync_to_async, two switches: the
    # request_started signal, FetchFromCacheMiddleware.process_request, the
    # view (not called for the cached response), and
    # UpdateCacheMiddleware.process_response; one thread each request, its
    # ThreadSensitiveContext's.
    expected = {"asgi": ((8, 8, 0, 1), (6, 6, 0, 1)), "wsgi": ((0, 0, 0, 0), (0, 0, 0, 0))}
    assert (first.figures(), second.figures()) == expected[server]
    assert second.headers["Expires"] == first.headers["Expires"]  # the cached copy
    for result in (first, second):
        switches, hops, loops, threads = result.figures()
        assert result.headers["Server-Timing"] == (
            'cache;desc="stored, \\"fresh\\"", db;dur=53, '
            f'switchtrace-switches;desc="Context switches: {switches}", '
            f'switchtrace-hops;desc="Thread hops: {hops}", '
            f'switchtrace-loops;desc="Event loops created: {loops}", '
            f'switchtrace-threads;desc="Threads started: {threads}"'
        )
    assert len(records) == 2


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_cached_response_for_a_request_not_shown_the_figures_has_none(server, records):
    """Stored with the figures of a request shown them, then served from the
    cache to one that is not: switchtrace's headers come off, the
    application's metrics stay."""
    with cached_project(
        f"hidden-{server}",
        SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"},
    ) as handlers:
        asgi, wsgi = handlers
        if server == "wsgi":
            shown = wsgi_request(wsgi, "/quoted-server-timing/", HTTP_X_DEBUG="1")
        else:
            from asyncio import run

            from ..support import asgi_request

            shown = run(asgi_request(asgi, "/quoted-server-timing/", headers=[(b"x-debug", b"1")]))
        hidden = serve(server, handlers, "/quoted-server-timing/")
    assert shown.figures() == {"asgi": (8, 8, 0, 1), "wsgi": (0, 0, 0, 0)}[server]
    assert hidden.headers["Expires"] == shown.headers["Expires"]  # the cached copy
    assert hidden.figures() is None
    assert not [name for name in hidden.headers if name.lower().startswith("x-")]
    assert hidden.headers["Server-Timing"] == 'cache;desc="stored, \\"fresh\\"", db;dur=53'
    assert len(records) == 2


@pytest.mark.parametrize("server", ["asgi", "wsgi", "client"])
def test_a_copy_a_cache_above_switchtrace_serves_gets_this_requests_figures(server, records):
    """Django's per-site cache whole above switchtrace's middleware: a
    response it serves again is a copy of the one it stored, with
    switchtrace's headers of the request that stored it, and switchtrace's
    middleware does not run. The request gets its own figures in their
    place, as for a response object stamped before (not the 6 switches,
    3 loops of the first request under WSGI: it made none)."""
    from django.test import Client

    from switchtrace.testing import record_requests

    cache = "django.middleware.cache."
    middleware = [f"{cache}UpdateCacheMiddleware", f"{cache}FetchFromCacheMiddleware"]
    with project(
        "none",
        MIDDLEWARE=[*middleware, MIDDLEWARE_PATH],
        CACHE_MIDDLEWARE_SECONDS=60,
        CACHE_MIDDLEWARE_KEY_PREFIX=f"above-{server}",
    ) as handlers:
        if server == "client":
            with record_requests():
                first, second = (Client().get("/async-to-sync/") for _ in range(2))
                sent = [dict(first.items()), dict(second.items())]
        else:
            sent = [serve(server, handlers, "/async-to-sync/").headers for _ in range(2)]
    assert sent[1]["Expires"] == sent[0]["Expires"]  # the cached copy
    # Under ASGI, two switches each: request_started and the two sync-only
    # cache middleware; then the three async_to_sync of the view (a loop and
    # a thread each under WSGI).
    at_headers = {
        "asgi": [(14, 14, 0, 1), (6, 6, 0, 1)],
        "wsgi": [(6, 6, 3, 3), (0, 0, 0, 0)],
        "client": [(6, 6, 3, 3), (0, 0, 0, 0)],
    }[server]
    assert [tuple(vars(record.at_headers).values()) for record in records] == at_headers
    for headers, figures in zip(sent, at_headers, strict=True):
        assert tuple(int(headers[name]) for name, *_ in headers_module.HEADERS) == figures
        assert headers["Server-Timing"] == _ours(figures)


def test_the_middleware_above_sees_no_figures_on_a_cached_response_for_a_request_not_shown():
    """Served from Django's cache (stored with the figures of a request shown
    them) to a request that is not: the middleware above switchtrace's,
    reading the response object, sees none either, nor switchtrace's
    metrics."""
    from .. import views

    views.HeaderListingMiddleware.listed = listed = []
    cache = "django.middleware.cache."
    middleware = [
        "tests.views.HeaderListingMiddleware",
        f"{cache}UpdateCacheMiddleware",
        MIDDLEWARE_PATH,
        f"{cache}FetchFromCacheMiddleware",
    ]
    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    with project(
        "none",
        MIDDLEWARE=middleware,
        CACHE_MIDDLEWARE_SECONDS=60,
        CACHE_MIDDLEWARE_KEY_PREFIX="listed-hidden",
        SWITCHTRACE=settings,
    ) as (_asgi, wsgi):
        shown = wsgi_request(wsgi, "/quoted-server-timing/", HTTP_X_DEBUG="1")
        hidden = wsgi_request(wsgi, "/quoted-server-timing/")
    assert (shown.figures(), hidden.figures()) == ((0, 0, 0, 0), None)
    seen_shown, seen_hidden = map(dict, listed)
    assert seen_hidden["Expires"] == seen_shown["Expires"]  # the cached copy
    assert seen_shown["X-Context-Switches"] == "0"
    assert not [name for name in seen_hidden if name.startswith("X-")]
    assert seen_hidden["Server-Timing"] == 'cache;desc="stored, \\"fresh\\"", db;dur=53'


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_metrics_added_above_switchtrace_survive_the_second_writing(server, records):
    """A middleware above switchtrace's adds a metric after switchtrace wrote
    its own; a 404 under ASGI makes a switch after the middleware chain, so
    the figures are written again when the headers are sent."""
    with project("none", MIDDLEWARE=["tests.views.TimingMiddleware", MIDDLEWARE_PATH]) as handlers:
        result = serve(server, handlers, "/missing/")
    [record] = records
    switches, hops, loops, threads = result.figures()
    assert (switches, hops, loops, threads) == tuple(vars(record.at_headers).values())
    assert result.headers["Server-Timing"] == (
        f'switchtrace-switches;desc="Context switches: {switches}", '
        f'switchtrace-hops;desc="Thread hops: {hops}", '
        f'switchtrace-loops;desc="Event loops created: {loops}", '
        f'switchtrace-threads;desc="Threads started: {threads}", '
        "app;dur=12"
    )
    # Under ASGI, two switches each: request_started, the sync-only
    # TimingMiddleware (sync_to_async), switchtrace's async middleware under
    # it (async_to_sync), response_for_exception, and the 404's logging after
    # the chain: the last two are not counted when the middleware writes, but
    # are when the headers are sent.
    assert switches == {"asgi": 10, "wsgi": 0}[server]


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_the_applications_latin1_header_is_sent_as_it_was_when_the_figures_are_rewritten(
    server,
):
    """The headers rewritten as they are sent (a middleware above
    switchtrace's appended a metric after its figures): a value beyond ASCII
    is sent in Latin-1, as Django sends it, not re-encoded in UTF-8."""
    with project("none", MIDDLEWARE=["tests.views.TimingMiddleware", MIDDLEWARE_PATH]) as handlers:
        result = serve(server, handlers, "/latin1-header/")
    assert result.figures() is not None
    assert result.headers["Server-Timing"].endswith(", app;dur=12")
    assert result.headers["Content-Disposition"] == 'attachment; filename="caf\xe9.txt"'


def shown_with_debug_header_else_raises(request):
    if request.headers.get("X-Debug") == "1":
        return True
    raise KeyError("no debug header")


async def _not_shown(request):
    return False


def shown_with_debug_header_else_awaitable(request):
    if request.headers.get("X-Debug") == "1":
        return True
    return _not_shown(request)


@pytest.mark.parametrize(
    ("show", "refused"),
    [
        ("only_with_debug_header", 0),
        ("shown_with_debug_header_else_raises", 1),
        ("shown_with_debug_header_else_awaitable", 1),
    ],
)
def test_a_response_object_shown_once_is_not_shown_to_a_request_that_may_not_see_it(
    show, refused, records, caplog
):
    """Nor to one whose SHOW_HEADERS callable failed (raised, or returned an
    awaitable): refused as firmly as by a False."""
    from asyncio import run

    from ..support import asgi_request

    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project("none", SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": f"{__name__}.{show}"}) as (
            asgi,
            wsgi,
        ),
    ):
        shown = wsgi_request(wsgi, "/shared/", HTTP_X_DEBUG="1")
        # Other figures (under ASGI: request_started, the view, the 404's
        # logging after the chain), for the same response object.
        hidden = run(asgi_request(asgi, "/shared/"))
    assert shown.figures() == (0, 0, 0, 0)
    assert hidden.figures() is None
    assert "Server-Timing" not in hidden.headers
    assert records[1].at_headers.context_switches == 6
    assert len(caplog.records) == refused


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_response_object_carrying_the_very_figures_is_not_sent_them_unshown(server, records):
    """A view's one response object, shown to a request, then returned to one
    not shown the figures, which made the same switches: the headers the
    object carries are exactly that request's figures, and it is sent none
    of them all the same."""
    from .. import views

    views.paused_response = views.PausingResponse("shared")
    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    try:
        with project("none", SWITCHTRACE=settings) as (asgi, wsgi):
            if server == "asgi":
                from ..support import asgi_request, run_in_server_loop

                debug = [(b"host", b"testserver"), (b"x-debug", b"1")]
                shown = run_in_server_loop(asgi_request(asgi, "/paused-shared/", headers=debug))
            else:
                shown = wsgi_request(wsgi, "/paused-shared/", HTTP_X_DEBUG="1")
            hidden = serve(server, (asgi, wsgi), "/paused-shared/")
    finally:
        views.paused_response = None
    # Under ASGI, request_started and the view, a sync_to_async each.
    figures = (4, 4, 0, 1) if server == "asgi" else (0, 0, 0, 0)
    assert [tuple(vars(record.at_headers).values()) for record in records] == [figures] * 2
    assert (shown.figures(), hidden.figures()) == (figures, None)
    assert "Server-Timing" not in hidden.headers


def wsgi_then_asgi_on_one_response(above, asgi_path, server_timing=None):
    """A view's one response object (``views.paused_response``) for a
    request under WSGI, then one under ASGI to ``asgi_path``, with the
    middleware ``above`` switchtrace's."""
    from .. import views

    views.paused_response = views.PausingResponse("shared")
    if server_timing is not None:
        views.paused_response["Server-Timing"] = server_timing
    try:
        with project("none", MIDDLEWARE=[above, MIDDLEWARE_PATH]) as (asgi, wsgi):
            return wsgi_request(wsgi, "/paused-shared/"), run_asgi(asgi, asgi_path)
    finally:
        views.paused_response = None


def test_the_middleware_above_sees_each_requests_figures_on_a_shared_response(records):
    """Code above switchtrace's middleware reads the figures on the response
    object. On a view's one response object, which an earlier request read
    (nothing is added to its headers then), the values are still written
    for each request."""
    from .. import views

    views.HeaderListingMiddleware.listed = listed = []
    first, second = wsgi_then_asgi_on_one_response(
        "tests.views.HeaderListingMiddleware", "/paused-shared/"
    )
    assert [first.figures(), second.figures()] == [
        tuple(vars(record.at_headers).values()) for record in records
    ]
    # Under ASGI, two switches each: request_started, the sync-only
    # middleware above (sync_to_async), switchtrace's async one under it
    # (async_to_sync), and the view.
    assert [dict(headers)["X-Context-Switches"] for headers in listed] == ["0", "8"]
    assert [record.at_headers.context_switches for record in records] == [0, 8]


@pytest.mark.parametrize(
    ("path", "switches"),
    [
        # Under ASGI: request_started and the sync-only middleware, a
        # sync_to_async each.
        ("/paused-shared/?short", 4),
        # And switchtrace's async middleware under it (async_to_sync), the
        # view (sync_to_async).
        ("/sync/?replace", 8),
    ],
    ids=["answered", "replaced"],
)
def test_a_shared_response_a_middleware_above_answers_with_gets_the_requests_figures(
    path, switches, records
):
    """A middleware above switchtrace's answers a request with a view's one
    response object, which carries switchtrace's headers of an earlier
    request, itself or in place of the response switchtrace's middleware
    wrote on: the request is sent its own figures in their place."""
    first, second = wsgi_then_asgi_on_one_response("tests.views.ShortCircuitMiddleware", path, OWN)
    assert [record.at_headers.context_switches for record in records] == [0, switches]
    for result, record in zip((first, second), records, strict=True):
        figures = tuple(vars(record.at_headers).values())
        assert result.figures() == figures
        assert result.headers["Server-Timing"] == f"{OWN}, {_ours(figures)}"


def test_one_response_object_returned_to_two_threads_ends_each_ones_record(records):
    """gthread workers: two requests return the view's one response object,
    and the first server thread closes it while the second is still sending
    it. Each close ends the record of the request it serves."""
    import threading

    from django.test.client import RequestFactory

    def environ(query):
        return RequestFactory()._base_environ(
            PATH_INFO="/shared/", REQUEST_METHOD="GET", QUERY_STRING=query
        )

    first_returned, second_returned, first_closed = (threading.Event() for _ in range(3))
    seen = {}

    def serve_first(wsgi):
        response = wsgi(environ("first"), lambda status, headers, exc_info=None: None)
        first_returned.set()
        second_returned.wait(10)
        b"".join(response)
        response.close()
        seen["first"] = ([r.attributes["url.query"] for r in records], tracer.current_record())
        first_closed.set()

    def serve_second(wsgi):
        first_returned.wait(10)
        response = wsgi(environ("second"), lambda status, headers, exc_info=None: None)
        second_returned.set()
        first_closed.wait(10)
        b"".join(response)
        response.close()
        seen["second"] = ([r.attributes["url.query"] for r in records], tracer.current_record())

    with project("none") as (_asgi, wsgi):
        threads = [
            threading.Thread(target=serve, args=(wsgi,)) for serve in (serve_first, serve_second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert seen == {"first": (["first"], None), "second": (["first", "second"], None)}


def test_a_response_object_keeps_no_record_of_a_request_its_server_refused():
    """wsgiref (runserver's server) refuses a hop-by-hop header in
    start_response, and never gets the response to close: a view's one
    response object, sent fine afterwards, keeps no record of that request."""
    import gc
    import io
    import weakref
    from wsgiref.handlers import SimpleHandler

    from django.http import HttpResponse
    from django.test.client import RequestFactory

    from .. import views

    finished = []

    def keep(record):
        finished.append(weakref.ref(record))

    def serve(wsgi):
        out = io.BytesIO()
        environ = RequestFactory()._base_environ(PATH_INFO="/paused-shared/")
        handler = SimpleHandler(io.BytesIO(), out, io.StringIO(), environ)
        handler.run(wsgi)
        return out.getvalue().split(b"\r\n", 1)[0]

    views.paused_response = response = HttpResponse("shared")
    response["Connection"] = "close"
    tracer.add_listener(keep)
    try:
        with project("none", SWITCHTRACE=NO_SPANS) as (_asgi, wsgi):
            refused = serve(wsgi)
            # Ended when the handler's call raised, not by the next request.
            assert len(finished) == 1
            assert tracer.current_record() is None
            del response["Connection"]
            sent = [serve(wsgi), serve(wsgi)]
    finally:
        tracer.remove_listener(keep)
        views.paused_response = None
    gc.collect()
    assert (refused, sent) == (b"HTTP/1.0 500 Internal Server Error", [b"HTTP/1.0 200 OK"] * 2)
    assert len(finished) == 3
    assert [ref() for ref in finished] == [None, None, None]


@pytest.mark.parametrize("server", ["asgi", "wsgi", "client"])
def test_a_response_a_middleware_above_put_in_place_gets_no_figures(server, records):
    """CommonMiddleware above switchtrace's puts a redirect in place of the
    404 that switchtrace's middleware wrote on (APPEND_SLASH): that response
    gets no figures, sent by a server as in Django's test client (the
    headers are written again only on a response that carries them)."""
    from django.test import Client

    from switchtrace.testing import record_requests

    middleware = ["django.middleware.common.CommonMiddleware", MIDDLEWARE_PATH]
    with project("none", MIDDLEWARE=middleware) as handlers:
        if server == "client":
            with record_requests():
                response = Client().get("/sync")
            status, headers = response.status_code, dict(response.items())
        else:
            result = serve(server, handlers, "/sync")
            status, headers = result.status, result.headers
    assert (status, headers["Location"]) == (301, "/sync/")
    assert not [name for name in headers if name.startswith("X-")]
    assert "Server-Timing" not in headers
    [record] = records
    assert record.at_headers is not None


def _ours(figures):
    switches, hops, loops, threads = figures
    return (
        f'switchtrace-switches;desc="Context switches: {switches}", '
        f'switchtrace-hops;desc="Thread hops: {hops}", '
        f'switchtrace-loops;desc="Event loops created: {loops}", '
        f'switchtrace-threads;desc="Threads started: {threads}"'
    )


# One async_to_sync from a WSGI worker thread: a new loop in a new thread.
SWITCHED = (2, 2, 1, 1)
OWN = 'db;dur=53;desc="Database"'


@pytest.mark.parametrize(
    ("show", "first", "second"),
    [
        # Both shown: the second request writes its figures on the object
        # while Django reads the first one's.
        (True, ("switch", {}, SWITCHED), ("", {}, (0, 0, 0, 0))),
        # Shown, then hidden: the second's taking the headers off must not
        # reach the first.
        ("debug", ("switch", {"HTTP_X_DEBUG": "1"}, SWITCHED), ("", {}, None)),
        # Hidden, then shown: the second's writing must not reach the first.
        ("debug", ("switch", {}, None), ("", {"HTTP_X_DEBUG": "1"}, (0, 0, 0, 0))),
    ],
    ids=["both-shown", "shown-then-hidden", "hidden-then-shown"],
)
@pytest.mark.parametrize(
    "pause_at",
    # 0: before Django starts reading the headers; 1: with the reading under
    # way (a header added or taken off then would break Django's iteration).
    [0, 1],
)
def test_one_response_object_read_by_two_threads_sends_each_its_own_headers(
    show, first, second, pause_at, records
):
    """gthread workers: two requests return a view's one response object,
    and the second one runs whole while Django reads the first one's headers
    off that object. Each request is sent its own figures, or none if it is
    not shown them, next to the application's own metric."""
    import threading

    from .. import views

    views.paused_response = response = views.PausingResponse("shared")
    response["Server-Timing"] = OWN
    first_paused, second_done = threading.Event(), threading.Event()
    results = {}

    def pause(index):
        if threading.current_thread().name == "first" and index == pause_at:
            if not first_paused.is_set():
                first_paused.set()
                second_done.wait(10)

    def serve(wsgi, name, query, environ):
        try:
            results[name] = wsgi_request(wsgi, "/paused-shared/", query=query, **environ)
        except Exception as error:
            results[name] = error
        finally:
            if name == "second":
                second_done.set()

    settings = {"SWITCHTRACE": {"ENABLED": True, "SHOW_HEADERS": True}}
    if show == "debug":
        settings["SWITCHTRACE"]["SHOW_HEADERS"] = f"{__name__}.only_with_debug_header"
    try:
        response.pause = pause
        with project("none", **settings) as (_asgi, wsgi):
            threads = {
                name: threading.Thread(target=serve, args=(wsgi, name, query, environ), name=name)
                for name, (query, environ, _figures) in (("first", first), ("second", second))
            }
            threads["first"].start()
            assert first_paused.wait(10)
            threads["second"].start()
            for thread in threads.values():
                thread.join(10)
    finally:
        views.paused_response = None
    for name, (_query, _environ, figures) in (("first", first), ("second", second)):
        result = results[name]
        assert isinstance(result, example.Result), (name, result)
        assert result.figures() == figures, name
        if figures is None:
            assert result.headers["Server-Timing"] == OWN, name
            assert not [h for h in result.headers if h.lower().startswith("x-")], name
        else:
            assert result.headers["Server-Timing"] == f"{OWN}, {_ours(figures)}", name
    assert sorted(tuple(vars(record.at_headers).values()) for record in records) == [
        (0, 0, 0, 0),
        SWITCHED,
    ]


@pytest.mark.parametrize(
    ("earlier", "first", "second"),
    [
        # The object carries switchtrace's headers; the second request, not
        # shown them, would take them off.
        ({"HTTP_X_DEBUG": "1"}, {"HTTP_X_DEBUG": "1"}, {}),
        # The object carries none; the second request, shown them, would
        # add them.
        ({}, {}, {"HTTP_X_DEBUG": "1"}),
    ],
    ids=["taken-off", "added"],
)
def test_code_below_the_middleware_iterating_a_shared_responses_headers_is_not_broken(
    earlier, first, second, records
):
    """gthread workers: a view's one response object, returned before; a
    middleware below switchtrace's lists its headers for one request while
    another request runs whole. No header is added to the object or taken
    off it meanwhile (which would make that listing raise 'dictionary
    changed size during iteration', a 500 that the application does not
    have without switchtrace): each request still gets its own headers."""
    import threading

    from .. import views

    views.paused_response = response = views.PausingResponse("shared")
    first_paused, second_done = threading.Event(), threading.Event()
    results = {}

    def pause(index):
        # Only the first request lists the headers until the second is done.
        if threading.current_thread().name == "first" and views.HeaderListingMiddleware.listing:
            if index == 1 and not first_paused.is_set():
                first_paused.set()
                second_done.wait(10)

    def serve(wsgi, name, environ):
        try:
            results[name] = wsgi_request(wsgi, "/paused-shared/", **environ)
        finally:
            if name == "second":
                second_done.set()

    middleware = [MIDDLEWARE_PATH, "tests.views.HeaderListingMiddleware"]
    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    try:
        with project("none", MIDDLEWARE=middleware, SWITCHTRACE=settings) as (_asgi, wsgi):
            results["earlier"] = wsgi_request(wsgi, "/paused-shared/", **earlier)
            response.pause = pause
            threads = {
                name: threading.Thread(target=serve, args=(wsgi, name, environ), name=name)
                for name, environ in (("first", first), ("second", second))
            }
            threads["first"].start()
            assert first_paused.wait(10)
            threads["second"].start()
            for thread in threads.values():
                thread.join(10)
    finally:
        views.paused_response = None
    for name, environ in (("earlier", earlier), ("first", first), ("second", second)):
        assert results[name].status == 200, name
        assert results[name].figures() == ((0, 0, 0, 0) if environ else None), name
    assert len(records) == 3


def test_a_request_reading_a_shared_response_that_a_middleware_above_pared_is_not_broken(
    records,
):
    """gthread workers: the first request to read a view's one response
    object (switchtrace's middleware adds its headers to it) has its
    Server-Timing taken off by a middleware above, which then bridges a
    coroutine and waits; meanwhile a second request returns that object and
    is answered whole, and a third returns it and Django lists its headers.
    The first request's headers are sent while that listing is under way:
    nothing is added to the object then (putting Server-Timing back would
    make the listing raise 'dictionary changed size during iteration', a
    500 the application does not have without switchtrace), and each
    request is sent its own figures."""
    import threading

    from .. import views

    views.paused_response = response = views.PausingResponse("shared")
    stripping = views.ServerTimingStrippingMiddleware
    stripping.paused, stripping.resume = threading.Event(), threading.Event()
    third_listing, first_done = threading.Event(), threading.Event()
    results = {}

    def pause(index):
        if threading.current_thread().name == "third" and index == 1:
            third_listing.set()
            first_done.wait(10)

    def serve(wsgi, name, query):
        try:
            results[name] = wsgi_request(wsgi, "/paused-shared/", query=query)
        except Exception as error:
            results[name] = error
        finally:
            if name == "first":
                first_done.set()

    middleware = ["tests.views.ServerTimingStrippingMiddleware", MIDDLEWARE_PATH]
    try:
        response.pause = pause
        with project("none", MIDDLEWARE=middleware, SWITCHTRACE=NO_SPANS) as (_asgi, wsgi):
            threads = {
                name: threading.Thread(target=serve, args=(wsgi, name, query), name=name)
                for name, query in (("first", "pause"), ("third", ""))
            }
            threads["first"].start()
            assert stripping.paused.wait(10)
            serve(wsgi, "second", "")
            threads["third"].start()
            assert third_listing.wait(10)
            stripping.resume.set()
            for thread in threads.values():
                thread.join(10)
    finally:
        views.paused_response = None
        stripping.paused = stripping.resume = None
    for name, figures in (("first", SWITCHED), ("second", (0, 0, 0, 0)), ("third", (0, 0, 0, 0))):
        result = results[name]
        assert isinstance(result, example.Result), (name, result)
        assert (result.status, result.figures()) == (200, figures), name
        assert result.headers["Server-Timing"] == _ours(figures), name
    assert sorted(tuple(vars(record.at_headers).values()) for record in records) == [
        (0, 0, 0, 0),
        (0, 0, 0, 0),
        SWITCHED,
    ]


@pytest.mark.parametrize(
    ("show", "first", "second"),
    [
        ("debug", ("switch&pause", {}, None), ("", {b"x-debug": b"1"}, (4, 4, 0, 1))),
        ("debug", ("switch&pause", {b"x-debug": b"1"}, (6, 6, 0, 1)), ("", {}, None)),
        (True, ("switch&pause", {}, (6, 6, 0, 1)), ("", {}, (4, 4, 0, 1))),
    ],
    ids=["hidden-then-shown", "shown-then-hidden", "both-shown"],
)
def test_one_response_object_returned_by_two_asgi_tasks_sends_each_its_own_headers(
    show, first, second, records
):
    """Under ASGI, two requests' tasks return a view's one response object;
    the second one runs whole while the first waits in a middleware above
    switchtrace's. Each request is sent its own figures, or none if it is
    not shown them."""
    import asyncio

    from .. import views
    from ..support import asgi_request, run_in_server_loop

    views.paused_response = views.PausingResponse("shared")
    views.paused_response["Server-Timing"] = OWN
    settings = {"SWITCHTRACE": {"ENABLED": True, "SHOW_HEADERS": True}}
    if show == "debug":
        settings["SWITCHTRACE"]["SHOW_HEADERS"] = f"{__name__}.only_with_debug_header"

    async def both(asgi):
        paused = views.PausingAsyncMiddleware.paused = asyncio.Event()
        resume = views.PausingAsyncMiddleware.resume = asyncio.Event()
        query, headers, _figures = first
        waiting = asyncio.ensure_future(
            asgi_request(asgi, "/paused-shared/", query=query, headers=[*headers.items()])
        )
        await asyncio.wait_for(paused.wait(), 10)
        query, headers, _figures = second
        try:
            other = await asgi_request(
                asgi, "/paused-shared/", query=query, headers=[*headers.items()]
            )
        finally:
            resume.set()
        return await waiting, other

    middleware = ["tests.views.PausingAsyncMiddleware", MIDDLEWARE_PATH]
    try:
        with project("none", MIDDLEWARE=middleware, **settings) as (asgi, _wsgi):
            results = run_in_server_loop(both(asgi))
    finally:
        views.paused_response = None
        views.PausingAsyncMiddleware.paused = views.PausingAsyncMiddleware.resume = None
    for (_query, _headers, figures), result in zip((first, second), results, strict=True):
        assert result.figures() == figures
        expected = OWN if figures is None else f"{OWN}, {_ours(figures)}"
        assert result.headers["Server-Timing"] == expected


async def _cancelled_until_ended(request, others, resume):
    """Cancel the request's task until it has ended (a server that keeps
    cancelling a request it gave up on), then let the request's thread go on
    (``resume``) and wait for the tasks it left (not ``others``); whether
    the request's task was cancelled."""
    for _ in range(100):  # until the request's task has ended
        request.cancel()
        await asyncio.wait({request}, timeout=0.05)
        if request.done():
            break
    resume.set()
    # Django 5.0-5.2's tasks outlive the request's: the one that ran the
    # chain finishes now; the one listening for a disconnect never would.
    leftover = asyncio.all_tasks() - others - {asyncio.current_task()}
    for task in leftover:
        if task.get_coro().__name__ == "listen_for_disconnect":
            task.cancel()
    if leftover:
        await asyncio.wait(leftover, timeout=10)
    return request.cancelled()


@pytest.mark.skipif(
    ASGI_THREADS == 1,
    reason="asgiref < 3.12 joins the per-request thread in ThreadSensitiveContext's exit "
    "without awaiting: no cancellation can end the request before that thread is done",
)
def test_a_request_ended_while_its_middleware_runs_in_its_thread_reads_no_headers(
    records, monkeypatch
):
    """Under ASGI with a sync-only middleware below switchtrace's, the chain
    runs in the request's thread. The server cancels the request's task
    (once more while ThreadSensitiveContext's exit awaits that thread: a
    server that keeps cancelling a request it gave up on) while the middleware is
    between its check that the request is still open and its writing on the
    view's one response object: the request ends meanwhile. Its middleware
    then writes nothing on the object, and leaves no reader behind: a later
    request not shown the figures still takes switchtrace's headers off it."""
    import asyncio
    import threading

    from django.http import HttpResponse

    from switchtrace.django_app import integration

    from .. import views
    from ..support import asgi_request, run_in_server_loop

    views.paused_response = response = HttpResponse("shared")
    reached, resume = threading.Event(), threading.Event()
    show = integration.show

    def paused_show(*args, **kwargs):
        if not reached.is_set():
            reached.set()
            resume.wait(10)
        return show(*args, **kwargs)

    monkeypatch.setattr(integration, "show", paused_show)

    async def cancelled(asgi):
        request = asyncio.ensure_future(
            asgi_request(asgi, "/paused-shared/", headers=[(b"x-debug", b"1")])
        )
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert await asyncio.to_thread(reached.wait, 10)
        return await _cancelled_until_ended(request, others, resume)

    middleware = [MIDDLEWARE_PATH, "tests.views.SyncOnlyMiddleware"]
    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    try:
        with project("none", MIDDLEWARE=middleware, SWITCHTRACE=settings) as (asgi, wsgi):
            assert run_in_server_loop(cancelled(asgi))
            hidden = wsgi_request(wsgi, "/paused-shared/")
    finally:
        views.paused_response = None
    assert [record.kind for record in records] == ["asgi", "wsgi"]
    assert hidden.figures() is None
    assert integration._readers.get(response) is None
    assert not [name for name, _value in response.items() if name.startswith("X-")]
    assert "Server-Timing" not in response


@pytest.mark.skipif(
    ASGI_THREADS == 1,
    reason="asgiref < 3.12 joins the per-request thread in ThreadSensitiveContext's exit "
    "without awaiting: no cancellation can end the request before that thread is done",
)
def test_a_request_ended_before_its_thread_resolved_it_keeps_no_route_nor_view(
    records, monkeypatch
):
    """Under ASGI with a sync-only middleware below switchtrace's, the chain
    runs in the request's thread. The server cancels the request's task
    while that middleware has not yet called the rest of the chain: the
    request ends, and its thread then resolves the path and calls the view.
    The ended record (which the span pipeline reads in its own thread) gets
    neither the route nor the view, nor a time the view ran."""
    import asyncio
    import threading

    from switchtrace.django_app import components

    from .. import views
    from ..support import asgi_request, run_in_server_loop

    reached, resume, answered = threading.Event(), threading.Event(), threading.Event()
    call = views.SyncOnlyMiddleware.__call__
    served = []

    def paused_call(self, request):
        reached.set()
        resume.wait(10)
        try:
            served.append(call(self, request))
            return served[-1]
        finally:
            answered.set()

    monkeypatch.setattr(views.SyncOnlyMiddleware, "__call__", paused_call)

    async def cancelled(asgi):
        request = asyncio.ensure_future(asgi_request(asgi, "/sync/"))
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert await asyncio.to_thread(reached.wait, 10)
        cancelled = await _cancelled_until_ended(request, others, resume)
        assert await asyncio.to_thread(answered.wait, 10)
        return cancelled

    middleware = [MIDDLEWARE_PATH, "tests.views.SyncOnlyMiddleware"]
    with project("none", MIDDLEWARE=middleware, SWITCHTRACE=NO_SPANS) as (asgi, _wsgi):
        assert run_in_server_loop(cancelled(asgi))
    # The view did run, in the request's thread, once the request had ended.
    assert [(response.status_code, response.content) for response in served] == [
        (200, b"Hello, world\n")
    ]
    [record] = records
    assert record.kind == "asgi" and record.finished
    assert record.attributes["url.path"] == "/sync/"
    assert "http.route" not in record.attributes
    assert "view" not in record.extra
    assert components.VIEW_RAN not in record.extra


def test_djangos_test_clients_find_the_headers_on_the_response_object():
    """The test clients have no start_response nor send: the response
    object carries the request's headers, or none if it is not shown them,
    the shared one included."""
    import asyncio

    from django.test import AsyncClient, Client

    from switchtrace.testing import record_requests

    from .. import views

    views.paused_response = views.PausingResponse("shared")
    views.paused_response["Server-Timing"] = OWN
    try:
        with (
            project(
                "none",
                SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"},
            ),
            record_requests() as recorded,
        ):
            shown = Client().get("/paused-shared/?switch", HTTP_X_DEBUG="1")
            shown_headers = dict(shown.items())
            hidden = Client().get("/paused-shared/")
            hidden_headers = dict(hidden.items())
            shown_async = asyncio.run(
                AsyncClient().get("/server-timing/", headers={"X-Debug": "1"})
            )
    finally:
        views.paused_response = None
    assert len(recorded) == 3
    # The test Client's async_to_sync: a new loop in a new thread.
    assert shown_headers["X-Context-Switches"] == "2"
    assert shown_headers["Server-Timing"] == f"{OWN}, {_ours(SWITCHED)}"
    assert "X-Context-Switches" not in hidden_headers
    assert hidden_headers["Server-Timing"] == OWN
    # The AsyncClient: request_started and the view, a sync_to_async each.
    async_figures = tuple(vars(recorded[2].at_headers).values())
    assert async_figures[:3] == (4, 4, 0)
    assert shown_async["Server-Timing"] == f"{OWN}, {_ours(async_figures)}"


def test_a_cached_response_the_test_client_gets_without_the_figures_has_none():
    """Stored with the figures of a request shown them, then served from the
    cache to one that is not: the object the test Client checks loses
    switchtrace's headers, Server-Timing with them when it held only
    switchtrace's metrics."""
    from django.test import Client

    from switchtrace.testing import record_requests

    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    with cached_project("client-hidden", SWITCHTRACE=settings), record_requests() as recorded:
        shown = Client().get("/sync/", HTTP_X_DEBUG="1")
        shown_headers = dict(shown.items())
        hidden = Client().get("/sync/")
    assert len(recorded) == 2
    assert shown_headers["X-Context-Switches"] == "0"
    assert shown_headers["Server-Timing"] == _ours((0, 0, 0, 0))
    assert hidden["Expires"] == shown_headers["Expires"]  # the cached copy
    assert not [name for name, _value in hidden.items() if name.lower().startswith("x-")]
    assert "Server-Timing" not in hidden


def test_the_async_test_client_gets_the_figures_of_its_headers_not_of_the_middleware():
    """A 404 under the AsyncClient makes a switch after the middleware chain
    (its logging, in a sync_to_async): the object the AsyncClient checks is
    written again with the figures at the headers, switchtrace's metrics
    where they were, before those of the middleware above."""
    import asyncio

    from django.test import AsyncClient

    from switchtrace.testing import record_requests

    with (
        project("none", MIDDLEWARE=["tests.views.TimingMiddleware", MIDDLEWARE_PATH]),
        record_requests() as recorded,
    ):
        response = asyncio.run(AsyncClient().get("/missing/"))
    [record] = recorded
    assert response.status_code == 404
    # request_started, the sync-only TimingMiddleware (sync_to_async),
    # switchtrace's async middleware under it (async_to_sync),
    # response_for_exception, and the 404's logging after the chain.
    # (Threads: those of executors this process may have started before.)
    figures = tuple(vars(record.at_headers).values())
    assert figures[:3] == (10, 10, 0)
    assert tuple(int(response[name]) for name, *_ in headers_module.HEADERS) == figures
    assert response["Server-Timing"] == f"{_ours(figures)}, app;dur=12"


def test_the_test_client_gets_its_figures_on_an_object_written_again_at_the_headers():
    """A view's one response object, written by switchtrace's middleware
    (no switch yet) and again at the headers (a middleware above it bridged
    a coroutine meanwhile), then given to a request that a middleware above
    switchtrace's answers with it, which made no switch either: the object
    the test Client checks carries that request's figures, not those the
    headers of the one before wrote."""
    from django.http import HttpResponse
    from django.test import Client

    from switchtrace.testing import record_requests

    from .. import views

    views.paused_response = HttpResponse("shared")
    try:
        with (
            project("none", MIDDLEWARE=["tests.views.ShortCircuitMiddleware", MIDDLEWARE_PATH]),
            record_requests() as recorded,
        ):
            bridged = dict(Client().get("/paused-shared/?bridge").items())
            answered = dict(Client().get("/paused-shared/?short").items())
    finally:
        views.paused_response = None
    assert [tuple(vars(record.at_headers).values()) for record in recorded] == [
        SWITCHED,
        (0, 0, 0, 0),
    ]
    assert bridged["Server-Timing"] == _ours(SWITCHED)
    assert answered["Server-Timing"] == _ours((0, 0, 0, 0))
    assert [answered[name] for name, *_ in headers_module.HEADERS] == ["0", "0", "0", "0"]


@pytest.mark.parametrize(
    ("path", "figures", "total"),
    [
        # WsgiToAsgi's sends: the response start, the body (then the
        # Content-Length is reached), the last empty body: one async_to_sync
        # from its thread to the loop each.
        ("/sync/", (0, 0, 0, 0), 6),
        # The view's async_to_sync runs on the server's loop, which the
        # thread WsgiToAsgi runs the application in knows: no new loop.
        ("/async/", (2, 2, 0, 0), 8),
        # The start, three chunks and the last empty body.
        ("/stream/", (0, 0, 0, 0), 10),
    ],
)
def test_a_wsgi_application_served_through_asgirefs_wsgi_to_asgi_ends_its_record(
    path, figures, total, records
):
    """WsgiToAsgi never closes the response: each request's record ends when
    its call returns, after the last body message, and none of it is left
    for the next request."""
    from asgiref.wsgi import WsgiToAsgi

    from ..support import asgi_request, run_in_server_loop

    with project() as (_asgi, wsgi):
        adapted = WsgiToAsgi(wsgi)
        first = run_in_server_loop(asgi_request(adapted, f"{path}?first"))
        [record] = records
        second = run_in_server_loop(asgi_request(adapted, f"{path}?second"))
    assert first.status == second.status == 200
    assert [r.attributes["url.query"] for r in records] == ["first", "second"]
    for record in records:
        assert record.finished
        assert record.at_headers == tracer.Figures(*figures)
        assert record.context_switches == total
    assert tracer.current_record() is None


def test_wsgi_to_asgi_gets_the_servers_send_as_asgiref_would(records):
    """switchtrace hands WsgiToAsgi a send of its own (its last message sent
    outside the request): for a send object whose attributes raise (a lazy
    proxy's), functools.wraps raised out of the application; a send not
    marked async (a callable returning an awaitable) lost asgiref's warning
    about it. Either way the request is served and counted as before."""
    import warnings

    from asgiref.wsgi import WsgiToAsgi

    class Proxy:
        def __init__(self):
            self.sent = []

        async def __call__(self, message):
            self.sent.append(message["type"])

        def __getattr__(self, name):
            if name == "__qualname__":  # (asgiref reads others, with a default)
                raise RuntimeError(f"no {name} here")
            raise AttributeError(name)

    unmarked_sent = []

    def unmarked(message):
        unmarked_sent.append(message["type"])
        return asyncio.sleep(0)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    proxy = Proxy()
    with project() as (_asgi, wsgi), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        for send in (proxy, unmarked):
            run_in_server_loop(WsgiToAsgi(wsgi)(example.http_scope("/sync/"), receive, send))
    body = "http.response.body"
    assert proxy.sent == unmarked_sent == ["http.response.start", body, body]
    # (asgiref's own: a deprecation of another package's is not this test's.)
    assert [str(w.message) for w in warned if "asgiref" in w.filename] == [
        "async_to_sync was passed a non-async-marked callable"
    ]
    assert [record.context_switches for record in records] == [6, 6]


@pytest.mark.parametrize("served", ["while the first's call runs", "once it has returned"])
def test_a_request_started_inside_wsgi_to_asgis_last_send_is_one_of_its_own(served, records):
    """uvicorn starts a connection's next request inside the last send, in a
    task copying that send's context. Through asgiref's WsgiToAsgi, that
    context is the WSGI request's thread's: the next request (here a router's
    thread hop, then Django's WSGI handler in a thread, as Starlette's
    WSGIMiddleware runs it) was counted in the first, and its record taken
    for one of WsgiToAsgi's: ended with the first's call, before the server
    closed its response, or never ended at all."""
    import threading

    from asgiref.wsgi import WsgiToAsgi
    from django.test.client import RequestFactory

    from ..support import run_in_server_loop

    seen = {}
    returned = threading.Event()  # the first request's call

    def serve_directly(wsgi):
        environ = RequestFactory()._base_environ(PATH_INFO="/sync/", REQUEST_METHOD="GET")
        response = wsgi(environ, lambda status, headers, exc_info=None: None)
        body = b"".join(response)
        returned.wait(10)
        seen["finished before its close"] = tracer.current_record().finished
        response.close()
        return body

    async def following(wsgi, first_returned):
        await asyncio.to_thread(lambda: None)  # the router's own work
        if served == "once it has returned":
            await first_returned.wait()
        return await asyncio.to_thread(serve_directly, wsgi)

    async def pipelined(wsgi):
        first_returned = asyncio.Event()
        started = []
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message.get("body", b""))
            if message["type"] == "http.response.body" and not message.get("more_body"):
                started.append(asyncio.create_task(following(wsgi, first_returned)))

        try:
            await WsgiToAsgi(wsgi)(example.http_scope("/sync/"), receive, send)
        finally:
            returned.set()
            first_returned.set()
        return b"".join(sent[1:]), await started[0]

    with project("none") as (_asgi, wsgi):
        bodies = run_in_server_loop(pipelined(wsgi))
    assert bodies == (b"Hello, world\n", b"Hello, world\n")
    assert seen == {"finished before its close": False}
    # WsgiToAsgi's three sends, an async_to_sync each; nothing of the next.
    assert [(r.kind, r.totals(), r.finished) for r in records] == [
        ("wsgi", tracer.Figures(6, 6, 0, 0), True),
        ("wsgi", tracer.Figures(0, 0, 0, 0), True),
    ]


def test_wsgi_to_asgi_keeps_no_record_of_a_response_it_served_before():
    """A response object that outlives its requests (a view's module-level
    response) served through WsgiToAsgi, which never closes it: no finished
    request's record is kept alive by it."""
    import gc
    import weakref

    from asgiref.wsgi import WsgiToAsgi

    from ..support import asgi_request, run_in_server_loop

    finished = []

    def keep(record):
        finished.append(weakref.ref(record))

    tracer.add_listener(keep)
    try:
        with project("none", SWITCHTRACE=NO_SPANS) as (_asgi, wsgi):
            adapted = WsgiToAsgi(wsgi)
            results = [run_in_server_loop(asgi_request(adapted, "/shared/")) for _ in range(3)]
    finally:
        tracer.remove_listener(keep)
    gc.collect()
    assert [result.status for result in results] == [404, 404, 404]
    assert len(finished) == 3
    assert [ref() for ref in finished] == [None, None, None]


def test_wsgi_to_asgi_inside_a_recording_ends_the_requests_record(records):
    """A WSGI application served through WsgiToAsgi in a task that is
    already recording (a block, an ASGI request's task): the request's own
    record ends when the call returns, and the outer one is current again."""
    from asgiref.wsgi import WsgiToAsgi

    from ..support import asgi_request, run_in_server_loop

    async def inside(adapted):
        with tracer.recording() as outer:
            result = await asgi_request(adapted, "/sync/")
            return result, outer, tracer.current_record()

    with project() as (_asgi, wsgi):
        result, outer, current = run_in_server_loop(inside(WsgiToAsgi(wsgi)))
    assert result.status == 200
    assert current is outer
    # The request's, then the block's: WsgiToAsgi's sync_to_async.
    assert [(r.kind, r.context_switches) for r in records] == [("wsgi", 6), ("block", 2)]
    assert records[0].at_headers == tracer.Figures(0, 0, 0, 0)


def test_an_asgi_request_inside_a_recording_is_a_request_of_its_own(records):
    """An ASGI request served in a task that records a block (a block is no
    request being served): it gets a record and figures of its own, and
    the block is current again once the call returns, with none of them."""
    from ..support import asgi_request, run_in_server_loop

    async def inside(asgi):
        with tracer.recording() as outer:
            result = await asgi_request(asgi, "/sync/")
            return result, outer, tracer.current_record()

    with project("none") as (asgi, _wsgi):
        result, outer, current = run_in_server_loop(inside(asgi))
    assert current is outer
    assert result.figures() == (4, 4, 0, 1)
    assert [(r.kind, r.context_switches) for r in records] == [("asgi", 6), ("block", 0)]


def test_a_handlers_get_response_called_inside_a_recording_answers(records):
    """BaseHandler.get_response(_async) called directly in a recorded block
    (no request being served): Django's answer, the block's crossings."""
    from django.test import RequestFactory

    with project("none") as (asgi, wsgi), tracer.recording():
        response = wsgi.get_response(RequestFactory().get("/async-to-sync/"))
        async_response = asyncio.run(asgi.get_response_async(RequestFactory().get("/sync/")))
    assert (response.status_code, response.content) == (200, b"Hello, world\n")
    assert (async_response.status_code, async_response.content) == (200, b"Hello, world\n")
    # Two switches each: the view's three async_to_sync calls, then
    # asyncio.run and the sync view's sync_to_async.
    assert [(r.kind, r.context_switches) for r in records] == [("block", 10)]


def test_djangos_test_client_outside_a_recording_gets_no_figures(records):
    """With switchtrace's patches on, a test Client request that no
    recording follows (no record_requests) is served as without them."""
    from django.test import AsyncClient, Client

    with project("none"):
        response = Client().get("/async-to-sync/")
        async_response = asyncio.run(AsyncClient().get("/sync/"))
    assert (response.status_code, response.content) == (200, b"Hello, world\n")
    assert async_response.status_code == 200
    assert "X-Context-Switches" not in response
    assert "X-Context-Switches" not in async_response
    assert records == []


def test_a_wsgi_request_after_wsgi_to_asgi_in_the_same_task_ends_at_its_close(records):
    """A task that served a request through asgiref's WsgiToAsgi, then calls
    the WSGI application itself: that request is not WsgiToAsgi's, and its
    record ends when its response is closed."""
    from asgiref.wsgi import WsgiToAsgi

    from ..support import asgi_request, run_in_server_loop

    async def both(wsgi):
        adapted = await asgi_request(WsgiToAsgi(wsgi), "/sync/")
        return adapted, wsgi_request(wsgi, "/sync/"), tracer.current_record()

    with project("none") as (_asgi, wsgi):
        adapted, direct, current = run_in_server_loop(both(wsgi))
    assert (adapted.status, direct.figures(), current) == (200, (0, 0, 0, 0), None)
    # WsgiToAsgi's three sends, an async_to_sync each; none for the other.
    assert [(r.kind, r.context_switches, r.finished) for r in records] == [
        ("wsgi", 6, True),
        ("wsgi", 0, True),
    ]


def test_an_asgi_scope_without_a_scheme_is_an_http_request(records):
    """The ASGI specification makes ``scheme`` optional, "http" by default:
    a request whose scope has none has the url.scheme "http"."""

    with project("none") as (asgi, _wsgi):

        async def without_scheme(scope, receive, send):
            del scope["scheme"]
            return await asgi(scope, receive, send)

        result = run_asgi(without_scheme, "/sync/")
    assert result.status == 200
    [record] = records
    assert (record.attributes["url.scheme"], record.attributes["url.path"]) == ("http", "/sync/")


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_an_asgi_scope_other_than_http_makes_no_record(scope_type, records):
    """ASGI servers call the application with a lifespan scope at startup
    (uvicorn's default): Django refuses it, as without switchtrace, and no
    request is recorded."""
    from ..support import run_in_server_loop

    async def receive():
        return {"type": f"{scope_type}.startup"}

    async def send(message):
        pass

    with project("none") as (asgi, _wsgi):
        with pytest.raises(ValueError) as refused:
            run_in_server_loop(asgi({"type": scope_type}, receive, send))
    assert str(refused.value) == (
        f"Django can only handle ASGI/HTTP connections, not {scope_type}."
    )
    assert records == []


def _uwsgis_file_wrapper(filelike, block_size=None):
    # uWSGI's (C): sends the file itself, and gives it back as the body.
    return filelike


class _AnsweringWrapper:
    """A server's wrapper answering any attribute it does not have by
    raising (a proxy's): whether it has a status was not asked safely."""

    def __init__(self, filelike, block_size=8192):
        self._file, self._size = filelike, block_size

    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")

    def __iter__(self):
        return iter(lambda: self._file.read(self._size), b"")

    def close(self):
        self._file.close()


class _SlottedWrapper:
    __slots__ = ("_file",)

    def __init__(self, filelike, block_size=8192):
        self._file = filelike

    def __iter__(self):
        return iter(lambda: self._file.read(8192), b"")

    def close(self):
        self._file.close()


_SlottedWrapper.__slots__ = None  # (what a class says of itself after it is made)


@pytest.mark.parametrize(
    "file_wrapper", [None, "wsgiref", "waitress", "uwsgi", "answering", "slots-replaced"]
)
def test_a_static_file_served_by_runservers_handler_ends_its_record(
    records, tmp_path, file_wrapper
):
    """django.contrib.staticfiles' WSGI handler answers with its own
    get_response: the record still ends when the server closes the response.
    Given a server's wsgi.file_wrapper (runserver's, wsgiref's), Django
    returns the wrapper of the file, not the response: asked whether it
    carried switchtrace's header, the wrapper was read through, and
    runserver sent every static file with an empty body. waitress's wrapper
    holds the file as ``file``, not ``filelike``, and uWSGI gives the file
    back: the record ended only with the next request on the thread,
    without a status, and the last one's spans were never made."""
    from wsgiref.util import FileWrapper

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from waitress.buffers import ReadOnlyFileBasedBuffer

    (tmp_path / "a.txt").write_text("static\n")
    wrappers = {
        "wsgiref": FileWrapper,
        "waitress": ReadOnlyFileBasedBuffer,
        "uwsgi": _uwsgis_file_wrapper,
        "answering": _AnsweringWrapper,
        "slots-replaced": _SlottedWrapper,
    }
    environ = {"wsgi.file_wrapper": wrappers[file_wrapper]} if file_wrapper else {}
    with project(DEBUG=True, STATIC_URL="/static/", STATICFILES_DIRS=[str(tmp_path)]) as (
        _asgi,
        wsgi,
    ):
        result = wsgi_request(StaticFilesHandler(wsgi), "/static/a.txt", **environ)
        assert tracer.current_record() is None
    assert (result.status, result.body) == (200, b"static\n")
    [record] = records
    assert record.finished
    assert record.attributes["url.path"] == "/static/a.txt"
    assert record.attributes["http.response.status_code"] == 200
    assert record.at_headers == tracer.Figures(0, 0, 0, 0)


def test_static_files_served_by_the_asgi_static_files_handler(records, tmp_path):
    """django.contrib.staticfiles' ASGI handler (daphne's runserver, or an
    asgi.py that wraps the application in it to serve static files under
    uvicorn) answers a static file before the middleware: no headers, a
    record of its own. It serves the file in sync_to_async and reads it whole
    in one more after the headers; a file it does not have is Django's
    response_for_exception, in sync_to_async too. Any other path goes to the
    application, whose figures are the same as without it."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from .test_components import SIGNAL, described

    (tmp_path / "a.txt").write_text("static\n")
    with project(DEBUG=True, STATIC_URL="/static/", STATICFILES_DIRS=[str(tmp_path)]) as (
        asgi,
        _wsgi,
    ):
        handler = ASGIStaticFilesHandler(asgi)
        served = [run_asgi(handler, "/static/a.txt") for _ in range(2)]
        missing = run_asgi(handler, "/static/missing.txt")
        passed_on = run_asgi(handler, "/sync/")
        since = served[0].headers["Last-Modified"].encode()
        headers = [(b"host", b"testserver"), (b"if-modified-since", since)]
        unmodified = run_in_server_loop(asgi_request(handler, "/static/a.txt", headers))
    assert [(r.status, r.body, r.figures()) for r in served] == [(200, b"static\n", None)] * 2
    assert (unmodified.status, unmodified.body, unmodified.figures()) == (304, b"", None)
    assert (missing.status, missing.figures()) == (404, None)
    sync_headers, sync_total = EXPECTED["asgi", "/sync/", "shipped"]
    assert (passed_on.status, passed_on.figures()) == (200, sync_headers)
    *served_records, missing_record, passed_on_record, unmodified_record = records
    request_started = ("sync_to_async", SIGNAL, "signal", "request_started", True)
    read = "ASGIStaticFilesHandler.get_response_async"
    serve = (
        "sync_to_async",
        "StaticFilesHandlerMixin.serve",
        "handler",
        "ASGIStaticFilesHandler.serve",
        True,
    )
    for record in served_records:
        assert record.finished
        assert record.attributes["url.path"] == "/static/a.txt"
        at_headers = record.at_headers
        assert (at_headers.context_switches, at_headers.thread_hops) == (4, 4)
        assert (at_headers.event_loops_created, record.context_switches) == (0, 8)
        assert described(record) == [
            request_started,
            serve,
            ("sync_to_async", "list", "handler", read, False),
            ("sync_to_async", "HttpResponseBase.close", "response", "FileResponse.close", False),
        ]
    assert described(missing_record) == [
        request_started,
        serve,
        ("sync_to_async", "response_for_exception", "handler", "response_for_exception", True),
        (
            "sync_to_async",
            "HttpResponseBase.close",
            "response",
            "HttpResponseNotFound.close",
            False,
        ),
    ]
    assert passed_on_record.context_switches == sync_total
    # A 304 has no body to read: 6 switches, 4 before the headers.
    assert (unmodified_record.at_headers.context_switches, unmodified_record.context_switches) == (
        4,
        6,
    )
    assert described(unmodified_record) == [
        request_started,
        serve,
        (
            "sync_to_async",
            "HttpResponseBase.close",
            "response",
            "HttpResponseNotModified.close",
            False,
        ),
    ]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ('switchtrace-switches;desc="Context switches: 2"', None),
        (
            'app;desc="a, switchtrace-hops;b", switchtrace-hops;desc="Thread hops: 2"',
            'app;desc="a, switchtrace-hops;b"',
        ),
        (
            'x;desc="say \\"hi, switchtrace-loops;\\"",switchtrace-loops , y;dur=1',
            'x;desc="say \\"hi, switchtrace-loops;\\"", y;dur=1',
        ),
        ('db;dur=53;desc="Database"', 'db;dur=53;desc="Database"'),
        # An empty metric first (a value built as f"{before}, {metric}").
        (', switchtrace-hops;desc="Thread hops: 2", app;dur=1', "app;dur=1"),
        # A backslash outside a quoted string escapes nothing.
        ("app;desc=C:\\,switchtrace-loops", "app;desc=C:\\"),
        # A quote never closed quotes nothing.
        ('db;desc="unclosed, switchtrace-hops;desc="Thread hops: 2"', 'db;desc="unclosed'),
        ('a;desc="b\\", switchtrace-loops, c', 'a;desc="b\\", c'),
        (None, None),
    ],
)
def test_only_switchtrace_metrics_are_taken_out_of_a_cached_server_timing(value, kept):
    assert headers_module._with_ours(value, None) == kept


def only_with_debug_header(request):
    return request.headers.get("X-Debug") == "1"


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_show_headers_decides_who_gets_them(server, records, caplog):
    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": False}) as handlers,
    ):
        assert serve(server, handlers, "/sync/").figures() is None
    assert caplog.records == []  # (False is a decision, not a callable that failed)
    with project(
        SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    ) as handlers:
        assert serve(server, handlers, "/sync/").figures() is None
        asgi, wsgi = handlers
        if server == "wsgi":
            shown = wsgi_request(wsgi, "/sync/", HTTP_X_DEBUG="1")
        else:
            from asyncio import run

            from ..support import asgi_request

            shown = run(asgi_request(asgi, "/sync/", headers=[(b"x-debug", b"1")]))
        assert shown.figures() == EXPECTED[server, "/sync/", "shipped"][0]
    # Every request was still recorded, headers or not.
    assert len(records) == 3


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", ["/sync/", "/async/"])
def test_show_headers_to_internal_ips(server, path, records):
    """The ready-made callable, on the sync and the async path: the servers'
    client is 127.0.0.1."""
    show = {"ENABLED": True, "SHOW_HEADERS": "switchtrace.django_app.headers.internal_ips"}
    with project(SWITCHTRACE=show, INTERNAL_IPS=["127.0.0.1"]) as handlers:
        shown = serve(server, handlers, path)
    with project(SWITCHTRACE=show, INTERNAL_IPS=["10.0.0.1"]) as handlers:
        hidden = serve(server, handlers, path)
    assert shown.figures() == EXPECTED[server, path, "shipped"][0]
    assert hidden.figures() is None
    # Recorded alike, the callable costing no switch.
    assert [tuple(vars(record.at_headers).values()) for record in records] == [
        shown.figures(),
        shown.figures(),
    ]


def test_internal_ips_reads_the_address_the_server_gave_not_a_forwarding_header():
    """A client's own X-Forwarded-For names any address it likes."""
    from django.test import RequestFactory, override_settings

    from switchtrace.django_app.headers import internal_ips

    factory = RequestFactory()
    with override_settings(INTERNAL_IPS=["127.0.0.1"]):
        assert [
            internal_ips(factory.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded))
            for remote, forwarded in (
                ("10.0.0.9", "127.0.0.1"),
                ("127.0.0.1", "10.0.0.9"),
            )
        ] == [False, True]


def test_a_request_in_a_context_copied_from_a_finished_one_gets_none_of_its_figures():
    """A task a request spawned, still running after it, making a request
    through the test client (which no handler of switchtrace's serves): the
    finished record is current there, and its figures were not this one's."""
    import contextvars

    from django.test import Client

    with tracer.recording() as record:
        context = contextvars.copy_context()
    assert record.finished
    response = context.run(Client().get, "/sync/")
    assert response.status_code == 200
    assert "X-Context-Switches" not in response
    assert "Server-Timing" not in response


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", ["/sync/", "/async/", "/async-to-sync/", "/asyncio-run/"])
def test_the_middleware_adds_no_switch_of_its_own(server, path, records):
    with project(with_switchtrace_middleware=True) as handlers:
        with_middleware = serve(server, handlers, path)
    with project(with_switchtrace_middleware=False) as handlers:
        without = serve(server, handlers, path)
    assert with_middleware.figures() is not None
    assert without.figures() is None
    assert with_middleware.body == without.body
    first, second = records
    assert first.totals() == second.totals()
    assert first.at_headers == second.at_headers


def test_work_after_the_response_started_is_in_the_record_not_the_headers(records):
    """A 404 under ASGI: Django logs it with a sync_to_async after the
    middleware chain, before the headers; the handler stamps again there."""
    with project() as handlers:
        result = serve("asgi", handlers, "/missing/")
    assert result.status == 404
    [record] = records
    assert result.figures() == tuple(vars(record.at_headers).values())
    assert record.at_headers.context_switches == record.context_switches - 2
    logged = [c for c in record.crossings if c.func.__name__ == "log_response"]
    assert len(logged) == 1 and logged[0].before_headers


def test_a_view_exception_still_closes_the_record(records):
    with project() as handlers:
        assert serve("asgi", handlers, "/raise/").status == 500
        assert serve("wsgi", handlers, "/raise/").status == 500
    assert [r.finished for r in records] == [True, True]
    assert records[1].context_switches == 0


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_bookkeeping_error_is_logged_once_and_the_request_goes_on(
    server, swallowed, caplog, monkeypatch
):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("switchtrace bug")

    monkeypatch.setattr(headers_module, "_write", broken)
    guard.reset_reported()
    with caplog.at_level(logging.ERROR, logger="switchtrace"), project() as handlers:
        first = serve(server, handlers, "/sync/")
        second = serve(server, handlers, "/sync/")
    assert (first.status, first.body) == (second.status, second.body) == (200, b"Hello, world\n")
    assert first.figures() is None
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: internal error in SwitchTraceMiddleware (logged once; the request goes "
        "on untouched)"
    ]
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("SwitchTraceMiddleware", ZeroDivisionError)
    ] * 2
    swallowed.clear()


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_bookkeeping_error_noting_the_server_span_is_reported_and_the_request_goes_on(
    server, swallowed, monkeypatch, records
):
    """Noting the application's server span failing (the span pipeline's
    capture raises) where the handler receives the request and again in
    the middleware (where one a middleware above started is noted): each
    swallowed there, said where, and the request goes on as without it,
    its headers shown."""
    from switchtrace.exporters.pipeline import SpanPipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("switchtrace bug")

    monkeypatch.setattr(SpanPipeline, "capture", broken)
    with project() as handlers:
        result = serve(server, handlers, "/sync/")
    assert (result.status, result.body) == (200, b"Hello, world\n")
    assert result.figures() == EXPECTED[server, "/sync/", "shipped"][0]
    assert [record.finished for record in records] == [True]
    assert [(where, type(exc)) for where, exc in swallowed] == [
        (f"{server.upper()} request attributes", ZeroDivisionError),
        ("SwitchTraceMiddleware", ZeroDivisionError),
    ]
    swallowed.clear()


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("noting", "where"),
    [
        ("components.remember_adapter", "adapt_method_mode"),
        ("components.remember_view", "resolve_request"),
        ("components.view_started", "make_view_atomic"),
        ("components.view_ended", "view end"),
        ("integration._unread", "headers read"),
    ],
)
def test_a_bookkeeping_error_of_the_handler_integration_is_reported_and_the_request_goes_on(
    server, noting, where, swallowed, monkeypatch, records
):
    """Noting which middleware an adapter serves (as the handlers are built),
    which view the request resolved to, when the view started or ended, or
    that Django has read the response's headers (the count of requests
    reading them going down), failing: each swallowed and said where, and
    the request goes on as without it, its headers shown."""
    from switchtrace.django_app import components, integration

    def broken(*args, **kwargs):
        raise ZeroDivisionError("switchtrace bug")

    module, name = noting.split(".")
    monkeypatch.setattr(
        {"components": components, "integration": integration}[module], name, broken
    )
    with project() as handlers:
        result = serve(server, handlers, "/sync/")
    assert (result.status, result.body) == (200, b"Hello, world\n")
    assert result.figures() == EXPECTED[server, "/sync/", "shipped"][0]
    assert [record.finished for record in records] == [True]
    assert [(where, type(exc)) for where, exc in swallowed] == [(where, ZeroDivisionError)]
    swallowed.clear()


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_show_callback_that_raises_hides_the_headers(server, caplog):
    """The project's callable raising is its error, said so once, not an
    internal error of switchtrace's."""

    def show(request):
        raise KeyError("app bug in the callback")

    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": show}) as handlers,
    ):
        first = serve(server, handlers, "/sync/")
        second = serve(server, handlers, "/sync/")
    assert (first.status, second.status) == (200, 200)
    assert first.figures() is second.figures() is None
    [logged] = caplog.records
    assert logged.getMessage() == (
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (tests.django_app.test_middleware."
        "test_a_show_callback_that_raises_hides_the_headers.<locals>.show) raised KeyError: "
        "'app bug in the callback'; the request gets no headers (logged once)"
    )
    assert type(logged.exc_info[1]) is KeyError


def served_with_show(show, server, caplog):
    """One /sync/ request with SHOW_HEADERS = show: the result, and what the
    switchtrace logger said (ERROR and above)."""
    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": show}) as handlers,
    ):
        result = serve(server, handlers, "/sync/")
    return result, [r.getMessage() for r in caplog.records]


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


class _Verdict:
    def __init__(self, exc):
        self.exc = exc

    def __bool__(self):
        raise self.exc

    def __repr__(self):
        return "<Verdict>"


UNPRINTABLE = "(its message cannot be shown: str() raises)"


@pytest.mark.parametrize(
    ("server", "returned", "what"),
    [
        # Its result's bool() raising (a numpy array's "truth value ... is
        # ambiguous") was logged as the callable's own error: "(...) raised
        # ValueError" (found fuzzing SHOW_HEADERS).
        (
            "wsgi",
            _Verdict(ValueError("ambiguous")),
            "returned <Verdict>, whose truth value raised ValueError: ambiguous; allowed: "
            "True or False",
        ),
        # An exception of the project's whose __str__ raises: writing its
        # message raised in switchtrace's middleware, and the request was
        # taken for an internal error of switchtrace's (swallowed, logged so).
        (
            "asgi",
            _Verdict(_Unprintable()),
            f"returned <Verdict>, whose truth value raised _Unprintable: {UNPRINTABLE}; "
            "allowed: True or False",
        ),
        ("asgi", _Unprintable(), f"raised _Unprintable: {UNPRINTABLE}"),
    ],
)
def test_a_show_callback_failing_is_named_for_what_failed(server, returned, what, caplog):
    def show(request):
        if isinstance(returned, Exception):
            raise returned
        return returned

    result, logged = served_with_show(show, server, caplog)
    assert (result.status, result.figures()) == (200, None)
    assert logged == [
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (tests.django_app.test_middleware."
        "test_a_show_callback_failing_is_named_for_what_failed.<locals>."
        f"show) {what}; the request gets no headers (logged once)"
    ]


class _Awaitable:
    def __await__(self):
        return iter(())


def test_a_show_callback_returning_awaitables_of_two_kinds_is_logged_once(caplog):
    """Once for an awaitable, as the README says: it was logged once for
    each type of awaitable (a coroutine, then another awaitable object), as
    for each exception class (found fuzzing SHOW_HEADERS)."""
    returned = []

    async def decide(request):
        return True

    def show(request):
        returned.append(decide(request) if len(returned) % 2 == 0 else _Awaitable())
        return returned[-1]

    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": show}) as handlers,
    ):
        results = [serve("wsgi", handlers, "/sync/") for _ in range(4)]
    assert [type(value).__name__ for value in returned] == ["coroutine", "_Awaitable"] * 2
    assert [result.figures() for result in results] == [None] * 4
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (tests.django_app.test_middleware."
        "test_a_show_callback_returning_awaitables_of_two_kinds_is_logged_once.<locals>.show) "
        "returned an awaitable; allowed: True or False; the request gets no headers (logged once)"
    ]


def test_the_middleware_outside_a_recorded_request_leaves_the_response_alone(records):
    """Called where no request is recorded (a test's RequestFactory, a
    handler switchtrace does not serve), in either mode: the view's response,
    untouched."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from switchtrace.django_app.middleware import SwitchTraceMiddleware

    response = HttpResponse("x")

    async def aget_response(request):
        return response

    request = RequestFactory().get("/sync/")
    assert SwitchTraceMiddleware(lambda request: response)(request) is response
    assert asyncio.run(SwitchTraceMiddleware(aget_response)(request)) is response
    assert dict(response.headers) == {"Content-Type": "text/html; charset=utf-8"}
    assert records == []


def test_a_show_callable_object_that_raises_is_named_by_its_repr(caplog):
    class Show:
        def __call__(self, request):
            raise KeyError("app bug in the callback")

        def __repr__(self):
            return "<Show>"

    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": Show()}) as handlers,
    ):
        result = serve("wsgi", handlers, "/sync/")
    assert result.figures() is None
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (<Show>) raised KeyError: "
        "'app bug in the callback'; the request gets no headers (logged once)"
    ]


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_show_callback_returning_an_awaitable_hides_the_headers(server, caplog):
    """A plain function that returns a coroutine passes the checks; its
    result must not count as True (the coroutine is closed, never awaited)."""
    import warnings

    async def decide(request):
        return False

    def show(request):
        return decide(request)

    with warnings.catch_warnings(), caplog.at_level(logging.ERROR, logger="switchtrace"):
        warnings.simplefilter("error")  # "coroutine ... was never awaited"
        with project(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": show}) as handlers:
            result = serve(server, handlers, "/sync/")
    assert result.status == 200
    assert result.figures() is None
    assert [r.getMessage() for r in caplog.records] == [
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (tests.django_app.test_middleware."
        "test_a_show_callback_returning_an_awaitable_hides_the_headers.<locals>.show) returned "
        "an awaitable; allowed: True or False; the request gets no headers (logged once)"
    ]


_MISSING_APP = (
    "switchtrace disabled: SwitchTraceMiddleware is in MIDDLEWARE but "
    "'switchtrace.django_app' is not in INSTALLED_APPS, so nothing is recorded and no "
    "response carries the headers. Add 'switchtrace.django_app' to INSTALLED_APPS."
)
# With "switchtrace" in its place, adding the app beside it would stop Django
# (two apps labelled switchtrace): what `manage.py check` says, E011 and its
# hint to replace the entry, as the README promises.
_MISNAMED_APP = (
    "switchtrace disabled: INSTALLED_APPS has 'switchtrace', which is not switchtrace's "
    "Django app: nothing is recorded and no header is added. (switchtrace.E011) "
    "Replace 'switchtrace' with 'switchtrace.django_app' in INSTALLED_APPS."
)


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("instead", "message"), [(None, _MISSING_APP), ("switchtrace", _MISNAMED_APP)]
)
def test_the_middleware_without_the_app_says_so(server, instead, message, caplog, monkeypatch):
    """Without 'switchtrace.django_app' in INSTALLED_APPS nothing is patched
    in a project (its ready() does that) and no check runs: the middleware
    says so when the first handler is built (once: Django builds one for
    every test client too), and removes itself. With ``"switchtrace"``
    instead, it logs E011: its advice had been to add the app, beside that
    entry, and Django then refused to start."""
    from django.conf import settings

    from switchtrace.django_app import middleware

    monkeypatch.setattr(middleware, "_missing_app_told", False)

    apps = [app for app in settings.INSTALLED_APPS if app != "switchtrace.django_app"]
    if instead is not None:
        apps.append(instead)
    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(INSTALLED_APPS=apps) as handlers,
    ):
        result = serve(server, handlers, "/sync/")
    assert (result.status, result.body) == (200, b"Hello, world\n")
    assert result.figures() is None
    # Not one per handler built (ASGIHandler and WSGIHandler here).
    assert [r.getMessage() for r in caplog.records] == [message]


class ProjectSwitchTraceConfig(SwitchTraceConfig):
    """A project's own config of the app, listed in INSTALLED_APPS."""


@pytest.mark.parametrize(
    "entry",
    [
        "switchtrace.django_app",
        "switchtrace.django_app.apps.SwitchTraceConfig",
        f"{__name__}.ProjectSwitchTraceConfig",
    ],
)
def test_the_app_left_out_of_a_test_cases_available_apps_is_still_installed(
    entry, caplog, monkeypatch
):
    """A TransactionTestCase's ``available_apps`` narrows apps.is_installed()
    to the apps it names, during its tests: the middleware logged that the
    app was missing ("nothing is recorded", an ERROR) and removed itself,
    its responses without the headers, while switchtrace recorded every
    request all the same. The app listed by its config class too, or by a
    project's subclass of it."""
    from django.apps import apps
    from django.conf import settings
    from django.test import override_settings

    from switchtrace.django_app import middleware

    monkeypatch.setattr(middleware, "_missing_app_told", False)
    installed = [
        app if app != "switchtrace.django_app" else entry for app in settings.INSTALLED_APPS
    ]
    with override_settings(INSTALLED_APPS=installed):
        apps.set_available_apps(["django.contrib.auth", "django.contrib.contenttypes"])
        try:
            with caplog.at_level(logging.ERROR, logger="switchtrace"), project() as handlers:
                result = serve("wsgi", handlers, "/sync/")
        finally:
            apps.unset_available_apps()
    assert result.figures() == (0, 0, 0, 0)
    assert caplog.records == []


_TYPO = (
    "switchtrace disabled: Unknown key 'SHOW_HEADER' in the SWITCHTRACE setting. "
    "(switchtrace.E002) Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, "
    "MAX_EVENTS, OTLP_ENDPOINT, OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, "
    "SHOW_HEADERS."
)
_NOT_A_BOOL = (
    "switchtrace disabled: SWITCHTRACE['ENABLED'] is 'yes', which is not allowed. "
    "(switchtrace.E003) Allowed: True or False."
)


@pytest.mark.parametrize(
    ("switchtrace", "said"),
    [
        ({"ENABLED": True, "SHOW_HEADER": False}, [_TYPO, _MISSING_APP]),  # E002
        ({"ENABLED": "yes"}, [_NOT_A_BOOL, _MISSING_APP]),  # E003
        ({"ENABLED": False, "SHOW_HEADER": False}, [_TYPO]),  # turned off
    ],
)
def test_the_middleware_without_the_app_says_so_whatever_else_is_wrong(
    switchtrace, said, caplog, monkeypatch
):
    """A setting with a problem keeps switchtrace disabled, which the app's
    checks say; without the app, nothing said either: the middleware
    removed itself in silence. It says the app is missing (the checks tell
    the rest once it is there), unless the setting turns switchtrace off.
    (Here the suite's own app, installed in this process, logs the problem
    first, as a server does not: without the app, the missing app is all
    it says.)"""
    from django.conf import settings

    from switchtrace.django_app import middleware

    monkeypatch.setattr(middleware, "_missing_app_told", False)
    apps = [app for app in settings.INSTALLED_APPS if app != "switchtrace.django_app"]
    with (
        caplog.at_level(logging.ERROR, logger="switchtrace"),
        project(INSTALLED_APPS=apps, SWITCHTRACE=switchtrace) as (_asgi, wsgi),
    ):
        assert wsgi_request(wsgi, "/sync/").figures() is None
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == said


def test_the_middleware_removes_itself_while_disabled():
    with project(SWITCHTRACE={"ENABLED": False}) as (asgi, wsgi):
        assert not tracer.installed()
        assert wsgi_request(wsgi, "/sync/").figures() is None
        assert run_asgi(asgi, "/sync/").figures() is None
    assert tracer.installed()


OURS = [
    ("X-Context-Switches", "30"),
    ("X-Thread-Hops", "30"),
    ("X-Event-Loops", "0"),
    ("X-Threads-Started", "1"),
]
OUR_METRICS = (
    'switchtrace-switches;desc="Context switches: 30", '
    'switchtrace-hops;desc="Thread hops: 30", '
    'switchtrace-loops;desc="Event loops created: 0", '
    'switchtrace-threads;desc="Threads started: 1"'
)


@pytest.mark.parametrize(
    ("sent", "carries"),
    [
        # What the response object carried for this request: sent as it is.
        ([("Content-Type", "text/plain"), *OURS, ("Server-Timing", OUR_METRICS)], True),
        ([*OURS, ("Server-Timing", f"app;dur=1, {OUR_METRICS}"), ("Vary", "Cookie")], True),
        ([*[(n.lower(), v) for n, v in OURS], ("server-timing", OUR_METRICS)], True),
        # Anything else goes through the rewrite.
        ([*OURS[:3], ("X-Threads-Started", "2"), ("Server-Timing", OUR_METRICS)], False),
        ([*OURS, ("Server-Timing", OUR_METRICS.replace("30", "32", 1))], False),
        ([*OURS, *OURS[:1], ("Server-Timing", OUR_METRICS)], False),
        ([*OURS[:3], ("Server-Timing", OUR_METRICS)], False),
        ([*OURS], False),
        ([*OURS, ("Server-Timing", "app;dur=1"), ("Server-Timing", OUR_METRICS)], False),
        (
            [*OURS, ("Server-Timing", f'switchtrace-hops;desc="Thread hops: 2", {OUR_METRICS}')],
            False,
        ),
    ],
)
def test_headers_that_carry_the_figures_already_are_sent_as_they_are(sent, carries):
    figures = tracer.Figures(30, 30, 0, 1)
    assert headers_module.carries(sent, figures) is carries
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in sent]
    assert headers_module.carries(encoded, figures, encoded=True) is carries
    if carries:
        # What the rewrite, which parses Server-Timing, would have sent.
        assert headers_module.rewritten(sent, figures) == sent


def test_the_figures_rendered_as_headers_are_kept_for_a_bounded_number_of_figures():
    """Rendered figures are kept for the next request with the same figures,
    for at most _RENDERED_KEPT different ones, and read the same from the
    cache as freshly rendered."""
    from django.http import HttpResponse

    headers_module._rendered_by_figures.clear()
    # Two figures rendered for each n: full after KEPT // 2 of them.
    for n in range(headers_module._RENDERED_KEPT // 2 + 10):
        figures = tracer.Figures(n, n, 0, 1)
        for _ in range(2):  # rendered, then read back
            response = HttpResponse()
            headers_module.stamp(response, figures)
            assert response["X-Context-Switches"] == str(n)
            assert response["Server-Timing"] == OUR_METRICS.replace("30", str(n))
            sent = [*response.items()]
            assert headers_module.carries(sent, figures) is True
            assert headers_module.carries(sent, tracer.Figures(n, n, 0, 2)) is False
        assert len(headers_module._rendered_by_figures) <= headers_module._RENDERED_KEPT
    # Emptied once full, then filled again with the figures met since.
    assert len(headers_module._rendered_by_figures) == 10 * 2
    # Full at _RENDERED_KEPT exactly: the next figures empty it first.
    headers_module._rendered_by_figures.clear()
    for n in range(headers_module._RENDERED_KEPT):
        headers_module._rendered(tracer.Figures(n, 0, 0, 0))
    assert len(headers_module._rendered_by_figures) == headers_module._RENDERED_KEPT
    headers_module._rendered(tracer.Figures(-1, 0, 0, 0))
    assert [*headers_module._rendered_by_figures] == [tracer.Figures(-1, 0, 0, 0)]


@pytest.mark.parametrize(
    ("headers", "figures", "sent"),
    [
        # Figures for a list without any of switchtrace's: after the others.
        (
            [("Content-Type", "text/plain")],
            (30, 30, 0, 1),
            [("Content-Type", "text/plain"), *OURS, ("Server-Timing", OUR_METRICS)],
        ),
        # Figures where others were, once each, in the case found; the
        # application's metrics first.
        (
            [
                ("x-context-switches", "2"),
                ("Server-Timing", 'app;dur=1, switchtrace-hops;desc="Thread hops: 2"'),
                ("X-Context-Switches", "3"),
                ("Vary", "Cookie"),
            ],
            (30, 30, 0, 1),
            [
                ("x-context-switches", "30"),
                ("Server-Timing", f"app;dur=1, {OUR_METRICS}"),
                ("Vary", "Cookie"),
                *OURS[1:],
            ],
        ),
        # None: switchtrace's headers taken out, the application's metrics
        # kept, and no Server-Timing where there was none.
        (
            [("X-Context-Switches", "3"), ("Content-Type", "text/plain"), ("X-Thread-Hops", "3")],
            None,
            [("Content-Type", "text/plain")],
        ),
        (
            [*OURS, ("Server-Timing", f"{OUR_METRICS}, app;dur=1")],
            None,
            [("Server-Timing", "app;dur=1")],
        ),
        ([*OURS, ("Server-Timing", OUR_METRICS)], None, []),
    ],
)
def test_the_rewrite_sends_the_requests_figures_or_none(headers, figures, sent):
    if figures is not None:
        figures = tracer.Figures(*figures)
    assert headers_module.rewritten(headers, figures) == sent


def test_headers_told_to_carry_the_figures_are_what_the_rewrite_would_send():
    """carries() against rewritten() over generated header lists: names in
    any case, ours missing, repeated or with other values, Server-Timing
    with the application's metrics, stale ones of ours or none, once or
    twice. Whenever carries() says the list can go as it is, the rewrite
    would send that very list (str pairs, as under WSGI, and bytes pairs,
    as under ASGI, told alike)."""
    rng = random.Random(9813600)
    names = [header for header, _field, _metric, _label in headers_module.HEADERS]
    app_metrics = [
        "app;dur=1",
        'db;desc="a, b"',
        "cache",
        'q;desc="x\\"y"',
        "sw;desc=switchtrace-x",
    ]

    def figures() -> tracer.Figures:
        return tracer.Figures(*(rng.randint(0, 3) for _ in range(4)))

    def cased(name: str) -> str:
        return "".join(rng.choice((c.lower(), c.upper())) for c in name)

    told = {True: 0, False: 0}
    for _ in range(4000):
        mine = figures()
        values = dict(headers_module._rendered(mine).values)
        sent = [
            (cased(name), values[name] if rng.random() < 0.9 else str(rng.randint(0, 3)))
            for name in names
            for _ in range(rng.choice((0, 1, 1, 1, 1, 2)))
        ]
        for _ in range(rng.choice((0, 1, 1, 1, 2))):
            metrics = rng.sample(app_metrics, rng.randint(0, 2))
            if rng.random() < 0.2:  # stale ones of ours, where they were
                stale = headers_module._rendered(figures()).metrics.split(", ")
                metrics[rng.randint(0, len(metrics)) : 0] = rng.sample(stale, rng.randint(1, 4))
            if rng.random() < 0.9:
                metrics.append(
                    headers_module._rendered(mine if rng.random() < 0.8 else figures()).metrics
                )
            sent.append((cased("Server-Timing"), ", ".join(metrics)))
        sent += [("Content-Type", "text/plain")] * rng.randint(0, 2)
        rng.shuffle(sent)
        carries = headers_module.carries(sent, mine)
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in sent]
        assert headers_module.carries(encoded, mine, encoded=True) is carries, sent
        if carries:
            assert headers_module.rewritten(sent, mine) == sent, sent
        told[carries] += 1
    assert told[True] and told[False], told


def test_responses_closed_in_other_threads_end_their_requests_records(records):
    """A WSGI server that closes a response in another thread than the one
    that called the handler ends the request's record there, though that
    record is still current on the handler's thread: the next request there
    is a request of its own, not part of the one that ended, and a close
    there of another thread's response ends that request's record."""
    import threading

    from django.test.client import RequestFactory

    def called(wsgi):
        environ = RequestFactory()._base_environ(PATH_INFO="/async-to-sync/")
        response = wsgi(environ, lambda status, headers, exc_info=None: None)
        assert b"".join(response) == b"Hello, world\n"
        return response

    def in_a_thread(call, *args):
        done = []
        thread = threading.Thread(target=lambda: done.append(call(*args)))
        thread.start()
        thread.join(10)
        return done[0]

    with project("none") as (_asgi, wsgi):
        in_a_thread(called(wsgi).close)
        assert [record.finished for record in records] == [True]
        in_a_thread(called, wsgi).close()
        assert [record.finished for record in records] == [True, True]
        third = wsgi_request(wsgi, "/async-to-sync/")
    # Three async_to_sync calls, a loop in a thread each, for each request.
    assert third.figures() == (6, 6, 3, 3)
    assert [tuple(vars(record.at_headers).values()) for record in records] == [(6, 6, 3, 3)] * 3


def test_a_close_from_elsewhere_ends_a_waiting_record_not_a_finished_one(records):
    # Two WSGI requests returned one response object; the first one's server
    # refused its headers (its record finished, left in the waiting list),
    # and the object is closed outside either request's context: the close
    # ends the second request's record, the one still waiting.
    from django.http import HttpResponse

    from switchtrace.django_app import integration

    response = HttpResponse("shared")
    refused = tracer.RequestRecord(tracer.WSGI, tracer.patches.clock, 10)
    waiting = tracer.RequestRecord(tracer.WSGI, tracer.patches.clock, 10)
    later = tracer.RequestRecord(tracer.WSGI, tracer.patches.clock, 10)
    tracer.finish_request(refused)
    integration._closing[response] = [refused, waiting, later]
    response.close()
    assert records == [refused, waiting]
    # The next close from elsewhere ends the next one waiting.
    response.close()
    assert records == [refused, waiting, later]
    assert integration._closing.get(response) is None


def test_a_wsgi_record_left_without_headers_does_not_take_the_next_request(
    records, swallowed, monkeypatch
):
    """A request whose headers switchtrace failed to note (an internal error,
    swallowed) is left current on the server's thread, unfinished, without
    figures at its headers: the next request on that thread is a request of
    its own, not a sub-request of that one (nothing would be recorded on the
    thread again)."""
    from switchtrace.django_app import integration

    def broken(*args, **kwargs):
        raise ZeroDivisionError("switchtrace bug")

    with project("none") as handlers:
        with monkeypatch.context() as patched:
            patched.setattr(integration, "at_headers", broken)
            first = serve("wsgi", handlers, "/async/")
        assert (first.status, first.figures()) == (200, (2, 2, 1, 1))  # the middleware's
        assert [(where, type(exc)) for where, exc in swallowed] == [
            ("WSGI headers", ZeroDivisionError)
        ] * 2
        swallowed.clear()
        assert records == []
        second = serve("wsgi", handlers, "/async/")
    assert (second.status, second.figures()) == (200, (2, 2, 1, 1))
    stale, served = records
    assert (stale.at_headers, stale.totals()) == (None, tracer.Figures(2, 2, 1, 1))
    assert served.at_headers == served.totals() == tracer.Figures(2, 2, 1, 1)
    assert tracer.current_record() is None


def test_a_sub_request_resumed_in_another_context_is_reported(swallowed):
    """A sub-request's coroutine resumed in another context than it started
    in cannot put back what it set in the first one, and says so; its result
    is unchanged."""
    from switchtrace.django_app import integration

    from ..tracer.test_counting import _resumed_elsewhere

    async def main():
        record, token = tracer.start_request(tracer.ASGI)
        try:
            served = integration.as_sub_request_async(asyncio.sleep(0.01, "served"))
            return await _resumed_elsewhere(served)
        finally:
            tracer.finish_request(record, token)

    assert asyncio.run(main()) == "served"
    assert [(where, type(exc)) for where, exc in swallowed] == [("sub-request", ValueError)]
    swallowed.clear()


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_sub_request_after_the_middleware_leaves_the_request_its_headers(server, records):
    """A middleware above switchtrace's serving a sub-request once the
    response is back: the sub-request, hidden by SHOW_HEADERS, is the
    request's (its three async_to_sync count in the headers: 6; under ASGI
    8 more: request_started, the sync middleware's adaptation, sync_to_async
    above it and async_to_sync below it, and the sync view's sync_to_async),
    but the decision on who sees the headers is the request's own, which is
    shown them (they were taken off: the sub-request's decision, made last,
    was taken for the request's)."""
    settings = {"ENABLED": True, "SHOW_HEADERS": "tests.views.shown_but_to_sub_requests"}
    middleware = ["tests.views.SubRequestAfterMiddleware", MIDDLEWARE_PATH]
    with project("none", SWITCHTRACE=settings, MIDDLEWARE=middleware) as handlers:
        result = serve(server, handlers, "/sync/?after=1")
    [record] = records
    assert record.at_headers == tracer.Figures(*result.figures() or (0, 0, 0, 0))
    assert result.figures() == ((6, 6, 3, 3) if server == "wsgi" else (14, 14, 0, 1))


@pytest.mark.parametrize(
    ("show", "sub_request_sees"),
    [(True, "figures"), ("tests.views.shown_but_to_sub_requests", "nothing")],
    ids=["shown", "shown-but-to-sub-requests"],
)
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_sub_requests_response_carries_its_own_decision(server, show, sub_request_sees):
    """The response of a sub-request a view serves (through the test Client)
    carries the figures as they stand when it returns if SHOW_HEADERS shows
    them to the sub-request, and none if not; the request is shown its own
    either way. Nothing bridges after the sub-request: its figures are the
    request's at the headers (under ASGI, counting the return of the sync
    view's sync_to_async)."""
    settings = {"ENABLED": True, "SHOW_HEADERS": show}
    with project("none", SWITCHTRACE=settings) as handlers:
        result = serve(server, handlers, "/sub-request-headers/")
    figures = (10, 10, 0, 1) if server == "asgi" else (6, 6, 3, 3)
    assert result.figures() == figures
    seen = ",".join(map(str, figures)) if sub_request_sees == "figures" else "-,-,-,-"
    assert (result.status, result.body.decode()) == (200, seen)


@pytest.mark.parametrize("through", ["client", "wsgi_handler", "asgi_handler"])
def test_a_sub_request_a_streaming_body_serves_is_part_of_its_request(through, records):
    """Under WSGI, a streaming response's body serving a sub-request after the
    headers: the request's, after its headers (6 switches, 3 loops, 3 threads:
    the sub-request's three async_to_sync; through an ASGIHandler, 14
    switches, 1 loop and 1 thread: the body's async_to_sync, whose loop the
    three go back to, and the sub-request's request_started, sync view and
    close). It ended the request's record, taken for a server that never
    closed its response, and opened one of its own."""
    with project("none") as handlers:
        result = serve("wsgi", handlers, f"/streamed-sub-request/?through={through}")
    assert (result.status, result.body, result.figures()) == (200, b"ab", (0, 0, 0, 0))
    [record] = records
    assert record.at_headers == tracer.Figures(0, 0, 0, 0)
    if through == "asgi_handler":
        assert record.totals() == tracer.Figures(14, 14, 1, 1)
    else:
        assert record.totals() == tracer.Figures(6, 6, 3, 3)
    assert record.attributes["http.route"] == "streamed-sub-request/"


def test_a_sub_request_a_gzipped_streaming_body_serves_is_part_of_its_request(records):
    """The body's code run by GZipMiddleware's generator (around a ``map`` of
    the view's generator): its sub-request is the request's all the same (6
    switches, 3 loops, 3 threads: the sub-request's three async_to_sync)."""
    path = "/streamed-sub-request/?through=wsgi_handler&wrap=map"
    middleware = ["django.middleware.gzip.GZipMiddleware", MIDDLEWARE_PATH]
    with project("none", MIDDLEWARE=middleware) as (_, wsgi):
        result = wsgi_request(wsgi, path, HTTP_ACCEPT_ENCODING="gzip")
    assert (result.status, gzip.decompress(result.body)) == (200, b"ab")
    assert [
        (record.at_headers, record.totals(), record.attributes.get("http.route"))
        for record in records
    ] == [(tracer.Figures(0, 0, 0, 0), tracer.Figures(6, 6, 3, 3), "streamed-sub-request/")]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_a_sub_request_an_asynchronous_streaming_body_serves_is_part_of_its_request(records):
    """Under WSGI, Django consumes an asynchronous body whole in an
    async_to_sync: a sub-request it serves through an ASGIHandler is the
    request's (14 switches, 1 loop, 1 thread: that async_to_sync and the
    sub-request's 12). It had a record of its own (10 switches at its
    headers, 12 in all), and the request 2."""
    with project("none") as (_, wsgi):
        result = wsgi_request(wsgi, "/streamed-sub-request/?wrap=async")
    assert (result.status, result.body) == (200, b"ab")
    assert [
        (record.at_headers, record.totals(), record.attributes.get("http.route"))
        for record in records
    ] == [(tracer.Figures(0, 0, 0, 0), tracer.Figures(14, 14, 1, 1), "streamed-sub-request/")]


@pytest.mark.parametrize(
    ("first", "sub_request"),
    [
        # Shown, then a sub-request hidden them: taking the headers off must
        # not reach the first request, whose reading is under way.
        ({"HTTP_X_DEBUG": "1"}, ""),
        # Hidden, then a sub-request shown them: nor adding them.
        ({}, "debug"),
    ],
    ids=["shown-then-hidden", "hidden-then-shown"],
)
def test_a_sub_request_returning_an_object_another_thread_reads_leaves_its_headers(
    first, sub_request, records
):
    """gthread workers: while Django reads the headers of a view's one
    response object for a request (in thread "first"), another request's
    view (in thread "second") serves a sub-request to that view: the
    sub-request's SHOW_HEADERS decision writes on that object only what
    the main one would (values, no header added or taken off), and each
    request is sent its own headers. The test Client's close of the object
    in the second request ends no record (it ended the first request's, its
    headers not yet sent)."""
    import threading

    from .. import views

    views.paused_response = response = views.PausingResponse("shared")
    response["Server-Timing"] = OWN
    first_paused, second_done = threading.Event(), threading.Event()
    results = {}

    def pause(index):
        if threading.current_thread().name == "first" and index == 1:
            if not first_paused.is_set():
                first_paused.set()
                second_done.wait(10)

    def serve(wsgi, name, path, environ):
        try:
            results[name] = wsgi_request(wsgi, path, **environ)
        except Exception as error:
            results[name] = error
        finally:
            if name == "second":
                second_done.set()

    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    try:
        response.pause = pause
        with project("none", SWITCHTRACE=settings) as (_asgi, wsgi):
            first_thread = threading.Thread(
                target=serve, args=(wsgi, "first", "/paused-shared/", first), name="first"
            )
            second_thread = threading.Thread(
                target=serve,
                args=(wsgi, "second", f"/shared-sub-request/?{sub_request}", {}),
                name="second",
            )
            first_thread.start()
            assert first_paused.wait(10)
            second_thread.start()
            for thread in (first_thread, second_thread):
                thread.join(10)
    finally:
        views.paused_response = None
    assert isinstance(results["first"], example.Result), results["first"]
    assert isinstance(results["second"], example.Result), results["second"]
    assert results["first"].figures() == ((0, 0, 0, 0) if first else None)
    assert results["second"].figures() is None
    assert results["first"].headers["Server-Timing"] == (
        f"{OWN}, {_ours((0, 0, 0, 0))}" if first else OWN
    )
    # The sub-request's close of the object (the test Client's) ends no
    # record: the first request's ends at its own server's close, after the
    # second's.
    assert [record.attributes["url.path"] for record in records] == [
        "/shared-sub-request/",
        "/paused-shared/",
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/shared-sub-request/?debug", "/paused-shared/"),
        ("/paused-shared/", "/shared-sub-request/"),
    ],
    ids=["sub-request-first", "request-first"],
)
def test_one_response_object_a_sub_request_read_keeps_its_headers(first, second, records):
    """A view's one response object, shown to a request (a sub-request
    another request's view serves, or a request of its own), then returned
    to one not shown the figures (the other way round): switchtrace's
    headers stay on the object, whose headers the code of the first, below
    switchtrace's middleware, may be iterating in another thread (see
    test_a_sub_request_returning_an_object_another_thread_reads_leaves_its_headers);
    the request not shown them is sent none."""
    from .. import views

    views.paused_response = response = views.PausingResponse("shared")
    settings = {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"}
    try:
        with project("none", SWITCHTRACE=settings) as (_asgi, wsgi):
            shown = wsgi_request(wsgi, first, HTTP_X_DEBUG="1")
            hidden = wsgi_request(wsgi, second)
    finally:
        views.paused_response = None
    assert (shown.status, hidden.status) == (200, 200)
    assert (shown.figures(), hidden.figures()) == ((0, 0, 0, 0), None)
    assert "Server-Timing" not in hidden.headers
    assert response["X-Context-Switches"] == "0"
    assert response["Server-Timing"] == _ours((0, 0, 0, 0))
    assert len(records) == 2


def test_a_cached_response_a_sub_request_is_not_shown_carries_no_figures():
    """A sub-request that a view serves, not shown the figures, is served
    from Django's cache a response stored with the figures of a request
    shown them: the view reads none on it."""
    with cached_project(
        "sub-request-hidden",
        SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": f"{__name__}.only_with_debug_header"},
    ) as (_asgi, wsgi):
        stored = wsgi_request(wsgi, "/async-to-sync/", HTTP_X_DEBUG="1")
        outer = wsgi_request(wsgi, "/sub-request-headers/", HTTP_X_DEBUG="1")
    assert stored.figures() == (6, 6, 3, 3)
    assert (outer.status, outer.body) == (200, b"-,-,-,-")
    # The sub-request, served from the cache, bridges nothing.
    assert outer.figures() == (0, 0, 0, 0)


@pytest.fixture
def content_types(tmp_path, monkeypatch):
    """The contenttypes table, with three rows, in a database file of the
    test's own: every thread's connection (the per-request thread's under
    ASGI) opens the same one, where each would get an empty database of
    its own from the settings' ``:memory:``."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    connection.close()
    monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    with connection.schema_editor() as editor:
        editor.create_model(ContentType)
    for model in ("cart", "order", "product"):
        ContentType.objects.create(app_label="shop", model=model)
    yield
    connection.close()


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_what_an_asynchronous_streaming_body_bridges_is_after_the_headers(
    server, content_types, records
):
    """An async view streaming an export whose body iterates a QuerySet with
    ``async for``: the ORM's sync_to_async runs once the headers are sent,
    in the request's total only. Under ASGI from the request's task, as
    send_response iterates the body (2 switches at the headers: the
    request_started signal; 6 in all, with the close); under WSGI inside the
    async_to_sync Django consumes the body in, with a loop and a thread of
    its own, back to the server's thread (2 at the headers: the view's
    async_to_sync; 6, 2 loops and 2 threads in all)."""
    import threading

    with project("none") as handlers:
        result = serve(server, handlers, "/content-types-export/")
    assert (result.status, result.body) == (200, b"cart\norder\nproduct\n")
    [record] = records
    [fetch] = [c for c in record.crossings if c.func.__qualname__ == "QuerySet._fetch_all"]
    assert fetch.before_headers is False
    if server == "asgi":
        assert result.figures() == (2, 2, 0, 1)
        assert record.totals() == tracer.Figures(6, 6, 0, ASGI_THREADS)
        assert fetch.parent is None
    else:
        assert result.figures() == (2, 2, 1, 1)
        assert record.totals() == tracer.Figures(6, 6, 2, 2)
        assert fetch.parent.func.__qualname__ == "StreamingHttpResponse.__iter__.<locals>.to_list"
        assert fetch.target_thread is threading.current_thread()


def test_a_file_sent_through_the_servers_file_wrapper_ends_its_record_at_its_close(records):
    """WSGI with a ``wsgi.file_wrapper`` (gunicorn's, wsgiref's): Django hands
    the server a wrapper around a FileResponse's file, whose close is the
    response's. The server's close of the wrapper ends the record, with what
    request_finished's async receiver bridges after the headers (one
    async_to_sync: 2 switches, a loop and a thread)."""
    from wsgiref.util import FileWrapper

    from django.core.signals import request_finished

    from .. import views

    if not hasattr(request_finished, "asend"):
        pytest.skip("async receivers need Django >= 5.0")

    async def receiver(sender, **kwargs):
        pass

    request_finished.connect(receiver)
    try:
        with project("none") as (_asgi, wsgi):
            result = wsgi_request(wsgi, "/file/", **{"wsgi.file_wrapper": FileWrapper})
    finally:
        request_finished.disconnect(receiver)
    with open(views.__file__, "rb") as sent:
        assert (result.status, result.body) == (200, sent.read())
    assert result.figures() == (0, 0, 0, 0)
    [record] = records
    assert record.finished
    assert record.at_headers == tracer.Figures(0, 0, 0, 0)
    assert record.totals() == tracer.Figures(2, 2, 1, 1)
    assert [c.func.__qualname__ for c in record.crossings] == ["Signal.send.<locals>.asend"]
    assert tracer.current_record() is None


def test_the_thread_a_thread_insensitive_bridge_starts_is_its_requests(records):
    """ASGI: an async view's sync_to_async(thread_sensitive=False) runs in the
    server loop's default executor, which starts its thread for the first
    such call (asgiref's own run_in_executor: no offload of the request's
    code, counted once). That start is the request's, and the crossing's.
    (Whether a later request finds that thread idle depends on when the
    thread, once done, next gets the GIL: not asserted.)"""
    from ..support import asgi_request

    loop = asyncio.new_event_loop()  # a server's loop, no default executor yet
    try:
        with project("none") as (asgi, _wsgi):
            result = loop.run_until_complete(asgi_request(asgi, "/thread-insensitive/"))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert result.figures() == (4, 4, 0, 2)
    [record] = records
    assert record.totals() == tracer.Figures(6, 6, 0, ASGI_THREADS + 1)
    [bridged] = [
        c for c in record.crossings if getattr(c.func, "__name__", None) == "_unsensitive_lookup"
    ]
    assert (bridged.executor, bridged.threads_started) == ("loop_default", 1)
    assert record.thread_starts[1].crossing is bridged


@pytest.mark.parametrize(
    ("query", "second_headers"),
    [("", (2, 2, 1, 1)), ("same", (2, 2, 1, 1)), ("stream", (0, 0, 0, 0))],
    ids=["in-the-view", "in-the-view-returning-it", "in-its-streaming-body"],
)
def test_a_shared_response_closed_by_a_requests_own_code_ends_no_record(
    query, second_headers, records
):
    """gthread workers: a request to /paused-shared/?switch (in thread
    "first") returned the view's one response object and was sent its
    headers; before its server closes it, another request's code closes
    that object itself: its view (which returns a response of its own, or
    that object too), or, after its headers, the generator of its streaming
    body. That close is no server's: it ends no record. Each request's
    record ends at its own server's close, the second's first. Every close
    sends request_finished, whose receiver here crosses once (2 switches,
    a loop, a thread) in the record current where it runs: the first
    request's at its server's close, after its headers (2 before them: the
    view's async_to_sync); the second's at its code's close and at its
    server's. Ended by the second's code, the first record had 2."""
    import threading

    from asgiref.sync import async_to_sync
    from django.core.signals import request_finished
    from django.http import HttpResponse
    from django.test.client import RequestFactory

    from .. import views

    async def nothing():
        pass

    def cross(**kwargs):
        async_to_sync(nothing)()

    first_sent, first_may_close, first_closed = (threading.Event() for _ in range(3))
    seen = {}

    def serve_first(wsgi):
        environ = RequestFactory()._base_environ(
            PATH_INFO="/paused-shared/", REQUEST_METHOD="GET", QUERY_STRING="switch"
        )
        sent = {}
        response = wsgi(environ, lambda status, headers, exc_info=None: sent.update(headers))
        seen["first"] = example.Result(200, sent, b"").figures()
        first_sent.set()
        first_may_close.wait(10)
        b"".join(response)
        response.close()
        first_closed.set()

    views.paused_response = HttpResponse("shared")
    request_finished.connect(cross)
    try:
        with project("none", SWITCHTRACE=NO_SPANS) as (_asgi, wsgi):
            first = threading.Thread(target=serve_first, args=(wsgi,), name="first")
            first.start()
            assert first_sent.wait(10)
            second = wsgi_request(wsgi, "/closing-shared/", query=query)
            seen["after the second"] = [r.attributes["url.path"] for r in records]
            first_may_close.set()
            first.join(10)
    finally:
        request_finished.disconnect(cross)
        views.paused_response = None
    assert first_closed.is_set()
    assert seen == {"first": (2, 2, 1, 1), "after the second": ["/closing-shared/"]}
    assert second.figures() == second_headers
    assert [r.attributes["url.path"] for r in records] == ["/closing-shared/", "/paused-shared/"]
    assert [(r.at_headers, r.totals()) for r in records] == [
        (tracer.Figures(*second_headers), tracer.Figures(4, 4, 2, 2)),
        (tracer.Figures(2, 2, 1, 1), tracer.Figures(4, 4, 2, 2)),
    ]


def test_a_subclass_of_the_apps_config_that_skips_its_ready_is_told(tmp_path):
    """A project's subclass of SwitchTraceConfig whose ready() does not call
    super().ready(): nothing patched, no check registered, and nothing said
    (the middleware took the app for installed); no header either."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import logging

        import django
        from django.conf import settings
        from django.http import HttpResponse
        from django.urls import path

        from switchtrace.django_app.apps import SwitchTraceConfig


        class ProjectConfig(SwitchTraceConfig):
            def ready(self):
                pass  # (no super().ready())


        urlpatterns = [path("", lambda request: HttpResponse("ok"))]
        settings.configure(
            SECRET_KEY="x", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
            INSTALLED_APPS=["__main__.ProjectConfig"],
            MIDDLEWARE=["switchtrace.django_app.middleware.SwitchTraceMiddleware"],
            SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"},
        )
        django.setup()
        logging.basicConfig(format="%(levelname)s %(message)s")
        from django.test import Client

        for _ in range(2):
            response = Client().get("/")
            print(response.status_code, response.has_header("X-Context-Switches"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (out.returncode, out.stdout) == (0, "200 False\n200 False\n")
    assert out.stderr == (
        "ERROR switchtrace disabled: INSTALLED_APPS has __main__.ProjectConfig, whose ready() "
        "does not call SwitchTraceConfig.ready(), so nothing is recorded and no response "
        "carries the headers. Call super().ready() in its ready().\n"
    )


def test_a_handler_built_in_another_apps_ready_before_this_ones_is_not_told_of(tmp_path):
    """An app listed before switchtrace's that makes a request in its ready()
    (a warm-up): switchtrace's ready() has not run yet, as it will; that was
    logged as a subclass that skips it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import logging

        import django
        from django.apps import AppConfig
        from django.conf import settings
        from django.http import HttpResponse
        from django.urls import path


        class WarmConfig(AppConfig):
            name = "warm"
            label = "warm"
            path = "."

            def ready(self):
                from django.test import Client

                print(Client().get("/").status_code)


        import sys, types
        sys.modules["warm"] = types.ModuleType("warm")
        urlpatterns = [path("", lambda request: HttpResponse("ok"))]
        settings.configure(
            SECRET_KEY="x", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
            INSTALLED_APPS=["__main__.WarmConfig", "switchtrace.django_app"],
            MIDDLEWARE=["switchtrace.django_app.middleware.SwitchTraceMiddleware"],
            SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"},
        )
        logging.basicConfig(format="%(levelname)s %(message)s")
        django.setup()
        from switchtrace.testing import record_requests
        from django.test import Client

        with record_requests():
            response = Client().get("/")
        print(response.status_code, response["X-Context-Switches"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "200\n200 0\n", "")


def test_a_wsgi_response_never_closed_is_let_go_once_its_thread_serves_again():
    """A WSGI middleware that joins the body and never closes the response
    (``[b"".join(app(environ, start_response))]``): the record waiting for
    the close ends at the thread's next request, and no longer keeps the
    response, even one its own crossings hold (a view's closure over it),
    which kept its entry, and so itself and its request, for ever."""
    import gc
    import weakref

    from django.core.handlers.wsgi import WSGIHandler
    from django.test.client import RequestFactory
    from django.test.utils import override_settings

    figures: list[tuple[str, int]] = []

    def finished(record: tracer.RequestRecord) -> None:
        figures.append((record.attributes["url.path"], record.context_switches))

    tracer.add_listener(finished)
    try:
        with override_settings(
            ROOT_URLCONF="tests.test_predict_support", ALLOWED_HOSTS=["testserver"], MIDDLEWARE=[]
        ):
            handler = WSGIHandler()
            environ = RequestFactory()._base_environ(PATH_INFO="/fills-its-response/")
            response = handler(environ, lambda status, headers, exc_info=None: None)
            assert b"".join(response) == b"filled"  # and never closed
            left = weakref.ref(response)
            del response
            assert figures == []
            assert wsgi_request(handler, "/sync/").status == 200
    finally:
        tracer.remove_listener(finished)
    from switchtrace.django_app import telemetry

    assert telemetry.pipeline().flush(10)  # (the export queue lets go of both)
    gc.collect()
    assert figures == [("/fills-its-response/", 2), ("/sync/", 0)]
    assert left() is None


def test_a_wsgi_response_whose_start_response_raised_is_let_go():
    """The server's start_response raised (wsgiref's, on a hop-by-hop header
    such as Connection): the record ended then, and its response, which the
    server never closes, stayed in the close map for ever, with what the
    record's crossings hold (here, the response itself)."""
    import gc

    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.test.client import RequestFactory
    from django.test.utils import override_settings

    from switchtrace.django_app import telemetry

    def start_response(status, headers, exc_info=None):
        raise AssertionError("Hop-by-hop headers not allowed")

    with override_settings(
        ROOT_URLCONF="tests.test_predict_support", ALLOWED_HOSTS=["testserver"], MIDDLEWARE=[]
    ):
        environ = RequestFactory()._base_environ(PATH_INFO="/fills-its-response/")
        with pytest.raises(AssertionError):
            WSGIHandler()(environ, start_response)
    assert telemetry.pipeline().flush(10)
    gc.collect()
    # (The response is nowhere else to be found: looked for among every object.)
    assert [o for o in gc.get_objects() if type(o) is HttpResponse and o.content == b"filled"] == []


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_the_max_events_setting_bounds_each_requests_record(server, records):
    """SWITCHTRACE['MAX_EVENTS'] reaches the record of every request (the
    tracer's own tests give the bound to the record directly): 1,100 bridge
    calls, 3 kept in detail, the rest counted as dropped, the figures exact."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(
        ROOT_URLCONF="tests.test_predict_support",
        MIDDLEWARE=[],
        SWITCHTRACE={"ENABLED": True, "EXPORTER": "memory", "MAX_EVENTS": 3},
    ):
        if server == "asgi":
            assert run_asgi(ASGIHandler(), "/many-bridges/").status == 200
        else:
            assert wsgi_request(WSGIHandler(), "/many-bridges/").status == 200
    (record,) = records
    assert len(record.crossings) == 3
    # ASGI: the view's 1,100 calls, and request_started's and request_finished's
    # receivers, one sync_to_async each; WSGI: the view's calls and its
    # async_to_sync (its loop, kept: under 3).
    crossings = 1102 if server == "asgi" else 1101
    assert (record.context_switches, record.dropped) == (2 * crossings, crossings - 3)
    assert len(record.loop_creations) == (0 if server == "asgi" else 1)


class _Stop(BaseException):
    """As a test's pytest.fail() in a listener of its own raises."""


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_listeners_base_exception_leaves_the_server_call_and_the_next_request_counts(
    server, records
):
    """The listener's own choice, not swallowed: it comes out where the
    record ends (the ASGI call; the WSGI response's close), once switchtrace
    has done with the request (no longer current on the thread, its
    response's headers no longer read), and the next request counts as
    ever."""
    from switchtrace.django_app import integration

    def stop_once(record):
        if len(records) == 1:
            raise _Stop("budget exceeded")

    tracer.add_listener(stop_once)
    try:
        with project(**NO_SPANS) as handlers:
            with pytest.raises(_Stop, match=r"^budget exceeded$"):
                serve(server, handlers, "/sync/")
            assert tracer.current_record() is None
            [first] = records
            assert first.finished
            assert integration._READING not in first.extra
            result = serve(server, handlers, "/sync/")
    finally:
        tracer.remove_listener(stop_once)
    headers, total = EXPECTED[server, "/sync/", "shipped"]
    assert result.figures() == headers
    assert [r.context_switches for r in records] == [total, total]
    assert records[1].at_headers == tracer.Figures(*headers)


def test_a_start_listeners_base_exception_under_asgi_leaves_no_coroutine_unawaited(records):
    """Django's handler's coroutine was made before the record opened, and
    never closed: "coroutine 'ASGIHandler.__call__' was never awaited"."""
    from ..support import raised_by_a_start_listener

    with project(**NO_SPANS) as (asgi, _wsgi):
        assert raised_by_a_start_listener(lambda: run_asgi(asgi, "/sync/")) == []
    [record] = records  # (ended: every record opened is, once)
    assert record.finished


def test_an_outer_asgi_middlewares_bridges_in_send_count_but_the_last_bodys(records):
    """An ASGI middleware around Django's application that bridges in each
    send (a metrics middleware's sync_to_async): its crossings are the
    request's, 2 switches for each message, the start and the body's three
    parts (each says more_body), but not for the last body message, which
    is empty, and from which a server starts the connection's next request
    (see the README)."""
    from asgiref.sync import sync_to_async

    def bridging(asgi):
        async def outer(scope, receive, send):
            async def bridging_send(message):
                await sync_to_async(str)()
                await send(message)

            await asgi(scope, receive, bridging_send)

        return outer

    with project() as (asgi, _wsgi):
        results = [
            run_in_server_loop(asgi_request(bridging(asgi), "/async-stream/")),
            run_in_server_loop(asgi_request(asgi, "/async-stream/")),
        ]
    assert [result.body for result in results] == [b"chunk 0\nchunk 1\nchunk 2\n"] * 2
    bridged, plain = records
    assert bridged.context_switches - plain.context_switches == 2 * 4


def test_a_request_a_server_starts_inside_the_last_send_is_its_own(records):
    """As uvicorn and daphne start a keep-alive connection's next request,
    in a task that copies the context of the last body message's send: it
    has its own record and its own headers, not the first one's figures as
    a sub-request."""
    from switchtrace.example import http_scope

    async def serve_two(asgi):
        started, pending, never = [], [{"type": "http.request"}], asyncio.Event()

        async def receive():  # (then no disconnect: Django stops listening)
            if pending:
                return pending.pop()
            await never.wait()

        async def send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                started.append(asyncio.ensure_future(asgi_request(asgi, "/async/")))

        await asgi(http_scope("/sync/"), receive, send)
        return await started[0]

    with project() as (asgi, _wsgi):
        second = run_in_server_loop(serve_two(asgi))
    first, following = records
    assert [r.attributes["url.path"] for r in records] == ["/sync/", "/async/"]
    assert second.figures() == tuple(vars(following.at_headers).values())
    # (Threads: Django enters the first one's ThreadSensitiveContext, copied.)
    assert second.figures()[:3] == EXPECTED["asgi", "/async/", "shipped"][0][:3] == (28, 28, 0)
    assert following is not first


def test_a_sub_request_through_wsgi_to_asgi_counts_every_send(records):
    """asgiref's WsgiToAsgi around a WSGIHandler in an async view, its send
    bridging for each message: the sub-request's sends are the view's,
    its last body message's too (WsgiToAsgi's last send is taken out of the
    request only for a request of its own, on a server)."""
    from .test_components import SIGNAL

    with project("none") as handlers:
        result = serve("asgi", handlers, "/wsgi-to-asgi-sub-request/")
    assert result.body == b"http.response.start,http.response.body,http.response.body"
    [record] = records
    record.describe()
    send = ("async_to_sync", "wsgi_to_asgi_sub_request_view.<locals>.send", 2)
    lookup = ("sync_to_async", "_sub_request_lookup", 2)
    assert [(c.mechanism, c.qualname, record.switches_of(c)) for c in record.crossings] == [
        ("sync_to_async", SIGNAL, 2),  # request_started
        ("sync_to_async", "WsgiToAsgiInstance.run_wsgi_app", 2),
        *[send, lookup] * 3,
        ("sync_to_async", "HttpResponseBase.close", 2),
    ]
    assert (result.figures()[0], record.context_switches) == (16, 18)
