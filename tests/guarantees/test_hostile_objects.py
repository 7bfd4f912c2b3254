"""The application's own objects, as odd as they come: switchtrace hashes none of
them, keeps none of them alive, and whatever their attributes raise is not
its error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import threading
import weakref

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse, StreamingHttpResponse
from django.test.client import RequestFactory
from django.test.utils import override_settings
from django.urls import path

from switchtrace import example, tracer
from switchtrace.django_app import components, integration, telemetry
from switchtrace.exporters.console import format_record
from switchtrace.tracer import describe

from ..support import run_asgi


class EqResponse(HttpResponse):
    """Defines __eq__, so it has no hash; and any two are equal."""

    def __eq__(self, other):
        return isinstance(other, EqResponse)


def eq_view(request):
    return EqResponse("eq")


def stream_view(request):
    return StreamingHttpResponse(iter([b"a", b"b"]))


#: Weak references to the requests the view below served.
served: list[weakref.ref] = []


async def per_request_function_view(request):
    served.append(weakref.ref(request))
    # A function made per request (no closure) whose default holds the request.
    n = await sync_to_async(lambda req=request: len(req.path))()
    return HttpResponse(str(n))


class Rows:
    """An async iterator whose other attributes are another object's, made
    when first asked for (a lazy cursor): what its __getattr__ is asked."""

    asked: list[str] = []

    def __init__(self):
        self.left = [b"a", b"b"]

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.left:
            raise StopAsyncIteration
        return self.left.pop(0)

    def __getattr__(self, name):
        Rows.asked.append(name)
        raise AttributeError(name)


async def rows_view(request):
    return StreamingHttpResponse(Rows())


urlpatterns = [
    path("eq/", eq_view),
    path("rows/", rows_view),
    path("stream/", stream_view),
    path("per-request-function/", per_request_function_view),
]


class Proxy:
    """A callable whose __getattr__ raises something else than AttributeError
    (as lazy proxies and RPC stubs do)."""

    def __call__(self, *args):
        return "called"

    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")


class Sly(Proxy):
    """Passes asgiref's and inspect's checks (AttributeError for what they
    ask), and raises for what naming it asks."""

    def __getattr__(self, name):
        if name in ("__wrapped__", "get_response"):
            raise RuntimeError(f"no {name}")
        raise AttributeError(name)


def recorded(*calls) -> tuple[tracer.RequestRecord, list]:
    """Await each ``call(pool)`` in one recording, in a loop of its own: the
    record and what each returned. The threads they use (``pool``, one
    worker; asgiref's executor) are started before, outside the record."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.submit(lambda: None).result()

    async def main():
        await sync_to_async(lambda: None)()
        with tracer.recording() as record:
            results = [await call(pool) for call in calls]
        return record, results

    try:
        return asyncio.run(main())
    finally:
        pool.shutdown()


def _in(pool, func):
    return asyncio.get_running_loop().run_in_executor(pool, func)


def _environ(path: str) -> dict:
    return RequestFactory()._base_environ(PATH_INFO=path, REQUEST_METHOD="GET")


@pytest.mark.parametrize("installed", [False, True])
def test_an_unhashable_response_closes_while_another_is_open(installed, records):
    # Two WSGI responses open at once (a threaded server), one of them of a
    # class without a hash: its close must do what it does without
    # switchtrace, and end its record.
    def start_response(status, headers, exc_info=None):
        return None

    closed = {}
    if not installed:
        integration.uninstall()
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
            handler = WSGIHandler()
            streaming = handler(_environ("/stream/"), start_response)

            def serve_eq():
                response = handler(_environ("/eq/"), start_response)
                closed["content"] = b"".join(response)
                response.close()
                closed["finished"] = [r.attributes["url.path"] for r in records]

            thread = threading.Thread(target=serve_eq)
            thread.start()
            thread.join()
            assert b"".join(streaming) == b"ab"
            streaming.close()
    finally:
        integration.install()
    assert closed["content"] == b"eq"
    assert closed["finished"] == (["/eq/"] if installed else [])
    assert [r.attributes["url.path"] for r in records] == (
        ["/eq/", "/stream/"] if installed else []
    )


def test_an_async_bodys_iterator_is_asked_nothing_at_the_headers(records):
    """Under ASGI, what switchtrace does at the headers of a response with an
    async body (is it the static files handler's?) asks the application's
    iterator nothing that Django does not: its __getattr__ may do anything."""
    asked = []
    for installed in (False, True):
        Rows.asked = []
        if not installed:
            integration.uninstall()
        try:
            with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
                result = run_asgi(ASGIHandler(), "/rows/")
        finally:
            integration.install()
        assert (result.status, result.body) == (200, b"ab")
        asked.append(Rows.asked)
    assert [r.attributes["url.path"] for r in records] == ["/rows/"]
    # Django closes the iterator after the body (aclosing); switchtrace asks nothing.
    assert asked == [["close"], ["close"]]


def test_responses_equal_by_their_own_eq_keep_their_own_figures(records):
    # Two responses that compare equal are still two responses.
    from switchtrace.django_app import headers

    first, second = EqResponse("a"), EqResponse("b")
    headers.stamp(first, tracer.Figures(2, 2, 0, 0))
    headers.restamp(second, tracer.Figures(4, 4, 0, 0))  # never stamped: left alone
    assert first["X-Context-Switches"] == "2"
    assert "X-Context-Switches" not in second


def test_a_function_made_per_request_does_not_outlive_its_request():
    served.clear()
    pipeline = telemetry.pipeline()
    assert pipeline is not None  # its spans name the function (and cache the name)
    with example.handlers("none", True, ROOT_URLCONF=__name__) as (asgi, _wsgi):
        for _ in range(3):
            assert run_asgi(asgi, "/per-request-function/").status == 200
            assert pipeline.flush(10)
    gc.collect()
    assert [ref() for ref in served] == [None, None, None]
    # Its site is described once, shared by the three requests.
    lambdas = [
        d for d in describe._descriptions.values() if d.qualname.endswith("view.<locals>.<lambda>")
    ]
    assert len(lambdas) == 1


def test_an_offload_of_a_partial_of_a_proxy_is_counted():
    record, results = recorded(lambda pool: _in(pool, functools.partial(Proxy(), 1)))
    assert results == ["called"]
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    assert [c.mechanism for c in record.crossings] == [tracer.RUN_IN_EXECUTOR]


def test_a_callable_whose_attributes_raise_is_named_by_its_class():
    record, results = recorded(lambda pool: _in(pool, Proxy()), lambda pool: sync_to_async(Sly())())
    assert results == ["called", "called"]
    assert record.totals() == tracer.Figures(4, 4, 0, 0)
    record.describe()
    assert [c.qualname for c in record.crossings] == ["Proxy", "Sly"]
    assert format_record(record, components.resolve).endswith("; top: Proxy 2, Sly 2")
    # What raises for get_response is no middleware.
    assert [str(c.component) for c in record.crossings] == ["Proxy", "Sly"]
    assert [c.component.kind for c in record.crossings] == ["other", "other"]


def test_the_spans_of_a_request_bridging_such_a_callable_are_all_written():
    pipeline = telemetry.pipeline()
    assert pipeline is not None
    # The earlier tests' records may still be queued for the span thread:
    # their spans written first, then cleared, not counted as this request's.
    assert pipeline.flush(10)
    pipeline.exporter.clear()

    async def main():
        with tracer.recording():
            assert await sync_to_async(Sly())() == "called"

    asyncio.run(main())
    assert pipeline.flush(10)
    spans = pipeline.exporter.get_finished_spans()
    assert sorted(span.name for span in spans) == ["HTTP", "sync_to_async Sly"]


class ClassRaises:
    """isinstance() reads __class__ when the type does not match."""

    @property
    def __class__(self):
        raise RuntimeError("no __class__")

    def work(self):
        return "worked"


def test_a_method_of_an_object_whose_class_attribute_raises_is_named():
    record, results = recorded(lambda pool: sync_to_async(ClassRaises().work)())
    assert results == ["worked"]
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    record.describe(components.resolve)
    assert [c.qualname for c in record.crossings] == ["ClassRaises.work"]


def test_naming_a_closure_does_not_evaluate_a_lazy_object_it_holds():
    from django.utils.functional import SimpleLazyObject

    evaluated = []
    lazy = SimpleLazyObject(lambda: evaluated.append("evaluated") or object())

    def make():
        def uses_it_later():
            return lazy if False else "done"

        return uses_it_later

    record, results = recorded(lambda pool: sync_to_async(make())())
    assert results == ["done"]
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    record.describe(components.resolve)
    assert [c.qualname for c in record.crossings] == [
        "test_naming_a_closure_does_not_evaluate_a_lazy_object_it_holds.<locals>.make."
        "<locals>.uses_it_later"
    ]
    assert evaluated == []


def _hook(name):
    def hook(self, request, *args):
        return None

    hook.__name__ = name  # its __qualname__ stays _hook.<locals>.hook
    return hook


class MadeHooksMiddleware:
    process_request = _hook("process_request")
    process_response = _hook("process_response")
    other_thing = _hook("other_thing")


def test_hooks_made_by_one_factory_keep_their_own_names():
    # One code object and __qualname__ for three methods: the hook is told by
    # __name__, which the cached description's key must hold too.
    middleware = MadeHooksMiddleware()
    names = ("process_request", "process_response", "other_thing", "process_request")
    record, _results = recorded(
        *(lambda pool, name=name: sync_to_async(getattr(middleware, name))(None) for name in names)
    )
    assert record.totals() == tracer.Figures(8, 8, 0, 0)
    record.describe(components.resolve)
    assert [str(c.component) for c in record.crossings] == [
        "MadeHooksMiddleware.process_request",
        "MadeHooksMiddleware.process_response",
        "_hook.<locals>.hook",
        "MadeHooksMiddleware.process_request",
    ]


class RaisingMeta(type):
    """A class whose own attributes raise when read (a lazy class proxy's)."""

    def __getattribute__(cls, name):
        if name == "__call__":
            raise RuntimeError(f"no {name}")
        return super().__getattribute__(name)


class ClassAttributesRaise(metaclass=RaisingMeta):
    def __call__(self):
        return "called"


def test_a_callable_that_cannot_be_located_is_named_without_a_location():
    record, results = recorded(lambda pool: sync_to_async(ClassAttributesRaise())())
    assert results == ["called"]
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    record.describe(components.resolve)
    [crossing] = record.crossings
    assert (crossing.qualname, str(crossing.component)) == (
        "ClassAttributesRaise",
        "ClassAttributesRaise",
    )
    assert crossing.description.location is None


def _empty_cell():
    """A closure one of whose cells was never filled."""

    def uses_it():
        return never_set

    if False:
        never_set = None
    return uses_it


def _holding_each_other():
    """Two closures, each holding the other."""

    def ping():
        return pong()

    def pong():
        return ping()

    return ping


def test_closures_with_an_empty_cell_or_holding_each_other_are_named():
    with pytest.raises(ValueError):
        _empty_cell().__closure__[0].cell_contents  # noqa: B018
    for make in (_empty_cell, _holding_each_other):
        func = make()
        record = tracer.RequestRecord(tracer.ASGI, tracer.patches.clock, 10)
        thread = threading.current_thread()
        record.crossings.append(tracer.Crossing(tracer.SYNC_TO_ASYNC, None, func, thread, None, 0))
        record.describe(components.resolve)
        [crossing] = record.crossings
        assert (crossing.qualname, str(crossing.component)) == (func.__qualname__,) * 2


class ViewDecorator:
    """A decorator that is an object (no closure), functools.update_wrapper's."""

    def __init__(self, view):
        functools.update_wrapper(self, view)

    def __call__(self, request):
        return self.__wrapped__(request)


def _wrapper_with_an_empty_cell(view):
    @functools.wraps(view)
    def wrapper(request):
        return view(request) if view else an_empty_cell

    if False:
        an_empty_cell = None
    return wrapper


def test_a_view_behind_wrappers_of_any_kind_has_what_it_bridges_named():
    """The layers of a view looked through for a decorator's function may be
    objects without a closure, or closures with a cell never filled."""

    def lookup():
        return None

    view = _wrapper_with_an_empty_cell(ViewDecorator(_wrapper_with_an_empty_cell(eq_view)))
    record = tracer.RequestRecord(tracer.ASGI, tracer.patches.clock, 10)
    components.remember_view(record, view, "GET")
    thread = threading.current_thread()
    record.crossings.append(tracer.Crossing(tracer.SYNC_TO_ASYNC, None, lookup, thread, None, 0))
    record.describe(components.resolve)
    [crossing] = record.crossings
    name = "test_a_view_behind_wrappers_of_any_kind_has_what_it_bridges_named.<locals>.lookup"
    assert (crossing.qualname, str(crossing.component)) == (name, name)


class Anything:
    """A stub whose every attribute is 1 (a catch-all ``__getattr__``)."""

    def __getattr__(self, name):
        return 1

    def __call__(self, owner):
        return "called"


class Owner:
    pass


def test_a_method_of_a_stub_answering_every_attribute_is_named():
    """Its function answers switchtrace's patch mark, and its __wrapped__
    is 1: taken for a patch of switchtrace's, it was followed to a method of
    1, which raised TypeError out of the naming (the request's spans were
    dropped). It is named by what its __wrapped__ leads to, as before."""
    import types

    record, results = recorded(lambda pool: sync_to_async(types.MethodType(Anything(), Owner()))())
    assert results == ["called"]
    assert record.totals() == tracer.Figures(2, 2, 0, 0)
    record.describe(components.resolve)
    [crossing] = record.crossings
    assert (crossing.qualname, str(crossing.component)) == ("int", "int")
