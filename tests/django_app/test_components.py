"""Every crossing names its bridged callable and the Django component that caused it."""

from __future__ import annotations

import contextlib
import sys
import threading

import django
import pytest
from django.dispatch import Signal

from switchtrace import tracer
from switchtrace.django_app import components
from switchtrace.exporters.console import top_causes

from ..support import run_asgi, wsgi_request
from .test_middleware import project

SHIPPED = ["Security", "Session", "Common", "Csrf", "Authentication", "Message"]
# Django >= 5.0 runs a signal's sync receivers in a closure of Signal.asend; 4.2
# bridges Signal.send itself.
ASYNC_SIGNALS = hasattr(Signal, "asend")
USER_PASSES_TEST = "user_passes_test" if sys.version_info >= (3, 11) else "decorator"
SIGNAL = "Signal.asend.<locals>.sync_send" if hasattr(Signal, "asend") else "Signal.send"
#: Django closing a streaming response under ASGI, after the headers.
STREAM_CLOSED = (
    "sync_to_async",
    "HttpResponseBase.close",
    "response",
    "StreamingHttpResponse.close",
    False,
)


def described(record):
    record.describe(components.resolve)
    return [
        (c.mechanism, c.qualname, c.component.kind, str(c.component), c.before_headers)
        for c in record.crossings
    ]


def named(record):
    """(bridged callable, component kind) of each crossing."""
    return [(qualname, kind) for _m, qualname, kind, _c, _b in described(record)]


def test_the_description_caches_keep_no_class_or_signal_alive():
    """A class made per request (a form of modelform_factory's) whose bound
    method was bridged, and a signal made per request: the description
    cache held the class (as many as 4,096), the signal names' cache the
    signal (256), and with them what they hold (a method or a receiver
    closing over the request)."""
    import gc
    import itertools
    import weakref

    class PerRequest:
        def save(self):
            pass

    signal = Signal()
    record = tracer.RequestRecord(tracer.ASGI, itertools.count().__next__)
    thread = threading.current_thread()
    for func in (PerRequest().save, signal.send):
        record.crossings.append(
            tracer.Crossing(tracer.SYNC_TO_ASYNC, object(), func, thread, None, 0)
        )
    assert [
        (qualname, str(component)) for _m, qualname, _k, component, _b in described(record)
    ] == [
        (f"{PerRequest.__qualname__}.save", f"{PerRequest.__qualname__}.save"),
        ("Signal.send", "signal"),
    ]
    gone = [weakref.ref(PerRequest), weakref.ref(signal)]
    del PerRequest, signal, record, func
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_asgi_shipped_middleware_sync_view(records):
    with project() as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    expected = [("sync_to_async", SIGNAL, "signal", "request_started", True)]
    for name in SHIPPED:
        cls = "CsrfViewMiddleware" if name == "Csrf" else f"{name}Middleware"
        expected.append(
            (
                "sync_to_async",
                f"{cls}.process_request",
                "middleware",
                f"{cls}.process_request",
                True,
            )
        )
    expected.append(
        (
            "sync_to_async",
            "CsrfViewMiddleware.process_view",
            "middleware",
            "CsrfViewMiddleware.process_view",
            True,
        )
    )
    expected.append(("sync_to_async", "sync_view", "view", "sync_view", True))
    for name in ["XFrameOptions", "Message", "Csrf", "Common", "Session", "Security"]:
        cls = "CsrfViewMiddleware" if name == "Csrf" else f"{name}Middleware"
        expected.append(
            (
                "sync_to_async",
                f"{cls}.process_response",
                "middleware",
                f"{cls}.process_response",
                True,
            )
        )
    expected.append(
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False)
    )
    [record] = records
    assert described(record) == expected


def test_asgi_sync_only_middleware_names_the_adapters(records):
    with project("sync-only") as (asgi, _wsgi):
        run_asgi(asgi, "/sync/")
    [record] = records
    assert described(record) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "SwitchTraceMiddleware", "middleware-adapter", "middleware chain", True),
        (
            "async_to_sync",
            "BaseHandler._get_response_async",
            "middleware-adapter",
            "XFrameOptionsMiddleware.get_response",
            True,
        ),
        (
            "sync_to_async",
            "CsrfViewMiddleware.process_view",
            "middleware",
            "CsrfViewMiddleware.process_view",
            True,
        ),
        ("sync_to_async", "sync_view", "view", "sync_view", True),
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False),
    ]
    executors = [c.executor for c in record.crossings]
    assert executors == [
        "thread_sensitive_context",
        "thread_sensitive_context",
        None,
        "current_thread",
        "current_thread",
        "thread_sensitive_context",
    ]


def test_asgi_sync_stream_is_named_after_the_response_reading_it(records):
    # Both crossings bridge the built-in list: the view's own, before the
    # headers, is the view's; Django's reading of the sync iterator after them
    # names the response class's __aiter__, which makes it.
    with project("none") as (asgi, _wsgi):
        result = run_asgi(asgi, "/listed-then-streamed/")
    assert result.body == b"ab"
    [record] = records
    assert described(record) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "list", "view", "listed_then_streamed_view", True),
        ("sync_to_async", "list", "response", "StreamingHttpResponse.__aiter__", False),
        STREAM_CLOSED,
    ]


def test_a_sync_streams_own_bridges_back_are_not_djangos_reading_of_it(records):
    """A synchronous body that bridges to the loop (async_to_sync) and reads
    rows there in a sync_to_async(list) of its own, after the headers, is
    no reading of the iterator by Django: under ASGI that is the one
    sync_to_async(list) its __aiter__ makes, from the loop (no crossing
    around it), and the body's own list is nested in the body's
    async_to_sync; under WSGI Django makes none. Each is 'other' and list,
    as the body's asyncio.to_thread(list) is."""
    with project("none") as (asgi, wsgi):
        results = [
            run_asgi(asgi, "/bridged-sync-stream/"),
            wsgi_request(wsgi, "/bridged-sync-stream/"),
        ]
    assert [(result.status, result.body) for result in results] == [(200, b"ab")] * 2
    asgi_record, wsgi_record = records
    rows = "bridged_sync_stream_view.<locals>.rows"
    bodys_own = [
        ("async_to_sync", rows, "other", rows, False),
        ("sync_to_async", "list", "other", "list", False),
        ("asyncio.to_thread", "list", "other", "list", False),
    ]
    view = "bridged_sync_stream_view"
    assert described(asgi_record) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", view, "view", view, True),
        ("sync_to_async", "list", "response", "StreamingHttpResponse.__aiter__", False),
        *bodys_own,
        STREAM_CLOSED,
    ]
    assert described(wsgi_record) == bodys_own


def test_wsgi_async_stream_is_named_after_the_response_reading_it(records):
    # Django reads an asynchronous iterator under WSGI in one async_to_sync
    # of a closure of StreamingHttpResponse.__iter__, after the headers.
    with project("none") as (_asgi, wsgi):
        result = wsgi_request(wsgi, "/async-stream/")
    assert result.status == 200
    [record] = records
    reader = "StreamingHttpResponse.__iter__"
    assert described(record) == [
        ("async_to_sync", "async_stream_view", "view", "async_stream_view", True),
        ("async_to_sync", f"{reader}.<locals>.to_list", "response", reader, False),
    ]
    assert top_causes(record, components.resolve) == [("async_stream_view", 2), (reader, 2)]


def test_djangos_reading_of_a_stream_is_located_at_its_generator(records):
    """What Django bridges to read a body of the other kind (the built-in
    list, a closure of StreamingHttpResponse.__iter__) says nothing of where
    that body comes from: its span is located at the generator (the code.*
    attributes), and still named after what was bridged. An iterator that
    is no generator leaves it located at list. (Descriptions are cached by
    site: two views' generators read by one closure are two.)"""
    from django.test import override_settings

    from switchtrace.tracer.describe import CodeLocation

    with project("none") as (asgi, wsgi):
        run_asgi(asgi, "/bridged-sync-stream/")
        # One view, one site: a generator, then one inside a map.
        run_asgi(asgi, "/streamed-sub-request/?through=client")
        run_asgi(asgi, "/streamed-sub-request/?through=client&wrap=map")
        # Another view's asynchronous generator read through the same closure.
        wsgi_request(wsgi, "/streamed-sub-request/?through=client&wrap=async")
        with override_settings(ROOT_URLCONF="project.urls"):
            wsgi_request(wsgi, "/async-stream/")
    for record in records:
        record.describe(components.resolve)
    reading = [
        (c.qualname, c.description.location)
        for record in records
        for c in record.crossings
        if c.component.kind == "response" and c.component.hook in ("__aiter__", "__iter__")
    ]
    views, example = sys.modules["tests.views"], sys.modules["project.views"]
    assert reading == [
        (
            "list",
            CodeLocation(
                "body",
                "tests.views.bridged_sync_stream_view.<locals>",
                views.__file__,
                views.bridged_sync_stream_view.__code__.co_firstlineno + 13,
            ),
        ),
        (
            "list",
            CodeLocation(
                "body",
                "tests.views.streamed_sub_request_view.<locals>",
                views.__file__,
                views.streamed_sub_request_view.__code__.co_firstlineno + 12,
            ),
        ),
        ("list", CodeLocation("list", "builtins", None, None)),
        (
            "StreamingHttpResponse.__iter__.<locals>.to_list",
            CodeLocation(
                "asynchronous_body",
                "tests.views.streamed_sub_request_view.<locals>",
                views.__file__,
                views.streamed_sub_request_view.__code__.co_firstlineno + 26,
            ),
        ),
        (
            "StreamingHttpResponse.__iter__.<locals>.to_list",
            CodeLocation(
                "chunks",
                "project.views.async_stream_view.<locals>",
                example.__file__,
                example.async_stream_view.__code__.co_firstlineno + 3,
            ),
        ),
    ]


@pytest.mark.skipif(not ASYNC_SIGNALS, reason="async receivers need Django >= 5.0")
def test_wsgi_async_stream_leaves_request_finished_its_own(records):
    """request_finished's async receivers run, under WSGI, in an async_to_sync
    of Signal.send's closure after the headers, with no crossing around it,
    as Django's reading of the stream does: that crossing was named after the
    stream, StreamingHttpResponse.__iter__."""
    from django.core.signals import request_finished

    with sync_and_async_receivers(request_finished), project("none") as (_asgi, wsgi):
        result = wsgi_request(wsgi, "/async-stream/")
    assert result.status == 200
    [record] = records
    reader = "StreamingHttpResponse.__iter__"
    assert described(record) == [
        ("async_to_sync", "async_stream_view", "view", "async_stream_view", True),
        ("async_to_sync", f"{reader}.<locals>.to_list", "response", reader, False),
        ("async_to_sync", "Signal.send.<locals>.asend", "signal", "request_finished", False),
    ]


def test_wsgi_async_view(records):
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/async/")
    [record] = records
    assert described(record) == [("async_to_sync", "async_view", "view", "async_view", True)]
    [crossing] = record.crossings
    assert crossing.loop_created and crossing.threads_started == 1
    assert record.attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/async/",
        "http.route": "async/",
        "http.response.status_code": 200,
    }


def test_what_the_view_bridges_naming_no_component_is_the_views(records):
    """An async view's own bridge call (the ORM's aget bridges QuerySet.get)
    is the view's doing, as are a sync view's async_to_sync calls; what an
    async middleware bridges before and after the view stays its own
    callable's ("other")."""
    middleware = ["tests.views.BridgingAsyncMiddleware"]
    with project("none", MIDDLEWARE=middleware) as (asgi, _wsgi):
        run_asgi(asgi, "/async-bridging/")
    with project("none") as (_asgi, wsgi):
        wsgi_request(wsgi, "/async-to-sync/")
    bridging, three_calls = records
    assert described(bridging) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "middleware_lookup", "other", "middleware_lookup", True),
        ("sync_to_async", "middleware_lookup", "view", "async_bridging_view", True),
        ("sync_to_async", "middleware_lookup", "other", "middleware_lookup", True),
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False),
    ]
    # The example project's view, under WSGI: async_to_sync(noop) three times.
    assert (
        described(three_calls)
        == [("async_to_sync", "noop", "view", "async_to_sync_view", True)] * 3
    )
    # The console's top causes name the view and what it bridged.
    assert top_causes(bridging, components.resolve) == [
        ("middleware_lookup", 4),
        ("request_started", 2),
        ("async_bridging_view → middleware_lookup", 2),
        ("HttpResponse.close", 2),
    ]
    assert top_causes(three_calls, components.resolve) == [("async_to_sync_view → noop", 6)]


def test_after_the_view_raised_what_is_bridged_is_not_the_views(records):
    """The view ends where Django hands its exception to the middleware:
    Django's own handling of it after that is not the view's."""
    with project("none") as (asgi, _wsgi):
        result = run_asgi(asgi, "/raise/")
    assert result.status == 500
    [record] = records
    assert named(record) == [
        (SIGNAL, "signal"),
        ("raising_view", "view"),
        ("BaseHandler.process_exception_by_middleware", "handler"),
        ("response_for_exception", "handler"),
        ("log_response", "handler"),
        ("HttpResponseBase.close", "response"),
    ]


def test_djangos_error_response_is_the_handlers_and_a_views_own_bridge_of_it_the_views(records):
    """Under ASGI Django turns an exception into the response
    (response_for_exception) and logs a response of 400 or more
    (log_response) in sync_to_async: the handler's work, named so, whichever
    request comes first. A view bridging the same two functions as its own
    work is the view's."""
    with project() as (asgi, _wsgi):
        missing = run_asgi(asgi, "/nope/")
        own = run_asgi(asgi, "/error-handling/")
        missing_again = run_asgi(asgi, "/nope/")
    assert (missing.status, own.status, own.body, missing_again.status) == (404, 200, b"404", 404)
    missing_record, own_record, missing_again_record = records
    handlers = [
        ("sync_to_async", "response_for_exception", "handler", "response_for_exception", True),
        ("sync_to_async", "log_response", "handler", "log_response", True),
    ]
    for record in (missing_record, missing_again_record):
        assert [c for c in described(record) if c[2] == "handler"] == handlers
        causes = dict(top_causes(record, components.resolve, limit=20))
        assert (causes["response_for_exception"], causes["log_response"]) == (2, 2)
        # No process_view and no view; the two above: as many as /sync/'s.
        assert (record.at_headers.context_switches, record.context_switches) == (30, 32)
    assert [c for c in described(own_record) if c[3] == "error_handling_view"] == [
        ("sync_to_async", "log_response", "view", "error_handling_view", True),
        ("sync_to_async", "response_for_exception", "view", "error_handling_view", True),
    ]
    assert [c for c in described(own_record) if c[2] == "handler"] == []
    assert ("error_handling_view → log_response", 2) in top_causes(
        own_record, components.resolve, limit=20
    )


@pytest.mark.parametrize("first", ["/nope/", "/offloaded-log/"])
def test_djangos_log_response_in_a_thread_of_the_applications_is_no_bridge_of_the_handlers(
    records, first, monkeypatch
):
    """log_response offloaded by the application's own asyncio.to_thread
    outside the view (an async body, after the headers) is no bridge of
    Django's handler: 'other', as it is described afresh, whichever request
    came first. The description is cached per site: the key tells the two
    apart (the same function, outside the view both times)."""
    from switchtrace.tracer import describe

    monkeypatch.setattr(describe, "_descriptions", {})  # nothing of earlier tests'
    paths = [first, *({"/nope/", "/offloaded-log/"} - {first})]
    with project() as (asgi, _wsgi):
        results = [run_asgi(asgi, path) for path in paths]
    by_path = dict(zip(paths, zip(results, records, strict=True), strict=True))
    missing, missing_record = by_path["/nope/"]
    offloaded, offloaded_record = by_path["/offloaded-log/"]
    assert (missing.status, offloaded.status, offloaded.body) == (404, 200, b"ab")
    logged = [c for c in described(missing_record) if c[1] == "log_response"]
    assert logged == [("sync_to_async", "log_response", "handler", "log_response", True)]
    assert [c for c in described(offloaded_record) if c[1] == "log_response"] == [
        ("asyncio.to_thread", "log_response", "other", "log_response", False)
    ]


def test_the_key_asks_for_the_handlers_bridge_of_a_plain_function_outside_the_view_only(
    records, monkeypatch
):
    """Resolver.key works out whether Django's handler bridged the crossing
    (_handlers_function) only where that can name it: a plain function (a
    bound method never is response_for_exception or log_response) outside
    the view (the view's own bridge of either is the view's), as that runs
    for every crossing described afresh: not for the middleware's methods
    nor for the view's own bridges of both functions."""
    with project() as (asgi, _wsgi):
        results = [run_asgi(asgi, path) for path in ("/nope/", "/error-handling/")]
    assert [result.status for result in results] == [404, 200]
    asked = []
    handlers_function = components._handlers_function

    def noting(crossing):
        asked.append(crossing.func.__name__)
        return handlers_function(crossing)

    monkeypatch.setattr(components, "_handlers_function", noting)
    keys = {}
    for record in records:
        asked.clear()
        for crossing in record.crossings:
            assert components.resolve.key(crossing, record) is not None
        keys[record.attributes["url.path"]] = list(asked)
    # Django 4.2 bridges the bound Signal.send, later ones a closure.
    signal = ["sync_send"] if ASYNC_SIGNALS else []
    assert keys == {
        "/nope/": [*signal, "response_for_exception", "log_response"],
        "/error-handling/": signal,
    }


def test_a_view_called_again_by_a_retrying_middleware_is_the_views_again(records):
    """A middleware that calls get_response twice has the view called twice:
    what the view bridges is the view's both times, the middleware's own
    lookup between the two is not."""
    middleware = ["tests.views.RetryingAsyncMiddleware"]
    with project("none", MIDDLEWARE=middleware) as (asgi, _wsgi):
        result = run_asgi(asgi, "/async-bridging/")
    assert result.status == 200
    [record] = records
    assert named(record) == [
        (SIGNAL, "signal"),
        ("middleware_lookup", "view"),
        ("middleware_lookup", "other"),
        ("middleware_lookup", "view"),
        ("HttpResponseBase.close", "response"),
    ]


def test_a_view_django_refuses_to_call_is_no_view_that_ran(records, monkeypatch):
    """ATOMIC_REQUESTS with an async view: make_view_atomic raises, and no
    view runs. Django's answer to that error is not the view's doing."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    with project("none") as (asgi, _wsgi):
        result = run_asgi(asgi, "/async-bridging/")
    assert result.status == 500
    [record] = records
    assert named(record) == [
        (SIGNAL, "signal"),
        ("response_for_exception", "handler"),
        ("log_response", "handler"),
        ("HttpResponseBase.close", "response"),
    ]
    assert components.VIEW_RAN not in record.extra


def test_the_bridged_callables_code_location():
    from project.views import sync_view

    from switchtrace.tracer.describe import code_location

    location = code_location(sync_view)
    assert location.function == "sync_view"
    assert location.namespace == "project.views"
    assert location.filepath.endswith("examples/project/project/views.py")
    assert location.lineno == sync_view.__code__.co_firstlineno


@contextlib.contextmanager
def sync_and_async_receivers(signal):
    """A sync and an async receiver on ``signal``, while the block runs."""

    def sync_receiver(sender, **kwargs):
        pass

    async def async_receiver(sender, **kwargs):
        pass

    signal.connect(sync_receiver, dispatch_uid="test-sync")
    signal.connect(async_receiver, dispatch_uid="test-async")
    try:
        yield
    finally:
        signal.disconnect(dispatch_uid="test-sync")
        signal.disconnect(dispatch_uid="test-async")


@pytest.fixture
def logged_out_receivers():
    """A sync and an async receiver on contrib.auth's user_logged_out."""
    from django.contrib.auth.signals import user_logged_out

    with sync_and_async_receivers(user_logged_out):
        yield


@pytest.mark.skipif(not ASYNC_SIGNALS, reason="async receivers need Django >= 5.0")
def test_send_robust_names_the_signal_of_its_async_receivers(records, logged_out_receivers):
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/robust-signal/")
    [record] = records
    assert described(record) == [
        (
            "async_to_sync",
            "Signal.send_robust.<locals>.asend",
            "signal",
            "user_logged_out",
            True,
        )
    ]


@pytest.mark.skipif(not ASYNC_SIGNALS, reason="Signal.asend needs Django >= 5.0")
def test_a_contrib_signal_is_named(records, logged_out_receivers):
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/async-signal/")
    [record] = records
    assert described(record) == [
        ("async_to_sync", "async_signal_view", "view", "async_signal_view", True),
        ("sync_to_async", SIGNAL, "signal", "user_logged_out", True),
    ]


@pytest.fixture
def order_placed_receivers():
    """A sync and an async receiver on the project's own signal."""
    from ..views import order_placed

    with sync_and_async_receivers(order_placed):
        yield


@pytest.mark.skipif(not ASYNC_SIGNALS, reason="Signal.asend needs Django >= 5.0")
def test_a_signal_of_the_projects_own_is_named(records, order_placed_receivers):
    """Only Django's modules of signals were looked in: a project's own
    signal was 'signal', in the spans, the console's top causes and the
    budget messages alike (two of them added up as one)."""
    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/project-signal/")
    [record] = records
    assert described(record) == [
        ("async_to_sync", "project_signal_view", "view", "project_signal_view", True),
        ("sync_to_async", SIGNAL, "signal", "order_placed", True),
        ("sync_to_async", "Signal.send", "signal", "order_placed", True),
        ("async_to_sync", "Signal.send.<locals>.asend", "signal", "order_placed", True),
    ]
    from switchtrace.exporters.console import top_causes

    causes = top_causes(record, components.resolve)
    assert causes == [("order_placed", 6), ("project_signal_view", 2)]


def test_naming_a_projects_signal_loads_no_lazily_imported_module(tmp_path, monkeypatch):
    """A module that the application imports lazily (importlib.util.LazyLoader,
    as lazy_loader.load does: executed on its first attribute access) was
    executed by the look for the name a module gives the signal, which read
    every module's __dict__ through the module."""
    import importlib.util
    import textwrap
    import types

    # Executed, it leaves a file beside itself.
    (tmp_path / "st_lazy_heavy.py").write_text(
        "from pathlib import Path\n\nPath(__file__).with_suffix('.ran').touch()\n"
    )
    (tmp_path / "st_shop_signals.py").write_text(
        textwrap.dedent(
            """
            from django.dispatch import Signal

            payment_failed = Signal()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("st_lazy_heavy")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    lazy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "st_lazy_heavy", lazy)
    spec.loader.exec_module(lazy)
    import st_shop_signals

    monkeypatch.setitem(sys.modules, "st_shop_signals", st_shop_signals)

    assert components._signal_name(st_shop_signals.payment_failed) == "payment_failed"
    assert type(lazy) is not types.ModuleType  # still waiting for its first use
    assert not (tmp_path / "st_lazy_heavy.ran").exists()


@pytest.mark.parametrize(
    ("path", "view", "decorator", "bridged"),
    [
        ("/members/", "members_view", "login_required", "login_required.<locals>.<lambda>"),
        # Python 3.10's code objects do not say which function made the wrapper.
        ("/staff/", "staff_view", USER_PASSES_TEST, "<lambda>"),
    ],
)
@pytest.mark.skipif(django.VERSION < (5, 1), reason="login_required of async views: Django 5.1")
def test_the_test_of_a_decorator_around_an_async_view_is_the_views(
    path, view, decorator, bridged, records, spans
):
    """login_required and user_passes_test run their test of the user in
    sync_to_async around an async view: it was an 'other' component named
    after the lambda (a bare '<lambda>' for the project's own), in the spans,
    the console's top causes and the budget messages."""
    # request.auser() before the test: Django 5.1's aget_user is
    # sync_to_async(get_user), 5.2's reads the session without a thread.
    reading_the_user = django.VERSION < (5, 2)
    with project() as (_asgi, wsgi):
        result = wsgi_request(wsgi, path)
    assert result.status == 302  # anonymous: sent to the login page
    [record] = records
    assert described(record) == [
        ("async_to_sync", view, "view", view, True),
        *[("sync_to_async", "get_user", "view", view, True)] * reading_the_user,
        ("sync_to_async", f"{view}.{decorator}", "view", f"{view}.{decorator}", True),
    ]
    *user, test = [s for s in spans() if s.name.startswith("sync_to_async")]
    assert [s.name for s in user] == ["sync_to_async get_user"] * reading_the_user
    assert test.name == f"sync_to_async {view}.{decorator}"
    assert test.attributes["switchtrace.component"] == f"{view}.{decorator}"
    # code.* where the lambda is.
    namespace, _, function = bridged.rpartition(".")
    module = "django.contrib.auth.decorators" if namespace else "tests.views"
    assert (test.attributes["code.namespace"], test.attributes["code.function"]) == (
        f"{module}.{namespace}" if namespace else module,
        function,
    )


@pytest.mark.skipif(django.VERSION < (6, 0), reason="the Tasks framework: Django 6.0")
@pytest.mark.parametrize(
    ("server", "path", "headers", "crossings"),
    [
        # A sync view enqueueing a sync task (no crossing) and an async one.
        (
            "asgi",
            "/enqueue/",
            (6, 6, 0, 1),
            [
                ("sync_to_async", SIGNAL, "signal", "request_started", True),
                ("sync_to_async", "enqueue_view", "view", "enqueue_view", True),
                ("async_to_sync", "async_task", "view", "enqueue_view", True),
                (
                    "sync_to_async",
                    "HttpResponseBase.close",
                    "response",
                    "HttpResponse.close",
                    False,
                ),
            ],
        ),
        # Under WSGI the async task gets a loop and a thread of its own.
        (
            "wsgi",
            "/enqueue/",
            (2, 2, 1, 1),
            [("async_to_sync", "async_task", "view", "enqueue_view", True)],
        ),
        # aenqueue: the backend's enqueue in sync_to_async, the async task
        # back on the loop inside it.
        (
            "asgi",
            "/aenqueue/",
            (6, 6, 0, 1),
            [
                ("sync_to_async", SIGNAL, "signal", "request_started", True),
                ("sync_to_async", "ImmediateBackend.enqueue", "view", "aenqueue_view", True),
                ("async_to_sync", "async_task", "view", "aenqueue_view", True),
                (
                    "sync_to_async",
                    "HttpResponseBase.close",
                    "response",
                    "HttpResponse.close",
                    False,
                ),
            ],
        ),
        # Under WSGI, in the loop asgiref made for the view: no second loop.
        (
            "wsgi",
            "/aenqueue/",
            (6, 6, 1, 1),
            [
                ("async_to_sync", "aenqueue_view", "view", "aenqueue_view", True),
                ("sync_to_async", "ImmediateBackend.enqueue", "view", "aenqueue_view", True),
                ("async_to_sync", "async_task", "view", "aenqueue_view", True),
            ],
        ),
    ],
)
def test_tasks_run_by_the_immediate_backend(server, path, headers, crossings, records):
    with project("none") as (asgi, wsgi):
        result = run_asgi(asgi, path) if server == "asgi" else wsgi_request(wsgi, path)
    assert result.body == (b"2 3" if path == "/enqueue/" else b"3")
    assert result.figures() == headers
    [record] = records
    assert described(record) == crossings
    # The async task's crossing is made inside the one that runs it: the
    # sync view's under ASGI, the backend's enqueue for aenqueue.
    parents = {c.qualname: c.parent for c in record.crossings}
    runner = {"/enqueue/": "enqueue_view", "/aenqueue/": "ImmediateBackend.enqueue"}[path]
    by_name = {c.qualname: c for c in record.crossings}
    assert parents["async_task"] is by_name.get(runner)


def listed_by_the_iterator(records, path):
    """The request to ``path`` (an async body listing its rows in its own
    sync_to_async(list) after the headers) has that crossing named 'other',
    after the list."""
    with project("none") as (asgi, _wsgi):
        result = run_asgi(asgi, path)
    assert result.body == b"ab"
    [record] = records
    assert described(record) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "list", "other", "list", False),
        STREAM_CLOSED,
    ]
    assert components.SYNC_STREAM not in record.extra


def test_what_an_async_iterator_bridges_after_the_headers_is_its_own(records):
    """Only a synchronous iterator under ASGI is read by Django's own
    sync_to_async(list): an asynchronous one's sync_to_async(list), after the
    headers and after the view, names the list it bridges."""
    listed_by_the_iterator(records, "/listing-stream/")


@pytest.mark.parametrize("path", ["/listing-stream/", "/listing-iterator-stream/"])
def test_an_async_iterator_of_the_applications_is_no_static_files_handlers(records, path):
    """With django.contrib.staticfiles' handlers loaded (daphne's runserver,
    an asgi.py that serves static files), an async body's sync_to_async(list)
    after the headers is still the application's iterator's own, 'other'
    and list: an async generator of its own (its code is no constant of
    ASGIStaticFilesHandler.get_response_async) and an async iterator of a
    class of its own (no generator, not asked) are not the handler's, whose
    reading of a file is ASGIStaticFilesHandler.get_response_async."""
    import django.contrib.staticfiles.handlers  # noqa: F401 - loaded, as where it serves

    listed_by_the_iterator(records, path)


@pytest.mark.skipif(django.VERSION < (5, 1), reason="user_passes_test of async views: Django 5.1")
def test_a_views_own_closure_is_no_decorators_and_decorators_are_looked_through(records):
    """What a view made by a factory bridges from its closure is the view's
    (the view is no decorator around itself); a test of the user under two
    decorators is found in the inner one's closure, and keeps its own name."""
    with project() as (_asgi, wsgi):
        made = wsgi_request(wsgi, "/made/")
        staff = wsgi_request(wsgi, "/cached-staff/")
    assert (made.status, staff.status) == (200, 302)
    made_record, staff_record = records
    factory = "_made_view.<locals>"
    assert described(made_record) == [
        ("async_to_sync", f"{factory}.made", "view", f"{factory}.made", True),
        ("sync_to_async", f"{factory}.lookup", "view", f"{factory}.made", True),
    ]
    reading_the_user = django.VERSION < (5, 2)
    view = "cached_staff_view"
    assert described(staff_record) == [
        ("async_to_sync", view, "view", view, True),
        *[("sync_to_async", "get_user", "view", view, True)] * reading_the_user,
        ("sync_to_async", "is_staff", "view", f"{view}.{USER_PASSES_TEST}", True),
    ]


@pytest.mark.skipif(
    django.VERSION < (5, 2), reason="method_decorator around an async method: Django 5.2"
)
def test_the_test_of_a_method_decorator_around_an_async_class_view_is_the_views(records, spans):
    """method_decorator, Django's way of decorating a class-based view,
    applies its decorators afresh on each call: no layer of the view holds
    their wrappers. login_required's lambda was a span named
    'login_required.<locals>.<lambda>'; the decorators are found in
    method_decorator's own wrapper around the handler."""
    with project() as (_asgi, wsgi):
        members = wsgi_request(wsgi, "/members-class/")
        staff = wsgi_request(wsgi, "/staff-class/")
    assert (members.status, staff.status) == (302, 302)
    for record, view, bridged, decorator in zip(
        records,
        ["MembersClassView", "StaffClassView"],
        ["MembersClassView.login_required", "is_staff"],
        ["login_required", "user_passes_test"],
        strict=True,
    ):
        assert described(record) == [
            ("async_to_sync", f"{view}.get", "view", f"{view}.get", True),
            ("sync_to_async", bridged, "view", f"{view}.{decorator}", True),
        ]
    tests = [s for s in spans() if s.name.startswith("sync_to_async") and "get_user" not in s.name]
    assert [(s.name, s.attributes["switchtrace.component"]) for s in tests] == [
        ("sync_to_async MembersClassView.login_required", "MembersClassView.login_required"),
        ("sync_to_async is_staff", "StaffClassView.user_passes_test"),
    ]
    assert tests[0].attributes["code.function"] == "<lambda>"


def test_a_view_runs_from_its_start_to_its_end():
    """Each time Django calls the view is one run, [start, end) in the
    record's clock: a crossing called at the start is the view's, one called
    at the end is not. A start while a run is open (its end skipped) starts
    none; an end with no run open ends none."""
    from ..views import middleware_lookup

    ticks = iter([0, 10, 20, 25, 30, 40, 50])
    record = tracer.RequestRecord(tracer.ASGI, lambda: next(ticks))
    components.remember_view(record, middleware_lookup, "GET")
    components.view_started(record)
    components.view_ended(record)
    assert record.extra[components.VIEW_RAN] == [[10, 20]]
    components.view_started(record)
    components.view_started(record)
    components.view_ended(record)
    components.view_ended(record)
    assert record.extra[components.VIEW_RAN] == [[10, 20], [25, 30]]
    thread = threading.current_thread()
    kinds = [
        components.resolve(tracer.Crossing("sync_to_async", None, len, thread, None, at), record)
        for at in (9, 10, 19, 20, 24, 25, 29, 30)
    ]
    assert [component.kind for component in kinds] == ["other", "view", "view", "other"] * 2


@pytest.mark.skipif(django.VERSION < (5, 1), reason="login_required of async views: Django 5.1")
def test_each_site_is_described_once_and_shared_by_its_crossings(records):
    """Resolver.key names every site of these requests (a middleware's hook,
    an adapter of the middleware chain, Django's signal closure, a response's
    close, the view, what the view bridges, a decorator's test of the user, a
    class-based view), so that a second request's crossings share the
    first's descriptions."""
    middleware = ["tests.views.BridgingAsyncMiddleware"]
    with project() as (asgi, wsgi):
        for _ in range(2):
            run_asgi(asgi, "/sync/")
        for _ in range(2):
            wsgi_request(wsgi, "/members/")
        for _ in range(2):
            run_asgi(asgi, "/class-view/")
    with project("sync-only") as (asgi, _wsgi):
        for _ in range(2):
            run_asgi(asgi, "/sync/")
    with project("none", MIDDLEWARE=middleware) as (asgi, _wsgi):
        for _ in range(2):
            run_asgi(asgi, "/async-bridging/")
    for record in records:
        record.describe(components.resolve)
    first = [c.description for r in records[0::2] for c in r.crossings]
    second = [c.description for r in records[1::2] for c in r.crossings]
    # Django 5.1's request.auser() bridges get_user before the test of the user.
    crossings = 45 + (django.VERSION < (5, 2))
    assert len(first) == len(second) == crossings
    assert [d.shared for d in first] == [True] * crossings
    assert all(one is other for one, other in zip(first, second, strict=True))


@pytest.mark.skipif(django.VERSION < (5, 1), reason="login_required of async views: Django 5.1")
def test_sites_of_one_code_are_told_apart_by_their_view(records):
    """login_required's test of the user is one code for every view it
    decorates, and a class-based view one closure for every method: the
    description of each is its own view's, and its own method's."""
    from ..views import ClassView

    with project() as (_asgi, wsgi):
        wsgi_request(wsgi, "/members/")
        wsgi_request(wsgi, "/other-members/")
    tests = [described(record)[-1] for record in records]
    assert [(qualname, component) for _m, qualname, _k, component, _b in tests] == [
        ("members_view.login_required", "members_view.login_required"),
        ("other_members_view.login_required", "other_members_view.login_required"),
    ]
    view = ClassView.as_view()
    names = []
    for method in ("GET", "POST", "GET"):
        record = tracer.RequestRecord(tracer.ASGI, tracer.patches.clock, 10)
        components.remember_view(record, view, method)
        thread = threading.current_thread()
        record.crossings.append(tracer.Crossing("sync_to_async", None, view, thread, None, 0))
        names += described(record)
    assert [(qualname, component) for _m, qualname, _k, component, _b in names] == [
        ("ClassView.get", "ClassView.get"),
        ("ClassView", "ClassView"),
        ("ClassView.get", "ClassView.get"),
    ]


def test_a_class_based_view_made_atomic_is_named_after_its_handler(records, monkeypatch):
    """ATOMIC_REQUESTS: Django bridges transaction.atomic's wrapper around
    the view, which is the view still (through __wrapped__)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    with project("none") as (asgi, _wsgi):
        result = run_asgi(asgi, "/class-view/")
    assert result.status == 200
    [record] = records
    assert described(record) == [
        ("sync_to_async", SIGNAL, "signal", "request_started", True),
        ("sync_to_async", "ClassView.get", "view", "ClassView.get", True),
        ("sync_to_async", "HttpResponseBase.close", "response", "HttpResponse.close", False),
    ]


@pytest.mark.skipif(not ASYNC_SIGNALS, reason="Signal.asend needs Django >= 5.0")
def test_two_signals_sent_alike_are_named_apart(order_placed_receivers, logged_out_receivers):
    """Signal.asend runs each signal's sync receivers in a closure of the
    same code: the signal it closes over tells the two apart."""
    import asyncio

    from django.contrib.auth.signals import user_logged_out

    from ..views import order_placed

    async def main():
        with tracer.recording() as record:
            await order_placed.asend(sender=None)
            await user_logged_out.asend(sender=None)
        return record

    record = asyncio.run(main())
    assert described(record) == [
        ("sync_to_async", SIGNAL, "signal", "order_placed", True),
        ("sync_to_async", SIGNAL, "signal", "user_logged_out", True),
    ]


def test_a_signal_is_named_as_its_signals_module_names_it(tmp_path, monkeypatch):
    """A module named signals gives the name, though another module that
    imports the signal under another name comes first in sys.modules; with
    no such module, the first module's name; with none, 'signal'."""
    import textwrap

    package = tmp_path / "st_shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "signals.py").write_text(
        "from django.dispatch import Signal\n\npayment_failed = Signal()\n"
    )
    (package / "views.py").write_text(
        textwrap.dedent(
            """
            from django.dispatch import Signal

            refunded = Signal()


            def ready():
                global on_failure
                from .signals import payment_failed as on_failure
            """
        )
    )
    (package / "receivers.py").write_text("from .views import refunded as on_refund\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["st_shop", "st_shop.views", "st_shop.receivers", "st_shop.signals"]
    try:
        import st_shop.receivers
        import st_shop.views

        st_shop.views.ready()
        assert [name for name in sys.modules if name.partition(".")[0] == "st_shop"] == names
        assert components._signal_name(st_shop.views.on_failure) == "payment_failed"
        assert components._signal_name(st_shop.views.refunded) == "refunded"
        assert components._signal_name(Signal()) == "signal"
    finally:
        for name in names:
            sys.modules.pop(name, None)
