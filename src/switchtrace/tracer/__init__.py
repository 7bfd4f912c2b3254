"""switchtrace's tracer: patches on asgiref, asyncio and threading, and the
per-request record they fill.

It knows asgiref, asyncio and threads, and nothing of Django or the
OpenTelemetry SDK (a test keeps it that way). Integrations open a record when
their handler receives a request (:func:`start_request`) and finish it when
the response is closed (:func:`finish_request`); listeners then receive the
finished record.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import types
from collections.abc import Callable, Iterator

from . import patches
from .describe import CodeLocation, Description
from .guard import put_back, set_error_hook, swallow
from .record import (
    ASGI,
    ASYNC_TO_SYNC,
    ASYNCIO_RUN,
    DEFAULT_MAX_EVENTS,
    RUN_IN_EXECUTOR,
    SYNC_TO_ASYNC,
    TO_THREAD,
    WSGI,
    Clock,
    Component,
    Crossing,
    Figures,
    LoopCreation,
    RequestRecord,
    ThreadStart,
    exception_type,
)

__all__ = [
    "ASGI",
    "ASYNCIO_RUN",
    "ASYNC_TO_SYNC",
    "DEFAULT_MAX_EVENTS",
    "RUN_IN_EXECUTOR",
    "SYNC_TO_ASYNC",
    "TO_THREAD",
    "WSGI",
    "Clock",
    "CodeLocation",
    "Component",
    "Crossing",
    "Description",
    "Figures",
    "Listener",
    "LoopCreation",
    "RequestRecord",
    "ThreadStart",
    "add_listener",
    "add_start_listener",
    "current_crossing",
    "current_record",
    "exception_type",
    "finish_all",
    "finish_request",
    "install",
    "installed",
    "missing_hooks",
    "no_request",
    "recording",
    "remove_listener",
    "remove_start_listener",
    "set_error_hook",
    "start_request",
    "uninstall",
]

Listener = Callable[[RequestRecord], None]
_listeners: list[Listener] = []
_start_listeners: list[Listener] = []


def install(clock: Clock | None = None) -> None:
    """Patch asgiref, asyncio and threading. Installing twice wraps once.

    ``clock`` (nanoseconds, monotonic) replaces ``time.perf_counter_ns``,
    for deterministic tests."""
    patches.clock = clock or time.perf_counter_ns
    patches.patcher.install()
    patches.install_uvloop()


def uninstall() -> None:
    """Restore exactly what :func:`install` replaced. Safe to call twice."""
    with patches.uvloop_lock:
        patches.uvloop_patcher.uninstall()
        patches.patcher.uninstall()
    patches._clear_pending_loops()
    patches.clock = time.perf_counter_ns


def installed() -> bool:
    return patches.patcher.installed


def missing_hooks() -> list[str]:
    """Hooks this asgiref/Python does not have (feature-detected at install)."""
    return [*patches.patcher.missing, *patches.uvloop_patcher.missing]


def current_record() -> RequestRecord | None:
    """The record of the request being served in this context, if any."""
    current = patches.here.get()
    return None if current is None else current[0]


def current_crossing() -> Crossing | None:
    """The innermost crossing whose bridged code runs in this context (None
    at the request's own level, or outside a request)."""
    current = patches.here.get()
    return None if current is None else current[1]


def start_request(
    kind: str, max_events: int = DEFAULT_MAX_EVENTS
) -> tuple[RequestRecord, contextvars.Token[patches.Here | None]]:
    """Open a record and make it current in this context.

    Call :func:`finish_request` with the token from the same context."""
    record = RequestRecord(kind, patches.clock, max_events)
    token = patches.here.set((record, None))
    if _start_listeners:
        raised = _tell(_start_listeners, record, "start listener")
        if raised is not None:
            try:
                raise raised
            finally:
                del raised
                finish_request(record, token)
    return record, token


def finish_request(
    record: RequestRecord, token: contextvars.Token[patches.Here | None] | None = None
) -> None:
    """Close the record and hand it to the listeners (once).

    With a token, the context variable is reset; without one (a WSGI response
    closed after the handler returned), it is cleared if it still holds
    ``record``."""
    raised = None
    if not record.finished:
        record.finish()
        raised = _tell(_listeners, record, "listener")
    try:
        if token is not None:
            put_back(patches.here, token, "finish request")
        elif (current := patches.here.get()) is not None and current[0] is record:
            patches.here.set(None)
    except Exception:
        swallow("finish request")
    if raised is not None:
        try:
            raise raised
        finally:
            del raised


def finish_all(records: list[RequestRecord]) -> None:
    """:func:`finish_request` for each of ``records`` (ended elsewhere than
    in their context), every one of them even once a listener's
    BaseException comes out of one: the first is raised after the rest."""
    raised = None
    for record in records:
        try:
            finish_request(record)
        except BaseException as exc:
            if raised is None:
                raised = exc
            else:
                _tell_lost(record)
    if raised is not None:
        try:
            raise raised
        finally:
            del raised


def _tell(listeners: list[Listener], record: RequestRecord, what: str) -> BaseException | None:
    """Call every listener with ``record``. What one raises is logged (an
    ``Exception``), or returned, the first of them, once every other has been
    called (a ``BaseException`` that is not one, such as KeyboardInterrupt or
    a test's ``pytest.fail()``: for the caller to raise once its bookkeeping is
    done, as Python would have it; a later one is logged)."""
    raised = None
    for listener in tuple(listeners):
        try:
            listener(record)
        except Exception:
            _failed(listener, what)
        except BaseException as exc:
            if raised is None:
                raised = exc
            else:
                _failed(listener, what)
    try:
        return raised
    finally:
        del raised  # (its traceback holds this frame)


def _failed(listener: Listener, what: str) -> None:
    """From the ``except`` block of ``listener``'s error: logged, once."""
    function = _function_of(listener)
    if function is not None:
        name, module = function.__qualname__, function.__module__
    else:
        name = f"{type.__getattribute__(type(listener), '__qualname__')} object"
        module = type.__getattribute__(type(listener), "__module__")
    what = f"{what} {str.__repr__(name)}"  # (a str subclass's own repr not run)
    if isinstance(module, str) and module.startswith("switchtrace."):
        # switchtrace's own (its exporters', its test helpers'): our bug.
        swallow(what)
    else:
        swallow(f"the application's {what}", theirs=listener)


def _function_of(listener: Listener) -> types.FunctionType | types.BuiltinFunctionType | None:
    """The function ``listener`` is, or is a bound method of: read from
    their C structures, nothing of the application's running (its
    ``__getattr__``, a ``__qualname__`` property)."""
    if type(listener) is types.MethodType:
        listener = listener.__func__
    if type(listener) in (types.FunctionType, types.BuiltinFunctionType):
        return listener  # type: ignore[return-value]
    return None


def _tell_lost(record: RequestRecord) -> None:
    """From the ``except`` block of a listener's BaseException that another,
    raised first for an earlier record, takes the place of: logged, as the
    application's (once for each record)."""
    swallow("the application's listener (a second BaseException)", theirs=record)


@contextlib.contextmanager
def recording(kind: str = "block", max_events: int = DEFAULT_MAX_EVENTS) -> Iterator[RequestRecord]:
    """Record every crossing made inside the block, as if it were a request."""
    record, token = start_request(kind, max_events)
    try:
        yield record
    finally:
        finish_request(record, token)


@contextlib.contextmanager
def no_request() -> Iterator[None]:
    """No request current in this context for the block: a task created in
    it, which copies this context, is not part of the request."""
    token = patches.here.set(None)
    try:
        yield
    finally:
        put_back(patches.here, token, "no request")


def add_listener(listener: Listener) -> None:
    """Call ``listener(record)`` with every finished record."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def add_start_listener(listener: Listener) -> None:
    """Call ``listener(record)`` with every record as it opens, on the thread
    that opens it (a server's, for a request served by one)."""
    if listener not in _start_listeners:
        _start_listeners.append(listener)


def remove_start_listener(listener: Listener) -> None:
    if listener in _start_listeners:
        _start_listeners.remove(listener)
