"""Generated Django configurations served through Django's real handlers,
each request counted by switchtrace and by the oracle of ``tests/oracle.py``.

The configurations (:func:`generate`), the middleware they are drawn from,
the views (this module is their ``ROOT_URLCONF``), and :func:`serve`;
``python -m tests.oracle_run`` serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import asdict, dataclass
from typing import Any

import asgiref.sync
from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from .views import SyncOnlyMiddleware

# -- middleware --------------------------------------------------------------


class SyncBridging(SyncOnlyMiddleware):
    """Sync only, runs a coroutine of its own on the way in."""

    def __call__(self, request):
        async_to_sync(_nothing)()
        return self.get_response(request)


class BothAsync:
    """Both-capable, natively async on the async path (as Django's
    documentation shows it)."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request):
        return await self.get_response(request)


class MixinRequest(MiddlewareMixin):
    """Both-capable with sync hooks, as Django's built-in middleware are."""

    def process_request(self, request):
        return None


class MixinResponse(MiddlewareMixin):
    def process_response(self, request, response):
        return response


class MixinView(MiddlewareMixin):
    def process_view(self, request, view, args, kwargs):
        return None


class MixinAll(MixinRequest, MixinResponse, MixinView):
    pass


class Answering(MiddlewareMixin):
    """Answers requests whose query has ``answer`` itself: the middleware
    and the view below it never run."""

    def process_request(self, request):
        return HttpResponse("answered") if "answer" in request.GET else None


#: The kinds of middleware a stack is drawn from, besides Django's.
OURS = [
    "tests.views.SyncOnlyMiddleware",
    f"{__name__}.SyncBridging",
    "tests.test_predict_support.AsyncOnly",
    # Async only, bridges a function of its own before and after the view.
    "tests.views.BridgingAsyncMiddleware",
    *(
        f"{__name__}.{cls.__name__}"
        for cls in (BothAsync, MixinRequest, MixinResponse, MixinView, MixinAll, Answering)
    ),
]
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
#: Django's startproject middleware (the example project's settings list them).
DJANGOS = [
    "django.middleware.security.SecurityMiddleware",
    SESSIONS,
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
#: These need the session middleware above them.
NEED_SESSIONS = set(DJANGOS[4:6])


# -- views -------------------------------------------------------------------


async def _nothing():
    return None


def _lookup():
    return None


def _lookup_bridging():
    """Sync code that runs a coroutine itself."""
    async_to_sync(_nothing)()


async def _nothing_bridging():
    """Async code that runs sync code itself."""
    await sync_to_async(_lookup)()


def _ok():
    return HttpResponse("ok")


def _single_thread(request):
    """asgiref's AsyncSingleThreadContext (3.10+) for a request whose query
    has ``single``."""
    if "single" in request.GET and hasattr(asgiref.sync, "AsyncSingleThreadContext"):
        return asgiref.sync.AsyncSingleThreadContext()
    return contextlib.nullcontext()


def sync_view(request):
    return _ok()


async def async_view(request):
    return _ok()


def async_to_sync_view(request):
    """k async_to_sync; ``nest``: the coroutine bridges back; ``new``: each
    in a loop of its own (``force_new_loop``); ``single``: see
    _single_thread."""
    coroutine = _nothing_bridging if "nest" in request.GET else _nothing
    bridged = async_to_sync(coroutine, force_new_loop="new" in request.GET)
    with _single_thread(request):
        for _ in range(int(request.GET["k"])):
            bridged()
    return _ok()


def asyncio_run_view(request):
    for _ in range(int(request.GET["k"])):
        asyncio.run(_nothing())
    return _ok()


def run_until_complete_view(request):
    loop = asyncio.new_event_loop()
    try:
        for _ in range(int(request.GET["k"])):
            loop.run_until_complete(_nothing())
    finally:
        loop.close()
    return _ok()


async def sync_to_async_view(request):
    function = _lookup_bridging if "nest" in request.GET else _lookup
    thread_sensitive = "ts" in request.GET
    for _ in range(int(request.GET["k"])):
        await sync_to_async(function, thread_sensitive=thread_sensitive)()
    return _ok()


class ViewError(Exception):
    pass


def raising_view(request):
    raise ViewError("raised by the view")


def stream_view(request):
    """k parts; ``nest``: each made by a coroutine, after the headers."""

    def parts():
        for n in range(int(request.GET["k"])):
            if "nest" in request.GET:
                async_to_sync(_nothing)()
            yield f"{n}"

    return StreamingHttpResponse(parts())


async def async_stream_view(request):
    """k parts; ``nest``: each made by sync code, after the headers."""

    async def parts():
        for n in range(int(request.GET["k"])):
            if "nest" in request.GET:
                await sync_to_async(_lookup)()
            yield f"{n}"

    return StreamingHttpResponse(parts())


async def to_thread_view(request):
    for _ in range(int(request.GET["k"])):
        await asyncio.to_thread(_lookup)
    return _ok()


async def gather_view(request):
    """k sync_to_async and k offloads at once."""
    thread_sensitive = "ts" in request.GET
    k = int(request.GET["k"])
    bridged = [sync_to_async(_lookup, thread_sensitive=thread_sensitive)() for _ in range(k)]
    await asyncio.gather(*bridged, *(asyncio.to_thread(_lookup) for _ in range(k)))
    return _ok()


def _run_bridging():
    """Sync code running a loop of its own that runs sync code."""
    asyncio.run(_nothing_bridging())


async def nested_view(request):
    for _ in range(int(request.GET["k"])):
        await sync_to_async(_run_bridging, thread_sensitive=False)()
    return _ok()


async def _offloading():
    await asyncio.to_thread(_lookup)


def offloading_view(request):
    """A sync view running a coroutine that offloads."""
    for _ in range(int(request.GET["k"])):
        async_to_sync(_offloading)()
    return _ok()


async def _failing():
    raise ViewError("raised across the bridge")


def _failing_sync():
    raise ViewError("raised across the bridge")


def failing_bridges_view(request):
    """k async_to_sync whose coroutine raises, each caught."""
    for _ in range(int(request.GET["k"])):
        try:
            async_to_sync(_failing)()
        except ViewError:
            pass
    return _ok()


async def async_failing_bridges_view(request):
    """k sync_to_async whose function raises, each caught."""
    for _ in range(int(request.GET["k"])):
        try:
            await sync_to_async(_failing_sync)()
        except ViewError:
            pass
    return _ok()


def _sync_level(depth):
    if depth:
        async_to_sync(_async_level)(depth - 1)


async def _async_level(depth):
    if depth:
        await sync_to_async(_sync_level)(depth - 1)


def deep_view(request):
    """Bridges 2k deep: async_to_sync, sync_to_async inside it, and so on;
    ``single``: as async_to_sync_view's."""
    with _single_thread(request):
        _sync_level(2 * int(request.GET["k"]))
    return _ok()


async def async_deep_view(request):
    """Bridges 2k deep: sync_to_async, async_to_sync inside it, and so on."""
    await _async_level(2 * int(request.GET["k"]))
    return _ok()


# Sub-requests: served by the request's own code, to ?inner=, through ?through=.
INNER = ["sync", "async", "async-to-sync", "sync-to-async"]
SYNC_THROUGH = ["client", "get_response", "wsgi", "asgi"]
ASYNC_THROUGH = ["async_client", "get_response_async", "asgi"]


def _serve(request):
    """A sub-request, from sync code."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.base import BaseHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import Client, RequestFactory

    from switchtrace.example import asgi_request

    through, path_info = request.GET["through"], f"/{request.GET['inner']}/"
    url = f"{path_info}?k=1"
    if through == "client":
        Client().get(url)
    elif through == "get_response":
        handler = BaseHandler()
        handler.load_middleware()
        handler.get_response(RequestFactory().get(url))
    elif through == "wsgi":
        environ = RequestFactory()._base_environ(PATH_INFO=path_info, QUERY_STRING="k=1")
        body = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
        b"".join(body)
        body.close()
    else:
        async_to_sync(asgi_request)(ASGIHandler(), url)


def sub_view(request):
    _serve(request)
    return _ok()


def streamed_sub_view(request):
    def body():
        yield "a"
        _serve(request)
        yield "b"

    return StreamingHttpResponse(body())


async def async_sub_view(request):
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.base import BaseHandler
    from django.test import AsyncClient, AsyncRequestFactory

    from switchtrace.example import asgi_request

    through, url = request.GET["through"], f"/{request.GET['inner']}/?k=1"
    if through == "async_client":
        await AsyncClient().get(url)
    elif through == "get_response_async":
        handler = BaseHandler()
        handler.load_middleware(is_async=True)
        await handler.get_response_async(AsyncRequestFactory().get(url))
    else:
        await asgi_request(ASGIHandler(), url)
    return _ok()


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("async-to-sync/", async_to_sync_view),
    path("asyncio-run/", asyncio_run_view),
    path("run-until-complete/", run_until_complete_view),
    path("sync-to-async/", sync_to_async_view),
    path("raise/", raising_view),
    path("stream/", stream_view),
    path("async-stream/", async_stream_view),
    path("to-thread/", to_thread_view),
    path("gather/", gather_view),
    path("nested/", nested_view),
    path("offloading/", offloading_view),
    path("failing-bridges/", failing_bridges_view),
    path("async-failing-bridges/", async_failing_bridges_view),
    path("deep/", deep_view),
    path("async-deep/", async_deep_view),
    path("sub/", sub_view),
    path("streamed-sub/", streamed_sub_view),
    path("async-sub/", async_sub_view),
]
#: What generate() draws the URL's path from.
VIEWS = [str(pattern.pattern).strip("/") for pattern in urlpatterns] + ["not-found"]


# -- configurations ------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    server: str
    #: Below switchtrace's, which is always first.
    middleware: tuple[str, ...]
    url: str

    def __str__(self) -> str:
        names = ", ".join(m.rsplit(".", 1)[1] for m in self.middleware) or "none"
        return f"{self.server.upper()} {self.url} [{names}]"


def generate(seed: int) -> Configuration:
    """The configuration of ``seed``: 0 to 8 middleware of every kind, in any
    order, drawn from it (SessionMiddleware added above the first that needs
    it); the server and the view go round, so that any 2 * len(VIEWS) seeds
    in a row serve every view under both servers."""
    rng = random.Random(seed)
    server = ("wsgi", "asgi")[seed % 2]
    view = VIEWS[seed // 2 % len(VIEWS)]
    middleware: list[str] = []
    for _ in range(rng.randint(0, 8)):
        chosen = rng.choice(OURS) if rng.random() < 0.6 else rng.choice(DJANGOS)
        if chosen in NEED_SESSIONS and SESSIONS not in middleware:
            middleware.append(SESSIONS)
        middleware.append(chosen)
    query = []
    if view in ("sub", "streamed-sub"):
        query.append(f"through={rng.choice(SYNC_THROUGH)}&inner={rng.choice(INNER)}")
    elif view == "async-sub":
        query.append(f"through={rng.choice(ASYNC_THROUGH)}&inner={rng.choice(INNER)}")
    elif view not in ("sync", "async", "raise", "not-found"):
        query.append(f"k={rng.randint(1, 3)}")
    if f"{__name__}.Answering" in middleware and rng.random() < 0.5:
        query.append("answer=1")
    if view in ("async-to-sync", "sync-to-async", "stream", "async-stream"):
        if rng.random() < 0.4:
            query.append("nest=1")
    if view == "async-to-sync" and rng.random() < 0.3:
        query.append("new=1")
    if view in ("async-to-sync", "deep") and rng.random() < 0.4:
        query.append("single=1")
    if view in ("sync-to-async", "gather") and rng.random() < 0.5:
        query.append("ts=1")
    url = f"/{view}/" + (f"?{'&'.join(query)}" if query else "")
    return Configuration(server, tuple(middleware), url)


# -- serving -------------------------------------------------------------------


def serve(oracle: Any, configuration: Configuration, requests: int = 2) -> list[dict[str, Any]]:
    """``requests`` requests of ``configuration`` through one pair of
    handlers, each counted by ``oracle`` and by switchtrace: their figures,
    whole and as the headers were sent."""
    from switchtrace import example, tracer
    from switchtrace.django_app.conf import MIDDLEWARE_PATH

    from .support import run_asgi, wsgi_request

    def one(asgi: Any, wsgi: Any) -> dict[str, Any]:
        at_headers: list[tuple[int, int, int, int]] = []

        async def asgi_app(scope, receive, send):
            async def send_noting(message):
                if message["type"] == "http.response.start":
                    at_headers.append(oracle.figures())
                await send(message)

            oracle.begin()
            try:
                await asgi(scope, receive, send_noting)
            finally:
                oracle.end()

        def wsgi_app(environ, start_response):
            def start_noting(status, headers, exc_info=None):
                at_headers.append(oracle.figures())
                return start_response(status, headers, exc_info)

            return wsgi(environ, start_noting)

        records: list[Any] = []
        tracer.add_listener(records.append)
        try:
            if configuration.server == "asgi":
                result = run_asgi(asgi_app, configuration.url)
            else:
                oracle.begin()
                try:
                    result = wsgi_request(wsgi_app, configuration.url)
                finally:
                    oracle.end()
        finally:
            tracer.remove_listener(records.append)
        return {
            "configuration": asdict(configuration),
            "described": str(configuration),
            "status": result.status,
            "oracle": list(oracle.figures()),
            "oracle_at_headers": list(at_headers[0]),
            "records": [list(asdict(record.totals()).values()) for record in records],
            "headers": list(result.figures() or ()) or None,
        }

    with example.handlers(
        MIDDLEWARE=[MIDDLEWARE_PATH, *configuration.middleware],
        ROOT_URLCONF=__name__,
        SWITCHTRACE={"ENABLED": True, "EXPORTER": "none"},
    ) as (asgi, wsgi):
        return [one(asgi, wsgi) for _ in range(requests)]
