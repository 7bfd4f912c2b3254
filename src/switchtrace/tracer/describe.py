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
from dataclasses import dataclass

_MAX_DEPTH = 32


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
            if len(_locations) >= 4096:
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
