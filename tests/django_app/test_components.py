"""Every crossing names its bridged callable and the Django component that caused it."""

from __future__ import annotations

import contextlib
import sys

import django
import pytest
from django.dispatch import Signal

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


def described(record):
    record.describe(components.resolve)
    return [
        (c.mechanism, c.qualname, c.component.kind, str(c.component), c.before_headers)
        for c in record.crossings
    ]


def named(record):
    """(bridged callable, component kind) of each crossing."""
    return [(qualname, kind) for _m, qualname, kind, _c, _b in described(record)]


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
        (
            "sync_to_async",
            "HttpResponseBase.close",
            "response",
            "StreamingHttpResponse.close",
            False,
        ),
    ]


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
        ("response_for_exception", "other"),
        ("log_response", "other"),
        ("HttpResponseBase.close", "response"),
    ]


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
        ("response_for_exception", "other"),
        ("log_response", "other"),
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
