"""Patches on Django's handlers: where a request's record begins and ends, and
where its response headers are sent.

- WSGI: the record begins when ``WSGIHandler.__call__`` receives the environ,
  on the server's worker thread, and ends when the server closes the response
  (``HttpResponseBase.close``, which sends ``request_finished``) on that same
  thread, after the body has been iterated. One response object may be
  returned by several requests at once (a view's module-level response):
  each close ends the record current where it runs, the request whose
  server closes it. asgiref's ``WsgiToAsgi`` never closes the response: a
  request it serves ends when its call returns, after the last body message.
- ASGI: the record begins when ``ASGIHandler.__call__`` receives an HTTP scope,
  in the request's task on the event loop, and ends when that call returns,
  after ``response.close`` and the exit of the per-request
  ``ThreadSensitiveContext``.
- The headers are sent right after ``BaseHandler.get_response`` returns (WSGI,
  still inside the handler) or when ``ASGIHandler.send_response`` starts
  (ASGI): the record freezes its figures there, and a response the middleware
  stamped is stamped again with them.
- The headers sent are a list Django builds from the response object: under
  WSGI the one ``WSGIHandler`` hands to ``start_response``, under ASGI the one
  in the ``http.response.start`` message ``send_response`` sends. Django is
  handed a ``start_response`` (a ``send``) of switchtrace's own that rewrites
  that list for the request (its figures, or none if it is not shown them):
  requests that return one response object at once (a view's module-level
  response, in several threads, or tasks) each get their own. From the
  moment switchtrace's middleware hands a response up the chain until that
  list is built, the request's code above the middleware and Django read the
  object's headers: meanwhile another request adds or takes off none of them
  (Django's reading would fail), it only writes values (see :func:`show`);
  nor does any request once one has read them (the code of another request
  that returns that object, below switchtrace's middleware too, may be
  iterating them).
  Django's test clients have neither: there the object is what is checked,
  and it carries each request's headers as before.

``BaseHandler.adapt_method_mode`` and ``resolve_request`` are wrapped to name
what causes a crossing (which middleware an adapter serves, which view).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from asgiref.wsgi import WsgiToAsgiInstance
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler, get_path_info, get_script_name
from django.http import HttpResponseBase

from .. import tracer
from ..exporters import propagation
from ..exporters.spans import ARRIVAL, Arrival
from ..tracer.describe import attribute, is_of_type
from ..tracer.guard import put_back, raised_elsewhere, swallow
from ..tracer.patches import Fast, Patcher, Target
from ..tracer.weak import WeakIdentityMap
from . import components, telemetry
from .conf import get_config
from .headers import carries, restamp, rewritten, stamp, stamped, unstamp

#: pytest leaves this module's frames out of a failure's traceback: its
#: wrappers run Django's handlers and the project's code, whose exception
#: is its own (see tracer.guard.raised_elsewhere).
__tracebackhide__ = raised_elsewhere

#: Response -> the WSGI records its close ends, oldest first: more than one
#: when requests in several threads returned the same object.
_closing: WeakIdentityMap[list[tracer.RequestRecord]] = WeakIdentityMap()
_closing_lock = threading.Lock()

#: Set while asgiref's WsgiToAsgi calls the WSGI application: the records
#: opened under it, which no close ends (see :func:`_end_adapted_wsgi`).
_adapted: contextvars.ContextVar[list[tracer.RequestRecord] | None] = contextvars.ContextVar(
    "switchtrace.wsgi_to_asgi", default=None
)

#: record.extra's key on the record of a request whose headers go out
#: through switchtrace's start_response (WSGI) or send (ASGI): whether the
#: request is shown the figures, None until the middleware (or the headers)
#: decide.
SHOWN = "switchtrace.shown"
#: record.extra's key for the response whose headers the request is reading.
_READING = "switchtrace.reading"
#: Response -> how many requests are reading its headers (from the moment
#: switchtrace's middleware hands it up the chain, or the headers are sent,
#: until Django has built the list it sends).
_readers: WeakIdentityMap[int] = WeakIdentityMap()
_readers_lock = threading.Lock()
#: Responses whose headers a request has read: one that another request
#: reads too is an object several requests return (a view's module-level
#: response), whose headers the code of any of them, below switchtrace's
#: middleware as well as above it, may be iterating at any moment.
_read_before: WeakIdentityMap[bool] = WeakIdentityMap()
#: record.extra's key: whether the request reading a response's headers is
#: the first one to read them.
_FIRST = "switchtrace.first_reader"
#: record.extra's key, set when BaseHandler.get_response is first called for
#: a WSGI request: a call after it is not the request's own.
_ANSWERED = components.ANSWERED
#: Set while a sub-request that a view serves itself runs (see :func:`_serving`):
#: what Django does for it (resolving its path, calling its view) is not its
#: request's, whose route and view stay its own.
_sub_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "switchtrace.sub_request", default=False
)
#: record.extra's key, set once WSGIHandler.__call__ has returned for a WSGI
#: request: it is served no longer, whatever its bookkeeping noted.
_HANDLED = "switchtrace.handled"
#: ``record.extra`` key: a weak reference to the response whose close ends a
#: WSGI record (its entry in ``_closing``), to drop that entry when the
#: record ends otherwise.
_CLOSES = "switchtrace.closes"


def request_attributes(
    record: tracer.RequestRecord, method: Any, scheme: Any, path: Any, query: Any
) -> None:
    record.attributes["http.request.method"] = method
    record.attributes["url.scheme"] = scheme
    record.attributes["url.path"] = path
    if query:
        record.attributes["url.query"] = query


def wsgi_path(environ: Any) -> str:
    """The request's path as Django's WSGIRequest makes it (``request.path``,
    what the client sent): its script name (SCRIPT_NAME, where the
    application is mounted; FORCE_SCRIPT_NAME where a proxy strips the
    mount; Apache's SCRIPT_URL) and PATH_INFO, whose bytes a WSGI server
    hands over as latin-1 text (PEP 3333), read as UTF-8 (bytes that are not
    UTF-8 percent-encoded again). PATH_INFO alone left the mount out
    ('/sync/' for '/app/sync/'), and '/café/' came out as '/cafÃ©/'; under
    ASGI ``scope["path"]`` is both."""
    script_name = environ.get("SCRIPT_NAME", "")
    path_info = environ.get("PATH_INFO", "")
    if (
        type(script_name) is str  # (as Django reads them: fast for the usual request)
        and type(path_info) is str
        and script_name.isascii()
        and path_info.isascii()
        and "SCRIPT_URL" not in environ
        and "REDIRECT_URL" not in environ
        and settings.FORCE_SCRIPT_NAME is None
    ):
        path_info = path_info or "/"
        return f"{script_name.rstrip('/')}/{path_info.replace('/', '', 1)}"
    try:
        script_name = get_script_name(environ)
        path_info = get_path_info(environ) or "/"
    except UnicodeError:  # not UTF-8, or not latin-1 text (Django raises too)
        return environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return f"{script_name.rstrip('/')}/{path_info.replace('/', '', 1)}"  # as WSGIRequest.path


def arrived_wsgi(record: tracer.RequestRecord, environ: Any) -> None:
    """A WSGI request's attributes, and while spans are made what its
    server, client and network attributes and its trace context come from
    (a test Client's request gets them too: exported as a server's)."""
    request_attributes(
        record,
        environ.get("REQUEST_METHOD"),
        environ.get("wsgi.url_scheme"),
        wsgi_path(environ),
        environ.get("QUERY_STRING"),
    )
    pipeline = telemetry.pipeline()
    if pipeline is not None:
        propagation.arrived_wsgi(record.extra, environ)
        record.extra[ARRIVAL] = Arrival(
            environ.get("HTTP_HOST"),
            environ.get("HTTP_FORWARDED"),
            environ.get("HTTP_X_FORWARDED_HOST"),
            environ.get("HTTP_X_FORWARDED_PROTO"),
            environ.get("HTTP_X_FORWARDED_FOR"),
            (environ.get("SERVER_NAME"), environ.get("SERVER_PORT")),
            (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")),
            environ.get("SERVER_PROTOCOL"),
            environ.get("HTTP_USER_AGENT"),
        )
        pipeline.capture(record)


def arrived_asgi(record: tracer.RequestRecord, scope: Any) -> None:
    """:func:`arrived_wsgi` for an ASGI request."""
    query = scope.get("query_string", b"")
    request_attributes(
        record,
        scope.get("method"),
        scope.get("scheme") or "http",  # the ASGI specification's default
        scope.get("path"),
        query.decode("latin-1") if isinstance(query, bytes) else query,
    )
    pipeline = telemetry.pipeline()
    if pipeline is not None:
        headers = scope.get("headers", ())
        if type(headers) is not list and type(headers) is not tuple:
            # An iterable the ASGI specification allows, which may be read
            # once: Django's to read (not read here).
            headers = []
        propagation.arrived_asgi(record.extra, headers)
        # A header sent as several fields is one value, joined by commas
        # (RFC 9110), as WSGI servers join them.
        fields: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            if name in _READ_HEADERS:
                fields.setdefault(name, []).append(value)
        joined = {name: b",".join(values) for name, values in fields.items()}
        record.extra[ARRIVAL] = Arrival(
            fields[b"host"][0] if b"host" in fields else None,
            joined.get(b"forwarded"),
            joined.get(b"x-forwarded-host"),
            joined.get(b"x-forwarded-proto"),
            joined.get(b"x-forwarded-for"),
            scope.get("server"),
            scope.get("client"),
            scope.get("http_version"),
            joined.get(b"user-agent"),
        )
        pipeline.capture(record)


def _wrap_wsgi_call(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs on the WSGI server's worker thread. The server iterates and closes
    # the response on this thread after we return, so the record stays
    # current here until HttpResponseBase.close ends it.
    previous = tracer.current_record()
    if previous is not None and _serving(previous):
        # A request served inside another one (a view calling a WSGI
        # application): part of it, as the work of its view is.
        return as_sub_request(wrapped, args, kwargs)
    if previous is not None and previous.kind == tracer.WSGI and not previous.finished:
        # The server never closed the previous response on this thread.
        try:
            tracer.finish_request(previous)
        finally:
            _forget_closing(previous)
    record, _token = tracer.start_request(tracer.WSGI, get_config().max_events)
    adapted = _adapted.get()
    if adapted is not None:
        # Served through asgiref's WsgiToAsgi: ended when its call returns.
        adapted.append(record)
    try:
        arrived_wsgi(record, args[0] if args else kwargs["environ"])
    except Exception:
        swallow("WSGI request attributes")
    args, kwargs = _with_our_start_response(record, args, kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(record, exc)
        _stop_reading(record)
        try:
            tracer.finish_request(record)
        finally:
            _forget_closing(record)  # (the server's start_response raised: it closes nothing)
        raise
    # Served no longer, whatever the bookkeeping below: a record left current
    # on the thread without its headers (an internal error) must not take
    # the next request on the thread for a sub-request of its own.
    record.extra[_HANDLED] = True
    if record.at_headers is None and not record.finished:
        # A handler whose own get_response bypasses BaseHandler's (the static
        # files handler of runserver): the headers went out in the call.
        _wsgi_headers(record, _response_of(response))
    _stop_reading(record)
    return response


def failed(record: tracer.RequestRecord, exc: BaseException) -> None:
    """The request ended with ``exc`` out of Django's handler, to the server
    (or the test client): a body that raised under ASGI, SystemExit or
    KeyboardInterrupt from a view, a cancellation. Its span is an error,
    ``error.type`` the exception's class, as OpenTelemetry's HTTP
    conventions ask of a request that failed, whatever its status."""
    record.attributes["error.type"] = tracer.exception_type(exc)


def _response_of(returned: Any) -> Any:
    """The response a WSGI handler's return stands for: itself, or, for a
    file Django hands to the server's ``wsgi.file_wrapper``, the response
    whose ``close`` Django made the file's (what the server closes); else
    what was returned."""
    if is_of_type(returned, HttpResponseBase):
        return returned
    # The file is the wrapper's ``filelike`` (wsgiref's, gunicorn's), its
    # ``file`` (waitress's), or the wrapper gave it back (uWSGI's).
    for held in (returned, *_held_by(returned)):
        owner = attribute(attribute(held, "close"), "__self__")
        if is_of_type(owner, HttpResponseBase):
            return owner
    return returned


def _held_by(obj: Any) -> list[Any]:
    """The values of ``obj``'s attributes, in its ``__dict__`` and slots."""
    held: list[Any] = []
    try:
        held.extend(dict(vars(obj)).values())
    except Exception:  # none, or not a mapping
        pass
    for cls in type(obj).__mro__:
        # The slots' descriptors, not __slots__ (which a class may change
        # after it is made).
        for value in list(vars(cls).values()):
            if type(value) is types.MemberDescriptorType:
                try:
                    held.append(value.__get__(obj, cls))
                except Exception:  # an empty slot
                    pass
    return held


def _with_our_start_response(
    record: tracer.RequestRecord, args: Any, kwargs: Any
) -> tuple[Any, Any]:
    """``WSGIHandler.__call__``'s arguments with the server's start_response
    wrapped, and the record marked to be sent through it."""

    def ours(start_response: Any) -> Any:
        def start_response_for_the_request(
            status: Any, headers: Any, *rest: Any, **named: Any
        ) -> Any:
            # Runs on the WSGI worker thread, called by WSGIHandler once it
            # has read the headers off the response; returns the server's
            # ``write``.
            try:
                _stop_reading(record)
                headers = _sent_headers(record, headers)
            except Exception:
                swallow("WSGI start_response")
            return start_response(status, headers, *rest, **named)

        return start_response_for_the_request

    replaced = _argument_replaced(args, kwargs, "start_response", ours)
    if replaced is None:
        return args, kwargs
    record.extra[SHOWN] = None
    return replaced


def _argument_replaced(
    args: Any, kwargs: Any, name: str, replace: Any, index: int = 1
) -> tuple[Any, Any] | None:
    """A call's arguments with the one at ``index`` (``name`` when given by
    keyword) replaced by ``replace(it)``; None if the call has none."""
    if len(args) > index:
        return (*args[:index], replace(args[index]), *args[index + 1 :]), kwargs
    if name in kwargs:
        return args, {**kwargs, name: replace(kwargs[name])}
    return None


def _sent_headers(record: tracer.RequestRecord, headers: Any) -> Any:
    """The headers for this request: Django read them off a response object
    that other requests may have written their figures on."""
    shown = record.extra.get(SHOWN)
    if shown is None or record.at_headers is None:
        return headers
    if shown and carries(headers, record.at_headers):
        return headers
    return rewritten(headers, record.at_headers if shown else None)


def show(record: tracer.RequestRecord, response: Any, figures: tracer.Figures, shown: bool) -> None:
    """The middleware's writing, for a request sent through switchtrace's
    start_response or send: the decision is kept for it. The response's
    headers grow (shown) or lose switchtrace's (not shown) only if no other
    request is reading them, nor ever did (see :func:`_read`); every request
    is sent its own anyway. Nothing, if the request has ended meanwhile (see
    :func:`_trace_asgi`)."""
    with _readers_lock:
        if record.finished:
            return
        alone = _read(record, response)
        if shown:
            stamp(response, figures, grow=alone)
        elif alone:
            unstamp(response)
    record.extra[SHOWN] = shown


def show_to_a_sub_request(response: Any, figures: tracer.Figures, shown: bool) -> None:
    """The middleware's writing in a sub-request of a request sent through
    switchtrace's start_response or send: on the sub-request's response,
    which no server sends, leaving the request its own decision. As in
    :func:`show`, the response's headers grow or lose switchtrace's only if
    no request reads them, nor ever did (a view's one response object,
    whose headers another request's server may be reading); the object is
    read now (the code of the request the sub-request serves may iterate
    them)."""
    with _readers_lock:
        # (A response being read was read before: _read marks both.)
        alone = _read_before.get(response) is None
        _read_before[response] = True
        if shown:
            stamp(response, figures, grow=alone)
        elif alone:
            unstamp(response)


def _read(record: tracer.RequestRecord, response: Any) -> bool:
    """Note that ``record``'s request reads ``response``'s headers (a
    middleware above switchtrace's may have put another response in place of
    the one it read before); whether headers may be added to it or taken off:
    no other request reads them, nor ever did (code below switchtrace's
    middleware, which no count sees, may be iterating the headers of an
    object that several requests return: only their values are written).
    Called under ``_readers_lock``."""
    reading = record.extra.get(_READING)
    if reading is not response:
        if reading is not None:
            _unread(reading)
        _readers[response] = (_readers.get(response) or 0) + 1
        record.extra[_READING] = response
        record.extra[_FIRST] = _read_before.get(response) is None
        _read_before[response] = True
    return bool(record.extra[_FIRST]) and _readers.get(response) == 1


def _unread(response: Any) -> None:
    count = _readers.get(response) or 0
    if count > 1:
        _readers[response] = count - 1
    else:
        _readers.pop(response)


def _stop_reading(record: tracer.RequestRecord) -> None:
    """Django has built the list of headers it sends (or never will)."""
    try:
        with _readers_lock:
            reading = record.extra.pop(_READING, None)
            if reading is not None:
                _unread(reading)
    except Exception:
        swallow("headers read")


def _serving(record: tracer.RequestRecord) -> bool:
    """Whether ``record``'s request is still being answered: an ASGI one
    until its handler call returns, a WSGI one until its headers are sent
    (and its handler call has not returned). A request served meanwhile
    where it is current (a sub-request that its view serves itself) is part
    of it."""
    if record.finished:
        return False
    if record.kind == tracer.ASGI:
        return True
    if record.kind != tracer.WSGI:
        return False
    if record.at_headers is None and _HANDLED not in record.extra:
        return True
    # After its headers, while the generator of its streaming body runs (an
    # asynchronous one's: while an __anext__ of it is awaited, in the loop of
    # the async_to_sync Django consumes it in).
    body = record.extra.get(_BODY)
    if body is None:
        return False
    generator = body()
    return (
        getattr(generator, "gi_running", False) is True
        or getattr(generator, "ag_running", False) is True
    )


#: record.extra's key: a weak reference to the generator a WSGI request's
#: streaming response iterates, once its headers are sent.
_BODY = "switchtrace.body"


def _note_the_body(record: tracer.RequestRecord, response: Any) -> None:
    """Keep a weak reference to the generator that runs while the server
    iterates the streaming body: a generator, or an asynchronous one
    (Django consumes it whole in an async_to_sync). A body that is neither
    (a ``map`` or an ``itertools.chain`` around one, which says nothing of
    the code it runs) is not followed: switchtrace does not put an iterator
    of its own in the response's place."""
    if attribute(response, "streaming") is not True:
        return
    body = attribute(response, "_iterator")  # StreamingHttpResponse's, since Django 1.x
    if type(body) is types.GeneratorType or type(body) is types.AsyncGeneratorType:
        record.extra[_BODY] = weakref.ref(body)


def in_a_request() -> bool:
    """Whether a request served here (in this thread or task) would be a
    sub-request: a request is being served where it is current."""
    previous = tracer.current_record()
    return previous is not None and _serving(previous)


def serving_a_sub_request() -> bool:
    """Whether what runs here serves a sub-request of the current request."""
    return _sub_request.get()


def _wrap_get_response(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs on the WSGI worker thread; the headers are built from the response
    # as soon as this returns. Only the request's own call, the first: one
    # made inside it (a sub-request its view serves through Django's test
    # Client or BaseHandler.get_response, as batch API endpoints do) is part
    # of it, and neither sends its headers nor ends it.
    record = tracer.current_record()
    if record is None or record.finished:
        return wrapped(*args, **kwargs)
    if record.kind == tracer.ASGI or _ANSWERED in record.extra:
        # ASGIHandler answers with get_response_async: under ASGI, this is a
        # sub-request's too.
        return as_sub_request(wrapped, args, kwargs)
    if record.kind != tracer.WSGI:
        return wrapped(*args, **kwargs)
    record.extra[_ANSWERED] = True
    response = wrapped(*args, **kwargs)
    if not record.finished:
        _wsgi_headers(record, response)
    return response


#: Whether Django writes a large request body in sync_to_async (>= 6.0).
_BODIES_ON_DISK = components.writes_bodies_in_sync_to_async()


def _wrap_get_response_async(wrapped, instance, args, kwargs):
    # Runs in the task that awaits it. Under ASGI only the request's own call,
    # the first (ASGIHandler's): one made inside it (a sub-request its view
    # serves through Django's test AsyncClient or
    # BaseHandler.get_response_async) is part of it, as under WSGI, whose
    # handler answers with get_response (an async view under WSGI serving one
    # runs in its async_to_sync).
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    record = tracer.current_record()
    if record is None or record.finished:
        return wrapped(*args, **kwargs)
    if _BODIES_ON_DISK and args:
        # Django >= 6.0 wrote a body that outgrew memory in sync_to_async
        # (ASGIHandler.read_body): its file tells those writes apart.
        try:
            body = getattr(args[0], "_stream", None)
            if getattr(body, "_rolled", False) is True:
                components.body_on_disk(record, body)
        except Exception:
            swallow("request body")
    if record.kind == tracer.ASGI and _ANSWERED not in record.extra:
        record.extra[_ANSWERED] = True
        return wrapped(*args, **kwargs)
    if record.kind != tracer.ASGI and record.kind != tracer.WSGI:
        return wrapped(*args, **kwargs)
    return as_sub_request_async(wrapped(*args, **kwargs))


def as_sub_request(wrapped: Any, args: Any, kwargs: Any) -> Any:
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    token = _sub_request.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _sub_request.reset(token)


async def as_sub_request_async(call: Any) -> Any:
    # Runs in the task that awaits the sub-request; what it does in tasks of
    # its own (ASGIHandler's) copies this context.
    __traceback_hide__ = True
    token = _sub_request.set(True)
    try:
        return await call
    finally:
        put_back(_sub_request, token, "sub-request")


def _wsgi_headers(record: tracer.RequestRecord, response: Any) -> None:
    """The headers are sent: freeze the figures; the server's close of
    ``response`` ends the record."""
    try:
        at_headers(record, response)
        _note_the_body(record, response)
        if _adapted.get() is not None:
            return  # WsgiToAsgi closes no response: its call's return ends the record
        with _closing_lock:
            waiting = _closing.get(response)
            record.extra[_CLOSES] = weakref.ref(response)
            if waiting is None:
                _closing[response] = [record]
            else:
                # A record finished otherwise waits no more: the server's
                # start_response raised, or it never closed the response.
                waiting[:] = [r for r in waiting if not r.finished]
                waiting.append(record)
    except Exception:
        swallow("WSGI headers")


def _forget_closing(record: tracer.RequestRecord) -> None:
    """``record`` ended without its response's close (never called): it no
    longer waits for it. Kept, it would keep whatever it holds, and a record
    whose crossings hold the response (a view's closure bridged) would keep
    the response, and so its own entry, for ever."""
    try:
        closes = record.extra.pop(_CLOSES, None)
        response = closes() if closes is not None else None
        if response is None:
            return
        with _closing_lock:
            waiting = _closing.get(response)
            if waiting is not None:
                waiting[:] = [r for r in waiting if r is not record]
                if not waiting:
                    _closing.pop(response)
    except Exception:
        swallow("WSGI response left unclosed")


def _patch_response_close(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # A plain function taking what close() takes, not a wrapt proxy: Django's
    # test Client calls close() from inside the generator the close ends,
    # still running (closing_iterator_wrapper), and CPython 3.11 and 3.12
    # crash there once the call site's inline cache, which a call they
    # cannot specialize (a wrapt proxy's) keeps changing, reads as the
    # instruction a ``yield from`` resumes at.
    @functools.wraps(original)
    def close(self: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        # Runs wherever the response is closed: for WSGI, the server's
        # worker thread once the body is sent, in the context that called
        # the handler.
        if _closing.get(self) is None:
            return original(self)
        record = _closed_record(self)
        if record is None:
            return original(self)
        try:
            return original(self)
        except BaseException as exc:
            # (Closed inside Django's handler, under ASGI and by the test
            # clients, the same exception leaves the handler.)
            failed(record, exc)
            raise
        finally:
            tracer.finish_request(record)

    return close


def _closed_record(response: Any) -> tracer.RequestRecord | None:
    """The record that this close of ``response`` ends: the one current here
    (the server closes a response on the thread, in the context, that called
    the handler), else, closed elsewhere, the oldest still waiting for it
    (not one already finished: a request whose server refused its headers).
    None when closed by the code of a request being served where it runs (a
    view, or the test Client serving it a sub-request, closing what a
    sub-request returned), which is no server's close of another request's
    response: a view's one response object, in requests of other threads."""
    try:
        current = tracer.current_record()
        with _closing_lock:
            waiting = _closing.get(response)
            if waiting:
                waiting[:] = [r for r in waiting if not r.finished]
            if not waiting:
                _closing.pop(response, None)
                return None
            record = next((r for r in waiting if r is current), None)
            if record is None:
                if current is not None and _serving(current):
                    return None
                record = waiting[0]
            waiting.remove(record)
            if not waiting:
                _closing.pop(response)
            return record
    except Exception:
        swallow("WSGI close")
        return None


def _wrap_wsgi_to_asgi(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    if not in_a_request():  # (a view's sub-request: its sends are the view's)
        replaced = _argument_replaced(args, kwargs, "send", _last_send_outside, index=2)
        args, kwargs = replaced or (args, kwargs)
    return _end_adapted_wsgi(wrapped(*args, **kwargs))


def _last_send_outside(send: Any) -> Any:
    """The server's ``send`` for asgiref's WsgiToAsgi, its last body message
    sent outside the request. WsgiToAsgi sends each message from the thread
    that runs the WSGI application, through an async_to_sync whose task in
    the server's loop copies that thread's context: the WSGI request's
    record current there. uvicorn starts the connection's next request
    inside the last send, in a task copying it: the next request, another
    application's (a router's) or one more WSGI request, was counted in
    this one, or ended it early (as a request whose response the server
    never closed). (What an ASGI middleware around WsgiToAsgi bridges in
    that send is outside it too, as around Django's ASGI handler.)

    Left as it is when it is not marked async (a server's callable that
    returns an awaitable): asgiref warns of that, and would not see it."""
    try:
        # (As asgiref's AsyncToSync asks.)
        marked = iscoroutinefunction(send) or iscoroutinefunction(
            getattr(send, "__call__", send)  # noqa: B004
        )
    except Exception:  # (an object whose attributes raise: the server's own)
        marked = False
    if not marked:
        return send

    async def send_last_outside(message: Any) -> Any:
        __traceback_hide__ = True
        if _is_last_body(message):
            # Nor is it one of this call's WSGI requests (_end_adapted_wsgi).
            token = _adapted.set(None)
            try:
                with tracer.no_request():
                    return await send(message)
            finally:
                put_back(_adapted, token, "WsgiToAsgi send")
        return await send(message)

    # Named as the server's send (not functools.wraps: its attributes are
    # read off an object of the server's, which may raise).
    send_last_outside.__wrapped__ = send  # type: ignore[attr-defined]
    return send_last_outside


def _is_last_body(message: Any) -> bool:
    """Whether ``message`` is a response's last body message: the send in
    which uvicorn and daphne start the connection's next request, in a task
    copying the sender's context (which must not hold the request then)."""
    return (
        isinstance(message, dict)
        and message.get("type") == "http.response.body"
        and not message.get("more_body")
    )


async def _end_adapted_wsgi(call: Any) -> Any:
    # Runs in the ASGI server's task. asgiref's WsgiToAsgi calls the WSGI
    # application in a sync_to_async, iterates the response there, sends the
    # last body message and returns, but never closes the response: no close
    # ends the record. WSGIHandler, in that sync_to_async's thread (in a copy
    # of this context), puts the record it opens in ``opened``, and it is
    # ended here. (Not found as the current record once the call returns:
    # in a task already recording, a request's or a block's, the
    # sync_to_async is a crossing of that record, which is current again.)
    __traceback_hide__ = True
    opened: list[tracer.RequestRecord] = []
    token = _adapted.set(opened)
    try:
        return await call
    except BaseException as exc:
        # (Here the body is read inside the call: one that raised too.)
        for record in opened:
            failed(record, exc)
        raise
    finally:
        put_back(_adapted, token, "WsgiToAsgi call")
        tracer.finish_all(opened)


def _wrap_asgi_call(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    scope = args[0] if args else kwargs.get("scope")
    if not isinstance(scope, dict) or scope.get("type") != "http":
        return wrapped(*args, **kwargs)
    if in_a_request():
        # A request served inside another one (a view calling an ASGI
        # application): part of it, as the work of its view is.
        return as_sub_request_async(wrapped(*args, **kwargs))
    return _trace_asgi(wrapped(*args, **kwargs), scope)


async def _trace_asgi(call: Any, scope: dict[str, Any]) -> Any:
    # Runs in the request's task on the event loop. Everything Django does for
    # the request happens inside ``call``, including tasks it creates (which
    # copy this context) and the exit of its ThreadSensitiveContext.
    __traceback_hide__ = True
    try:
        record, token = tracer.start_request(tracer.ASGI, get_config().max_events)
    except BaseException:
        call.close()  # (a listener's BaseException: never awaited)
        raise
    record.extra[SHOWN] = None  # send_response's send is wrapped
    try:
        arrived_asgi(record, scope)
    except Exception:
        swallow("ASGI request attributes")
    try:
        return await call
    except BaseException as exc:
        failed(record, exc)
        raise
    finally:
        # Ended first, then done reading: switchtrace's middleware may still
        # run in the request's thread (a sync chain), which a cancellation
        # of this task (twice: once more while ThreadSensitiveContext's exit
        # awaits that thread) does not wait for; under _readers_lock it
        # either reads before the line below, which undoes it, or finds the
        # request ended and reads nothing.
        try:
            tracer.finish_request(record, token)
        finally:
            _stop_reading(record)


#: The request headers switchtrace reads under ASGI, while spans are made,
#: besides those of the trace context (see :mod:`..exporters.propagation`):
#: what the request span's server, client and network attributes come from.
_READ_HEADERS = frozenset(
    (
        b"host",
        b"forwarded",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-for",
        b"user-agent",
    )
)


def _wrap_send_response(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Called in the request's task just before the response start message
    # (a sub-request's: the request's headers are not sent now).
    record = tracer.current_record()
    if record is not None and not record.finished and not _sub_request.get():
        try:
            at_headers(record, args[0] if args else kwargs["response"])
        except Exception:
            swallow("ASGI headers")
        if SHOWN in record.extra:
            args, kwargs = _with_our_send(record, args, kwargs)
    return wrapped(*args, **kwargs)


def _with_our_send(record: tracer.RequestRecord, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """``ASGIHandler.send_response``'s arguments with the server's send
    wrapped."""

    def ours(send: Any) -> Any:
        async def send_for_the_request(message: Any) -> Any:
            # Runs in the request's task, for each message send_response
            # sends; the start message's headers are those Django read off
            # the response.
            __traceback_hide__ = True
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "http.response.start":
                try:
                    _stop_reading(record)
                    message = _sent_start(record, message)
                except Exception:
                    swallow("ASGI send")
            elif _is_last_body(message):
                # An application's server span that ends with this message
                # (opentelemetry-instrumentation-asgi's, in its send) gets
                # the figures so far, a streaming body's included.
                pipeline = telemetry.pipeline()
                if pipeline is not None:
                    try:
                        pipeline.at_headers(record)
                    except Exception:
                        swallow("ASGI last send")
                # The last: uvicorn and daphne start the connection's next
                # request, pipelined or already read, inside this send, in a
                # task that copies this context. There the request must not
                # be current: the next one would be taken for its
                # sub-request (no headers of its own, its crossings counted
                # here).
                with tracer.no_request():
                    return await send(message)
            return await send(message)

        return send_for_the_request

    return _argument_replaced(args, kwargs, "send", ours) or (args, kwargs)


def _sent_start(record: tracer.RequestRecord, message: dict[str, Any]) -> dict[str, Any]:
    """The start message with this request's headers (as bytes: Django
    encodes the names as ASCII, the values as Latin-1)."""
    headers = message.get("headers")
    if not isinstance(headers, list):
        return message
    figures = record.at_headers
    if record.extra.get(SHOWN) and figures is not None:
        try:
            if carries(headers, figures, encoded=True):
                return message
        except (TypeError, AttributeError):  # not bytes: the slow path tells
            pass
    text = [
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in headers
    ]
    sent = _sent_headers(record, text)
    if sent is text:
        return message
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in sent]
    return {**message, "headers": encoded}


def at_headers(record: tracer.RequestRecord, response: Any) -> None:
    figures = record.mark_headers()
    status = attribute(response, "status_code")  # (a server's file wrapper: any __getattr__)
    if status is not None:
        record.attributes["http.response.status_code"] = status
    components.remember_response(record, response)
    if not is_of_type(response, HttpResponseBase):
        # No response of Django's (a server's wsgi.file_wrapper around a
        # file): nothing to write on, and asked whether it carried a header
        # (``in``), an iterator is read through (runserver sent every
        # static file with an empty body).
        pass
    elif SHOWN in record.extra:
        # Sent through switchtrace's start_response or send, which write the
        # figures: the object is stamped again only if no other request
        # reads its headers. A request the middleware made no decision for
        # gets the figures if the response carries some, as restamp does; a
        # response that a middleware above switchtrace's put in place of the
        # one it wrote on (a redirect, a 304) carries none, and gets none.
        with _readers_lock:
            handled = record.extra.get(_READING) is response
            alone = _read(record, response)
            if record.extra[SHOWN] is None and stamped(response):
                record.extra[SHOWN] = True
            elif record.extra[SHOWN] and not handled and not stamped(response):
                record.extra[SHOWN] = None
            if alone and record.extra[SHOWN]:
                restamp(response, figures)
    else:
        restamp(response, figures)
    pipeline = telemetry.pipeline()
    if pipeline is not None:
        pipeline.at_headers(record)


def _wrap_adapt_method_mode(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs once per adapter, when a handler loads its middleware (startup).
    adapted = wrapped(*args, **kwargs)
    try:
        method = args[1] if len(args) > 1 else kwargs.get("method")
        if adapted is not method:
            name = kwargs.get("name") if "name" in kwargs else (args[4] if len(args) > 4 else None)
            components.remember_adapter(adapted, method, name)
    except Exception:
        swallow("adapt_method_mode")
    return adapted


def _wrap_resolve_request(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    resolved = wrapped(*args, **kwargs)
    record = tracer.current_record()
    if record is not None and not record.finished and not _sub_request.get():
        try:
            request = args[0] if args else kwargs["request"]
            components.remember_view(record, resolved[0], getattr(request, "method", None))
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None)
            if route:  # (a root URL's, path(""), is "": no route, as OpenTelemetry's)
                record.attributes["http.route"] = route
        except Exception:
            swallow("resolve_request")
    return resolved


def _note_the_view(note: Any, what: str) -> None:
    record = tracer.current_record()
    if record is not None and not record.finished and not _sub_request.get():
        try:
            note(record)
        except Exception:
            swallow(what)


def _wrap_make_view_atomic(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Called by _get_response(_async) once every process_view let the
    # request through; the view is called as soon as it returns. Noted
    # after it: when it raises (ATOMIC_REQUESTS with an async view), no
    # view runs, and what Django bridges to answer the error is not a view's.
    view = wrapped(*args, **kwargs)
    _note_the_view(components.view_started, "make_view_atomic")
    return view


def _wrap_view_ended(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # check_response (the view returned) or process_exception_by_middleware
    # (it raised): the first after the view started ends it.
    _note_the_view(components.view_ended, "view end")
    return wrapped(*args, **kwargs)


def _targets() -> list[Target]:
    return [
        (WSGIHandler, "__call__", _wrap_wsgi_call),
        (BaseHandler, "get_response", _wrap_get_response),
        (BaseHandler, "get_response_async", _wrap_get_response_async),
        (HttpResponseBase, "close", Fast(_patch_response_close)),
        (WsgiToAsgiInstance, "__call__", _wrap_wsgi_to_asgi),
        (ASGIHandler, "__call__", _wrap_asgi_call),
        (ASGIHandler, "send_response", _wrap_send_response),
        (BaseHandler, "adapt_method_mode", _wrap_adapt_method_mode),
        (BaseHandler, "resolve_request", _wrap_resolve_request),
        (BaseHandler, "make_view_atomic", _wrap_make_view_atomic),
        (BaseHandler, "check_response", _wrap_view_ended),
        (BaseHandler, "process_exception_by_middleware", _wrap_view_ended),
    ]


patcher = Patcher(_targets, "Django")


_holds = 0
_holds_lock = threading.Lock()


#: Whether the settings keep the patches on: the app applied a SWITCHTRACE
#: that enables it (see :func:`apply`). Not a recording's :func:`hold`, nor
#: an enabling SWITCHTRACE without the app, which nothing applies.
_applied = False


def apply(enabled: bool) -> None:
    """The app's SWITCHTRACE applied: the patches installed (``enabled``)
    or taken off (unless a test recording holds them)."""
    global _applied
    _applied = enabled
    if enabled:
        install()
    else:
        uninstall()


def applied() -> bool:
    """Whether the settings, as the app applied them, keep the patches on."""
    return _applied


def install() -> None:
    """Patch asgiref, asyncio, threading and Django's handlers."""
    tracer.install()
    patcher.install()


def uninstall() -> None:
    """Restore everything, unless a test recording holds the patches."""
    with _holds_lock:
        if _holds:
            return
        patcher.uninstall()
        tracer.uninstall()


def hold() -> None:
    """Keep the patches installed until :func:`release`, whatever the
    settings say meanwhile (switchtrace.testing's recordings)."""
    global _holds
    with _holds_lock:
        _holds += 1
    install()


def release() -> None:
    global _holds
    with _holds_lock:
        _holds -= 1
    if not _applied:
        uninstall()
