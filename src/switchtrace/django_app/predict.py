"""Predict a request's context switches from MIDDLEWARE, without running one.

The model follows Django's own rules for the installed version:
``BaseHandler.load_middleware`` (which mode each middleware runs in, where
``adapt_method_mode`` puts an adapter), ``MiddlewareMixin.__acall__`` (one
``sync_to_async`` per synchronous hook when the chain is async, Django ticket
#37177), the view-middleware adapters, the request signals, the view's own
adaptation and ``response.close`` under ASGI. It reads classes and signal
receivers; it instantiates nothing and serves no request.

Every bridge call is two switches and two thread hops. An ``async_to_sync``
made under WSGI outside any ``sync_to_async`` creates an event loop (and a
thread); one made inside finds the outer loop.
"""

from __future__ import annotations

import builtins
import dis
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import BuiltinFunctionType, CodeType, FunctionType
from typing import Any, NamedTuple

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.module_loading import import_string

from ..tracer.describe import code_location, is_of_type
from .components import writes_bodies_in_sync_to_async

HOOKS = ("process_request", "process_response")
TICKET = "Django ticket #37177"


def runs_hooks_in_sync_to_async(cls: Any) -> bool:
    """Whether, in async mode, Django's ``MiddlewareMixin`` runs ``cls``'s
    hooks, each synchronous one in a ``sync_to_async``: not when the class
    has an ``__acall__`` or ``__call__`` of its own that does not hand on
    to ``MiddlewareMixin``'s (the rewrite as a sync-and-async middleware,
    done in a subclass: its async code is read instead, see
    :func:`own_bridges`). One that names ``__acall__`` or ``__call__``
    (``super().__call__(request)``, around a log line; read through
    decorators) is taken to hand on, unless its ``__call__`` also reads on
    ``self`` an async method of the class's own, not a hook (``return
    self.acall(request)`` when async; or through ``getattr(self, ...)``,
    ``type(self)``, ``self.__class__``, a synchronous method of its own):
    its own async path."""
    from django.utils.deprecation import MiddlewareMixin

    if not (is_of_type(cls, type) and issubclass(cls, MiddlewareMixin)):
        return False

    handing_on = {"__acall__", "__call__"}
    call = inspect.getattr_static(cls, "__call__", None)
    if call is not vars(MiddlewareMixin)["__call__"]:
        # Async mode calls __call__: its own, which hands on to the mixin's
        # (super().__call__) unless it returns an async path of its own, a
        # method it reads on self. (Django adapts process_view and the other
        # hooks apart, whatever they are: an async one is no path around
        # the mixin's.)
        if not _names(call) & handing_on:
            return False
        hooks = {*HOOKS, "process_view", "process_exception", "process_template_response"}
        own_paths = set(_async_methods(cls, MiddlewareMixin)) - handing_on - hooks
        if _read_on_self(cls, MiddlewareMixin, call, handing_on | hooks) & own_paths:
            return False
    acall = inspect.getattr_static(cls, "__acall__", None)
    return acall is vars(MiddlewareMixin)["__acall__"] or bool(_names(acall) & handing_on)


def _names(function: Any, on_self: bool = False) -> set[str]:
    """The names ``function``'s code reads, and that of the functions it
    wraps (``__wrapped__``, past a wrapper that has no code of its own: a
    decorator's wrapper may be the async path); ``on_self``: only the
    attributes it reads on its first argument."""
    names: set[str] = set()
    for wrapped in _wrapped_chain(function):
        code = getattr(wrapped, "__code__", None)
        if type(code) is CodeType:
            if not on_self:
                names.update(code.co_names)
            elif code.co_argcount:
                names |= _attributes_read_on(code, code.co_varnames[0])
    return names


def _wrapped_chain(function: Any) -> Iterator[Any]:
    """``function``, then what it wraps (``__wrapped__``, set by
    functools.wraps and update_wrapper), and so on: at most 100 (a chain
    may loop)."""
    for _ in range(100):
        if function is None:
            return
        yield function
        function = getattr(function, "__wrapped__", None)


def _attributes_read_on(code: CodeType, receiver: str) -> set[str]:
    """The attributes ``code`` reads on its local ``receiver`` (also through
    ``getattr(receiver, "name")``, on ``type(receiver)`` and on
    ``receiver.__class__``), and in the code nested in it that shares it (a
    closure, a comprehension up to Python 3.11): read there, the receiver
    is a cell (LOAD_DEREF)."""
    names: set[str] = set()
    on_receiver = False
    # The two instructions before (past those that move nothing the
    # pattern needs): getattr or type, then the receiver.
    before: list[tuple[str, Any]] = [("", None), ("", None)]
    for instruction in dis.get_instructions(code):
        opname = instruction.opname
        if opname in ("CACHE", "EXTENDED_ARG", "PUSH_NULL", "PRECALL", "NOP"):
            continue
        argval = instruction.argval
        called = before[0][0] in _FIRST_LOADS and before[0][1] in ("getattr", "type")
        called = called and before[1][0] == "receiver"
        if on_receiver and opname in ("LOAD_ATTR", "LOAD_METHOD"):
            names.add(argval)
            # self.__class__: the attribute read on it next is the class's.
            on_receiver = argval == "__class__"
        elif called and before[0][1] == "getattr" and opname == "LOAD_CONST":
            if isinstance(argval, str):
                names.add(argval)
            on_receiver = False
        elif called and before[0][1] == "type" and opname.startswith("CALL") and argval == 1:
            on_receiver = True  # type(self): its attribute read next is the class's
        else:
            loaded = argval
            if isinstance(loaded, tuple) and loaded:  # (LOAD_FAST_LOAD_FAST: the last on top)
                loaded = loaded[-1]
            # LOAD_FAST and its forms (3.12's _CHECK, 3.13's STORE_FAST_LOAD_FAST).
            loads = "LOAD_FAST" in opname or opname == "LOAD_DEREF"
            on_receiver = loads and loaded == receiver
        before = [before[1], ("receiver" if on_receiver else opname, argval)]
    for const in code.co_consts:
        if isinstance(const, CodeType) and receiver in const.co_freevars:
            names |= _attributes_read_on(const, receiver)
    return names


def _returns_a_value(code: CodeType) -> bool:
    """Whether ``code`` returns anything but None somewhere (a helper that
    returns the async path; not one that only keeps a callback)."""
    previous = None
    for instruction in dis.get_instructions(code):
        opname = instruction.opname
        if opname in ("CACHE", "EXTENDED_ARG", "NOP"):
            continue
        if opname == "RETURN_CONST" and instruction.argval is not None:
            return True
        # `return None` (up to 3.11): LOAD_CONST None, RETURN_VALUE, that no
        # jump lands on (a branch's value may: `return self.acall(r) or None`).
        if opname == "RETURN_VALUE" and not (
            previous is not None
            and previous.opname == "LOAD_CONST"
            and previous.argval is None
            and not instruction.is_jump_target
        ):
            return True
        previous = instruction
    return False


def _async_methods(cls: type, base: type) -> dict[str, FunctionType]:
    """The async methods of ``cls``'s own classes (not ``base``'s, nor
    ``object``'s), by the name the class resolves each under."""
    found: dict[str, FunctionType] = {}
    for name, value in _own_methods(cls, base).items():
        # Through a decorator's wrapper, to the async function it wraps
        # (functions alone: reading another object's attributes could run
        # the project's code, a lazy object's).
        for wrapped in _wrapped_chain(value):
            if type(wrapped) is not FunctionType:
                break
            if wrapped.__code__.co_flags & inspect.CO_COROUTINE:
                found[name] = wrapped
                break
    return found


def _own_methods(cls: type, base: type) -> dict[str, Any]:
    """What ``cls``'s own classes (not ``base``'s, nor ``object``'s) define,
    by the name the class resolves each under (a classmethod's or
    staticmethod's function)."""
    seen: set[str] = set()
    found: dict[str, Any] = {}
    for klass in type.__getattribute__(cls, "__mro__"):
        if klass is object or klass is base:
            continue
        for name, value in type.__getattribute__(klass, "__dict__").items():
            if name in seen:
                continue  # overridden
            seen.add(name)
            if is_of_type(value, (classmethod, staticmethod)):
                value = value.__func__
            found[name] = value
    return found


def _read_on_self(cls: type, base: type, function: Any, skip: set[str]) -> set[str]:
    """The attributes ``function`` reads on its first argument, and those
    that the synchronous methods of ``cls``'s own it reads there read in
    turn, if they return a value (a helper that returns the async path:
    not one that only keeps it as a callback), but for those in ``skip``."""
    own = _own_methods(cls, base)
    names = _names(function, on_self=True)
    todo = [name for name in names - skip if name in own]
    for _ in range(50):  # helpers calling helpers: a bound, and no loop
        if not todo:
            break
        # A plain method, not a staticmethod's function (whose first
        # argument is no self) nor a classmethod's; through decorators.
        helper = inspect.getattr_static(cls, todo.pop(), None)
        if type(helper) is not FunctionType:
            continue
        read: set[str] = set()
        for wrapped in _wrapped_chain(helper):
            code = getattr(wrapped, "__code__", None)
            if (
                type(code) is CodeType
                and not code.co_flags & inspect.CO_COROUTINE
                and code.co_argcount
                and _returns_a_value(code)
            ):
                read |= _attributes_read_on(code, code.co_varnames[0])
        more = read - names
        names |= more
        todo += [name for name in more - skip if name in own]
    return names


@dataclass(frozen=True)
class Cause:
    """One reason for switches: what, how many per request, and the fix."""

    what: str
    switches: int
    loops: int = 0
    after_headers: bool = False
    fix: str = ""
    saves: int = 0
    #: The middleware it is about, if any (dotted path).
    middleware: str = ""
    #: For a conditional cause, what kind of request makes it: "template" (a
    #: TemplateResponse), "stream" (a streaming response, of the iterator kind
    #: that costs on this server), "raised" (the view raised), "exception"
    #: (an exception became the response: the view raised and no
    #: process_exception answered, or no view was found), "error" (a
    #: response of 400 or more) or "body" (a request body too large to keep in
    #: memory: ``switches`` for each body message past the limit) or
    #: "bridges" (a middleware's own async code bridging ``bridged``).
    when: str = ""
    #: For a "bridges" cause, the bridged callable's name as the headers and
    #: spans name it ("" when the code does not say).
    bridged: str = ""
    #: For an adapter Django puts below ``middleware`` ("s2a" or "a2s"): its
    #: fixes, each with what it saves, are found by predicting them.
    adapter: str = ""
    #: For an adapter, the middleware's position in MIDDLEWARE (the same
    #: class may be listed twice).
    at: int = -1
    #: Whether marking ``middleware`` sync-only is offered beside ``fix``,
    #: priced by predicting it (a synchronous process_view under ASGI).
    sync_only: bool = False
    #: Whether ``fix`` offers marking ``middleware`` sync-only or rewriting
    #: it (its synchronous hooks run in sync_to_async): ``saves`` is then
    #: what marking it sync-only saves, found by predicting it.
    mark_or_rewrite: bool = False
    #: Of ``saves``, the switches of middleware's own sync_to_async calls
    #: (conditional causes) that the change stops (negative: starts).
    saves_own: int = 0


@dataclass
class Prediction:
    server: str  # "wsgi" or "asgi"
    view: str  # "sync" or "async"
    causes: list[Cause] = field(default_factory=list)
    #: Switches that happen only on some requests (a TemplateResponse, an
    #: exception in the view): not counted in the figures above.
    conditional: list[Cause] = field(default_factory=list)

    @property
    def switches(self) -> int:
        return sum(c.switches for c in self.causes)

    @property
    def before_headers(self) -> int:
        return sum(c.switches for c in self.causes if not c.after_headers)

    @property
    def hops(self) -> int:
        return self.switches  # every bridge in the model hops both ways

    @property
    def loops(self) -> int:
        return sum(c.loops for c in self.causes)


@dataclass
class _Bridge:
    """A bridge call in the request's path, outermost first."""

    kind: str  # "s2a" or "a2s"
    cause: Cause


def _short(path: str) -> str:
    return path.rpartition(".")[2]


def _receivers(signal: Any, sender: Any) -> tuple[list[Any], list[Any]]:
    """(the sync receivers, the async receivers) of what ``sender`` sends
    (Django sends the request signals with the handler's class as sender:
    receivers connected for any sender count, and those for that one),
    feature-detected."""
    live = signal._live_receivers(sender)
    if isinstance(live, tuple) and len(live) == 2:
        sync, asynchronous = live
        return list(sync), list(asynchronous)
    return list(live), []  # Django 4.2: every receiver is synchronous


#: How many of the project's receivers a cause names, before "and N more".
NAMED_RECEIVERS = 3


def receiver_names(receivers: list[Any]) -> str:
    """``receivers`` as a cause names them: Django's own by their names
    ("Django's reset_queries, close_old_connections"), the others by module
    and qualified name. (The cause named Django's two whatever receivers
    there were: the project's own receiver, Django's disconnected.)"""
    django: list[str] = []
    others: list[str] = []
    for receiver in receivers:
        location = code_location(receiver)
        namespace = location.namespace
        if namespace == "django" or namespace.startswith("django."):
            django.append(location.function)
        else:
            others.append(f"{namespace}.{location.function}" if namespace else location.function)
    parts = [f"Django's {', '.join(django)}"] if django else []
    if others:
        more = len(others) - NAMED_RECEIVERS
        parts.append(
            ", ".join(others[:NAMED_RECEIVERS]) + (f" and {more} more" if more > 0 else "")
        )
    return "; ".join(parts)


#: The names a middleware's async code calls asgiref's sync_to_async by
#: (Channels' database_sync_to_async is one).
BRIDGE_NAMES = frozenset({"sync_to_async", "SyncToAsync", "database_sync_to_async"})
_FIRST_LOADS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_CLASSDEREF"}
)
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_BRIDGE_LOADS = _FIRST_LOADS | _ATTR_LOADS
_JUMPS = frozenset(dis.hasjrel) | frozenset(getattr(dis, "hasjabs", ()))
#: Whether a call's first argument may sit in the slot above its callable.
_SELF = sys.version_info >= (3, 11)


@dataclass(frozen=True)
class OwnBridge:
    """A ``sync_to_async`` call site in a middleware's own async code."""

    #: Where: the function's qualified name and the line.
    where: str
    line: int
    #: What it bridges, named as the headers and spans name it ("" when the
    #: code does not say: a callable it was handed, or computed).
    bridged: str


def own_bridges(middleware: Any) -> list[OwnBridge]:
    """The ``sync_to_async`` call sites in the async code a middleware runs
    itself: the async methods of its class (``__acall__``, an async
    ``__call__``, the others; not ``MiddlewareMixin``'s, whose
    hooks the model counts), or the async functions a function middleware's
    factory defines. Each costs 2 switches every time it runs, under ASGI
    (and under WSGI inside an async-only middleware). Read from the
    bytecode, not run: a call site in a branch counts as one that runs, one
    in a loop as one call, and one in an async method the request never
    calls as well; a function of another kind that the code calls and that
    bridges in turn (django-debug-toolbar's ``get_show_toolbar``, a module
    function) is not looked into."""
    from django.utils.deprecation import MiddlewareMixin

    # By the objects' types alone: isinstance and getattr would evaluate a
    # lazy object (Django's SimpleLazyObject) that the module or the class
    # holds, running the project's code.
    owner: type | None = None
    functions: list[FunctionType] = []
    if is_of_type(middleware, type):
        owner = middleware
        functions += _async_methods(middleware, MiddlewareMixin).values()
    elif type(middleware) is FunctionType:
        functions.append(middleware)  # a function middleware's factory
    sites: list[OwnBridge] = []
    for function in functions:
        code = function.__code__
        is_async = bool(code.co_flags & inspect.CO_COROUTINE)
        receiver = code.co_varnames[0] if code.co_argcount and owner is not None else None
        found: list[OwnBridge] = []
        _bridge_sites(code, owner, function.__globals__, is_async, found, receiver)
        # In the order of their lines (a comprehension's code comes after its
        # function's before Python 3.12, inlined from then on).
        sites += sorted(found, key=lambda site: site.line)
    return sites


#: The code objects of comprehensions (inlined in their function from
#: Python 3.12, but a generator expression's) run by the code they are in.
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})


def _bridge_sites(
    code: CodeType,
    owner: type | None,
    namespace: dict,
    is_async: bool,
    sites: list[OwnBridge],
    receiver: str | None = None,
    where: str = "",
) -> None:
    """Appends the bridge call sites of ``code`` (if it is a coroutine's) and
    of the functions defined in it; a comprehension's are its function's
    (``where``), read when that is async, whatever the Python version."""
    where = where or getattr(code, "co_qualname", code.co_name)  # Python 3.10: no qualname
    if is_async:
        instructions = list(dis.get_instructions(code))
        starts = dict(dis.findlinestarts(code))
        line = code.co_firstlineno
        for n, instruction in enumerate(instructions):
            line = starts.get(instruction.offset) or line
            if instruction.opname in _BRIDGE_LOADS and instruction.argval in BRIDGE_NAMES:
                bridged = _bridged(instructions[n + 1 :], receiver, owner, namespace)
                if bridged is not None:  # (None: not a call of it)
                    sites.append(OwnBridge(where, line, bridged))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            # The receiver (self) is the enclosing function's, when shared.
            inner = receiver if receiver in const.co_freevars else None
            if const.co_name in _COMPREHENSIONS:
                _bridge_sites(const, owner, namespace, is_async, sites, inner, where)
            else:
                is_coroutine = bool(const.co_flags & inspect.CO_COROUTINE)
                _bridge_sites(const, owner, namespace, is_coroutine, sites, inner)


def _made_name(constants: list[CodeType | str]) -> str:
    """The qualified name of the function made of the last code constant."""
    codes = [n for n, const in enumerate(constants) if isinstance(const, CodeType)]
    if not codes:
        return ""
    code = constants[codes[-1]]
    assert isinstance(code, CodeType)
    qualname = getattr(code, "co_qualname", None)
    if isinstance(qualname, str):
        return qualname
    after = constants[codes[-1] + 1 :]  # Python 3.10: MAKE_FUNCTION's name
    return after[0] if after and isinstance(after[0], str) else ""


def _bridged(
    following: list[dis.Instruction], receiver: str | None, owner: type | None, namespace: dict
) -> str | None:
    """The name of what a ``sync_to_async`` call site bridges, from the
    loads of its first argument (``self.prepare``, ``get_lockout_response``,
    ``str``); None when the load is not called; "" when the first argument
    is anything else: what a call returns
    (``partial(self.prepare, request)``, ``self.pick()``), an item, a local
    or an argument (a callable the code was handed)."""
    chain: list[str] = []
    # Values on the stack since sync_to_async's: the chain must leave one
    # (its first argument), which nothing before the call consumes.
    depth = 0
    loaded_by = ""
    named = True
    made = ""
    constants: list[CodeType | str] = []
    for n, instruction in enumerate(following):
        opname = instruction.opname
        if opname in ("CACHE", "NOP", "EXTENDED_ARG", "KW_NAMES"):
            continue
        if opname == "PUSH_NULL" and n == 0 and sys.version_info >= (3, 13):
            continue  # Python 3.13: sync_to_async's own, above it
        if opname == "PRECALL" and not instruction.arg:
            continue  # Python 3.11: the CALL after it is the call
        if instruction.opcode in _JUMPS:
            return ""
        try:
            if instruction.arg is None:
                effect = dis.stack_effect(instruction.opcode)
            else:
                effect = dis.stack_effect(instruction.opcode, instruction.arg)
        except ValueError:
            return ""
        if depth + effect <= 0:
            # The instruction that consumes sync_to_async: its call, with
            # the values pushed since as its arguments (and a tuple of the
            # keywords' names for Python 3.10's and 3.13's), or not a call.
            if not opname.startswith(("CALL", "PRECALL")) or opname == "CALL_INTRINSIC_1":
                return None
            # From Python 3.11, a callable loaded without a NULL (as a
            # decorator is) takes its first argument in the slot above it.
            arguments = (instruction.arg or 0) + (opname in ("CALL_FUNCTION_KW", "CALL_KW"))
            if opname != "CALL_FUNCTION_EX" and depth not in (arguments, arguments + _SELF):
                return None  # a call of something below it (isinstance(f, SyncToAsync))
            break
        depth += effect
        if opname == "LOAD_CONST" and isinstance(instruction.argval, (CodeType, str)):
            constants.append(instruction.argval)
        if not chain and opname in _FIRST_LOADS and depth == 1:
            chain.append(str(instruction.argval))
            loaded_by = opname
        elif chain and opname in _ATTR_LOADS and depth == 1:
            chain.append(str(instruction.argval))
        elif opname in ("MAKE_FUNCTION", "SET_FUNCTION_ATTRIBUTE") and depth == 1:
            # A function defined there (a decorated def, a lambda): named by
            # its code's qualified name (Python 3.10: the constant before).
            made, chain, named = _made_name(constants), [], True
        elif not chain or depth == 1:
            named = False  # something else made or consumed the first argument
    else:
        return ""
    if made and named:
        return made
    if not chain or not named:
        return ""
    first = chain[0]
    is_global = loaded_by in ("LOAD_GLOBAL", "LOAD_NAME")
    if owner is not None and not is_global and first == receiver and len(chain) > 1:
        target: Any = inspect.getattr_static(owner, chain[1], None)
        rest = chain[2:]
        if target is None:
            return ""  # an instance attribute: what it holds is known when it runs
    elif is_global and first in namespace:
        target, rest = namespace[first], chain[1:]
    elif is_global and hasattr(builtins, first):
        target, rest = getattr(builtins, first), chain[1:]
    else:
        return ""  # a local or an argument: a callable the code was handed
    for attribute in rest:  # read without running code of the project's
        target = inspect.getattr_static(target, attribute, None)
    if is_of_type(target, (classmethod, staticmethod)):
        target = target.__func__
    if is_of_type(target, (FunctionType, BuiltinFunctionType)):
        return str(target.__qualname__)
    if is_of_type(target, type):
        return str(type.__getattribute__(target, "__qualname__"))
    return ""  # a partial, a callable object: named by what it holds


def middleware_modes(
    classes: list[Any],
    is_async: bool,
    async_capable: list[bool] | None = None,
    sync_capable: list[bool] | None = None,
) -> tuple[list[tuple[bool, str | None]], str | None]:
    """Django's ``load_middleware`` for ``classes`` (outermost first) under a
    handler that is async (ASGI) or not: for each, whether it runs in async
    mode and how the handler it calls is adapted to it ("s2a", "a2s" or
    None); then how the handler adapts the whole chain. ``async_capable``
    and ``sync_capable`` override the classes' own (what a fix would
    change)."""
    if async_capable is None:
        async_capable = [getattr(cls, "async_capable", False) for cls in classes]
    if sync_capable is None:
        sync_capable = [getattr(cls, "sync_capable", True) for cls in classes]
    handler_is_async = is_async
    modes: list[tuple[bool, str | None]] = []
    # Innermost first, as load_middleware builds the chain.
    for can_async, can_sync in zip(reversed(async_capable), reversed(sync_capable), strict=True):
        middleware_is_async = False if (not handler_is_async and can_sync) else can_async
        adapter = None
        if middleware_is_async and not handler_is_async:
            adapter = "s2a"
        elif not middleware_is_async and handler_is_async:
            adapter = "a2s"
        modes.append((middleware_is_async, adapter))
        handler_is_async = middleware_is_async
    top = None
    if is_async and not handler_is_async:
        top = "s2a"
    elif not is_async and handler_is_async:
        top = "a2s"
    modes.reverse()
    return modes, top


def predict(
    server: str,
    view_is_async: bool,
    middleware: list[str] | None = None,
    *,
    overrides: dict[str, bool] | None = None,
    sync_overrides: dict[str, bool] | None = None,
    rewritten: frozenset[str] = frozenset(),
    explain: bool = True,
    async_view_fix: str | None = None,
) -> Prediction:
    """``overrides`` maps a middleware path to an async_capable value to
    assume instead of the class's, ``sync_overrides`` to a sync_capable one;
    a path in ``rewritten`` is assumed rewritten as a sync-and-async
    middleware, its hooks called in no sync_to_async (used to compute what a
    fix saves). ``async_view_fix`` says how to make a sync view async, where
    that is not by making it ``async def`` (a DRF view's)."""
    from django.core import signals

    is_async = server == "asgi"
    paths = list(settings.MIDDLEWARE if middleware is None else middleware)
    prediction = Prediction(server, "async" if view_is_async else "sync")
    causes = prediction.causes
    # The request's path, outermost first: (switch-making step, nested inside s2a?)
    path_steps: list[tuple[str, Cause]] = []

    classes = [import_string(path) for path in paths]
    capable = [
        (overrides or {}).get(path, getattr(cls, "async_capable", False))
        for path, cls in zip(paths, classes, strict=True)
    ]
    sync_capable = [
        (sync_overrides or {}).get(path, getattr(cls, "sync_capable", True))
        for path, cls in zip(paths, classes, strict=True)
    ]
    modes, top = middleware_modes(classes, is_async, capable, sync_capable)
    # path, class, async mode, adapter; outermost first
    chain = [(path, cls, *mode) for path, cls, mode in zip(paths, classes, modes, strict=True)]

    def hooks_of(cls: Any) -> list[str]:
        return [h for h in HOOKS if hasattr(cls, h) and not iscoroutinefunction(getattr(cls, h))]

    # The request signals, before the chain, sent with the handler's class.
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    handler_class = ASGIHandler if is_async else WSGIHandler
    # Django 5.0 on: Signal.asend runs the sync receivers; 4.2 runs Signal.send.
    runs_started = (
        "Signal.asend runs them"
        if hasattr(signals.request_started, "asend")
        else "Django runs Signal.send"
    )
    started_sync, started_async = _receivers(signals.request_started, handler_class)
    finished_sync, finished_async = _receivers(signals.request_finished, handler_class)
    if is_async and started_sync:
        causes.append(
            Cause(
                f"request_started has synchronous receivers ({receiver_names(started_sync)}): "
                f"{runs_started} in one sync_to_async",
                2,
            )
        )
    if not is_async and started_async:
        causes.append(
            Cause(
                f"request_started has async receivers ({receiver_names(started_async)}): "
                "Signal.send runs them in async_to_sync",
                2,
                loops=1,
            )
        )

    if top == "s2a":
        # The outermost synchronous-only middleware makes the chain above it
        # synchronous (load_middleware adapts each to the one below).
        culprit = next((i for i, can_async in enumerate(capable) if not can_async), None)
        why = ""
        if culprit == 0:
            why = f" (its outermost middleware, {_short(paths[0])}, is synchronous-only)"
        elif culprit is not None:
            why = (
                f" ({_short(paths[culprit])} is synchronous-only, and Django runs every "
                "middleware above it synchronously too)"
            )
        path_steps.append(
            (
                "s2a",
                Cause(
                    f"the middleware chain's outer layer is synchronous{why}: the ASGI handler "
                    "runs it in sync_to_async",
                    2,
                ),
            )
        )
    elif top == "a2s":
        path_steps.append(
            (
                "a2s",
                Cause(
                    "the middleware chain's outer layer is async-only: the WSGI handler "
                    "runs it in async_to_sync, with a new event loop and thread",
                    2,
                    loops=1,
                ),
            )
        )

    for at, (path, cls, is_async_mode, adapter) in enumerate(chain):
        name = _short(path)
        if is_async_mode and path not in rewritten and runs_hooks_in_sync_to_async(cls):
            hooks = hooks_of(cls)
            if hooks:
                n = 2 * len(hooks)
                # (Not "give it async hooks": MiddlewareMixin runs every hook in
                # sync_to_async, which refuses a coroutine function. Nor an
                # async-only middleware: under WSGI, Django adapts one with
                # async_to_sync, and what is below it back.)
                rewrite = f"rewrite {name} as a sync-and-async middleware ({REWRITE})"
                mark = bool(getattr(cls, "sync_capable", True))
                fix = (
                    f"mark {name} sync-only (async_capable = False), or {rewrite}"
                    if mark
                    else rewrite
                )
                where = "under ASGI" if is_async else "here, where Django runs it asynchronously"
                cause = Cause(
                    f"{name}: async_capable but {' and '.join(hooks)} "
                    f"{'is' if len(hooks) == 1 else 'are'} synchronous: "
                    f"{n} switches per request {where} ({TICKET})",
                    n,
                    fix=fix,
                    middleware=path,
                    mark_or_rewrite=mark,
                )
                path_steps.append(("hooks", cause))
        if adapter == "a2s":
            path_steps.append(
                (
                    "a2s",
                    Cause(
                        f"{name} runs synchronously above async code: the handler below "
                        "it is adapted with async_to_sync",
                        2,
                        loops=1,
                        middleware=path,
                        adapter="a2s",
                        at=at,
                    ),
                )
            )
        elif adapter == "s2a":
            path_steps.append(
                (
                    "s2a",
                    Cause(
                        f"{name} runs asynchronously above synchronous code: the handler "
                        "below it is adapted with sync_to_async",
                        2,
                        middleware=path,
                        adapter="s2a",
                        at=at,
                    ),
                )
            )

    # Inside the innermost handler (_get_response / _get_response_async): its
    # async_to_sync under WSGI create a loop unless an adapter above already
    # runs it inside a sync_to_async.
    region_in_s2a = any(kind == "s2a" for kind, _cause in path_steps)
    region_loops = 0 if is_async or region_in_s2a else 1
    for path, cls, _mode, _adapter in chain:
        hook = getattr(cls, "process_view", None)
        if hook is None:
            continue
        name = _short(path)
        hook_is_async = iscoroutinefunction(hook)
        if is_async and not hook_is_async:
            path_steps.append(
                (
                    "s2a",
                    Cause(
                        f"{name}.process_view is synchronous: sync_to_async under ASGI",
                        2,
                        fix=f"give {name} an async process_view",
                        middleware=path,
                        sync_only=True,
                    ),
                )
            )
        elif not is_async and hook_is_async:
            path_steps.append(
                (
                    "a2s",
                    Cause(
                        f"{name}.process_view is async: async_to_sync under WSGI",
                        2,
                        loops=1,
                        middleware=path,
                    ),
                )
            )
    if is_async and not view_is_async:
        view_cause = Cause(
            "a sync view under ASGI runs in sync_to_async",
            2,
            fix=async_view_fix or "make the view async (if its work is async)",
        )
        path_steps.append(("s2a", view_cause))
    elif not is_async and view_is_async:
        path_steps.append(
            (
                "a2s",
                Cause(
                    "an async view under WSGI runs in async_to_sync, with a new event loop "
                    "and thread",
                    2,
                    loops=1,
                    fix="serve it under ASGI, or make the view sync",
                ),
            )
        )

    # A WSGI async_to_sync creates a loop only outside every sync_to_async.
    inside_s2a = False
    for kind, cause in path_steps:
        if kind == "a2s" and inside_s2a:
            what = cause.what.split(", with a new")[0] + " (on the outer loop)"
            cause = replace(cause, what=what, loops=0)
        elif kind == "a2s" and is_async:
            cause = replace(cause, loops=0)
        if kind == "s2a":
            inside_s2a = True
        causes.append(cause)

    conditional = prediction.conditional
    for path, cls, _mode, _adapter in chain:
        name = _short(path)
        hook = getattr(cls, "process_template_response", None)
        if hook is not None and is_async != iscoroutinefunction(hook):
            bridge = "sync_to_async under ASGI" if is_async else "async_to_sync under WSGI"
            what = (
                f"when the view returns a TemplateResponse: {name}.process_template_response "
                f"runs in {bridge}"
            )
            conditional.append(Cause(what, 2, loops=region_loops, middleware=path, when="template"))
    if is_async:
        conditional.append(
            Cause(
                "when the view returns a TemplateResponse: its render() runs in sync_to_async "
                "under ASGI",
                2,
                when="template",
            )
        )
    for path, cls, _mode, _adapter in chain:
        # load_middleware adapts exception middleware to synchronous code.
        hook = getattr(cls, "process_exception", None)
        if hook is not None and iscoroutinefunction(hook):
            name = _short(path)
            conditional.append(
                Cause(
                    f"when the view raises: {name}.process_exception is async, and exception "
                    "middleware run synchronously: async_to_sync",
                    2,
                    loops=region_loops,
                    middleware=path,
                    when="raised",
                )
            )
    for path, cls, is_async_mode, _adapter in chain:
        if not is_async_mode:
            continue  # Django calls it synchronously: its async code does not run
        name = _short(path)
        for site in own_bridges(cls):
            conditional.append(
                Cause(
                    f"when {name}'s own async code reaches its sync_to_async of "
                    f"{site.bridged or 'a callable'} ({site.where}, line {site.line})",
                    2,
                    middleware=path,
                    when="bridges",
                    bridged=site.bridged,
                )
            )
    if is_async:
        conditional.append(
            Cause(
                "when the response streams from a synchronous iterator: Django reads it all "
                "in one sync_to_async under ASGI",
                2,
                after_headers=True,
                when="stream",
            )
        )
    else:
        conditional.append(
            Cause(
                "when the response streams from an asynchronous iterator: Django reads it all "
                "in one async_to_sync under WSGI, with a new event loop and thread",
                2,
                loops=1,
                after_headers=True,
                when="stream",
            )
        )
    if is_async:
        conditional += [
            Cause(
                "when the view raises: process_exception_by_middleware runs in sync_to_async "
                "(exception middleware are always synchronous)",
                2,
                when="raised",
            ),
            Cause(
                "when an exception becomes the response (the view raised, a 404): "
                "response_for_exception runs in sync_to_async",
                2,
                when="exception",
            ),
            Cause("a 4xx or 5xx response is logged through sync_to_async", 2, when="error"),
        ]
        if writes_bodies_in_sync_to_async():
            limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
            size = f"{limit:,} bytes" if isinstance(limit, int) else repr(limit)
            conditional.append(
                Cause(
                    "per body message after the one that takes the request's body past "
                    f"FILE_UPLOAD_MAX_MEMORY_SIZE ({size}): Django writes each to the "
                    "body's file on disk in sync_to_async (Django ticket #36281)",
                    2,
                    when="body",
                )
            )
    # Sent by response_for_exception for an exception that becomes a 500
    # (not a 404, 403 or 400), with no sender, in the innermost handler's
    # region (in a sync_to_async there: its async_to_sync on that loop).
    reporters = _receivers(signals.got_request_exception, None)[1]
    if reporters:
        bridge = (
            "Signal.send runs them in async_to_sync, with a new event loop and thread"
            if region_loops
            else "Signal.send, inside a sync_to_async, runs them in async_to_sync (on the "
            "outer loop)"
        )
        conditional.append(
            Cause(
                "when an exception becomes a 500 response: got_request_exception has async "
                f"receivers ({receiver_names(reporters)}): {bridge}",
                2,
                loops=region_loops,
                # Taken as a bridge call seen outside the view (Django's send
                # of it; not a 404's response, nor the view's own send).
                when="bridges",
                bridged="got_request_exception",
            )
        )
    if is_async:
        causes.append(
            Cause(
                "response.close() (request_finished) runs in sync_to_async after the response",
                2,
                after_headers=True,
            )
        )
        if finished_async:
            causes.append(
                Cause(
                    f"request_finished has async receivers ({receiver_names(finished_async)}): "
                    "Signal.send, inside that sync_to_async, runs them in async_to_sync (on "
                    "the outer loop)",
                    2,
                    after_headers=True,
                )
            )
    elif finished_async:
        causes.append(
            Cause(
                f"request_finished has async receivers ({receiver_names(finished_async)}): "
                "Signal.send runs them in async_to_sync",
                2,
                loops=1,
                after_headers=True,
            )
        )
    del finished_sync
    if explain:
        _savings(prediction, paths, overrides or {}, sync_overrides or {})
    return prediction


#: How a middleware is rewritten to run asynchronously where Django calls it
#: so, keeping its synchronous path for where Django does not.
REWRITE = "an async __call__ for an async get_response"


class Saved(NamedTuple):
    """What a change saves: ``switches`` in all, ``own`` of them those of
    middleware's own sync_to_async calls, listed as conditional (their code
    is read, not run), which the change stops, turning the mode their
    middleware runs in (negative: starts)."""

    switches: int
    own: int = 0

    def __str__(self) -> str:
        return f"{self.switches}{own_part(self.own)}"


def own_part(own: int, cost: bool = False) -> str:
    """What of a saving (or, ``cost``, of what a change costs) is
    middleware's own sync_to_async calls that it stops (``own`` > 0) or
    starts: counted in it, or taken off it."""
    if not own:
        return ""
    stops = own > 0
    which = "(listed with a +) that then do not run" if stops else "that then run"
    how = "counting" if stops != cost else "net of"
    return f", {how} the {abs(own)} switches of middleware's own sync_to_async calls {which}"


def _own_bridged(prediction: Prediction) -> int:
    """The switches of middleware's own sync_to_async calls (conditional:
    each counted as one that runs), which run only where Django calls their
    middleware asynchronously."""
    return sum(c.switches for c in prediction.conditional if c.when == "bridges" and c.middleware)


def _savings(
    prediction: Prediction,
    paths: list[str],
    overrides: dict[str, bool],
    sync_overrides: dict[str, bool],
) -> None:
    """What each middleware fix would save, by predicting again with it
    applied: the switches counted, and those of middleware's own
    sync_to_async calls that the change stops or starts (a middleware above
    one made sync-only, run synchronously then: django-structlog's)."""

    def saving(
        async_capable: dict[str, bool],
        sync_capable: dict[str, bool],
        rewritten: frozenset[str] = frozenset(),
    ) -> Saved:
        fixed = predict(
            prediction.server,
            prediction.view == "async",
            paths,
            overrides={**overrides, **async_capable},
            sync_overrides={**sync_overrides, **sync_capable},
            rewritten=rewritten,
            explain=False,
        )
        own = _own_bridged(prediction) - _own_bridged(fixed)
        return Saved(prediction.switches - fixed.switches + own, own)

    def capable(which: str, path: str) -> bool:
        """A middleware's async_capable or sync_capable, as predicted."""
        given = (overrides if which == "async_capable" else sync_overrides).get(path)
        default = which == "sync_capable"
        return getattr(import_string(path), which, default) if given is None else given

    for n, cause in enumerate(prediction.causes):
        if cause.adapter:
            fix = _adapter_fix(cause, paths, saving, capable)
            prediction.causes[n] = replace(cause, fix=fix)
        elif cause.sync_only:
            # Its own fix saves its own switches; marking the middleware
            # sync-only may save more (innermost, the chain turns synchronous),
            # said here unless its hooks' line says it.
            fix = f"{cause.fix} (saves {cause.switches})"
            path = cause.middleware
            hooks = any(c.middleware == path and c.mark_or_rewrite for c in prediction.causes)
            if not hooks and capable("async_capable", path) and capable("sync_capable", path):
                saves = saving({path: False}, {})
                if saves.switches > 0:
                    fix += (
                        f", or mark {_short(path)} sync-only (async_capable = False; saves {saves})"
                    )
            prediction.causes[n] = replace(cause, fix=fix)
        elif cause.mark_or_rewrite:
            saves = saving({cause.middleware: False}, {})
            prediction.causes[n] = replace(cause, saves=saves.switches, saves_own=saves.own)


def _adapter_fix(
    cause: Cause,
    paths: list[str],
    saving: Callable[..., Saved],
    capable: Callable[[str, str], bool],
) -> str:
    """The changes that remove the adapter Django puts below a middleware,
    each with what it saves (predicted with it made), those that save
    something: making the middleware capable of the mode below it, or the
    middleware directly below it of the middleware's own mode. None, when
    the adapter only moves (a synchronous-only middleware innermost under
    ASGI: made async-capable, every middleware above it turns async, each
    hook of theirs a sync_to_async)."""
    path = cause.middleware
    name = _short(path)
    below = paths[cause.at + 1] if cause.at + 1 < len(paths) else None
    # A function middleware is made both with Django's decorator.
    function = not isinstance(import_string(path), type)
    options: list[str] = []
    if cause.adapter == "a2s":  # it is sync-only, the handler below async
        # Rewritten as the fix says, a MiddlewareMixin's hooks are called
        # directly, not each in a sync_to_async as once marked async-capable.
        saves = saving({path: True}, {}, frozenset({path}))
        if saves.switches > 0:
            how = (
                "sync_and_async_middleware, an async function for an async get_response"
                if function
                else REWRITE
            )
            options.append(f"make {name} async-capable too ({how}; saves {saves})")
        if below is not None and capable("async_capable", below) and capable("sync_capable", below):
            saves = saving({below: False}, {})
            if saves.switches > 0:
                options.append(
                    f"mark {_short(below)}, below it, sync-only (async_capable = False; "
                    f"saves {saves})"
                )
    else:  # async-only, the handler below synchronous
        saves = saving({}, {path: True})
        if saves.switches > 0:
            how = (
                "sync_and_async_middleware, a synchronous function for a synchronous get_response"
                if function
                else "sync_capable = True, a synchronous __call__ for a synchronous get_response"
            )
            options.append(f"make {name} sync-capable too ({how}; saves {saves})")
        if below is not None and not capable("async_capable", below):
            saves = saving({below: True}, {})
            if saves.switches > 0:
                options.append(f"make {_short(below)}, below it, async-capable (saves {saves})")
    return ", or ".join(options)
