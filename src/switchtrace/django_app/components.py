"""Which part of a Django project caused a crossing.

Resolved after the response from what the tracer recorded (the asgiref bridge
object and the bridged callable) and from two facts noted on the way: which
middleware each adapter built by ``BaseHandler.adapt_method_mode`` serves
(startup), and which view the request resolved to.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

from ..tracer import Component, Crossing, RequestRecord
from ..tracer.describe import qualified_name, unwrap

MIDDLEWARE_HOOKS = frozenset(
    {
        "process_request",
        "process_view",
        "process_response",
        "process_exception",
        "process_template_response",
    }
)

#: Adapters built by adapt_method_mode -> the component they serve.
_adapters: weakref.WeakKeyDictionary[Any, Component] = weakref.WeakKeyDictionary()


def remember_adapter(adapter: Any, method: Any, name: str | None) -> None:
    """Called once per adapter, at startup."""
    if name and name.startswith("middleware "):
        # The handler below this middleware, adapted to its sync/async mode.
        path = name[len("middleware ") :]
        component = Component("middleware-adapter", path.rpartition(".")[2], "get_response")
    elif name is None and unwrap(method) is not method and hasattr(unwrap(method), "get_response"):
        # The top of the stack: the whole middleware chain, adapted to the
        # handler's mode (sync_to_async under ASGI when the chain is sync).
        component = Component("middleware-adapter", "middleware chain")
    else:
        component = _describe(method, None) or Component("handler", qualified_name(method))
    try:
        _adapters[adapter] = component
    except TypeError:  # not weak-referenceable: leave it to the generic rules
        pass


def remember_view(record: RequestRecord, view: Any) -> None:
    record.extra["view"] = view


def resolve(crossing: Crossing, record: RequestRecord) -> Component:
    """The component that caused ``crossing``; always returns one."""
    if crossing.bridge is not None:
        try:
            adapter = _adapters.get(crossing.bridge)
        except TypeError:
            adapter = None
        if adapter is not None:
            return adapter
    return _describe(crossing.func, record.extra.get("view")) or Component(
        "other", qualified_name(crossing.func)
    )


def _describe(func: Any, view: Any) -> Component | None:
    if view is not None and (func is view or unwrap(func) is unwrap(view)):
        return Component("view", qualified_name(view))
    target = unwrap(func)
    if isinstance(target, types.MethodType):
        owner, name = target.__self__, target.__name__
        from django.dispatch import Signal

        if isinstance(owner, Signal):  # Django 4.2: sync_to_async(signal.send)
            return Component("signal", _signal_name(owner))
        if name in MIDDLEWARE_HOOKS:
            return Component("middleware", type(owner).__qualname__, name)
        from django.http import HttpResponseBase

        if isinstance(owner, HttpResponseBase):
            return Component("response", type(owner).__qualname__, name)
        from django.core.handlers.base import BaseHandler

        if isinstance(owner, BaseHandler):
            return Component("handler", type(owner).__qualname__, name)
        return Component("other", qualified_name(target))
    if not isinstance(target, types.FunctionType) and hasattr(target, "get_response"):
        # A middleware instance (what convert_exception_to_response wraps).
        return Component("middleware", type(target).__qualname__, "__call__")
    signal = _signal_of(target)
    if signal is not None:
        return Component("signal", signal)
    return None


def _signal_of(func: Any) -> str | None:
    """Signal.send/asend run sync receivers through a closure over the signal."""
    from django.dispatch import Signal

    for cell in getattr(func, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if isinstance(contents, Signal):
            return _signal_name(contents)
    return None


def _signal_name(signal: Any) -> str:
    from django.core import signals as core_signals
    from django.db.models import signals as model_signals

    for module in (core_signals, model_signals):
        for name, value in vars(module).items():
            if value is signal:
                return name
    return "signal"
