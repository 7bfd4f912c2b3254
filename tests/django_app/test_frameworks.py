"""Views written with the frameworks Django projects build on: the crossing
that runs the view is named after the application's code behind the
framework's dispatcher (the class-based view's handler, a viewset's action,
a django-ninja operation's function), and the figures are those Django's own
views get."""

from __future__ import annotations

import pytest
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from switchtrace import tracer
from switchtrace.django_app.explain import DRF_ASYNC_FIX as DRF

from ..support import ASGI_THREADS, run_asgi, wsgi_request
from .test_components import SIGNAL, described
from .test_middleware import project

SIGNAL_CROSSING = ("sync_to_async", SIGNAL, "signal", "request_started", True)


def close(response_class="HttpResponse"):
    return ("sync_to_async", "HttpResponseBase.close", "response", f"{response_class}.close", False)


def view_spans(spans):
    """The spans of the crossings a view caused, of the ``spans`` fixture's."""
    return [s for s in spans() if s.attributes.get("switchtrace.component.kind") == "view"]


def code_of(span):
    attributes = span.attributes
    return (
        span.name,
        attributes["code.namespace"],
        attributes["code.function"],
        attributes["code.filepath"].replace("\\", "/").rsplit("/", 2)[-2:],
    )


def test_a_class_based_view_is_named_after_its_class_and_handler(records, spans):
    # Django's as_view() returns one closure, View.as_view.<locals>.view, for
    # every class: two classes of one module are told apart by view_class.
    with project("none") as (asgi, _wsgi):
        assert run_asgi(asgi, "/class-view/").figures() == (4, 4, 0, 1)
        assert run_asgi(asgi, "/other-class-view/").figures() == (4, 4, 0, 1)
    first, second = records
    view = ("sync_to_async", "ClassView.get", "view", "ClassView.get", True)
    assert described(first) == [SIGNAL_CROSSING, view, close()]
    other = ("sync_to_async", "OtherClassView.get", "view", "OtherClassView.get", True)
    assert described(second) == [SIGNAL_CROSSING, other, close()]
    named = [code_of(s) for s in view_spans(spans)]
    assert named == [
        ("sync_to_async ClassView.get", "tests.views.ClassView", "get", ["tests", "views.py"]),
        (
            "sync_to_async OtherClassView.get",
            "tests.views.OtherClassView",
            "get",
            ["tests", "views.py"],
        ),
    ]


def frameworks():
    """The example project without middleware, serving tests/frameworks.py's
    views (the test extra installs the frameworks)."""
    return project("none", ROOT_URLCONF="tests.frameworks")


def render():
    # DRF's Response is a SimpleTemplateResponse: rendered in one more
    # sync_to_async under ASGI, before the headers.
    return ("sync_to_async", "SimpleTemplateResponse.render", "response", "Response.render", True)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/drf/", "OrderView.get"),
        ("/orders/", "OrderViewSet.list"),
        ("/orders/5/", "OrderViewSet.retrieve"),
    ],
)
def test_django_rest_framework(path, name, records, spans):
    # The signal, the view, the render, and after the headers the close.
    with frameworks() as (asgi, wsgi):
        asgi_result = run_asgi(asgi, path)
        wsgi_result = wsgi_request(wsgi, path)
    assert (asgi_result.status, wsgi_result.status) == (200, 200)
    assert asgi_result.figures() == (6, 6, 0, 1)
    assert wsgi_result.figures() == (0, 0, 0, 0)
    under_asgi, under_wsgi = records
    assert under_asgi.totals() == tracer.Figures(8, 8, 0, ASGI_THREADS)
    view = ("sync_to_async", name, "view", name, True)
    assert described(under_asgi) == [SIGNAL_CROSSING, view, render(), close("Response")]
    assert described(under_wsgi) == []
    cls, _, handler = name.partition(".")
    [span] = view_spans(spans)
    assert code_of(span) == (
        f"sync_to_async {name}",
        f"tests.frameworks.{cls}",
        handler,
        ["tests", "frameworks.py"],
    )


@pytest.mark.parametrize(
    ("path", "cls", "handler"),
    [("/adrf/", "AsyncOrderView", "get"), ("/async-orders/", "AsyncOrderViewSet", "list")],
)
def test_adrf(path, cls, handler, records, spans):
    # adrf runs DRF's initial() (authentication, permissions, throttles) in
    # sync_to_async, and awaits the async handler: under ASGI the signal,
    # initial, the render and the close; under WSGI the view in async_to_sync
    # (a new loop and thread) and initial inside it.
    with frameworks() as (asgi, wsgi):
        asgi_result = run_asgi(asgi, path)
        wsgi_result = wsgi_request(wsgi, path)
    assert (asgi_result.status, wsgi_result.status) == (200, 200)
    assert asgi_result.figures() == (6, 6, 0, 1)
    assert wsgi_result.figures() == (4, 4, 1, 1)
    under_asgi, under_wsgi = records
    assert under_asgi.totals() == tracer.Figures(8, 8, 0, ASGI_THREADS)
    assert under_wsgi.totals() == tracer.Figures(4, 4, 1, 1)
    initial = ("sync_to_async", "APIView.initial", "view", f"{cls}.initial", True)
    assert described(under_asgi) == [SIGNAL_CROSSING, initial, render(), close("Response")]
    view = ("async_to_sync", f"{cls}.{handler}", "view", f"{cls}.{handler}", True)
    assert described(under_wsgi) == [view, initial]
    named = [code_of(s) for s in view_spans(spans)]
    initial_code = ("sync_to_async APIView.initial", "rest_framework.views.APIView", "initial")
    assert [n[:3] for n in named] == [
        initial_code,
        (f"async_to_sync {cls}.{handler}", f"tests.frameworks.{cls}", handler),
        initial_code,
    ]
    assert named[1][3] == ["tests", "frameworks.py"]


@pytest.mark.parametrize(
    ("path", "function"),
    [("/drf-function/", "order_function"), ("/drf-other-function/", "other_order_function")],
)
def test_a_drf_function_view_is_named_after_its_function(path, function, records, spans):
    """DRF's api_view makes a class, WrappedAPIView, for each function, whose
    get calls it: every function view was "WrappedAPIView.get", located in
    DRF's decorator."""
    with frameworks() as (asgi, wsgi):
        assert run_asgi(asgi, path).figures() == (6, 6, 0, 1)
        assert wsgi_request(wsgi, path).figures() == (0, 0, 0, 0)
    under_asgi, _under_wsgi = records
    view = ("sync_to_async", function, "view", function, True)
    assert described(under_asgi) == [SIGNAL_CROSSING, view, render(), close("Response")]
    [span] = view_spans(spans)
    assert code_of(span) == (
        f"sync_to_async {function}",
        "tests.frameworks",
        function,
        ["tests", "frameworks.py"],
    )


@pytest.mark.parametrize("method", ["POST", "DELETE", "BREW"])
def test_a_drf_function_view_answering_405_is_located_at_its_function(method, records, spans):
    """A method the function was not given (DRF's http_method_not_allowed
    answers): named after the function, and located there too (it was DRF's
    WrappedAPIView, said to be in the project's module, with no line)."""
    from ..support import asgi_request, run_in_server_loop

    with frameworks() as (asgi, _wsgi):
        result = run_in_server_loop(asgi_request(asgi, "/drf-function/", method=method))
    assert result.status == 405
    # The 200's six, and Django's log_response of the 405 (its thread the
    # loop's default executor's, started by whichever request came first).
    assert result.figures()[:3] == (8, 8, 0)
    [record] = records
    view = ("sync_to_async", "order_function", "view", "order_function", True)
    log = ("sync_to_async", "log_response", "handler", "log_response", True)
    assert described(record) == [SIGNAL_CROSSING, view, render(), log, close("Response")]
    [span] = view_spans(spans)
    assert code_of(span) == (
        "sync_to_async order_function",
        "tests.frameworks",
        "order_function",
        ["tests", "frameworks.py"],
    )


def test_an_adrf_function_view_is_named_after_its_function(records, spans):
    """adrf's api_view likewise; the DRF initial() it bridges is the view's."""
    with frameworks() as (asgi, wsgi):
        assert run_asgi(asgi, "/adrf-function/").figures() == (6, 6, 0, 1)
        assert wsgi_request(wsgi, "/adrf-function/").figures() == (4, 4, 1, 1)
    under_asgi, under_wsgi = records
    function = "async_order_function"
    initial = ("sync_to_async", "APIView.initial", "view", f"{function}.initial", True)
    assert described(under_asgi) == [SIGNAL_CROSSING, initial, render(), close("Response")]
    view = ("async_to_sync", function, "view", function, True)
    assert described(under_wsgi) == [view, initial]
    named = [code_of(s) for s in view_spans(spans)]
    assert named[1] == (
        f"async_to_sync {function}",
        "tests.frameworks",
        function,
        ["tests", "frameworks.py"],
    )


@pytest.mark.parametrize(
    ("path", "asgi_figures", "wsgi_figures", "mechanisms", "function"),
    [
        # A sync operation: Django's view is sync.
        ("/ninja/sync", (4, 4, 0, 1), (0, 0, 0, 0), ["sync_to_async"], "list_orders"),
        # An async one: awaited under ASGI, in async_to_sync under WSGI.
        ("/ninja/async", (2, 2, 0, 1), (2, 2, 1, 1), ["async_to_sync"], "async_list_orders"),
        # A sync operation beside an async one: the view is async, and runs
        # the sync operation in sync_to_async(operation.run).
        (
            "/ninja/mixed",
            (4, 4, 0, 1),
            (4, 4, 1, 1),
            ["sync_to_async", "async_to_sync", "sync_to_async"],
            "mixed_get",
        ),
    ],
)
def test_django_ninja(path, asgi_figures, wsgi_figures, mechanisms, function, records, spans):
    with frameworks() as (asgi, wsgi):
        asgi_result = run_asgi(asgi, path)
        wsgi_result = wsgi_request(wsgi, path)
    assert (asgi_result.status, wsgi_result.status) == (200, 200)
    assert asgi_result.figures() == asgi_figures
    assert wsgi_result.figures() == wsgi_figures
    views = [crossing[:4] for record in records for crossing in described(record)]
    views = [crossing for crossing in views if crossing[2] == "view"]
    assert views == [(mechanism, function, "view", function) for mechanism in mechanisms]
    named = [code_of(s) for s in view_spans(spans)]
    assert named == [
        (f"{mechanism} {function}", "tests.frameworks", function, ["tests", "frameworks.py"])
        for mechanism in mechanisms
    ]


def test_channels_database_sync_to_async_counts_as_sync_to_async(records):
    # DatabaseSyncToAsync overrides thread_handler (closing old connections
    # around the call); its crossing is a sync_to_async like any other.
    with frameworks() as (asgi, wsgi):
        results = [
            (run_asgi(asgi, path).figures(), wsgi_request(wsgi, path).figures())
            for path in ("/channels-db/", "/sync-to-async/")
        ]
    assert results == [((4, 4, 0, 1), (4, 4, 1, 1))] * 2
    described_records = []
    for view in ("channels_db_view", "sync_to_async_view"):
        # The view's own bridge call of code that names no component: the view's.
        crossing = ("sync_to_async", "count_orders", "view", view, True)
        described_records += [
            [SIGNAL_CROSSING, crossing, close()],
            [("async_to_sync", view, "view", view, True), crossing],
        ]
    assert [described(record) for record in records] == described_records
    # Thread-sensitive: Django's per-request thread under ASGI, the thread
    # waiting in async_to_sync under WSGI.
    executors = [c.executor for r in records for c in r.crossings if c.qualname == "count_orders"]
    assert executors == ["thread_sensitive_context", "current_thread"] * 2


def test_channels_protocol_type_router_serves_django_with_the_same_figures(records):
    from channels.routing import ProtocolTypeRouter

    with project() as (asgi, _wsgi):
        router = ProtocolTypeRouter({"http": asgi})
        results = [run_asgi(router, path) for path in ("/sync/", "/async/")]
    assert [(r.status, r.figures()) for r in results] == [
        (200, (30, 30, 0, 1)),
        (200, (28, 28, 0, 1)),
    ]
    assert [record.context_switches for record in records] == [32, 30]


@pytest.mark.parametrize(
    ("urlconf", "url", "expected"),
    [
        ("tests.urls", "/class-view/", (False, "ClassView.get", None)),
        ("tests.urls", "/sync/", (False, "sync_view", None)),
        ("tests.frameworks", "/orders/", (False, "OrderViewSet.list", DRF)),
        ("tests.frameworks", "/drf/", (False, "OrderView.get", DRF)),
        ("tests.frameworks", "/drf-function/", (False, "order_function", DRF)),
        ("tests.frameworks", "/adrf/", (True, "AsyncOrderView.get", None)),
        ("tests.frameworks", "/adrf-function/", (True, "async_order_function", None)),
        ("tests.frameworks", "/async-orders/", (True, "AsyncOrderViewSet.list", None)),
        ("tests.frameworks", "/ninja/mixed", (True, "mixed_get", None)),
    ],
)
def test_explain_names_the_view_as_its_crossing_is_named(urlconf, url, expected):
    """It said View.as_view.<locals>.view, OrderViewSet, and
    PathView.get_view.<locals>.async_view_wrapper. A view of DRF's is made
    async on adrf (an async def handler under DRF's dispatch is a coroutine
    never awaited): explain said "make the view async"."""
    from django.test.utils import override_settings

    from switchtrace.django_app.explain import view_kind

    with override_settings(ROOT_URLCONF=urlconf):
        assert view_kind(url) == expected


def test_a_class_whose_module_is_no_string_is_judged_without_raising():
    from rest_framework.views import APIView

    from switchtrace.django_app.explain import _of_drf_alone

    odd = type("Odd", (APIView,), {"__module__": None})
    assert [_of_drf_alone(c) for c in (odd, APIView, None, 42, int)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_explain_tells_how_to_make_a_drf_view_async():
    import io

    from django.test.utils import override_settings

    from switchtrace.django_app.explain import render

    out = io.StringIO()
    with override_settings(ROOT_URLCONF="tests.frameworks", MIDDLEWARE=[]):
        assert render("/drf/", False, out) == 0
    assert [line.strip() for line in out.getvalue().splitlines() if "→" in line] == [
        "/drf/ → OrderView.get (sync view)",
        f"→ {DRF}",
    ]


def test_a_clients_own_methods_are_not_kept_per_view():
    """A view's targets were kept for every method a request came with, and
    a method is any token a client sends: one entry per made-up method, for
    as long as the view lives. Only Django's methods are kept."""
    from django.urls import resolve

    from switchtrace.django_app import components

    view = resolve("/class-view/").func
    for method in ("GET", "BREW1", "BREW2", "HEAD"):
        record = tracer.RequestRecord(tracer.ASGI, tracer.patches.clock, 10)
        components.remember_view(record, view, method)
        components.view_target(record)
    assert sorted(components._view_targets.get(view)) == ["GET", "HEAD"]


@pytest.mark.parametrize(
    ("path", "under_asgi", "under_wsgi"),
    [
        # adrf's own sync_to_async(self.initial): named after the view's
        # class, made by its code, not by Django's adaptation of the view.
        ("/adrf/", [("AsyncOrderView.initial", 2)], [("AsyncOrderView.initial", 2)]),
        # django-ninja's async path running a sync operation in
        # sync_to_async(operation.run): named after the operation's function.
        ("/ninja/mixed", [("mixed_get", 2)], [("mixed_get", 2)]),
        # Django's own adaptation of the view (async_to_sync under WSGI) is
        # what the prediction models.
        ("/ninja/async", [], []),
    ],
)
def test_explain_lists_what_a_views_code_bridges_itself(path, under_asgi, under_wsgi, records):
    """explain --measure's 'not in the prediction' left out every crossing
    whose component is the view, as if Django's adaptation of the view made
    them all: a measurement that DIFFERS named nothing."""
    from switchtrace.django_app.explain import _unmodelled

    with frameworks() as (asgi, wsgi):
        run_asgi(asgi, path)
        wsgi_request(wsgi, path)
    asgi_record, wsgi_record = records
    assert (_unmodelled(asgi_record), _unmodelled(wsgi_record)) == (under_asgi, under_wsgi)


class FormView(View):
    def get(self, request):
        return HttpResponse("form")

    def post(self, request):
        return HttpResponse("sent")


class HeadView(View):
    def get(self, request):
        return HttpResponse("head")

    def head(self, request):
        return HttpResponse()


class OwnDispatchView(View):
    """A view that answers every method itself (Strawberry's GraphQLView)."""

    def dispatch(self, request, *args, **kwargs):
        """Our own dispatch: one answer for every method."""
        print("dispatching", request.method)
        return HttpResponse("answered")


class PrivateView(LoginRequiredMixin, OwnDispatchView):
    """graphene-django's documented PrivateGraphQLView: the mixin's dispatch
    hands on (super()) to the view's own."""


@method_decorator(csrf_exempt, name="dispatch")
class DecoratedDispatchView(OwnDispatchView):
    """Its dispatch through method_decorator's wrapper."""


def _no_wraps(function):
    """A decorator that copies nothing of the function it wraps."""

    def wrapper(self, request, *args, **kwargs):
        return function(self, request, *args, **kwargs)

    return wrapper


class NoWrapsView(View):
    """A dispatch handing on to View.dispatch, under that decorator."""

    @_no_wraps
    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)

    def get(self, request):
        return HttpResponse("got")


class GuardedView(LoginRequiredMixin, View):
    """A mixin's dispatch that hands on to View.dispatch (super()): the
    handler answers, or http_method_not_allowed."""

    def get(self, request):
        return HttpResponse("guarded")


@pytest.mark.parametrize(
    ("cls", "method", "name"),
    [
        (OwnDispatchView, "POST", "OwnDispatchView.dispatch"),
        # View.options is never called: the view's own dispatch answers.
        (OwnDispatchView, "OPTIONS", "OwnDispatchView.dispatch"),
        (PrivateView, "GET", "PrivateView.dispatch"),
        (DecoratedDispatchView, "GET", "DecoratedDispatchView.dispatch"),
        (GuardedView, "GET", "GuardedView.get"),
        (GuardedView, "POST", "GuardedView"),
        (NoWrapsView, "GET", "NoWrapsView.get"),
        (NoWrapsView, "POST", "NoWrapsView"),
        (FormView, "GET", "FormView.get"),
        (FormView, "HEAD", "FormView.get"),  # View.setup: no head, get answers
        (FormView, "POST", "FormView.post"),
        (FormView, "PUT", "FormView"),  # allowed, but no put: not allowed
        (FormView, "BREW", "FormView"),  # a client's own method
        (HeadView, "HEAD", "HeadView.head"),
    ],
)
def test_a_class_based_views_target_is_what_dispatch_picks(cls, method, name):
    """The handler View.dispatch calls for the method, or the class alone
    where http_method_not_allowed answers; worked out the first time it is
    asked for (a view just made), and every time for a client's own method."""
    from switchtrace.django_app import components

    view = cls.as_view()
    for _ in range(2):
        record = tracer.RequestRecord(tracer.ASGI, tracer.patches.clock, 10)
        components.remember_view(record, view, method)
        target = components.view_target(record)
        assert (target.name, str(target.component), target.cls) == (name, name, cls)
        handler = name.rpartition(".")[2]
        # (The dispatch that answers: the view's own under the mixin's.)
        owner = OwnDispatchView if cls is PrivateView else cls
        assert target.code is (getattr(owner, handler) if "." in name else cls)


def test_a_method_a_framework_view_has_no_handler_for_is_named_after_its_class():
    """DRF's dispatch falls back to http_method_not_allowed; adrf's hands on
    to its async_dispatch (or sync_dispatch), which does: no dispatch of the
    view's own answers."""
    from switchtrace.django_app import components
    from tests.frameworks import AsyncOrderView, AsyncOrderViewSet, OrderView, OrderViewSet

    views = [
        OrderView.as_view(),
        OrderViewSet.as_view({"get": "list"}),
        AsyncOrderView.as_view(),
        AsyncOrderViewSet.as_view({"get": "list"}),
    ]
    assert [components.find_view_target(view, "POST").name for view in views] == [
        "OrderView",
        "OrderViewSet",
        "AsyncOrderView",
        "AsyncOrderViewSet",
    ]
    # OPTIONS: APIView.options, which DRF's dispatch finds on a viewset too.
    assert [components.find_view_target(view, "OPTIONS").name for view in views] == [
        "OrderView.options",
        "OrderViewSet.options",
        "AsyncOrderView.options",
        "AsyncOrderViewSet.options",
    ]


def test_a_viewsets_head_is_its_get_action_before_drf_adds_it():
    """DRF maps HEAD to the get action in the view's first call (older DRF
    not at all): before it (switchtrace explain names views no request
    reached), HEAD is what GET is, and a method with no action the class."""
    from switchtrace.django_app import components
    from tests.frameworks import OrderViewSet

    view = OrderViewSet.as_view({"get": "list"})
    names = [components.find_view_target(view, m).name for m in ("GET", "HEAD", "POST")]
    assert names == ["OrderViewSet.list", "OrderViewSet.list", "OrderViewSet"]
    assert view.actions == {"get": "list"}


def test_a_ninja_path_of_two_methods_is_each_methods_operation():
    """django-ninja serves /ninja/mixed's GET and POST by one view: a POST
    is mixed_post's (its crossings, the view's name), not the first one's."""
    from django.test import override_settings
    from django.urls import resolve

    from switchtrace.django_app import components

    with override_settings(ROOT_URLCONF="tests.frameworks"):
        view = resolve("/ninja/mixed").func
    assert [components.find_view_target(view, m).name for m in ("GET", "POST")] == [
        "mixed_get",
        "mixed_post",
    ]
