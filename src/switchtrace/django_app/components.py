"""Which part of a Django project caused a crossing.

Resolved after the response from what the tracer recorded (the asgiref bridge
object and the bridged callable) and from two facts noted on the way: which
middleware each adapter built by ``BaseHandler.adapt_method_mode`` serves
(startup), and which view the request resolved to.
"""

from __future__ import annotations

import sys
import tempfile
import types
from collections.abc import Hashable
from typing import Any

from ..tracer import ASGI, ASYNC_TO_SYNC, SYNC_TO_ASYNC, WSGI, Component, Crossing, RequestRecord
from ..tracer.describe import (
    MAX_DEPTH,
    Generator,
    attribute,
    closure_values,
    identity,
    is_of_type,
    qualified_name,
    unwrap,
)
from ..tracer.weak import WeakIdentityMap

MIDDLEWARE_HOOKS = frozenset(
    {
        "process_request",
        "process_view",
        "process_response",
        "process_exception",
        "process_template_response",
    }
)

#: Adapters built by adapt_method_mode -> the component each serves; an entry
#: goes when its adapter does. Looked up for every crossing described.
_adapters: WeakIdentityMap[Component] = WeakIdentityMap()


def remember_adapter(adapter: Any, method: Any, name: str | None) -> None:
    """Called once per adapter, at startup."""
    if name and name.startswith("middleware "):
        # The handler below this middleware, adapted to its sync/async mode.
        path = name[len("middleware ") :]
        component = Component("middleware-adapter", path.rpartition(".")[2], "get_response")
    elif name is None and unwrap(method) is not method and _has(unwrap(method), "get_response"):
        # The top of the stack: the whole middleware chain, adapted to the
        # handler's mode (sync_to_async under ASGI when the chain is sync).
        component = Component("middleware-adapter", "middleware chain")
    else:
        component = _describe(method, None) or Component("handler", qualified_name(method))
    try:
        _adapters[adapter] = component
    except TypeError:  # not weak-referenceable: leave it to the generic rules
        pass


def remember_view(record: RequestRecord, view: Any, method: Any = None) -> None:
    """The view the request resolved to, and its method (``request.method``),
    which picks the code a class-based view or an API framework's view
    dispatches to (see :class:`ViewTarget`)."""
    record.extra["view"] = view
    record.extra[VIEW_METHOD] = method


#: record.extra's key for the request's method, as the view sees it.
VIEW_METHOD = "view_method"
#: record.extra's key for when the view ran: a ``[start, end]`` in the
#: record's clock for each time Django called it (a middleware that calls
#: get_response again, retrying the request, has it called again), ``end``
#: None until the view returned or raised (see :func:`view_started`).
VIEW_RAN = "view_ran"


def view_started(record: RequestRecord) -> None:
    """Django is about to call the view (it has made it atomic): from now
    until :func:`view_ended`, what the request bridges that names no
    component of its own is the view's doing (an async view's
    ``await Book.objects.aget()`` bridges ``QuerySet.get``)."""
    ran = record.extra.setdefault(VIEW_RAN, [])
    if not ran or ran[-1][1] is not None:
        ran.append([record.clock(), None])


def view_ended(record: RequestRecord) -> None:
    """The view returned (Django checks its response) or raised (Django hands
    the exception to the middleware)."""
    ran = record.extra.get(VIEW_RAN)
    if ran and ran[-1][1] is None:
        ran[-1][1] = record.clock()


def in_view(crossing: Crossing, record: RequestRecord) -> bool:
    """Whether ``crossing`` was called while the request's view ran."""
    ran = record.extra.get(VIEW_RAN)
    if not ran:
        return False
    called = crossing.call_ns
    return any(start <= called and (end is None or called < end) for start, end in ran)


def _view_component(record: RequestRecord) -> Component | None:
    view = record.extra.get("view")
    if view is None:
        return None
    target = view_target(record)
    return target.component if target is not None else Component("view", qualified_name(view))


class ViewTarget:
    """The application's own code behind a view that is a framework's
    dispatcher: a class-based view (Django's ``view_class``; Django REST
    framework's ``cls``, with a viewset's ``actions``) and its handler for the
    request's method, or a django-ninja operation's function. The view's
    crossing is named after it (``OrderView.get``, ``OrderViewSet.list``,
    ``list_orders``) and located in its code, not in the framework's wrapper
    (``View.as_view.<locals>.view``, ``APIView.dispatch``,
    ``PathView.get_view.<locals>.sync_view_wrapper``)."""

    __slots__ = ("__weakref__", "cls", "code", "component", "name", "operation")

    def __init__(
        self, name: str, code: Any, component: Component, cls: Any = None, operation: Any = None
    ) -> None:
        self.name = name
        #: What code.* point at: the handler, or the operation's function.
        self.code = code
        self.component = component
        #: The view class: its instances' methods are the view's too (what an
        #: async view of adrf runs in sync_to_async: ``self.initial``).
        self.cls = cls
        #: The object whose methods run the view's function (django-ninja's
        #: ``Operation``: ``sync_to_async(operation.run)`` in an async path).
        self.operation = operation

    def runs(self, owner: Any) -> bool:
        """Whether a method of ``owner`` runs the view's function itself."""
        return self.operation is not None and owner is self.operation

    def owns(self, owner: Any) -> bool:
        """Whether ``owner`` is an instance of the view's class."""
        return self.cls is not None and is_of_type(owner, self.cls)


#: view -> {method: its ViewTarget, or None for a plain view function}; an
#: entry goes when its view does (a URLconf reloaded).
_view_targets: WeakIdentityMap[dict[Any, ViewTarget | None]] = WeakIdentityMap()


def view_target(record: RequestRecord) -> ViewTarget | None:
    """The :class:`ViewTarget` of the request's view, if it has one."""
    view = record.extra.get("view")
    if view is None:
        return None
    method = record.extra.get(VIEW_METHOD)
    targets = _view_targets.get(view)
    if targets is None:
        targets = {}
        try:
            _view_targets[view] = targets
        except TypeError:  # not weak-referenceable: worked out each time
            pass
    if method in targets:
        return targets[method]
    target = find_view_target(view, method)
    if method in _METHODS:  # a client's own method is any token: not kept
        targets[method] = target
    return target


#: The methods whose view targets are kept (Django's View.http_method_names).
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"})


def find_view_target(view: Any, method: Any) -> ViewTarget | None:
    """The :class:`ViewTarget` of ``view`` for requests of ``method``
    (``"GET"``), or None for a view that runs its own code."""
    if not isinstance(method, str):
        return None
    # The attributes are on the function as_view returns, and copied by
    # functools.wraps onto every decorator around it (csrf_exempt,
    # login_required); a decorator without wraps hides them.
    for layer in _layers(view):
        cls = attribute(layer, "view_class")
        if not is_of_type(cls, type):
            cls = attribute(layer, "cls")  # DRF's ViewSetMixin.as_view
        if is_of_type(cls, type):
            return _class_view_target(cls, attribute(layer, "actions"), method.lower())
    for layer in _layers(view):
        target = _operation_target(layer, method)
        if target is not None:
            return target
    return None


def _layers(view: Any) -> list[Any]:
    """The view and what it wraps, outermost first."""
    layers = [view]
    for _ in range(MAX_DEPTH):
        inner = attribute(layers[-1], "__wrapped__")
        if inner is None or any(inner is layer for layer in layers):
            break
        layers.append(inner)
    return layers


def _class_view_target(cls: type, actions: Any, method: str) -> ViewTarget:
    """What View.dispatch picks: the method's handler, or for a viewset the
    action its ``actions`` map the method to (else a handler of the class's
    own, DRF's ``options``); HEAD falls back to GET's. A dispatch that
    answers every method itself (Strawberry's and graphene-django's
    GraphQLView) is what answers, whatever handlers the class has."""
    allowed = attribute(cls, "http_method_names") or ()
    name = class_name(cls)
    answering = _answering_dispatch(cls)
    if answering is not None:
        return ViewTarget(f"{name}.dispatch", answering, Component("view", name, "dispatch"), cls)
    if type(actions) is dict:
        action = actions.get(method) or (actions.get("get") if method == "head" else None)
        if action is None and method in allowed and attribute(cls, method) is not None:
            action = method
    elif method in allowed:
        # View.setup: a view with get and no head answers HEAD with get.
        action = "get" if method == "head" and attribute(cls, "head") is None else method
    else:
        action = None
    handler = attribute(cls, action) if isinstance(action, str) else None
    function = _decorated_function(cls, handler)
    if function is None and (handler is None or not callable(handler)):
        # Not allowed: the function all the same, through another method's
        # handler (for the 405's code location, as for its name).
        for other in allowed:
            if isinstance(other, str) and other != action:
                function = _decorated_function(cls, attribute(cls, other))
                if function is not None:
                    break
    if function is not None:
        # A class a decorator made around a function (DRF's and adrf's
        # api_view: "WrappedAPIView" for every one), whose handler calls it.
        name = qualified_name(function)
        return ViewTarget(name, function, Component("view", name), cls)
    if not isinstance(action, str) or handler is None or not callable(handler):
        # Not allowed (http_method_not_allowed answers): the class alone.
        return ViewTarget(name, cls, Component("view", name), cls)
    return ViewTarget(f"{name}.{action}", handler, Component("view", name, action), cls)


def _answering_dispatch(cls: type) -> Any:
    """The ``dispatch`` of ``cls``'s classes that answers every method itself,
    reached through those that hand on to the next (``super().dispatch``: the
    auth mixins', graphene-django's documented ``LoginRequiredMixin`` over
    its view); None when the first that does not hand on picks a handler
    (View's and DRF's fall back to ``http_method_not_allowed``, adrf's hands
    on to its ``async_dispatch``) or cannot be read."""
    for klass in type.__getattribute__(cls, "__mro__"):
        dispatch = type.__getattribute__(klass, "__dict__").get("dispatch")
        if dispatch is None:
            continue
        names = _dispatch_names(dispatch)
        if names is None or "http_method_not_allowed" in names:
            return None
        if any(name.endswith("_dispatch") for name in names):
            return None
        if "dispatch" not in names:
            return dispatch
    return None


def _dispatch_names(dispatch: Any) -> set[str] | None:
    """The names a ``dispatch`` (through decorators) reads, and the strings it
    holds whole (``getattr(super(), "dispatch")``), with those of the
    functions its closure holds (a decorator's wrapper that did not copy
    ``__wrapped__``); None if it is no plain function."""
    function = unwrap(dispatch)
    if type(function) is not types.FunctionType:
        return None
    names: set[str] = set()
    for code in [function.__code__] + [
        held.__code__ for held in closure_values(function) if type(held) is types.FunctionType
    ]:
        names.update(code.co_names)
        # Not a docstring's words, nor a message's: a string that is a name.
        names.update(c for c in code.co_consts if isinstance(c, str) and c.isidentifier())
    return names


def class_name(cls: type) -> str:
    """``cls.__qualname__``; for a class a decorator made and renamed after
    the function it wraps (``__name__`` set, ``__qualname__`` the
    decorator's own: DRF's api_view), its ``__name__``."""
    qualname = type.__getattribute__(cls, "__qualname__")
    name = type.__getattribute__(cls, "__name__")
    return qualname if qualname.rpartition(".")[2] == name else name


def _decorated_function(cls: type, handler: Any) -> types.FunctionType | None:
    """The function a decorator made ``cls`` for, which ``handler`` calls:
    the class renamed after it (see :func:`class_name`), and the function
    held by the handler's closure, of that name and module."""
    name = type.__getattribute__(cls, "__name__")
    if type.__getattribute__(cls, "__qualname__").rpartition(".")[2] == name:
        return None  # a class of its own
    for held in closure_values(handler):
        if (
            type(held) is types.FunctionType
            and held.__name__ == name
            and held.__module__ == type.__getattribute__(cls, "__module__")
        ):
            return held
    return None


def _operation_target(view: Any, method: str) -> ViewTarget | None:
    """django-ninja's view for a path: a closure over (or, before 1.5, a
    bound method of) its ``PathView``, whose ``operations`` each run a
    ``view_func`` for their ``methods``; the first that takes the method
    runs (``PathView._find_operation``)."""
    holders = [attribute(view, "__self__")]
    for cell in attribute(view, "__closure__") or ():
        try:
            holders.append(cell.cell_contents)
        except ValueError:
            continue
    for holder in holders:
        operations = attribute(holder, "operations")
        if type(operations) is not list:
            continue
        for operation in operations:
            methods = attribute(operation, "methods")
            func = attribute(operation, "view_func")
            if isinstance(methods, (list, tuple, set, frozenset)) and callable(func):
                if method in methods:
                    name = qualified_name(func)
                    return ViewTarget(name, func, Component("view", name), operation=operation)
    return None


#: record.extra's key for the class of an ASGI response that streams from a
#: synchronous iterator (see :func:`remember_response`).
SYNC_STREAM = "sync_stream"
#: record.extra's key for the class of a WSGI response that streams from an
#: asynchronous iterator (see :func:`remember_response`).
ASYNC_STREAM = "async_stream"
#: record.extra's key for the generator of either (a :class:`Generator`),
#: where Django's reading of it is located (see :meth:`Resolver.subject`).
STREAM_SOURCE = "stream_source"


#: What reads a file that django.contrib.staticfiles' ASGI handler serves.
STATIC_STREAM = Component("handler", "ASGIStaticFilesHandler", "get_response_async")


def remember_response(record: RequestRecord, response: Any) -> None:
    """A streaming response whose iterator is of the other kind than the
    handler's is read whole after the headers in one bridge call: under
    ASGI a synchronous iterator by ``StreamingHttpResponse.__aiter__``'s
    ``sync_to_async(list)`` (``list`` names nothing), or, for a file that
    django.contrib.staticfiles' ``ASGIStaticFilesHandler`` serves, by the
    same call in the asynchronous iterator its ``get_response_async`` puts
    in the synchronous one's place; under WSGI an asynchronous one by
    ``StreamingHttpResponse.__iter__``'s ``async_to_sync`` of a closure of
    its own. Its spans are located at the iterator's generator (the
    application's, or Django's GZipMiddleware's around it), not at ``list``
    or that closure."""
    if attribute(response, "streaming") is not True:
        return
    is_async = attribute(response, "is_async")
    if record.kind == ASGI and is_async is False:
        record.extra[SYNC_STREAM] = type(response).__qualname__
    elif record.kind == ASGI and is_async is True:
        if _made_by_static_files_handler(attribute(response, "_iterator")):
            record.extra[SYNC_STREAM] = STATIC_STREAM
        return
    elif record.kind == WSGI and is_async is True:
        record.extra[ASYNC_STREAM] = type(response).__qualname__
    else:
        return
    source = Generator.of(attribute(response, "_iterator"))
    if source is not None:
        record.extra[STREAM_SOURCE] = source


def _made_by_static_files_handler(iterator: Any) -> bool:
    """Whether ``iterator`` is the asynchronous generator (its ``awrapper``)
    that ``ASGIStaticFilesHandler.get_response_async`` makes around a
    response's synchronous iterator: its code is one of that method's
    constants."""
    if type(iterator) is not types.AsyncGeneratorType:
        # The application's iterator, asked nothing (its __getattr__ may do
        # anything, on the request's path).
        return False
    code = iterator.ag_code
    if code.co_name != "awrapper":  # the application's own generators, at once
        return False
    # Not imported: not what made it (nothing to import on a request's path).
    handlers = sys.modules.get("django.contrib.staticfiles.handlers")
    if handlers is None:
        return False
    method = attribute(attribute(handlers, "ASGIStaticFilesHandler"), "get_response_async")
    constants = attribute(attribute(unwrap(method), "__code__"), "co_consts") or ()
    return any(constant is code for constant in constants)


def _sync_stream(crossing: Crossing, record: RequestRecord) -> str | Component | None:
    """What read the streaming response, when ``crossing`` is Django reading
    its synchronous iterator: ``sync_to_async(list)`` after the headers (the
    response's class, whose ``__aiter__`` did, or the static files handler).
    Request code calling ``sync_to_async(list)`` itself (on a queryset, say)
    does so before the headers, or inside an asynchronous iterator (not this
    case, but for the static files handler's, which is Django's), or inside
    the synchronous iterator, in an ``async_to_sync`` of its own: nested in
    a crossing, where Django's, made from the loop, is not."""
    if (
        crossing.func is not list
        or crossing.before_headers
        or crossing.bridge is None
        or crossing.parent is not None
    ):
        return None
    return record.extra.get(SYNC_STREAM)


def _async_stream(crossing: Crossing, record: RequestRecord) -> str | None:
    """The streaming response's class, when ``crossing`` is Django reading its
    asynchronous iterator under WSGI: an ``async_to_sync`` after the headers,
    made by the server's iteration of the response (no crossing around it;
    the iterator's own code runs in the loop, and bridges the other way), of
    the closure that ``StreamingHttpResponse.__iter__`` defines. Other
    crossings look the same but for what they bridge: ``request_finished``'s
    async receivers (Django >= 5.0), which ``response.close()`` runs in an
    ``async_to_sync`` of ``Signal.send``'s closure after the headers too."""
    if (
        crossing.mechanism is not ASYNC_TO_SYNC
        or crossing.before_headers
        or crossing.parent is not None
        or not _defined_by_streaming_iter(crossing.func)
    ):
        return None
    return record.extra.get(ASYNC_STREAM)


def _defined_by_streaming_iter(func: Any) -> bool:
    """Whether ``func`` is a closure that Django's
    ``StreamingHttpResponse.__iter__`` defines (its ``to_list``): its code is
    one of that method's constants."""
    from django.http import StreamingHttpResponse

    code = attribute(func, "__code__")
    if code is None:
        return False
    method = attribute(StreamingHttpResponse, "__iter__")
    constants = attribute(attribute(unwrap(method), "__code__"), "co_consts") or ()
    return any(constant is code for constant in constants)


#: What Django's ASGIHandler.read_body bridges (Django >= 6.0).
_BODY_WRITE = tempfile.SpooledTemporaryFile.write
BODY_WRITE = Component("handler", "ASGIHandler", "read_body")
#: record.extra's key for the request bodies Django wrote to disk (the
#: request's own, and any sub-request's served through an ASGIHandler): their
#: files, which the crossings of their writes hold anyway.
BODY_FILES = "switchtrace.body_files"
#: record.extra's key set once Django has handed the request to its
#: middleware (BaseHandler.get_response or get_response_async).
ANSWERED = "switchtrace.answered"


def writes_bodies_in_sync_to_async() -> bool:
    """Whether ``ASGIHandler.read_body`` writes a body that has outgrown memory
    in ``sync_to_async`` (Django 6.0 and later; told from its code, not the
    version)."""
    from django.core.handlers.asgi import ASGIHandler

    code = getattr(getattr(ASGIHandler, "read_body", None), "__code__", None)
    return code is not None and "sync_to_async" in code.co_names


def body_on_disk(record: RequestRecord, body: Any) -> None:
    """Django hands the middleware a request whose body it wrote to disk."""
    record.extra.setdefault(BODY_FILES, []).append(body)


def _body_write(crossing: Crossing, record: RequestRecord) -> bool:
    """Whether ``crossing`` is Django (>= 6.0, ticket #36281) writing a request
    body that has outgrown FILE_UPLOAD_MAX_MEMORY_SIZE to its temporary file:
    ``ASGIHandler.read_body`` runs ``sync_to_async(body_file.write)`` for each
    body message from then on. Told by the file: the body of a request Django
    handed its middleware (the request's own, or a sub-request's), or, in an
    ASGI request that never got that far (the client left while its body
    came), where nothing but the handler ran, any. The same method bridged by
    a middleware or a view writes another file."""
    func = crossing.func
    if (
        type(func) is not types.MethodType
        or func.__func__ is not _BODY_WRITE
        or crossing.mechanism is not SYNC_TO_ASYNC
        or crossing.bridge is None
    ):
        return False
    bodies = record.extra.get(BODY_FILES)
    if bodies is not None and any(func.__self__ is body for body in bodies):
        return True
    return record.kind == ASGI and ANSWERED not in record.extra


def _stream(crossing: Crossing, record: RequestRecord) -> Component | None:
    reader = _sync_stream(crossing, record)
    if isinstance(reader, str):
        return Component("response", reader, "__aiter__")
    if reader is not None:
        return reader
    stream = _async_stream(crossing, record)
    if stream is not None:
        return Component("response", stream, "__iter__")
    return None


#: (function, component): Django's functions that its handler bridges under
#: ASGI (see :func:`_handlers_function`); filled on first use.
_HANDLERS_FUNCTIONS: list[tuple[Any, Component]] = []


def _handlers_function(crossing: Crossing) -> Component | None:
    """The handler's component, when ``crossing`` bridges one of the
    functions that Django's handler runs in ``sync_to_async`` under ASGI:
    ``response_for_exception``, which turns an exception into the response
    (``convert_exception_to_response`` around each middleware and the view,
    and the static files handler's 404), and ``log_response``, which logs a
    response of 400 or more (``get_response_async``). Called only for a
    crossing made outside the view: the view's own bridge of either is the
    view's."""
    if crossing.mechanism is not SYNC_TO_ASYNC or crossing.bridge is None:
        return None
    if not _HANDLERS_FUNCTIONS:
        from django.core.handlers.exception import response_for_exception
        from django.utils.log import log_response

        _HANDLERS_FUNCTIONS.extend(
            (function, Component("handler", function.__name__))
            for function in (response_for_exception, log_response)
        )
    func = crossing.func
    for function, component in _HANDLERS_FUNCTIONS:
        if func is function:
            return component
    return None


class Resolver:
    """Callable ``(crossing, record) -> Component``: the component that caused
    a crossing. Its :meth:`key` names the call site, so that a description is
    worked out once per site rather than once per crossing."""

    def __call__(self, crossing: Crossing, record: RequestRecord) -> Component:
        component = self.own(crossing, record)
        if component.kind != "other":
            return component
        if in_view(crossing, record):
            # Code that names no component (the ORM's async methods, a
            # library's function), bridged while the view ran: the view's.
            return _view_component(record) or component
        return _handlers_function(crossing) or component

    def own(self, crossing: Crossing, record: RequestRecord) -> Component:
        """The component the bridged code names by itself, whoever bridged it:
        "other" (named after the callable) when it names none."""
        adapter = _adapter(crossing.bridge)
        if adapter is not None:
            return adapter
        stream = _stream(crossing, record)
        if stream is not None:
            return stream
        if _body_write(crossing, record):
            return BODY_WRITE
        component = _describe(crossing.func, record.extra.get("view"), view_target(record))
        return component or Component("other", qualified_name(crossing.func))

    def subject(self, crossing: Crossing, record: RequestRecord) -> tuple[str, Any] | None:
        """(name, callable) to name and locate the crossing by, when what it
        bridged is a framework's dispatcher for the request's view rather than
        the application's code (see :class:`ViewTarget`); None otherwise."""
        if _adapter(crossing.bridge) is not None:
            return None
        func = crossing.func
        source = record.extra.get(STREAM_SOURCE)
        if source is not None and (
            isinstance(_sync_stream(crossing, record), str) or _async_stream(crossing, record)
        ):
            # Django reading the response's generator: named after what it
            # bridged (list, its closure), located at the generator.
            return qualified_name(func), source
        view = record.extra.get("view")
        target = view_target(record)
        decorator = _decorator_holding(func, view, target)
        if decorator is not None and _is_lambda(func):
            # A lambda names nothing: the view and the decorator do.
            component = _describe(func, view, target)
            return str(component), func
        if target is None:
            return None
        if is_view(func, view) or target.runs(_owner(func)):
            return target.name, target.code
        return None

    def key(self, crossing: Crossing, record: RequestRecord) -> Hashable | None:
        """Everything the component and the qualified name depend on, or None
        when that cannot be told cheaply (the crossing is then described
        afresh). Holds none of the application's objects (see
        :func:`identity`): names and serial numbers."""
        func: Any = crossing.func
        view = record.extra.get("view")
        kind = type(func)
        method = func if kind is types.MethodType else None
        if method is None and kind is not types.FunctionType:
            # A decorator object around a bound method (wrapt's, for one).
            method = attribute(func, "__wrapped__")
            if type(method) is not types.MethodType:
                return None
        site: Hashable | None
        if method is not None:
            owner = method.__self__
            # Per class, except a signal: its name is its identity.
            # (By identity: a class made per request, a form of
            # modelform_factory's, is not kept alive by the cache.)
            owner_key = identity(owner) if _is_signal(owner) else identity(type(owner))
            inner = _function_site(method.__func__)
            site = None if inner is None or owner_key is None else (kind, inner, owner_key)
        else:
            site = _function_site(func)
        if site is None:
            return None
        the_view = is_view(func, view)
        target = view_target(record) if view is not None else None
        if target is not None:
            # What the view dispatches to for this method, and whether the
            # bridged method is its own: part of the description.
            owner = method.__self__ if method is not None else None
            serial = identity(target)
            if serial is None:
                return None
            view_part: Hashable = (serial, the_view, target.runs(owner), target.owns(owner))
        else:
            view_part = the_view
        # A decorator's test of the view's is named after the view: which view.
        decorator = _decorator_holding(func, view, target)
        held: Hashable = None
        if decorator is not None:
            held = (identity(view), decorator)
            if held[0] is None:
                return None
        adapter = _adapter(crossing.bridge)
        # The component's fields, not the component: hashing a dataclass is a
        # Python call, hashing strings is not.
        fields = None if adapter is None else (adapter.kind, adapter.name, adapter.hook)
        # Within the view, code naming no component is the view's: which view.
        caller: Hashable = None
        if in_view(crossing, record):
            caller = identity(view)
            if caller is None:
                return None
        streams: Hashable = (_sync_stream(crossing, record), _async_stream(crossing, record))
        source = record.extra.get(STREAM_SOURCE)
        if source is not None and streams != (None, None):
            serial = identity(source.code)  # (hashing a code object hashes its contents)
            if serial is None:
                return None
            streams = (streams, serial, source.qualname)
        body = _body_write(crossing, record)
        # Outside the view, Django's handler's functions (plain functions)
        # are the handler's only in its own bridge (sync_to_async), not in
        # another's of the same function (asyncio.to_thread): which one.
        handlers = caller is None and method is None and _handlers_function(crossing) is not None
        return (site, fields, view_part, held, streams, body, caller, handlers)


#: Sites worked out, per function object (while it lives): Django's own
#: functions are described once, not once per crossing.
_function_sites: WeakIdentityMap[Hashable] = WeakIdentityMap()


def _function_site(func: Any, depth: int = 0) -> Hashable | None:
    """What a function's description depends on, without the function: a
    function made per call (a closure, a lambda whose defaults hold the
    request) shares its site with the others of its code."""
    if type(func) is not types.FunctionType:  # a method's __func__ may be anything
        return identity(func)
    site = _function_sites.get(func)
    if site is not None:
        return site
    wrapped = func.__dict__.get("__wrapped__")
    inner: Hashable | None = None
    if wrapped is not None:
        # What it wraps names it (convert_exception_to_response's inner).
        if wrapped is func or depth >= MAX_DEPTH:
            return None
        if type(wrapped) is types.FunctionType:
            inner = _function_site(wrapped, depth + 1)
        else:
            inner = identity(wrapped)
        if inner is None:
            return None
    code = identity(func.__code__)  # (hashing a code object hashes its contents)
    if code is None:
        return None
    signal = _signal_of(func) if func.__closure__ is not None else None
    # __name__ too: a middleware hook is told by it (see _describe).
    site = (code, func.__qualname__, func.__name__, func.__module__, inner, signal)
    _function_sites[func] = site
    return site


def _adapter(bridge: Any) -> Component | None:
    return _adapters.get(bridge) if bridge is not None else None


def _is_signal(obj: Any) -> bool:
    global _Signal
    if _Signal is None:
        from django.dispatch import Signal

        _Signal = Signal
    return is_of_type(obj, _Signal)


_Signal: type | None = None


resolve = Resolver()


def is_view(func: Any, view: Any) -> bool:
    """Whether ``func`` is the request's view, decorated or not (the same
    rule for the description and for its cache key)."""
    return view is not None and (func is view or _unwrapped(func) is _unwrapped(view))


def is_adapted_view(func: Any, view: Any) -> bool:
    """Whether ``func`` is the request's view as Django's handler hands it
    to sync_to_async or async_to_sync: the view itself, or the view inside
    the transaction.atomic wrappers of ATOMIC_REQUESTS (make_view_atomic).
    Not what the view wraps (``sync_to_async(view)`` as the URL's view,
    ``functools.wraps`` around a view it calls through a bridge): that
    crossing is the view's code's own."""
    if view is None:
        return False
    for _ in range(MAX_DEPTH):
        if func is view:
            return True
        func = attribute(func, "__wrapped__")
        if func is None:
            return False
    return False


def _unwrapped(func: Any) -> Any:
    """:func:`unwrap`, with the usual case first: a function's attributes are
    in its __dict__, a bound method's in its function's, read there without
    the AttributeError (raised and caught) of asking for a missing one."""
    plain = func.__func__ if type(func) is types.MethodType else func
    if type(plain) is types.FunctionType and "__wrapped__" not in plain.__dict__:
        return func
    return unwrap(func)


def _owner(func: Any) -> Any:
    """The object a bound method (through its wrappers) is bound to, if any."""
    target = unwrap(func)
    return target.__self__ if type(target) is types.MethodType else None


def _decorator_holding(func: Any, view: Any, target: ViewTarget | None = None) -> str | None:
    """The decorator around the request's view whose wrapper holds ``func``
    (login_required's test of the user, which its wrapper around an async
    view runs in sync_to_async), named after the function that made it: the
    one ``func`` is local to (``login_required``), else the one the wrapper
    is (``user_passes_test``); or, for a class-based view, one that
    ``method_decorator`` puts around its handler for the request's method
    (``target``). None when ``func`` is not a function that a layer of the
    view around another holds (the view itself is not)."""
    if view is None or type(func) is not types.FunctionType or func is view:
        return None
    if target is not None:
        decorator = _method_decorator_holding(func, target.code)
        if decorator is not None:
            return decorator
    layers = _layers(view)
    for layer in layers[:-1]:  # the wrappers, not the innermost view
        for cell in attribute(layer, "__closure__") or ():
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            if contents is func:
                # The wrapper's own __qualname__ is the view's (functools.wraps
                # copied it): its code's is where it was made (Python 3.11+).
                return _maker(func, attribute(attribute(layer, "__code__"), "co_qualname"))
    return None


def _maker(func: types.FunctionType, holder: Any) -> str:
    """The name of the function that made ``func`` (a closure), else of the
    one that made the function holding it (qualified name ``holder``)."""
    for qualname in (func.__qualname__, holder):
        if isinstance(qualname, str) and ".<locals>." in qualname:
            return qualname.partition(".<locals>.")[0].rpartition(".")[2]
    return "decorator"


def _method_decorator_holding(func: types.FunctionType, handler: Any) -> str | None:
    """The decorator that ``method_decorator`` puts around a class-based
    view's ``handler`` and that made ``func`` (``login_required``'s lambda)
    or holds it (the decorator ``user_passes_test(test)`` returns holds
    ``test``), named after itself or after the function that made it
    (``user_passes_test``). method_decorator applies its decorators afresh on
    each call, around the bound method: no layer of the view holds their
    wrappers, but its own wrapper holds the decorators, in a list."""
    for layer in _layers(handler):
        for held in closure_values(layer):
            if type(held) is not list and type(held) is not tuple:
                continue
            for decorator in held:
                if type(decorator) is not types.FunctionType:
                    continue
                if func.__qualname__.startswith(decorator.__qualname__ + ".<locals>."):
                    return decorator.__name__
                if any(value is func for value in closure_values(decorator)):
                    return _maker(func, decorator.__qualname__)
    return None


def _is_lambda(func: Any) -> bool:
    return attribute(func, "__name__") == "<lambda>"


def _describe(func: Any, view: Any, view_target: ViewTarget | None = None) -> Component | None:
    if is_view(func, view):
        return (
            view_target.component
            if view_target is not None
            else Component("view", qualified_name(view))
        )
    decorator = _decorator_holding(func, view, view_target)
    if decorator is not None:
        name = view_target.component.name if view_target is not None else qualified_name(view)
        return Component("view", name, decorator)
    target = unwrap(func)
    if type(target) is types.MethodType:
        owner, name = target.__self__, attribute(target, "__name__")
        if view_target is not None:
            if view_target.runs(owner):
                return view_target.component
            if view_target.owns(owner) and isinstance(name, str):
                # The view's own method (a class-based async view's
                # sync_to_async(self.initial)): named after the view's class.
                return Component("view", class_name(type(owner)), name)

        if _is_signal(owner):  # Django 4.2: sync_to_async(signal.send)
            return Component("signal", _signal_name(owner))
        if name in MIDDLEWARE_HOOKS:
            return Component("middleware", type(owner).__qualname__, name)
        from django.http import HttpResponseBase

        if is_of_type(owner, HttpResponseBase):
            return Component("response", type(owner).__qualname__, name)
        from django.core.handlers.base import BaseHandler

        if is_of_type(owner, BaseHandler):
            return Component("handler", type(owner).__qualname__, name)
        return Component("other", qualified_name(target))
    if type(target) is not types.FunctionType and _has(target, "get_response"):
        # A middleware instance (what convert_exception_to_response wraps).
        return Component("middleware", type(target).__qualname__, "__call__")
    signal = _signal_of(target)
    if signal is not None:
        return Component("signal", signal)
    return None


def _has(obj: Any, name: str) -> bool:
    """hasattr, but whatever the object's ``__getattr__`` raises is a no."""
    try:
        return hasattr(obj, name)
    except Exception:
        return False


def _signal_of(func: Any, nested: bool = False) -> str | None:
    """Signal.send/asend run sync receivers through a closure over the signal;
    send_robust's async receivers run in one whose signal is held by another
    closure it calls (asend_and_wrap_exception): one level down is looked at,
    no further (closures that hold each other would make it endless)."""
    for cell in attribute(func, "__closure__") or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if _is_signal(contents):
            return _signal_name(contents)
        if type(contents) is types.FunctionType and not nested:
            signal = _signal_of(contents, nested=True)
            if signal is not None:
                return signal
    return None


#: Django's modules of signals, looked up only where already imported (a
#: signal sent has had its module imported), before the project's.
SIGNAL_MODULES = (
    "django.core.signals",
    "django.db.models.signals",
    "django.db.backends.signals",
    "django.contrib.auth.signals",
    "django.tasks.signals",
    "django.test.signals",
)


#: The signals named so far (at most 256), by identity: a signal made per
#: request, whose receivers hold the request, is not kept alive.
_signal_names: WeakIdentityMap[str] = WeakIdentityMap()


def _signal_name(signal: Any) -> str:
    """The name a module gives ``signal``: Django's modules of signals first
    (a project's module importing ``request_started`` does not rename it),
    then the project's and its packages' (``order_placed`` of an app's
    ``signals.py``), the modules named ``signals`` before the others, which
    may import it under another name. Worked out once per signal, after
    the response: the modules are looked through only for a signal that is
    not Django's."""
    name = _signal_names.get(signal)
    if name is None:
        name = _looked_up_signal_name(signal)
        if len(_signal_names) >= 256:
            _signal_names.clear()
        try:
            _signal_names[signal] = name
        except TypeError:  # (takes no weak reference: named again next time)
            pass
    return name


def _looked_up_signal_name(signal: Any) -> str:
    for module_name in SIGNAL_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name, value in vars(module).items():
            if value is signal:
                return name
    found = None
    for module_name, module in list(sys.modules.items()):
        namespace = _namespace(module)
        if type(namespace) is not dict:
            continue
        for name, value in list(namespace.items()):
            if value is signal and isinstance(name, str) and not name.startswith("__"):
                if module_name.rpartition(".")[2] == "signals":
                    return name
                found = found or name
                break
    return found or "signal"


def _namespace(module: Any) -> Any:
    """A module's ``__dict__``, read past its class: a module imported lazily
    (importlib.util.LazyLoader's) is executed by any attribute read through
    it, and sys.modules may hold objects of any kind."""
    if not is_of_type(module, types.ModuleType):
        return None
    try:
        return object.__getattribute__(module, "__dict__")
    except Exception:
        return None
