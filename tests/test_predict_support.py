"""A natively async-only middleware, for the prediction tests."""

from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async


class AsyncOnly:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        return await self.get_response(request)


# -- what only some requests do, for the prediction tests -------------------------

import asyncio  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse  # noqa: E402
from django.template import engines  # noqa: E402
from django.template.response import TemplateResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.decorators import async_only_middleware, sync_and_async_middleware  # noqa: E402
from django.utils.deprecation import MiddlewareMixin  # noqa: E402


def sync_view(request):
    return HttpResponse("ok")


def template_view(request):
    return TemplateResponse(request, engines["django"].from_string("ok"))


def sync_stream_view(request):
    return StreamingHttpResponse(iter([b"a", b"b"]))


async def async_stream_view(request):
    async def parts():
        yield b"a"
        yield b"b"

    return StreamingHttpResponse(parts())


def raising_view(request):
    raise ValueError("raised on purpose")


def _named_with_escapes(request):
    raise ValueError("red\x1b[31m, retitled\x1b]0;title\x07")


# A name a terminal would obey: recolour, retitle the window, clear the screen.
_named_with_escapes.__qualname__ = "view\x1b[31m\x1b]0;title\x07\x1b[2J"


def fills_its_response_view(request):
    """Its crossing's code holds its response (a closure over it)."""
    response = HttpResponse()

    async def fill():
        response.content = b"filled"

    async_to_sync(fill)()
    return response


urlpatterns = [
    path("fills-its-response/", fills_its_response_view),
    path("escapes/", _named_with_escapes),
    path("sync/", sync_view),
    path("template/", template_view),
    path("sync-stream/", sync_stream_view),
    path("async-stream/", async_stream_view),
    path("raise/", raising_view),
]


class AsyncExceptionMiddleware(MiddlewareMixin):
    """Sync-only, with an async process_exception (adapted to sync code)."""

    async_capable = False

    async def process_exception(self, request, exception):
        return None


class AsyncTemplateMiddleware(MiddlewareMixin):
    """Sync-only, with an async process_template_response."""

    async_capable = False

    async def process_template_response(self, request, response):
        return response


@async_only_middleware
def async_only_function(get_response):
    async def middleware(request):
        return await get_response(request)

    return middleware


@sync_and_async_middleware
def hybrid_function(get_response):
    """async_only_function made sync-capable too, as Django's documentation
    writes one."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return await get_response(request)

    else:

        def middleware(request):
            return get_response(request)

    return middleware


def sync_receiver(sender, **kwargs):
    return None


class Receivers:
    def on_request(self, sender, **kwargs):
        return None


async def async_receiver(sender, **kwargs):
    return None


def endless_sync_stream_view(request):
    def parts():
        while True:
            time.sleep(0.01)
            yield b"event\n"

    return StreamingHttpResponse(parts())


async def endless_async_stream_view(request):
    async def parts():
        while True:
            await asyncio.sleep(0.01)
            yield b"event\n"

    return StreamingHttpResponse(parts())


urlpatterns += [
    path("endless-sync-stream/", endless_sync_stream_view),
    path("endless-async-stream/", endless_async_stream_view),
]


class AnswersInProcessView(MiddlewareMixin):
    """Answers before the view runs, as LoginRequiredMiddleware does for an
    anonymous user."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        return HttpResponseRedirect("/elsewhere/")


async def slow_view(request):
    await asyncio.sleep(60)
    return HttpResponse("late")


urlpatterns.append(path("slow/", slow_view))


def long_sync_stream_view(request):
    """Streams for about a second: under ASGI Django reads it whole, in a
    thread no cancellation stops."""

    def parts():
        for _ in range(100):
            time.sleep(0.01)
            yield b"event\n"

    return StreamingHttpResponse(parts())


urlpatterns.append(path("long-sync-stream/", long_sync_stream_view))


# -- middleware the model must tell apart, for the full predictions ----------------

from asgiref.sync import iscoroutinefunction  # noqa: E402


class HybridWithoutMixin:
    """async_capable and nothing else (sync_capable defaults to True, as in
    Django's load_middleware): synchronous under WSGI, async under ASGI. Not
    a MiddlewareMixin, so its own process_request is no hook Django adapts."""

    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)  # __call__ then returns get_response's coroutine

    def __call__(self, request):
        self.process_request(request)
        return self.get_response(request)

    def process_request(self, request):
        request.seen_by_hybrid = True


class OldStyle:
    """Neither async_capable nor sync_capable: synchronous only."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class AsyncProcessView(MiddlewareMixin):
    """An async process_view: adapted with async_to_sync under WSGI."""

    async def process_view(self, request, view_func, view_args, view_kwargs):
        return None


from django.middleware.clickjacking import XFrameOptionsMiddleware  # noqa: E402


class RewrittenXFrame(XFrameOptionsMiddleware):
    """XFrameOptionsMiddleware rewritten as explain says, in a subclass (as
    a third-party class is): an async path of its own that calls the hook
    itself, no sync_to_async."""

    async def __acall__(self, request):
        response = await self.get_response(request)
        return self.process_response(request, response)


class RewrittenXFrameCall(XFrameOptionsMiddleware):
    """The same, through its own __call__."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._async_call(request)
        return self.process_response(request, self.get_response(request))

    async def _async_call(self, request):
        return self.process_response(request, await self.get_response(request))


class LoggingXFrame(XFrameOptionsMiddleware):
    """A __call__ of its own that hands on to MiddlewareMixin's: its hook
    still runs in sync_to_async."""

    def __call__(self, request):
        request.logged = True
        return super().__call__(request)


class AsyncPathXFrame(XFrameOptionsMiddleware):
    """An async path of its own in its __call__, MiddlewareMixin's on the
    synchronous path alone: its hook runs in no sync_to_async."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._async_call(request)
        return super().__call__(request)

    async def _async_call(self, request):
        return self.process_response(request, await self.get_response(request))


class _LogsCalls:
    def __call__(self, request):
        request.logged = True
        return super().__call__(request)


class MixedXFrame(_LogsCalls, XFrameOptionsMiddleware):
    """MiddlewareMixin's __call__ reached through a mixin's."""


class LoggingAsyncViewXFrame(LoggingXFrame):
    """LoggingXFrame with an async process_view (what W003 advises):
    Django adapts that hook apart, its process_response still runs in
    sync_to_async."""

    async def process_view(self, request, view_func, view_args, view_kwargs):
        return None


class AsyncCallSuperXFrame(XFrameOptionsMiddleware):
    """An async __call__ of its own that awaits MiddlewareMixin's."""

    sync_capable = False

    async def __call__(self, request):
        request.logged = True
        return await super().__call__(request)


class _AsyncHelper:
    async def aclose_things(self):  # an async method the __call__ never names
        return None

    def __call__(self, request):
        return super().__call__(request)


class HelperXFrame(_AsyncHelper, XFrameOptionsMiddleware):
    """A mixin's __call__ that hands on, beside an async helper of its own."""


def _traced(function):
    @functools.wraps(function)
    def traced(*args, **kwargs):
        return function(*args, **kwargs)

    return traced


class DecoratedXFrame(XFrameOptionsMiddleware):
    """A decorated __call__ (a tracing decorator) that hands on."""

    @_traced
    def __call__(self, request):
        return super().__call__(request)


class _Logs:
    """A logger whose method shares its name with a middleware's own async
    method."""

    def info(self, message):
        return None


_logger = _Logs()


class LogNameXFrame(XFrameOptionsMiddleware):
    """Hands on around a log line (logger.info), beside an async method of
    its own named info, which its __call__ never reads on self."""

    async def info(self):
        return None

    def __call__(self, request):
        _logger.info("in")
        return super().__call__(request)


def _hybrid(function):
    """A decorator that is the async path: its wrapper returns the class's
    async method in async mode."""

    @functools.wraps(function)
    def hybrid(self, request):
        if iscoroutinefunction(self):
            return self.acall(request)
        return function(self, request)

    return hybrid


class HybridDecoratedXFrame(XFrameOptionsMiddleware):
    """Its __call__, which hands on, decorated with its async path."""

    @_hybrid
    def __call__(self, request):
        return super().__call__(request)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class DecoratedAsyncPathXFrame(XFrameOptionsMiddleware):
    """An async path of its own wrapped by a synchronous tracing decorator."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.acall(request)
        return super().__call__(request)

    @_traced
    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class ClosureXFrame(XFrameOptionsMiddleware):
    """An async path of its own, in a __call__ whose closure shares self
    (self is then a cell: LOAD_DEREF, not LOAD_FAST)."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.acall(request)
        response = super().__call__(request)
        return (lambda: self.process_response(request, response))()

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class _Traced:
    """A decorator as a class (functools.update_wrapper): __wrapped__, and
    no code of its own."""

    def __init__(self, function):
        functools.update_wrapper(self, function)
        self.function = function

    def __get__(self, instance, owner=None):
        return self if instance is None else functools.partial(self.function, instance)


class ClassDecoratedXFrame(XFrameOptionsMiddleware):
    """A __call__ that hands on, decorated by a class."""

    @_Traced
    def __call__(self, request):
        return super().__call__(request)


class SuperAcallXFrame(XFrameOptionsMiddleware):
    """An __acall__ of its own around MiddlewareMixin's."""

    async def __acall__(self, request):
        request.logged = True
        return await super().__acall__(request)


class SyncProcessView(MiddlewareMixin):
    """A synchronous process_view and no other hook, as Django's
    LoginRequiredMiddleware: sync_to_async under ASGI."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        return None


class SyncOnlyProcessView(SyncProcessView):
    async_capable = False


class SyncTemplateMiddleware(MiddlewareMixin):
    """A synchronous process_template_response: sync_to_async under ASGI."""

    def process_template_response(self, request, response):
        return response


class SyncExceptionMiddleware(MiddlewareMixin):
    """A synchronous process_exception (run as it is: exception middleware
    are synchronous)."""

    def process_exception(self, request, exception):
        return None


async def async_view(request):
    return HttpResponse("ok")


urlpatterns.append(path("async/", async_view))


def status_view(request, code):
    return HttpResponse(status=code)


async def one_bridge_view(request):
    """Its own bridge call, which the model does not know."""
    from asgiref.sync import sync_to_async

    await sync_to_async(str)(1)
    return HttpResponse("ok")


class AnswersException(MiddlewareMixin):
    """A process_exception that answers 200: the view raised, the response is fine."""

    def process_exception(self, request, exception):
        return HttpResponse("recovered")


def _calls_through_a_bridge(view):
    """A sync wrapper (functools.wraps) that calls the async ``view`` through
    async_to_sync itself: sync for Django, its __wrapped__ the async view."""
    import functools

    from asgiref.sync import async_to_sync

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        return async_to_sync(view)(request, *args, **kwargs)

    return wrapper


def _bridged_sync_view():
    from asgiref.sync import sync_to_async

    def bridged(request):
        return HttpResponse("ok")

    # The URL's view is the bridge: async for Django, its __wrapped__ the sync view.
    return sync_to_async(bridged)


urlpatterns += [
    path("status/<int:code>/", status_view),
    path("one-bridge/", one_bridge_view),
    path("bridged-view/", _bridged_sync_view()),
    path("wrapper-bridging/", _calls_through_a_bridge(async_view)),
]


from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402


class SyncOnlySession(SessionMiddleware):
    """SessionMiddleware marked sync-only, as switchtrace explain's fix says."""

    async_capable = False


class RewrittenSession(SessionMiddleware):
    """SyncOnlySession rewritten as explain's fix for it says: an async
    __call__ for an async get_response, its hooks called there directly."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._async_call(request)
        return super().__call__(request)

    async def _async_call(self, request):
        self.process_request(request)
        return self.process_response(request, await self.get_response(request))


class SyncXFrame(XFrameOptionsMiddleware):
    """XFrameOptionsMiddleware marked sync-only (RewrittenXFrameCall is it
    rewritten as a sync-and-async middleware)."""

    async_capable = False


class BridgingMiddleware(AsyncOnly):
    """A sync_to_async of its own, outside the view (as django-debug-toolbar's
    show_toolbar): a bridge call the model does not know."""

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        await sync_to_async(str)(1)
        return await self.get_response(request)


class OneBridgeLike:
    """Like StructlogLike, with one sync_to_async of its own (2 switches)."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import iscoroutinefunction

        self.get_response, self.is_async = get_response, iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        self.prepare(request)
        return self.get_response(request)

    async def __acall__(self, request):
        await sync_to_async(self.prepare)(request)
        return await self.get_response(request)

    def prepare(self, request):
        request.prepared = True


class StructlogLike(OneBridgeLike):
    """django-structlog's RequestMiddleware (11.0): sync- and async-capable,
    its own __acall__ bridging two of its synchronous methods every request
    (4 switches under ASGI that no hook of MiddlewareMixin's makes)."""

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        self.prepare(request)
        return self.finish(request, self.get_response(request))

    async def __acall__(self, request):
        from asgiref import sync

        await sync.sync_to_async(self.prepare)(request)
        return await self.afinish(request, await self.get_response(request))

    async def afinish(self, request, response):
        """A helper of its own async code: read too."""
        from asgiref import sync

        return await sync.sync_to_async(self.finish)(request, response)

    def finish(self, request, response):
        self.handle_response(request, response)
        return response

    def prepare(self, request):  # its own: the crossing is named after it
        request.prepared = "structlog"

    def handle_response(self, request, response):
        response["X-Handled"] = "1"


async def _bridge_str():
    from asgiref.sync import sync_to_async

    await sync_to_async(str)(1)


class HelperBridgingMiddleware(AsyncOnly):
    """Bridges in a function its code calls (as django-debug-toolbar's
    __acall__ through get_show_toolbar): not looked into, not predicted."""

    async def __call__(self, request):
        await _bridge_str()
        return await self.get_response(request)


class BranchBridgingMiddleware(AsyncOnly):
    """Bridges repr only for a request that asks (as django-axes does for a
    locked-out client): a conditional cause that other requests do not take."""

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        if "bridge" in request.GET:
            await sync_to_async(repr)(1)
        return await self.get_response(request)


class BranchBridgingStrMiddleware(AsyncOnly):
    """Bridges str only for a request that asks, as one_bridge_view always
    does: the view's bridge of the same name is not the middleware's."""

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        if "bridge" in request.GET:
            await sync_to_async(str)(2)
        return await self.get_response(request)


from django.utils.functional import SimpleLazyObject  # noqa: E402


def _never_built():
    raise AssertionError("switchtrace ran the project's code")


#: A lazy object (as django.conf.settings is): reading a middleware's code
#: must not evaluate it.
LAZY_HANDLER = SimpleLazyObject(_never_built)


class LazyHoldingMiddleware(AsyncOnly):
    """Bridges a lazy object of its module and one its class holds."""

    handler = LAZY_HANDLER

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        await sync_to_async(LAZY_HANDLER)(request)
        await sync_to_async(self.handler)(request)
        return await self.get_response(request)


from functools import partial  # noqa: E402


def bridged_helper(request):
    request.helped = True


def pick_helper():
    return bridged_helper


class CallSitesMiddleware(AsyncOnly):
    """Call sites whose first argument is not itself what is bridged: a
    partial (named after what it holds), what a call returns, a local that
    a function of the module shares the name of. And keyword forms that are."""

    def prepare(self, request):
        request.prepared = True

    def pick(self):
        return self.prepare

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        await sync_to_async(partial(self.prepare, request))()
        await sync_to_async(pick_helper())(request)
        await sync_to_async(self.pick())(request)
        bridged_helper = self.prepare
        await sync_to_async(bridged_helper)(request)
        await sync_to_async(func=self.prepare)(request)
        await sync_to_async(self.prepare, thread_sensitive=False)(request)
        return await self.get_response(request)


class ComprehensionBridgingMiddleware(AsyncOnly):
    """Bridges in a list comprehension and a generator expression of its
    async code (inlined in the function from Python 3.12, the list's; code
    of their own before, and the generator's still)."""

    def prepare(self, request):
        request.prepared = True

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        await asyncio.gather(*[sync_to_async(self.prepare)(request) for _ in range(1)])
        await asyncio.gather(*(sync_to_async(str)(n) for n in range(1)))
        return await self.get_response(request)


class NamesTheBridgeMiddleware(AsyncOnly):
    """Names sync_to_async and SyncToAsync in its async code without calling
    them there: a closure over it (Python 3.13 loads the cell with
    LOAD_FAST), an isinstance. No call site."""

    async def __call__(self, request):
        from asgiref.sync import SyncToAsync, sync_to_async

        def later():
            return sync_to_async

        if isinstance(later(), SyncToAsync):
            request.bridge_named = True
        return await self.get_response(request)


class DecoratedBridgeMiddleware(AsyncOnly):
    """Bridges a function its async code defines: a def decorated with
    sync_to_async and a lambda, both closures over the request."""

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        @sync_to_async
        def note():
            request.noted = True

        await note()
        await sync_to_async(lambda: str(request))()
        return await self.get_response(request)


class HookBridgingMiddleware(AsyncOnly):
    """Bridges a hook of its own (as Django 5.2's RemoteUserMiddleware does
    for a subclass overriding process_request): the crossing is named as
    the middleware's hook."""

    async def __call__(self, request):
        from asgiref.sync import sync_to_async

        await sync_to_async(self.process_request)(request)
        return await self.get_response(request)

    def process_request(self, request):
        return None


def note_order(request):
    request.noted = True


@async_only_middleware
def bridging_function(get_response):
    """A function middleware whose async middleware bridges a function of
    its module."""
    from asgiref.sync import sync_to_async

    async def middleware(request):
        await sync_to_async(note_order)(request)
        return await get_response(request)

    return middleware


import logging  # noqa: E402

shop_log = logging.getLogger("tests.shop")


def logging_view(request):
    """Logs a warning of the project's own, as a view does."""
    shop_log.warning("order 9 looked up")
    return HttpResponse("ok")


urlpatterns.append(path("logs/", logging_view))


class GoneForServerError(MiddlewareMixin):
    """Answers 410 in place of a 500: Django logs the view's exception
    ('Internal Server Error', why) and then the 410."""

    def process_response(self, request, response):
        return HttpResponse(status=410) if response.status_code == 500 else response


class GetattrXFrame(XFrameOptionsMiddleware):
    """Its own async path, read on self through getattr."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return getattr(self, "acall")(request)  # noqa: B009 (the shape under test)
        return super().__call__(request)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class TypeOfSelfXFrame(XFrameOptionsMiddleware):
    """Its own async path, read on type(self)."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return type(self).acall(self, request)
        return super().__call__(request)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class ClassOfSelfXFrame(XFrameOptionsMiddleware):
    """Its own async path, read on self.__class__."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__class__.acall(self, request)
        return super().__call__(request)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class SyncHelperPathXFrame(XFrameOptionsMiddleware):
    """Its own async path, returned by a synchronous method of its own."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._async_path(request)
        return super().__call__(request)

    def _async_path(self, request):
        return self.acall(request)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class SyncHelperLogsXFrame(XFrameOptionsMiddleware):
    """Hands on around a synchronous method of its own that names none of
    its async methods (beside one the __call__ never reads)."""

    def __call__(self, request):
        self._note(request)
        return super().__call__(request)

    def _note(self, request):
        request.noted = self.get_response is not None

    async def aclose(self):
        return None


class SyncHelperConnectsXFrame(XFrameOptionsMiddleware):
    """Hands on; a synchronous helper of its own reads an async method of
    its own on self without returning it (keeps it as a callback)."""

    def __call__(self, request):
        self._set_up()
        return super().__call__(request)

    def _set_up(self):
        self.callbacks = [self._on_started]

    async def _on_started(self, **kwargs):
        return None


class StaticHelperXFrame(XFrameOptionsMiddleware):
    """Hands on; a staticmethod helper whose first argument (the request)
    has an attribute named as an async method of the class."""

    def __call__(self, request):
        self._note(request)
        return super().__call__(request)

    @staticmethod
    def _note(request):
        return getattr(request, "acall", None)

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class ForwardingHelperXFrame(XFrameOptionsMiddleware):
    """Its own async path, returned by a synchronous helper that forwards
    what it is given, inside a try (what a helper returning it may do)."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._route(request)
        return super().__call__(request)

    def _route(self, request, *args, **kwargs):
        try:
            return self.acall(request, *args, **kwargs)
        finally:
            request.routed = True

    async def acall(self, request, *args, **kwargs):
        return self.process_response(request, await self.get_response(request))


class OrNoneHelperXFrame(XFrameOptionsMiddleware):
    """Its own async path, returned by a synchronous helper in a branch
    whose other value is None."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._async_path(request)
        return super().__call__(request)

    def _async_path(self, request):
        return self.acall(request) or None

    async def acall(self, request):
        return self.process_response(request, await self.get_response(request))


class OwnLoopOuter:
    """Synchronous-only; its own code runs the rest of the chain in an
    async_to_sync, handing on through sync_to_async(get_response): above an
    async-only middleware, Django's adapter runs on its loop."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return async_to_sync(self.acall)(request)

    async def acall(self, request):
        return await sync_to_async(self.get_response)(request)


class OneHook(MiddlewareMixin):
    """One synchronous hook."""

    def process_request(self, request):
        return None


class SyncOneHook(OneHook):
    async_capable = False


async def many_bridges_view(request):
    """More bridge calls than the default MAX_EVENTS keeps in detail (an
    N+1 of ``aexists()``)."""
    for _ in range(1100):
        await sync_to_async(str)()
    return HttpResponse("ok")


urlpatterns += [path("many-bridges/", many_bridges_view)]


class InlineAsyncCall(XFrameOptionsMiddleware):
    """Its own __call__ is its async path, inline (no helper, no super()):
    the hooks it calls itself run on the loop, in no sync_to_async."""

    def __call__(self, request):
        if iscoroutinefunction(self):

            async def inner():
                return self.process_response(request, await self.get_response(request))

            return inner()
        return self.process_response(request, self.get_response(request))


class AsyncOnlyMixin(MiddlewareMixin):
    """Async-only, with a synchronous hook: Django refuses a middleware
    that is neither sync- nor async-capable, so it cannot be marked sync-only."""

    sync_capable = False
    async_capable = True

    def process_response(self, request, response):
        return response


class OnlyAsyncCapableFlag:
    """Says only ``async_capable``: ``sync_capable`` is Django's default, True."""

    async_capable = True

    def process_view(self, request, view, args, kwargs):
        return None

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


#: As Channels' ``channels.db`` names its sync_to_async.
database_sync_to_async = sync_to_async


class ChannelsStyle:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response

    def lookup(self):
        return None

    async def __call__(self, request):
        await database_sync_to_async(self.lookup)()
        return await self.get_response(request)


from django.middleware.locale import LocaleMiddleware  # noqa: E402


class ProjectLocale(LocaleMiddleware):
    pass
