from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async
from django.contrib.auth.decorators import login_required, user_passes_test
from django.dispatch import Signal
from django.http import FileResponse, HttpResponse, HttpResponseNotFound, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache


def answering_with(headers):
    """A view answering "ok" with these headers of the application's own."""

    def view(request):
        response = HttpResponse("ok")
        for name, value in headers.items():
            response[name] = value
        return response

    return view


own_server_timing = answering_with({"Server-Timing": 'db;dur=53;desc="Database"'})
# A header value in Latin-1 beyond ASCII, as HTTP allows (Django sends it so).
latin1_header = answering_with({"Content-Disposition": 'attachment; filename="caf\xe9.txt"'})
# A comma and escaped quotes inside a quoted desc (RFC 9110 quoted-string).
quoted_server_timing = answering_with(
    {"Server-Timing": 'cache;desc="stored, \\"fresh\\"", db;dur=53'}
)
# Malformed: a quoted desc never closed, and a metric named as one of
# switchtrace's (which takes its place) after it.
unclosed_server_timing = answering_with({"Server-Timing": 'db;desc="unclosed, switchtrace-hops'})
# Headers of switchtrace's names, set by the application itself.
own_figure_headers = answering_with(
    {
        "X-Context-Switches": "99",
        "X-Thread-Hops": "7",
        "X-Custom": "kept",
        "Server-Timing": "app;dur=1, switchtrace-loops;dur=5",
    }
)


class ViewError(Exception):
    pass


def raising_view(request):
    raise ViewError("raised by the view")


def body_raising_view(request):
    """A streaming body that raises after its first part: past the headers."""

    def parts():
        yield b"first"
        raise ViewError("raised by the body")

    return StreamingHttpResponse(parts())


def exiting_view(request):
    raise SystemExit(3)


class SyncOnlyMiddleware:
    """A plain sync-only middleware: no switch of its own under WSGI."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class TimingMiddleware:
    """Adds a Server-Timing metric of its own on the way out."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        timing = response.get("Server-Timing")
        response["Server-Timing"] = f"{timing}, app;dur=12" if timing else "app;dur=12"
        return response


class HeaderListingMiddleware:
    """Lists the response's headers on the way out (as a logging middleware
    or django-debug-toolbar's headers panel do), iterating them in Python;
    ``listing`` is true meanwhile, and each listing is added to ``listed``."""

    listing = False
    listed: list[list[tuple[str, str]]] = []

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        HeaderListingMiddleware.listing = True
        try:
            HeaderListingMiddleware.listed.append(list(response.items()))
        finally:
            HeaderListingMiddleware.listing = False
        return response


#: One response object for every request (a view may keep one around); a
#: 404, which Django logs after the middleware chain under ASGI, so the
#: figures are written a second time when the headers are sent.
_shared_response = HttpResponseNotFound("shared")


def shared_response(request):
    return _shared_response


class PausingResponse(HttpResponse):
    """A response whose headers a test can read slowly: ``pause(index)``,
    when set, runs in the reading thread before ``items()`` fetches header
    number ``index`` (WSGIHandler builds the list it hands to start_response
    from them); from index 1 on, the iteration of the headers is under way."""

    pause = None

    def items(self):
        headers = iter(super().items())
        index = 0
        while True:
            if self.pause is not None:
                self.pause(index)
            try:
                item = next(headers)
            except StopIteration:
                return
            yield item
            index += 1


#: The one object paused_shared_response returns to every request (set by
#: the tests).
paused_response = None


class ShortCircuitMiddleware:
    """Answers a request whose query has ``short`` itself, with
    ``paused_response``, as a maintenance-mode or rate-limiting middleware
    does: nothing below it runs. For one whose query has ``replace``, puts
    ``paused_response`` in place of the response it gets; for one whose query
    has ``bridge``, bridges a coroutine (async_to_sync) once it has the
    response: switches after switchtrace's middleware wrote on it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "short" in request.GET:
            return paused_response
        response = self.get_response(request)
        if "bridge" in request.GET:
            async_to_sync(_nothing)()
        return paused_response if "replace" in request.GET else response


async def _nothing():
    pass


class ServerTimingStrippingMiddleware:
    """Takes Server-Timing off every response (as a project keeping its
    timings from the public may). For a request whose query has ``pause``,
    then bridges a coroutine (async_to_sync) and sets ``paused`` and waits
    for ``resume`` (threading.Events the test makes): the figures at the
    headers differ from those switchtrace's middleware wrote."""

    paused = resume = None

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Server-Timing" in response:
            del response["Server-Timing"]
        if "pause" in request.GET:
            async_to_sync(_nothing)()
            ServerTimingStrippingMiddleware.paused.set()
            ServerTimingStrippingMiddleware.resume.wait(10)
        return response


class AsyncOnlyMiddleware:
    """A middleware Django calls only in async mode: the base of those below."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)


class PausingAsyncMiddleware(AsyncOnlyMiddleware):
    """Async only: for a request whose query has ``pause``, once the
    response is back from the middleware below, sets ``paused`` and waits for
    ``resume`` (asyncio.Events the test makes)."""

    paused = resume = None

    async def __call__(self, request):
        response = await self.get_response(request)
        if "pause" in request.GET:
            PausingAsyncMiddleware.paused.set()
            await PausingAsyncMiddleware.resume.wait()
        return response


def middleware_lookup():
    return None


class BridgingAsyncMiddleware(AsyncOnlyMiddleware):
    """Async only: bridges a plain function of its own before and after the
    view (what an async middleware doing a sync lookup does)."""

    async def __call__(self, request):
        await sync_to_async(middleware_lookup)()
        response = await self.get_response(request)
        await sync_to_async(middleware_lookup)()
        return response


class RetryingAsyncMiddleware(AsyncOnlyMiddleware):
    """Async only: has the view called a second time, as a middleware that
    retries a request does, after a lookup of its own."""

    async def __call__(self, request):
        await self.get_response(request)
        await sync_to_async(middleware_lookup)()
        return await self.get_response(request)


async def async_bridging_view(request):
    """What an async view using the ORM does: bridges code that names no
    component (here a plain function; the ORM's QuerySet.get)."""
    await sync_to_async(middleware_lookup)()
    return HttpResponse("ok")


def paused_shared_response(request):
    """``paused_response``, after one async_to_sync when the query has
    ``switch``: requests whose figures differ, one response object."""
    if "switch" in request.GET:
        async_to_sync(_nothing)()
    return paused_response


def closing_shared_view(request):
    """Closes ``paused_response`` (the one object /paused-shared/ returns to
    every request) itself, as code resetting a response it keeps might, and
    returns it when the query has ``same``; with ``stream``, the generator
    of the streaming body it returns closes it, after the headers."""
    from django.http import StreamingHttpResponse

    def body():
        paused_response.close()
        yield b"closed"

    if "stream" in request.GET:
        return StreamingHttpResponse(body())
    paused_response.close()
    return paused_response if "same" in request.GET else HttpResponse("closed")


def robust_signal_view(request):
    """Sends contrib.auth's user_logged_out with send_robust: its async
    receivers run in one async_to_sync (Django >= 5.0)."""
    from django.contrib.auth.signals import user_logged_out

    user_logged_out.send_robust(sender=None, request=request, user=None)
    return HttpResponse("ok")


async def async_signal_view(request):
    """Sends contrib.auth's user_logged_out with asend: its sync receivers run
    in one sync_to_async (Django >= 5.0)."""
    from django.contrib.auth.signals import user_logged_out

    await user_logged_out.asend(sender=None, request=request, user=None)
    return HttpResponse("ok")


#: A signal of the project's own, as an app's signals.py defines one.
order_placed = Signal()


async def project_signal_view(request):
    """Sends the project's own signal with asend (its sync receivers in one
    sync_to_async) and send (its async receivers in one async_to_sync)."""
    await order_placed.asend(sender=None)
    await sync_to_async(order_placed.send)(sender=None)
    return HttpResponse("ok")


@login_required
async def members_view(request):
    """An async view behind login_required: its test of the user (a lambda
    of Django's) runs in one sync_to_async."""
    return HttpResponse("members")


@login_required
async def other_members_view(request):
    """A second view behind login_required: its test of the user is another
    function of the same code as members_view's."""
    return HttpResponse("other members")


@user_passes_test(lambda user: user.is_staff)
async def staff_view(request):
    """An async view behind the project's own test, a lambda."""
    return HttpResponse("staff")


try:  # Django 6.0's Tasks framework
    from django.tasks import task
except ImportError:
    task = None
else:

    @task
    def sync_task(number):
        return number + 1

    @task
    async def async_task(number):
        return number + 2


def enqueue_view(request):
    """Enqueues a sync task and an async one on the default backend
    (ImmediateBackend: each runs at once, the async one in async_to_sync)."""
    results = [sync_task.enqueue(1), async_task.enqueue(1)]
    return HttpResponse(" ".join(str(result.return_value) for result in results))


async def aenqueue_view(request):
    """aenqueue runs the backend's enqueue in sync_to_async, inside which
    ImmediateBackend runs the async task in async_to_sync."""
    result = await async_task.aenqueue(1)
    return HttpResponse(str(result.return_value))


async def listed_then_streamed_view(request):
    """Request code's own sync_to_async(list), then a body from a sync iterator
    (which Django reads in a sync_to_async(list) of its own under ASGI)."""
    from asgiref.sync import sync_to_async
    from django.http import StreamingHttpResponse

    parts = await sync_to_async(list)(iter([b"a", b"b"]))
    return StreamingHttpResponse(iter(parts))


async def listing_stream_view(request):
    """A body from an async iterator that reads its rows in its own
    sync_to_async(list) (a queryset read in chunks), after the headers."""
    from django.http import StreamingHttpResponse

    async def rows():
        yield b"".join(await sync_to_async(list)(iter([b"a", b"b"])))

    return StreamingHttpResponse(rows())


class _Rows:
    """An async iterator of the application's own class (no generator) that
    reads its rows in its own sync_to_async(list), after the headers."""

    def __init__(self):
        self.read = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.read:
            raise StopAsyncIteration
        self.read = True
        return b"".join(await sync_to_async(list)(iter([b"a", b"b"])))


async def listing_iterator_stream_view(request):
    """listing_stream_view's body from an iterator of a class of its own."""
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(_Rows())


def bridged_sync_stream_view(request):
    """A body from a sync iterator that, after the headers, bridges back to
    the loop (async_to_sync) for rows it reads there in a sync_to_async(list)
    and an asyncio.to_thread(list) of its own: neither is Django's reading of
    the iterator."""
    import asyncio

    from django.http import StreamingHttpResponse

    async def rows():
        first = await sync_to_async(list)(iter([b"a"]))
        return first + await asyncio.to_thread(list, iter([b"b"]))

    def body():
        yield from async_to_sync(rows)()

    return StreamingHttpResponse(body())


def _made_view():
    """A view made by a factory: a closure over the helper it bridges."""

    def lookup():
        return None

    async def made(request):
        await sync_to_async(lookup)()
        return HttpResponse("made")

    return made


made_view = _made_view()


def is_staff(user):
    return user.is_staff


@never_cache
@user_passes_test(is_staff)
async def cached_staff_view(request):
    """An async view behind a named test of the user, under one more
    decorator."""
    return HttpResponse("staff")


class MembersClassView(View):
    """An async class-based view decorated as Django documents for one
    (method_decorator on its handler), which applies the decorator afresh on
    each call: behind login_required."""

    @method_decorator(login_required)
    async def get(self, request):
        return HttpResponse("members")


class StaffClassView(View):
    """An async class-based view behind a list of decorators, the project's
    own named test of the user among them."""

    @method_decorator([never_cache, user_passes_test(is_staff)])
    async def get(self, request):
        return HttpResponse("staff")


async def to_thread_view(request):
    """Request code's own offload: under WSGI, in the loop asgiref makes for
    the view, whose default executor asyncio.run then shuts down."""
    import asyncio

    await asyncio.to_thread(str)
    return HttpResponse("ok")


#: What to_thread_given_up_view's offload waits for: the test sets it.
GIVEN_UP_RELEASE = __import__("threading").Event()


async def to_thread_given_up_view(request):
    """An offload the view stops waiting for (``asyncio.wait_for`` timing
    out): its function runs on after the response, until the test lets it
    end."""
    import asyncio

    try:
        await asyncio.wait_for(asyncio.to_thread(GIVEN_UP_RELEASE.wait, 10), 0.01)
    except asyncio.TimeoutError:
        return HttpResponse("gave up")
    return HttpResponse("waited")


async def to_thread_bridging_view(request):
    """An offload whose function bridges back into an event loop, and starts
    a thread of its own."""
    import asyncio
    import threading

    from asgiref.sync import async_to_sync

    def work():
        async def inner():
            return None

        async_to_sync(inner)()
        thread = threading.Thread(target=str)
        thread.start()
        thread.join()

    await asyncio.to_thread(work)
    return HttpResponse("ok")


async def reused_context_view(request):
    """A copied context of the code's own, reused for jobs a one-worker
    executor runs one after another, each through a function holding
    partial(context.run, ...), made by the executor's own submit (a subclass's,
    as a patch of submit over switchtrace's makes one around what
    asyncio.to_thread submits); the second submitted while the worker is
    inside the context (held there until then)."""
    import asyncio
    import contextvars
    import functools
    import threading

    entered, release = threading.Event(), threading.Event()
    job = functools.partial(contextvars.copy_context().run, held_inside, entered, release)
    with WrappingExecutor(max_workers=1) as one:
        first = asyncio.wrap_future(one.submit(job))
        while not entered.is_set():  # (no crossing: the worker enters the context)
            await asyncio.sleep(0.001)
        second = asyncio.wrap_future(one.submit(job))
        release.set()
        await asyncio.gather(first, second)
    return HttpResponse("ok")


def held_inside(entered, release):
    """Say it runs, then wait until released (10 s at most)."""
    entered.set()
    release.wait(10)


class WrappingExecutor(ThreadPoolExecutor):
    """An executor whose submit runs each function in a wrapper of its own."""

    def submit(self, fn, /, *args, **kwargs):
        def wrapper():
            return fn(*args, **kwargs)

        return super().submit(wrapper)


class ClassView(View):
    """A class-based view: Django's as_view() makes a closure, the same code
    for every class; its view_class names the view."""

    def get(self, request):
        return HttpResponse("ok")


class OtherClassView(View):
    """A second one in the same module, whose closure shares every name of
    ClassView's but the class."""

    def get(self, request):
        return HttpResponse("other")


def sub_request_view(request):
    """A view that serves a sub-request to /async-to-sync/ itself (as batch
    API endpoints do), through ``?through=`` Django's test Client,
    BaseHandler.get_response or a WSGIHandler, then bridges once more."""
    from django.core.handlers.base import BaseHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import Client, RequestFactory
    from project.views import noop

    through = request.GET["through"]
    if through == "client":
        inner = Client().get("/async-to-sync/")
    elif through == "get_response":
        handler = BaseHandler()
        handler.load_middleware()
        inner = handler.get_response(RequestFactory().get("/async-to-sync/"))
    else:
        environ = RequestFactory()._base_environ(PATH_INFO="/async-to-sync/")
        body = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
        inner = HttpResponse(b"".join(body))
        body.close()
    async_to_sync(noop)()
    return HttpResponse(inner.content)


def _sub_request_lookup():
    return None


async def async_sub_request_view(request):
    """An async view that serves a sub-request to /async-to-sync/ itself, through
    ``?through=`` Django's test AsyncClient, BaseHandler.get_response_async or
    an ASGIHandler, then bridges once more."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.base import BaseHandler
    from django.test import AsyncClient, AsyncRequestFactory

    from switchtrace.example import asgi_request

    through = request.GET["through"]
    if through == "async_client":
        inner = (await AsyncClient().get("/async-to-sync/")).content
    elif through == "get_response_async":
        handler = BaseHandler()
        handler.load_middleware(is_async=True)
        response = await handler.get_response_async(AsyncRequestFactory().get("/async-to-sync/"))
        inner = response.content
    else:
        inner = (await asgi_request(ASGIHandler(), "/async-to-sync/")).body
    await sync_to_async(_sub_request_lookup)()
    return HttpResponse(inner)


async def wsgi_to_asgi_sub_request_view(request):
    """An async view that serves a sub-request to /sync/ through asgiref's
    WsgiToAsgi around a WSGIHandler, with a send that bridges for each
    message (a metrics middleware's)."""
    from asgiref.wsgi import WsgiToAsgi
    from django.core.handlers.wsgi import WSGIHandler

    from switchtrace.example import http_scope

    sent, pending = [], [{"type": "http.request"}]

    async def receive():
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message):
        await sync_to_async(_sub_request_lookup)()
        sent.append(message["type"])

    await WsgiToAsgi(WSGIHandler())(http_scope("/sync/"), receive, send)
    return HttpResponse(",".join(sent))


class SubRequestAfterMiddleware:
    """Sync only, above switchtrace's: for a request whose query has
    ``after``, serves a sub-request to /async-to-sync/ through the test
    Client once the response is back (a middleware that warms a cache)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.test import Client

        response = self.get_response(request)
        if "after" in request.GET:
            Client().get("/async-to-sync/")
        return response


def shown_but_to_sub_requests(request):
    """SHOW_HEADERS: every request but the one SubRequestAfterMiddleware serves."""
    return request.path != "/async-to-sync/"


def streamed_sub_request_view(request):
    """A streaming response whose body, between its two chunks, serves a
    sub-request to /async-to-sync/ through ``?through=`` Django's test Client,
    a WSGIHandler or an ASGIHandler; ``&wrap=map`` hands StreamingHttpResponse
    the generator inside a ``map``, ``&wrap=async`` an asynchronous generator."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import StreamingHttpResponse
    from django.test import Client, RequestFactory

    from switchtrace.example import asgi_request

    def body():
        yield b"a"
        through = request.GET["through"]
        if through == "client":
            Client().get("/async-to-sync/")
        elif through == "wsgi_handler":
            environ = RequestFactory()._base_environ(PATH_INFO="/async-to-sync/")
            inner = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
            b"".join(inner)
            inner.close()
        else:
            async_to_sync(asgi_request)(ASGIHandler(), "/async-to-sync/")
        yield b"b"

    async def asynchronous_body():
        yield b"a"
        await asgi_request(ASGIHandler(), "/async-to-sync/")
        yield b"b"

    wrap = request.GET.get("wrap")
    if wrap == "async":
        return StreamingHttpResponse(asynchronous_body())
    if wrap == "map":
        return StreamingHttpResponse(map(bytes, body()))
    return StreamingHttpResponse(body())


def shared_sub_request_view(request):
    """Serves a sub-request to /paused-shared/ (``paused_response``, the one
    object every request to it returns) through Django's test Client, with
    ``X-Debug`` when the query has ``debug``."""
    from django.test import Client

    headers = {"X-Debug": "1"} if "debug" in request.GET else {}
    Client().get("/paused-shared/", headers=headers)
    return HttpResponse("outer")


def sub_request_headers_view(request):
    """Serves a sub-request to /async-to-sync/ through Django's test Client
    and answers with the switchtrace headers of the sub-request's response
    (``-`` for one it does not carry), in the order of HEADERS."""
    from django.test import Client

    from switchtrace.django_app.headers import HEADERS

    inner = Client().get("/async-to-sync/")
    return HttpResponse(",".join(inner.get(name, "-") for name, *_ in HEADERS))


async def content_types_export_view(request):
    """An export streamed by an async view: its body iterates a QuerySet with
    ``async for`` (the ORM's one sync_to_async of QuerySet._fetch_all), once
    the headers are sent."""
    from django.contrib.contenttypes.models import ContentType
    from django.http import StreamingHttpResponse

    async def rows():
        async for content_type in ContentType.objects.order_by("model"):
            yield f"{content_type.model}\n".encode()

    return StreamingHttpResponse(rows())


def file_view(request):
    """A file sent with FileResponse: WSGIHandler hands it to the server's
    ``wsgi.file_wrapper`` when the environ has one."""
    return FileResponse(open(__file__, "rb"))


def _unsensitive_lookup():
    return None


async def thread_insensitive_view(request):
    """Bridges a plain function with ``thread_sensitive=False``: it runs in
    the event loop's default executor."""
    await sync_to_async(_unsensitive_lookup, thread_sensitive=False)()
    return HttpResponse("ok")


def body_view(request):
    """The request's body as the view reads it: its length and digest."""
    import hashlib

    body = request.body
    return HttpResponse(f"{len(body)} {hashlib.sha256(body).hexdigest()}")


async def spooled_write_view(request):
    """An async view that bridges a SpooledTemporaryFile's write itself, as
    Django's ASGIHandler.read_body does (Django >= 6.0)."""
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=1) as spooled:
        spooled.write(b"ab")  # rolled over to disk
        await sync_to_async(spooled.write, thread_sensitive=False)(b"cd")
    return HttpResponse(str(len(request.body)))


async def error_handling_view(request):
    """An async view that bridges the two functions Django's handler bridges
    for an error response under ASGI, as its own work: it answers 200."""
    from django.core.handlers.exception import response_for_exception
    from django.http import Http404
    from django.utils.log import log_response

    await sync_to_async(log_response, thread_sensitive=False)(
        "Gone: %s", request.path, response=HttpResponseNotFound(), request=request
    )
    response = await sync_to_async(response_for_exception, thread_sensitive=False)(
        request, Http404()
    )
    return HttpResponse(str(response.status_code))


async def offloaded_log_view(request):
    """A body from an async iterator that, after the headers (the view has
    returned), logs a 404 of its own with Django's log_response in
    asyncio.to_thread: no bridge of Django's handler."""
    import asyncio

    from django.http import StreamingHttpResponse
    from django.utils.log import log_response

    async def body():
        yield b"a"
        await asyncio.to_thread(
            log_response, "Gone: %s", request.path, response=HttpResponseNotFound(), request=request
        )
        yield b"b"

    return StreamingHttpResponse(body())
