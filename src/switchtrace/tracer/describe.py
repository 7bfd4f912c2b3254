"""Name bridged callables the way a person would look for them in their code.

Decorators built with :func:`functools.wraps` (Django's
``convert_exception_to_response.<locals>.inner`` among them) are followed
through ``__wrapped__`` to what they wrap, partials to their function, bound
methods to the function's own qualified name, and callable instances to their
class. Runs after the response, never on the hot path.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

_MAX_DEPTH = 32
#: Bound on the cached descriptions and code locations (cleared when full).
MAX_CACHED = 4096


def unwrap(obj: object) -> object:
    """Follow ``__wrapped__`` and partials to the innermost callable."""
    for _ in range(_MAX_DEPTH):
        if isinstance(obj, functools.partial):
            obj = obj.func
            continue
        inner = getattr(obj, "__wrapped__", None) if not isinstance(obj, type) else None
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def qualified_name(obj: object) -> str:
    """``Class.method`` or ``function`` for what ``obj`` finally calls."""
    target = unwrap(obj)
    if target is None:
        return "None"
    if inspect.iscoroutine(target):
        code = target.cr_code
        return getattr(code, "co_qualname", code.co_name)
    if isinstance(target, types.MethodType):
        return _qualname_of(target.__func__)
    if isinstance(target, (types.FunctionType, types.BuiltinFunctionType, type)):
        return _qualname_of(target)
    qualname = getattr(target, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    # A callable instance (a middleware object, a handler): name its class.
    return type(target).__qualname__


def _qualname_of(func: object) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))


@dataclass(frozen=True)
class CodeLocation:
    """Where a bridged callable is defined (OpenTelemetry's ``code.*`` attributes)."""

    function: str
    namespace: str
    filepath: str | None
    lineno: int | None


_locations: dict[object, CodeLocation] = {}


def code_location(obj: object) -> CodeLocation:
    """Where ``obj`` (through its wrappers) is defined; cached per code object."""
    target = unwrap(obj)
    func = target.__func__ if isinstance(target, types.MethodType) else target
    key = getattr(func, "__code__", None)
    if key is not None:
        location = _locations.get(key)
        if location is None:
            if len(_locations) >= MAX_CACHED:
                _locations.clear()
            location = _locations[key] = _code_location(target)
        return location
    return _code_location(target)


def _code_location(target: object) -> CodeLocation:
    if inspect.iscoroutine(target):
        code = target.cr_code
        module = getattr(target, "__module__", None) or ""
        return CodeLocation(code.co_name, module, code.co_filename, code.co_firstlineno)
    func = target.__func__ if isinstance(target, types.MethodType) else target
    if not isinstance(func, types.FunctionType):
        call = getattr(type(func), "__call__", None)  # noqa: B004
        func = call if isinstance(call, types.FunctionType) else func
    func_code = getattr(func, "__code__", None)
    qualname = _qualname_of(func)
    namespace, _, function = qualname.rpartition(".")
    module = getattr(func, "__module__", None) or ""
    return CodeLocation(
        function=function,
        namespace=f"{module}.{namespace}" if namespace else module,
        filepath=func_code.co_filename if func_code is not None else None,
        lineno=func_code.co_firstlineno if func_code is not None else None,
    )


class Description:
    """What a crossing bridged, named once per call site: the qualified name,
    the component that caused it and where the callable is defined.

    Shared by every crossing of the same site (compared by identity), so that
    renderers can cache what they derive from it."""

    __slots__ = ("component", "location", "qualname", "shared")

    def __init__(self, qualname: str, component: Any, location: CodeLocation | None) -> None:
        self.qualname = qualname
        self.component = component
        self.location = location
        #: Whether this description is cached for its site (and shared by the
        #: crossings made there), rather than made for one crossing.
        self.shared = False


_descriptions: dict[Hashable, Description] = {}


def describe_crossing(crossing: Any, record: Any, resolve: Any = None) -> Description:
    """The description of ``crossing``; cached per site when ``resolve`` has a
    ``key(crossing, record)`` method that names the site (None: not cacheable)."""
    key_of = getattr(resolve, "key", None)
    key = (resolve, key_of(crossing, record)) if key_of is not None else None
    description = _descriptions.get(key) if key is not None and key[1] is not None else None
    if description is None:
        func = crossing.func
        try:
            location: CodeLocation | None = code_location(func)
        except Exception:  # an exotic callable: described without code.*
            location = None
        description = Description(
            qualified_name(func), resolve(crossing, record) if resolve else None, location
        )
        if key is not None and key[1] is not None:
            if len(_descriptions) >= MAX_CACHED:
                _descriptions.clear()
            _descriptions[key] = description
            description.shared = True
    return description
