"""wrapt patches on asgiref, asyncio and threading that fill the request record.

Where each piece of code runs matters here, so every wrapper says it:

- The *caller* side of a bridge is the thread that calls ``sync_to_async`` (the
  event loop's thread) or ``async_to_sync`` (a synchronous thread).
- The *target* side is where the bridged code runs: an executor's thread for
  ``sync_to_async``, the outer event loop or a new loop in a new thread for
  ``async_to_sync``.

The request record and the crossing in progress travel together in one
context variable (:data:`here`) that the handler integration sets once per
request and each crossing once more; asgiref copies contexts across its
bridges, so both are visible on both sides. Two places do not see it, and are
handled explicitly:

- An executor's worker thread, before asgiref's ``SyncToAsync.thread_handler``
  enters the copied context. The submission to the executor
  (``ThreadPoolExecutor.submit`` or asgiref's ``CurrentThreadExecutor.submit``,
  called by ``loop.run_in_executor`` on the loop's thread, in the caller's
  context; patched there rather than on the loop so that uvloop's loop, whose
  methods cannot be patched, is covered too) hands the executor a thin
  callable that carries the crossing and notes the start just before it
  calls ``thread_handler`` on that thread.
  ``thread_handler`` itself is not patched: telling which call it serves
  would mean reading asgiref's private arguments, and the extra layer cost
  0.6 µs per switch (benchmarks/switch_cost.py) for the same moment.
- A loop created by asgiref's ``asyncio.run`` in a fresh thread. The loop is
  remembered as unclaimed, and the ``AsyncToSync.main_wrap`` coroutine that
  first runs in it claims it.

Patches are on classes, never on module functions that Django has already
bound by name. Every patch passes ``*args, **kwargs`` through untouched, except
the executors' ``submit``, whose function (asgiref's private partial, or the
request code's own function) is handed on inside a thin callable that notes
where and when it starts. The five patches a crossing passes
through are plain functions (see :class:`Fast` for why), and so is the one on
``run_until_complete``; the others are wrapt wrappers.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.proactor_events
import asyncio.runners
import asyncio.selector_events
import contextvars
import functools
import inspect
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import wrapt
from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import AsyncToSync, SyncToAsync, markcoroutinefunction

from .describe import MAX_DEPTH, PATCH_MARK, attribute, closure_values, is_of_type
from .guard import logger, raised_elsewhere, swallow
from .record import (
    ASYNC_TO_SYNC,
    ASYNCIO_RUN,
    CANCELLED,
    CLOSED,
    RUN_IN_EXECUTOR,
    RUN_UNTIL_COMPLETE,
    STARTED,
    SYNC_TO_ASYNC,
    TO_THREAD,
    Clock,
    Crossing,
    LoopCreation,
    RequestRecord,
)
from .weak import WeakIdentityMap

#: pytest leaves this module's frames out of a failure's traceback: its
#: wrappers run the application's code (asgiref's bridges, the loop's and
#: the threads' calls), whose exception is its own (see
#: guard.raised_elsewhere). The wrappers set Django's and Sentry's
#: __traceback_hide__ themselves.
__tracebackhide__ = raised_elsewhere


#: What is current in this context: the record of the request being served
#: and the innermost crossing whose bridged code runs here (the parent of any
#: crossing made from here; None at the request's own level), or None outside
#: a request. Set once per request by the handler integration, and once per
#: crossing. One variable rather than two: asgiref visits every context
#: variable twice on each sync_to_async (``_restore_context``), which costs
#: about 3,000 instructions per variable and crossing
#: (benchmarks/instructions.py).
Here = tuple[RequestRecord, "Crossing | None"]
here: contextvars.ContextVar[Here | None] = contextvars.ContextVar("switchtrace", default=None)
_here_get = here.get
_here_set = here.set
_here_reset = here.reset


#: Loops created where no request was visible (asgiref's ``asyncio.run`` in a
#: new executor thread) -> their creation time, until the ``async_to_sync``
#: that runs in one claims it (a lookup on every ``async_to_sync``'s path).
_unclaimed_loops: WeakIdentityMap[int] = WeakIdentityMap()
#: Loops created in a request ahead of the code that runs in them
#: (asyncio.Runner.__enter__, new_event_loop() before run_until_complete),
#: until the crossing that runs in them claims them: the creation and its
#: record, both held weakly (a strong hold on the creation would keep its
#: cause crossing, and whatever that holds, which may hold the loop).
_request_loops: WeakIdentityMap[tuple[weakref.ref[LoopCreation], weakref.ref[RequestRecord]]] = (
    WeakIdentityMap()
)
#: asyncio.Runners set up while a request was current -> when their set-up
#: began, until their run() is called (asyncio.run's: set up, then run()).
_runner_set_ups: WeakIdentityMap[int] = WeakIdentityMap()
#: asyncio.run's runners whose run() has returned -> the return of its
#: crossing, noted once asyncio.run has closed the runner (its code then).
_returns_at_close: WeakIdentityMap[
    tuple[
        RequestRecord, Crossing | None, contextvars.Token[Here | None] | None, BaseException | None
    ]
] = WeakIdentityMap()
#: Loops asgiref created for an async_to_sync of a request (its asyncio.run
#: in a new thread) -> that request and crossing, both held weakly. What
#: runs there outside the crossing's code, in the thread's own context
#: where no request is visible, is still the crossing's: asyncio.run
#: shutting down the loop's default executor starts a thread.
_crossing_loops: WeakIdentityMap[tuple[weakref.ref[RequestRecord], weakref.ref[Crossing]]] = (
    WeakIdentityMap()
)
#: The futures of request code's own offloads (asyncio.to_thread,
#: run_in_executor) -> their record and crossing, held weakly (the code may
#: keep its future where the crossing leads, in the object whose method it
#: submitted: a strong hold would keep the record as long as the process),
#: for the caller cancelled while the function runs (see _wrap_future_cancel).
_offload_futures: WeakIdentityMap[tuple[weakref.ref[RequestRecord], weakref.ref[Crossing]]] = (
    WeakIdentityMap()
)
#: What a cancelled caller gets, for the crossing's record.
_CANCELLED_ERROR = asyncio.CancelledError()


#: Threads closing an asyncio.Runner: its run_until_complete calls (shutting
#: down async generators and the default executor) are not crossings.
_closing_runner = threading.local()

_get_running_loop = asyncio.events._get_running_loop
_get_ident = threading.get_ident
_threads_by_ident = threading._active  # type: ignore[attr-defined]
_threads_get = _threads_by_ident.get

clock: Clock = time.perf_counter_ns


def _thread() -> threading.Thread:
    """threading.current_thread() without its Python-level call."""
    try:
        return _threads_by_ident[_get_ident()]
    except KeyError:
        return threading.current_thread()


def _active() -> Here | None:
    """What is current in this context, while its request is in flight."""
    current = _here_get()
    if current is None or current[0].finished:
        return None
    return current


# -- sync_to_async: loop -> executor thread -> loop ----------------------------


def _patch_sync_to_async_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Runs in the caller's task, on the event loop's thread. The crossing
        # is made current *before* asgiref copies the context, so the bridged
        # code (and any crossing it makes) sees it as its parent.
        __traceback_hide__ = True
        current = _here_get()
        if current is None or current[0].finished:
            return await original(self, *args, **kwargs)
        record = current[0]
        crossing = token = None
        try:
            ident = _get_ident()
            source = _threads_get(ident) or _thread()
            crossing = Crossing(SYNC_TO_ASYNC, self, self.func, source, current[1], clock())
            crossing.source_ident = ident
            crossing.claims = []
            crossing.loop_id = id(_get_running_loop())
            token = _here_set((record, crossing))
        except Exception:
            swallow("sync_to_async call")
        try:
            result = await original(self, *args, **kwargs)
        except GeneratorExit as exc:
            if _resumed(crossing):
                # By the bridged code: its task, resumed with it, throws it
                # into the outermost coroutine, and Python closes the ones
                # it awaits (this one among them) as it goes.
                _return(record, crossing, token, exc)
            else:
                # Closed without being resumed (its task abandoned on a
                # closed loop, then collected): control never came back to
                # the caller, and no switch back is counted, whenever the
                # collector runs.
                _abandoned(crossing, token)
            raise
        except BaseException as exc:
            _return(record, crossing, token, exc)
            raise
        if crossing is not None:
            try:
                if token is not None:
                    try:
                        _here_reset(token)
                    except ValueError:  # resumed in another context: see guard.put_back
                        swallow("sync_to_async return")
                # RequestRecord.close, written out (see RequestRecord.start).
                crossing.return_ns = record.clock()
                claims = crossing.claims
                claims.append(CLOSED)  # type: ignore[union-attr]
                # Started means _arrive ran the code: its finally set end_ns
                # before the executor gave the future its result.
                if claims[0] is STARTED:  # type: ignore[index]
                    if record.finished:
                        crossing.returned_late = True
                    else:
                        next(record._returned)
                        if crossing.target_thread is not crossing.source_thread:
                            next(record._hops_returned)
            except Exception:
                swallow("sync_to_async return")
        return result

    return __call__


def _return(
    record: RequestRecord,
    crossing: Crossing | None,
    token: contextvars.Token[Here | None] | None,
    exc: BaseException | None,
) -> None:
    if crossing is None:
        return
    try:
        if token is not None:
            try:
                _here_reset(token)
            except ValueError:
                # guard.put_back's rule, without its call on async_to_sync's
                # every return: quiet for a coroutine closed from another
                # context, ours to say for one resumed there. The return is
                # counted either way.
                if not isinstance(exc, GeneratorExit):
                    swallow(f"{crossing.mechanism} return")
        record.close(crossing, exc)
    except Exception:
        swallow(f"{crossing.mechanism} return")


def _resumed(crossing: Crossing | None) -> bool:
    """Whether a caller's coroutine is closed by its own loop, running it
    (its task resumed with the exception the bridged code raised), not as
    the collector destroys a task left pending on a loop closed since."""
    loop = _get_running_loop()
    return crossing is not None and loop is not None and id(loop) == crossing.loop_id


def _abandoned(crossing: Crossing | None, token: contextvars.Token[Here | None] | None) -> None:
    """A caller's coroutine closed while it waited for its crossing: the
    crossing stays open (its code may still start, and end, on its thread)."""
    if crossing is None:
        return
    try:
        crossing.exception = "GeneratorExit"
        if token is not None:
            _here_reset(token)
    except ValueError:  # closed from another context (the collector's): quiet
        pass
    except Exception:
        swallow(f"{crossing.mechanism} return")


def _arrive(
    fn: Callable[..., Any], record: RequestRecord, crossing: Crossing, /, *args: Any, **kwargs: Any
) -> Any:
    """What an executor runs in place of the function it was given (bound with
    functools.partial): notes the moment and thread the function starts on,
    then calls it unchanged.

    A partial rather than anything the crossing holds: the function leads to a
    copy of the caller's context, which holds the crossing, so a crossing
    holding the function would be a reference cycle whenever the executor
    never runs it (a call cancelled while queued, an executor shut down)."""
    # Runs on the executor's worker thread (or, for asgiref's
    # CurrentThreadExecutor, on the outer synchronous thread): the switch
    # there. For a bridge, ``fn`` is asgiref's SyncToAsync.thread_handler,
    # which enters the copied context and runs the bridged code.
    __traceback_hide__ = True
    given = None
    try:
        claims = crossing.claims
        if record.finished:  # the request is over: what runs now is not part of it
            counted = False
        elif claims is None:
            counted = True
        else:  # not if the caller gave up (cancelled) before this call started
            claims.append(STARTED)
            counted = claims[0] is STARTED
        if counted:
            # RequestRecord.start, written out (see its docstring).
            crossing.start_ns = record.clock()
            crossing.target_thread = target = _threads_get(_get_ident()) or _thread()
            next(record._started)
            if target is not crossing.source_thread:
                next(record._hops_started)
            if record.at_headers is not None:
                crossing.before_headers = False
            crossings = record.crossings
            if len(crossings) < record.max_events:
                crossings.append(crossing)
            else:
                next(record._dropped)
            if _GIVEN_CONTEXTS and crossing.bridge is not None:
                # A sync_to_async given a context (rare) runs its code in it,
                # where the crossing, made current in the caller's context,
                # is not: it is made current there too, just before asgiref
                # enters it, so that what the code makes is its children.
                context = getattr(crossing.bridge, "context", None)
                if type(context) is contextvars.Context:
                    given = _enter_context(context, record, crossing)
    except Exception:
        swallow(f"{crossing.mechanism} start")
    if crossing.bridge is not None:
        try:
            return fn(*args, **kwargs)
        finally:
            crossing.end_ns = clock()
            if given is not None:
                _leave_context(given)
    # Request code's own offload (asyncio.to_thread, run_in_executor): no
    # bridge of ours awaits its return, so it is closed here.
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        _offload_done(record, crossing, exc)
        raise
    _offload_done(record, crossing, None)
    return result


#: asgiref 3.11+ takes sync_to_async(..., context=): the code runs in that
#: context instead of a copy of the caller's.
_GIVEN_CONTEXTS = "context" in inspect.signature(SyncToAsync.__init__).parameters


def _offload_done(record: RequestRecord, crossing: Crossing, exc: BaseException | None) -> None:
    try:
        crossing.end_ns = clock()
        record.close(crossing, exc)
    except Exception:
        swallow("offload return")


def _patch_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        # Runs on the thread that submits: for a crossing, the event loop's
        # thread, inside loop.run_in_executor (any loop, uvloop included).
        here = _here_get()
        if here is None or here[0].finished:
            return original(self, fn, *args, **kwargs)
        record, current = here
        offload = caller = None
        try:
            if (
                current is not None
                and current.mechanism is SYNC_TO_ASYNC
                and current.executor_object is None
                and current.source_ident == _get_ident()
            ):
                # asgiref's SyncToAsync.__call__ submitting its sync code (a
                # partial of its thread_handler), on the loop's thread, the
                # thread that made the call. A crossing is claimed before its
                # bridged code can run, unless the executor is one we do not
                # patch: then the bridged code, on that executor's thread,
                # sees it unclaimed, and must not claim it for an executor
                # of its own (hence the thread).
                current.executor_object = self
                fn = functools.partial(_arrive, fn, record, current)
                caller = (record, current.parent)
            elif _get_running_loop() is not None:
                fn, offload = _offload(record, self, fn, current, sys._getframe(1))
        except Exception:
            swallow("executor submit")
        if caller is not None:
            future = original(self, fn, *args, **kwargs)
            # asgiref has copied the caller's context for the bridged code
            # (which sees the crossing there, and so does what it sends back
            # to this loop), and the executor has started any thread it
            # starts for it: the caller's context is given back what the
            # caller saw. Tasks given that one context
            # (create_task(coro, context=ctx), Python 3.11+) share it, and
            # must not read this crossing as the parent of their own calls
            # while it is in flight, nor get it back when their calls reset
            # the variable out of order.
            _here_set(caller)
            return future
        if offload is None:
            return original(self, fn, *args, **kwargs)
        # Request code's own offload: current while the executor takes it,
        # so that a worker thread it starts for it is the offload's.
        token = _here_set(offload)
        try:
            future = original(self, fn, *args, **kwargs)
        finally:
            _here_reset(token)
        try:
            offloaded = offload[1]
            if offloaded is not None:
                _offload_futures[future] = (weakref.ref(offload[0]), weakref.ref(offloaded))
        except TypeError:  # a custom executor's future that takes no weak reference
            pass
        except Exception:
            swallow("executor submit")
        return future

    if _fn_is_positional_only(original):
        return submit
    return _fn_by_keyword(submit, original)


def _wrap_future_cancel(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """An offload's caller cancelled (a client gone, ``asyncio.timeout``, a
    task group's sibling failing): asyncio cancels the executor's future as
    the caller's task gets its ``CancelledError``, on the loop's thread.
    The future of a function that runs already is not cancelled, and the
    function runs on to its end; control is back with the caller now, and
    the return is counted now, as a cancelled ``sync_to_async``'s is (not
    when the function ends, maybe after the request did: one switch of
    two, the crossing unfinished)."""
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    cancelled = wrapped(*args, **kwargs)
    # Only asyncio's cancellation for a caller: code that calls cancel() on
    # an executor's future itself, its function running, may still wait for
    # the result.
    if not cancelled and _offload_futures and _called_by_check_cancel():
        held = _offload_futures.pop(instance)
        if held is not None:
            try:
                record, crossing = held[0](), held[1]()
                if record is not None and crossing is not None:
                    record.close(crossing, _CANCELLED_ERROR, CANCELLED)
            except Exception:
                swallow("offload cancel")
    return cancelled


def _check_cancel_code() -> types.CodeType | None:
    """The code of asyncio's callback that cancels an executor's future once
    the asyncio future awaiting it is cancelled (``_call_check_cancel`` in
    ``asyncio.futures._chain_future``: run_in_executor's, so
    asyncio.to_thread's, uvloop's too). None if this asyncio has none: an
    offload's return is then counted as its function ends."""
    chain = getattr(asyncio.futures, "_chain_future", None)
    for const in getattr(getattr(chain, "__code__", None), "co_consts", ()):
        if isinstance(const, types.CodeType) and const.co_name == "_call_check_cancel":
            return const
    return None


#: The cancellations made there are a caller's (see _wrap_future_cancel).
_CHECK_CANCEL = _check_cancel_code()


def _called_by_check_cancel() -> bool:
    """Whether the ``cancel()`` being made comes from asyncio's callback: the
    frame under switchtrace's wrapper, or under wrapt's own frame (its pure
    Python wrapper, WRAPT_DISABLE_EXTENSIONS) or a subclass's ``cancel``
    calling its base's."""
    # (f_back: None, where _getframe(2) raises, for a cancel() called from
    # no Python frame, an atexit hook.)
    frame: types.FrameType | None = sys._getframe(1).f_back
    for _ in range(3):
        if frame is None:
            return False
        if frame.f_code is _CHECK_CANCEL:
            return True
        frame = frame.f_back
    return False


def _fn_is_positional_only(original: Callable[..., Any]) -> bool:
    try:
        parameter = inspect.signature(original).parameters.get("fn")
    except (TypeError, ValueError):
        return True
    return parameter is None or parameter.kind is inspect.Parameter.POSITIONAL_ONLY


def _fn_by_keyword(submit: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """``submit`` for an original that also takes ``fn=`` by keyword (asgiref
    3.8's CurrentThreadExecutor.submit): the same calls succeed, and fail,
    as with the original."""

    @functools.wraps(original)
    def submit_fn_by_keyword(self: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        if "fn" in kwargs:
            if args:  # fn twice: the original's own TypeError
                return original(self, *args, **kwargs)
            fn = kwargs.pop("fn")
            return submit(self, fn, **kwargs)
        return submit(self, *args, **kwargs)

    return submit_fn_by_keyword


def _offload(
    record: RequestRecord,
    executor: Any,
    func: Any,
    current: Crossing | None,
    caller: types.FrameType | None,
) -> tuple[functools.partial[Any], Here]:
    """Request code's own offload from the event loop (asyncio.to_thread,
    loop.run_in_executor): what the executor runs instead of ``func``, and
    the offload's crossing with its record. ``caller`` is the frame that
    called our ``submit`` (our adapter's, where asgiref 3.8's
    CurrentThreadExecutor takes the function by keyword)."""
    mechanism, target = RUN_IN_EXECUTOR, func
    inner = _to_thread_target(func)
    wrapped = None
    if inner is None:
        # What another patch of submit, over ours, wrapped (sentry-sdk's,
        # OpenTelemetry's threading instrumentor's, an executor subclass's
        # own submit): the wrapper calls it.
        submitted = _submitted(func, caller, executor)
        inner = _to_thread_target(submitted)
        if inner is not None:
            #: asyncio.to_thread's partial, inside the wrappers.
            wrapped = submitted
        else:
            target = submitted
    if inner is not None:
        mechanism, target = TO_THREAD, inner
    crossing = Crossing(mechanism, None, target, _thread(), current, clock())
    crossing.claims = []  # its start and its return, on two threads (and see _wrap_future_cancel)
    crossing.executor_object = executor
    crossing.loop_id = id(_get_running_loop())
    here = (record, crossing)
    if inner is None:
        # run_in_executor runs the function in the worker thread's own
        # context: the crossing is made current there while it runs, so that
        # what the function does (a bridge, a loop, a thread) is recorded.
        call: Any = functools.partial(_within, here, func)
    elif wrapped is not None:
        # The wrapper runs the partial itself: the crossing is made current
        # in the context the partial runs the function in (to_thread's copy
        # of the caller's, made for this call and dropped after it), before
        # the worker enters it.
        call = func
        try:
            wrapped.func.__self__.run(_here_set, here)
        except RuntimeError:
            # Entered in another thread meanwhile: no copy of to_thread's,
            # but a context the code reuses. A run_in_executor of the wrapper.
            crossing.mechanism, crossing.func = RUN_IN_EXECUTOR, func
            call = functools.partial(_within, here, func)
    else:
        # asyncio.to_thread runs it in a copy of the caller's context, which
        # holds the caller's crossing: this one is made current inside it.
        call = functools.partial(func.func, _within, here, *func.args, **func.keywords)
    return functools.partial(_arrive, call, record, crossing), here


def _is_wrapts(frame: types.FrameType) -> bool:
    name = dict.get(frame.f_globals, "__name__")
    return type(name) is str and name.startswith("wrapt.")


def _within(here: Here, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` with ``here`` current in this context, then put back
    what was there (the function sees its context as it was given)."""
    __traceback_hide__ = True
    token = _here_set(here)
    try:
        return func(*args, **kwargs)
    finally:
        _here_reset(token)


def _to_thread_target(func: Any) -> Any:
    """asyncio.to_thread submits ``partial(context.run, func, ...)``.

    Asks the request code's objects nothing (their ``__getattr__`` may do
    anything): a partial's ``func`` and a built-in method's ``__self__`` and
    ``__name__`` are read from C structures."""
    if type(func) is not functools.partial:
        return None
    runner = func.func
    if (
        type(runner) is types.BuiltinMethodType
        and type(runner.__self__) is contextvars.Context
        and runner.__name__ == "run"
    ):
        return func.args[0] if func.args else None
    return None


def _submitted(func: Any, caller: types.FrameType | None, executor: Any) -> Any:
    """The function submitted, inside the wrappers that other patches of
    ``submit``, over ours, made around it: sentry-sdk's ThreadingIntegration's
    (``sentry_submit.<locals>.wrapped_fn``, which carries its scopes),
    OpenTelemetry's threading instrumentor's
    (``__wrap_thread_pool_submit.<locals>.wrapped_func``, its context).
    Each is a closure holding one callable, made by the patch that hands it
    on, which is the frame that called ours (``caller``; wrapt's own frames
    aside), or for a wrapper inside another, the frame that called that
    patch: a frame running the code of a patch put over ours on the
    executor's class (see :func:`_patches_over_ours`; an executor subclass's
    own submit calling ``super().submit`` is one). ``func`` itself when it
    is no such wrapper (any other closure the application made, whatever
    made and submitted it). Read from C structures, as in
    :func:`_to_thread_target`."""
    frame = caller
    patches: list[types.CodeType] | None = None
    for _ in range(MAX_DEPTH):
        while frame is not None and _is_wrapts(frame):
            frame = frame.f_back  # pure-Python wrapt's calls of the patch
        if frame is None or type(func) is not types.FunctionType:
            return func
        code = frame.f_code
        if not any(const is func.__code__ for const in code.co_consts):
            return func  # not made by the code that handed it on
        if patches is None:
            patches = _patches_over_ours(type(executor))
        if not any(patch is code for patch in patches):
            return func  # made and submitted by the application's own code
        held = [value for value in closure_values(func) if callable(value)]
        if len(held) != 1:
            return func
        func, frame = held[0], frame.f_back
    return func


def _patches_over_ours(cls: type) -> list[types.CodeType]:
    """The code of each patch put over ours on ``cls``'s ``submit``: from
    the attribute its class defines down to ours, through functools.wraps'
    ``__wrapped__`` (sentry-sdk's), a wrapt wrapper's wrapper function and
    ``__wrapped__`` (OpenTelemetry's), or else the one function or wrapper
    a closure holds; where that ends short of ours (a subclass's own
    ``submit`` calling ``super().submit``), on from the next class of the
    MRO that defines one. The application's classes are read, never asked
    (what cannot be read ends the list), and of what a closure holds only
    functions and wrapt's wrappers are looked at."""
    codes: list[types.CodeType] = []
    try:
        mro = type.__dict__["__mro__"].__get__(cls)
        for klass in mro:
            found: Any = type.__dict__["__dict__"].__get__(klass).get("submit")
            if found is not None and _walk_down_to_ours(found, codes):
                break
    except Exception:  # (a metaclass of the application's)
        pass
    return codes


_WRAPT_WRAPPERS = (wrapt.FunctionWrapper, wrapt.BoundFunctionWrapper)


def _wrapper_or_function(obj: object) -> bool:
    return type(obj) is types.FunctionType or is_of_type(obj, _WRAPT_WRAPPERS)


def _walk_down_to_ours(found: Any, codes: list[types.CodeType]) -> bool:
    """Add to ``codes`` those of the patches from ``found`` down; whether
    that reached ours."""
    for _ in range(MAX_DEPTH):
        if type(found) is types.FunctionType:
            if found.__dict__.get(_MADE_CODE) is found.__code__:
                return True  # ours (functools.wraps copies our marks onto a patch over it)
            codes.append(found.__code__)
            inner = found.__dict__.get("__wrapped__")
            if inner is None:
                # (Not a class: super()'s __class__ cell of a subclass's submit.)
                held = [v for v in closure_values(found) if _wrapper_or_function(v)]
                inner = held[0] if len(held) == 1 else None
            found = inner
        elif is_of_type(found, _WRAPT_WRAPPERS):
            wrapper = found._self_wrapper
            if type(wrapper) is types.FunctionType:
                codes.append(wrapper.__code__)
            found = found.__wrapped__
        else:
            return False
    return False


# -- async_to_sync: sync thread -> event loop -> sync thread ------------------


def _patch_async_to_sync_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Runs on the calling synchronous thread, which blocks (serving any
        # thread-sensitive work sent back to it) until the awaitable is done.
        __traceback_hide__ = True
        current = _here_get()
        if current is None or current[0].finished:
            return original(self, *args, **kwargs)
        record = current[0]
        crossing = token = None
        try:
            crossing = Crossing(ASYNC_TO_SYNC, self, self.awaitable, _thread(), current[1], clock())
            token = _here_set((record, crossing))
        except Exception:
            swallow("async_to_sync call")
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            _return(record, crossing, token, exc)
            raise
        _return(record, crossing, token, None)
        return result

    return __call__


def _patch_main_wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    # A plain function that returns the coroutine, as calling the original
    # does: it must run now, on the calling thread, where the crossing is
    # visible. Marked so that asgiref's and asyncio's coroutine detection (and
    # inspect's, from Python 3.12) still see a coroutine function.
    @functools.wraps(original)
    def main_wrap(self: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        call = original(self, *args, **kwargs)
        current = _here_get()
        if current is None:
            return call
        record, crossing = current
        if (
            crossing is None
            or crossing.bridge is not self
            or crossing.start_ns is not None
            or record.finished
        ):
            return call
        return _trace_main_wrap(record, crossing, call)

    return markcoroutinefunction(main_wrap)


async def _trace_main_wrap(record: RequestRecord, crossing: Crossing, call: Any) -> Any:
    # Runs inside the target loop, on the loop's thread: the switch there.
    __traceback_hide__ = True
    try:
        loop = _get_running_loop()
        crossing.loop_id = id(loop)
        born = _unclaimed_loops.pop(loop) if loop is not None else None
        thread = _thread()
        if born is not None and born >= crossing.call_ns:
            record.loop_created(id(loop), thread, crossing, runs_in_it=True, at_ns=born)
            _crossing_loops[loop] = (weakref.ref(record), weakref.ref(crossing))
        record.start(crossing, thread)
    except Exception:
        swallow("async_to_sync start")
    try:
        return await call
    finally:
        # asgiref's main_wrap has handed the result over: the waiting thread
        # may have noted the return already (RequestRecord.close takes the
        # other order), and the end is not later than the return.
        end = clock()
        returned = crossing.return_ns
        crossing.end_ns = end if returned is None or end < returned else returned


# Its coroutine is the one the task running an async_to_sync's code holds, in
# place of asgiref's: named as asgiref's (a task's repr, an application's task
# factory or debug log naming tasks after their coroutine), as a wrapt wrapper
# is named as what it wraps. Its frames keep their own name (tracebacks,
# profilers).
_trace_main_wrap.__name__ = "main_wrap"
_trace_main_wrap.__qualname__ = "AsyncToSync.main_wrap"


# -- asyncio.run from synchronous code: same thread, new loop ------------------


def _wrap_asyncio_run(wrapped, instance, args, kwargs):
    # Runs on the calling synchronous thread, which becomes the loop's thread.
    __traceback_hide__ = True
    current = _active()
    if current is None:
        return wrapped(*args, **kwargs)
    record = current[0]
    crossing = token = runner_context = loop = None
    closes = False  # asyncio.run's runner: its call returns once the runner is closed
    try:
        coro = args[0] if args else kwargs.get("main", kwargs.get("coro"))
        # What asyncio.run and Runner.run accept: any collections.abc.Coroutine
        # (Cython's, a wrapper class), not only a native coroutine.
        if _get_running_loop() is None and asyncio.iscoroutine(coro):
            thread = _thread()
            crossing = Crossing(ASYNCIO_RUN, None, _given(coro), thread, current[1], clock())
            token = _here_set((record, crossing))
    except Exception:
        swallow("asyncio.run call")
    if crossing is not None and instance is not None:
        # Runner.run sets the runner up (one not set up yet makes its loop
        # here, with the crossing current; asyncio.run's was set up by its
        # ``with``, see _claim_loop) before anything switches; done here,
        # outside the guard, as run() would do it first: a closed runner or
        # a loop_factory that raises raises to the caller, once, and nothing
        # switched.
        try:
            loop = instance.get_loop()
        except BaseException as exc:
            _return(record, crossing, token, exc)
            raise
    try:
        if crossing is not None:
            if loop is not None:
                set_up_at = _runner_set_ups.pop(instance, None)
                if set_up_at is not None and not _set_up_by_caller():
                    set_up_at = None
                _claim_loop(loop, record, crossing, set_up_at)
                closes = set_up_at is not None
                runner_context = _runner_context(instance, kwargs, record, crossing)
            record.start(crossing, crossing.source_thread)
    except Exception:
        swallow("asyncio.run call")
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _leave_context(runner_context)
        if closes:
            _returns_at_close[instance] = (record, crossing, token, exc)
        else:
            _return(record, crossing, token, exc)
        raise
    _leave_context(runner_context)
    if closes:
        # asyncio.run closes the runner before it returns: cancelling the
        # tasks left, shutting its default executor down (waiting for its
        # threads, starting one), all the call's.
        _returns_at_close[instance] = (record, crossing, token, None)
    else:
        _return(record, crossing, token, None)
    return result


def _given(coro: Any) -> Any:
    """The coroutine the application gave: ``uvloop.run(main)`` runs a
    wrapper of its own awaiting ``main`` (Python 3.11+), which names nothing
    of the application's. Read from the wrapper's frame, which holds its
    free variables before it starts. What asyncio takes for a coroutine is
    any ``collections.abc.Coroutine``: its ``cr_code`` may be missing, no code
    object, or raise (a proxy's), and it is then named after itself."""
    code = attribute(coro, "cr_code")
    if (
        type(code) is not types.CodeType
        or code.co_name != "wrapper"
        or "main" not in code.co_freevars
        or not code.co_filename.endswith(("uvloop/__init__.py", "uvloop\\__init__.py"))
    ):
        return coro
    frame = attribute(coro, "cr_frame")
    main = frame.f_locals.get("main") if type(frame) is types.FrameType else None
    return coro if main is None else main


def _runner_context(
    runner: Any, kwargs: dict[str, Any], record: RequestRecord, crossing: Crossing
) -> Any:
    """asyncio.Runner runs the coroutine in a context of its own, copied when
    the runner was set up (before run() is called): the crossing is made
    current in that context too, so that crossings made by the coroutine are
    its children. Returns what :func:`_leave_context` needs."""
    context = kwargs.get("context")
    if context is None:  # (an empty Context is false: not "or")
        context = getattr(runner, "_context", None)
    if not isinstance(context, contextvars.Context):
        return None
    return _enter_context(context, record, crossing)


def _enter_context(context: contextvars.Context, record: RequestRecord, crossing: Crossing) -> Any:
    """Make ``crossing`` current in ``context``, the context that code run by
    asyncio.Runner or a sync_to_async given one runs in; None if the context
    is entered elsewhere (left alone: the caller's own use of it raises).
    Returns what :func:`_leave_context` needs to put back what it held."""
    try:
        return context, context.run(_here_set, (record, crossing))
    except RuntimeError:
        return None


def _leave_context(entered: Any) -> None:
    """Put back what :func:`_enter_context` changed."""
    if entered is None:
        return
    context, token = entered
    try:
        context.run(_here_reset, token)
    except (RuntimeError, ValueError):  # entered elsewhere, or reset already
        pass


def _claim_loop(
    loop: Any, record: RequestRecord, crossing: Crossing, set_up_at: int | None = None
) -> None:
    """``crossing`` runs its code in ``loop``: if the loop was created for
    the same request ahead of it, the crossing created a loop. Its event
    stays where it happened (on the crossing in progress then, or the
    request), within that span's time: made by code before the call
    (``new_event_loop()``, then ``run_until_complete``; ``with
    asyncio.Runner()``, then ``run()``; a loop made earlier that
    asyncio.run's ``loop_factory`` returns). ``set_up_at``: when the call's
    own set-up began, a moment before the patch saw the call (asyncio.run
    sets its Runner up, then calls ``run()``): a loop made since is the
    call's, which began there."""
    crossing.loop_id = id(loop)
    entry = _request_loops.pop(loop, None)
    if entry is None:
        return
    creation, owner = entry[0](), entry[1]()
    if owner is record and not crossing.loop_created:
        crossing.loop_created = True
        # (creation None: not kept, past MAX_EVENTS.)
        if creation is not None and set_up_at is not None and creation.at_ns >= set_up_at:
            crossing.call_ns = min(crossing.call_ns, set_up_at)
            creation.crossing = crossing


#: The functions that set an asyncio.Runner up and call its run() at once:
#: asyncio.run's (Python 3.11+; on 3.10 it is patched itself) and uvloop.run's.
_RUN_CODE = asyncio.runners.run.__code__ if hasattr(asyncio, "Runner") else None


def _set_up_by_caller() -> bool:
    """Whether the Runner.run being called was called by asyncio.run (or
    uvloop.run), which set the runner up, making its loop, just before.
    Read from the caller's frame, past wrapt's own (its pure-Python
    wrappers, where its extension is not used): once a Runner.run call, rare
    on a request's path."""
    try:
        frame: types.FrameType | None = sys._getframe(2)  # (1: the Runner.run patch)
    except ValueError:  # called from no Python frame
        return False
    while frame is not None and frame.f_globals.get("__name__", "").startswith("wrapt"):
        frame = frame.f_back
    if frame is None:
        return False
    code = frame.f_code
    return code is _RUN_CODE or (
        code.co_name == "run"
        and code.co_filename.endswith(("uvloop/__init__.py", "uvloop\\__init__.py"))
    )


def _wrap_loop_handles(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Where an event loop makes handles of its own as it is constructed, each
    # holding a copy of the context it was made in: asyncio's loops register
    # the reader of their self-pipe (_make_self_pipe, after
    # BaseEventLoop.__init__), uvloop's C type makes its idle and check
    # handles as it is allocated (uvloop.Loop.__new__). Made with no request
    # current: a loop kept after its request (a module global) would
    # otherwise keep the request's record, and all its crossings hold, for as
    # long as the loop lives.
    if _here_get() is None:
        return wrapped(*args, **kwargs)
    token = _here_set(None)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _here_reset(token)


def _wrap_runner_lazy_init(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # asyncio.Runner copies the context it runs coroutines in when it sets
    # itself up (``with Runner()``, get_loop(), the first run()): a runner
    # kept after the request would keep the request's record in it. Its
    # copy is its own; switchtrace's variable is cleared there, and each
    # Runner.run of a request makes its crossing current in it for the call
    # (run() calls this again, set up already: then it is left alone).
    before = getattr(instance, "_context", None)
    # When a request's runner began setting itself up (making its loop):
    # asyncio.run's call begins there (see _claim_loop).
    began = clock() if before is None and _here_get() is not None else None
    result = wrapped(*args, **kwargs)
    try:
        if began is not None:
            _runner_set_ups[instance] = began
        context = getattr(instance, "_context", None)
        if (
            context is not before
            and type(context) is contextvars.Context
            and context.get(here) is not None
        ):
            context.run(_here_set, None)
    except RuntimeError:  # the context is entered elsewhere: left alone
        pass
    except Exception:
        swallow("asyncio.Runner set-up")
    return result


def _wrap_runner_close(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs on the runner's thread: its run_until_complete calls are its own.
    depth = getattr(_closing_runner, "depth", 0)
    _closing_runner.depth = depth + 1
    raised: BaseException | None = None
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        raised = exc  # what asyncio.run's caller gets, rather than run()'s
        raise
    finally:
        _closing_runner.depth = depth
        pending = _returns_at_close.pop(instance, None)
        if pending is not None:
            record, crossing, token, ended = pending
            _return(record, crossing, token, raised or ended)


# -- loop.run_until_complete from synchronous code: same thread, a loop ---------


def _patch_run_until_complete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_until_complete(self: Any, future: Any) -> Any:
        # Runs on the calling synchronous thread, which becomes the loop's
        # thread until the future is done.
        __traceback_hide__ = True
        current = _here_get()
        if current is None or current[0].finished or not _switches(self, future, current[1]):
            return original(self, future)
        record = current[0]
        crossing = token = None
        try:
            thread = _thread()
            crossing = Crossing(
                RUN_UNTIL_COMPLETE, None, _awaited(future), thread, current[1], clock()
            )
            _claim_loop(self, record, crossing)
            token = _here_set((record, crossing))
            record.start(crossing, thread)
        except Exception:
            swallow("run_until_complete call")
        try:
            result = original(self, future)
        except BaseException as exc:
            _return(record, crossing, token, exc)
            raise
        _return(record, crossing, token, None)
        return result

    return run_until_complete


def _awaited(future: Any) -> Any:
    """What a crossing of ``run_until_complete(future)`` keeps to be named
    by: a task's coroutine, a future's type (gather's), not the future. A
    task holds the copy of the context it was made in, where switchtrace's
    variable holds the record: kept by the record's crossing, the task (its
    result, all it holds) was left to the cycle collector after the request.
    (A coroutine holds no context; a finished one, no frame.)"""
    if not asyncio.isfuture(future):
        return future
    get_coro = getattr(future, "get_coro", None)
    coroutine = get_coro() if get_coro is not None else None
    # (None for a task that ran eagerly to its end, Python 3.12+.)
    return coroutine if coroutine is not None else type(future)


def _switches(loop: Any, future: Any, current: Crossing | None) -> bool:
    """Whether ``loop.run_until_complete(future)``, called here, is a switch
    of its own: not one that raises at once (a loop closed, or running in
    this thread or another, something not awaitable, a future of another
    loop or of none), nor one of asyncio's own runners' (the calls
    asyncio.run and Runner.run make are their crossing's; those
    Runner.close makes are no crossing's)."""
    try:
        if loop.is_closed() or loop.is_running() or _get_running_loop() is not None:
            return False
        # What asyncio runs: an awaitable, or what asyncio takes for a
        # coroutine (a generator too, up to Python 3.11).
        if not (inspect.isawaitable(future) or asyncio.iscoroutine(future)):
            return False
        if asyncio.isfuture(future):
            # As asyncio finds a future's loop (get_loop(), else _loop).
            get_loop = getattr(future, "get_loop", None)
            owner = get_loop() if get_loop is not None else getattr(future, "_loop", None)
            if owner is not loop:
                # Another loop's future, or one of no loop (None): asyncio
                # raises ValueError before it runs.
                return False
        if getattr(_closing_runner, "depth", 0):
            return False
        return not (
            current is not None
            and current.mechanism is ASYNCIO_RUN
            and current.loop_id == id(loop)
            and current.return_ns is None
        )
    except Exception:
        swallow("run_until_complete call")
        return False


# -- event loops and threads created during a request --------------------------


def _wrap_loop_init(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs on whichever thread constructs the loop.
    wrapped(*args, **kwargs)
    try:
        current = _active()
        if current is None:
            _unclaimed_loops[instance] = clock()
            return
        record, cause = current
        # asyncio.run makes its loop here; so does asgiref before 3.9, whose
        # AsyncToSync creates the loop in the calling thread (later versions
        # create it in the new thread, where main_wrap claims it).
        runs_in_it = (
            cause is not None
            and not cause.loop_created
            and (
                cause.mechanism is ASYNCIO_RUN
                or (cause.mechanism is ASYNC_TO_SYNC and cause.start_ns is None)
            )
        )
        creation = record.loop_created(id(instance), _thread(), cause, runs_in_it=runs_in_it)
        if not runs_in_it:
            # Made ahead of the code that runs in it (asyncio.Runner's
            # __enter__, new_event_loop() before run_until_complete): claimed
            # by that crossing when it starts.
            _request_loops[instance] = (weakref.ref(creation), weakref.ref(record))
    except Exception:
        swallow("event loop creation")


def _wrap_thread_start(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs on the thread that starts ``instance``. The start is timed before
    # the call: the new thread may already be running code when it returns.
    current = _active()
    if current is None and len(_crossing_loops):
        current = _loop_owner()
    # Called through the class's namespace (vars(Thread)["start"](thread)),
    # the thread comes as the first argument.
    thread = instance if instance is not None else (args[0] if args else None)
    if current is None or not isinstance(thread, threading.Thread):
        return wrapped(*args, **kwargs)
    outer = getattr(_starting, "thread", None)  # a start this one is inside
    if outer is thread:
        # Ours again, under ours (Timer's start patched, over someone's
        # wrapper of Thread's, ours): the outer one counts this start.
        return wrapped(*args, **kwargs)
    at_ns = clock()
    _starting.thread = thread
    try:
        result = wrapped(*args, **kwargs)
    finally:
        _starting.thread = outer
    try:
        current[0].thread_started(thread, current[1], at_ns)
    except Exception:
        swallow("thread start")
    return result


#: The thread whose start this thread is counting (see _wrap_thread_start).
_starting = threading.local()


def _loop_owner() -> Here | None:
    """The request and crossing whose loop, made by asgiref for that
    crossing, runs in this thread, while the crossing is in progress: code
    of the loop's runner (asyncio.run's shutdown of the default executor,
    in a thread of its own) runs in the thread's own context, where no
    request is visible. Only in the thread the crossing's code runs in:
    asyncio finds the loop running in an OS thread from every greenlet of
    it (gevent), those of other requests, or of none, included."""
    loop = _get_running_loop()
    entry = _crossing_loops.get(loop) if loop is not None else None
    if entry is None:
        return None
    record, crossing = entry[0](), entry[1]()
    if (
        record is None
        or crossing is None
        or record.finished
        or crossing.return_ns is not None
        or crossing.target_thread is not _thread()
    ):
        return None
    return record, crossing


# -- install / uninstall -------------------------------------------------------


class Fast:
    """A hot-path patch: ``make(original)`` returns the replacement function.

    Crossings pass through these on every bridge call, and wrapt's bound
    dispatch costs 1.4-1.9 µs per call on the machines this is measured on
    (benchmarks/switch_cost.py), more than the whole budget of 2 µs per
    switch. A plain function made with functools.wraps keeps the name,
    docstring, ``__wrapped__``, signature and async-ness of the original
    (as a patch calls it: see :func:`_as_called`)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        self.make = make


class Added:
    """A patch of an attribute the owner class inherits rather than defines
    (uvloop's ``Loop``, a Python class over a C one): ``how`` (a wrapt
    wrapper or a :class:`Fast` factory) wraps the inherited attribute and is
    put in the owner's own namespace, from which uninstall takes it out
    again. Where the owner defines the attribute itself, it is patched as
    any other."""

    __slots__ = ("how",)

    def __init__(self, how: Callable[..., Any] | Fast) -> None:
        self.how = how


#: (owner, attribute, how): ``how`` is a wrapt wrapper
#: ``(wrapped, instance, args, kwargs)``, a :class:`Fast` factory, or one of
#: them :class:`Added` over an inherited attribute.
Target = tuple[object, str, "Callable[..., Any] | Fast | Added"]

#: What an :class:`Added` patch replaced: nothing in the owner's namespace.
_INHERITED = object()


def _defining(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose namespace has ``name`` (else
    ``cls``): the standard library's Thread, where gevent's monkey-patching
    (gunicorn's gevent workers) made ``threading.Thread`` a subclass of it
    that inherits ``start``."""
    return next((c for c in cls.__mro__ if name in vars(c)), cls)


def _targets() -> list[Target]:
    """Every patch of the tracer."""
    targets: list[Target] = [
        (SyncToAsync, "__call__", Fast(_patch_sync_to_async_call)),
        (AsyncToSync, "__call__", Fast(_patch_async_to_sync_call)),
        (AsyncToSync, "main_wrap", Fast(_patch_main_wrap)),
        (ThreadPoolExecutor, "submit", Fast(_patch_submit)),
        (CurrentThreadExecutor, "submit", Fast(_patch_submit)),
        (Future, "cancel", _wrap_future_cancel),
        (asyncio.base_events.BaseEventLoop, "__init__", _wrap_loop_init),
        (asyncio.base_events.BaseEventLoop, "run_until_complete", Fast(_patch_run_until_complete)),
        (_defining(threading.Thread, "start"), "start", _wrap_thread_start),
        (asyncio.selector_events.BaseSelectorEventLoop, "_make_self_pipe", _wrap_loop_handles),
        (asyncio.proactor_events.BaseProactorEventLoop, "_make_self_pipe", _wrap_loop_handles),
    ]
    if "start" in vars(threading.Timer):
        # A wrapper of Thread's start that someone put in Timer's namespace
        # before us (OpenTelemetry's threading instrumentor wraps both):
        # Timer's starts would not reach ours on Thread.
        targets.append((threading.Timer, "start", _wrap_thread_start))
    runner = getattr(asyncio, "Runner", None)
    if runner is not None:
        targets.append((runner, "run", _wrap_asyncio_run))
        targets.append((runner, "close", _wrap_runner_close))
        targets.append((runner, "_lazy_init", _wrap_runner_lazy_init))
    else:  # Python 3.10: asyncio.run is a plain function, bound under two names.
        targets.append((asyncio.runners, "run", _wrap_asyncio_run))
        targets.append((asyncio, "run", _wrap_asyncio_run))
    return targets


class Patcher:
    """Applies a set of patches once and restores exactly what was there.

    A patch someone put over one of ours, calling it, is left in place by
    :meth:`uninstall`, and ours in it: the next :meth:`install` takes ours up
    again rather than wrapping theirs (each call would be recorded twice).

    ``targets`` returns (owner, attribute, how) triples; an attribute the
    owner does not have is reported in :attr:`missing` and skipped (feature
    detection, not version comparison)."""

    def __init__(self, targets: Callable[[], list[Target]], what: str) -> None:
        self._targets = targets
        self._what = what
        #: (owner, attribute, what was there, ours, its switch): a wrapt
        #: replacement records while its switch (a list) is not empty.
        self._applied: list[tuple[object, str, object, object, list[bool]]] = []
        #: (owner, attribute) -> the entry of a replacement that uninstall
        #: could not take out: someone patched over it, their patch calling it.
        self._left: dict[tuple[object, str], tuple[object, str, object, object, list[bool]]] = {}
        #: Those (owner, attribute) whose left patch was told: once each (a
        #: test suite turning switchtrace off and on around each test told
        #: them every time).
        self._told: set[tuple[object, str]] = set()
        self._lock = threading.Lock()
        self.missing: list[str] = []

    @property
    def installed(self) -> bool:
        return bool(self._applied)

    def install(self) -> None:
        with self._lock:
            if self._applied:
                return
            self.missing = []
            for owner, name, how in self._targets():
                original = vars(owner).get(name)
                inherited = original is None and isinstance(how, Added)
                if inherited:
                    original = getattr(owner, name, None)
                if isinstance(how, Added):
                    how = how.how
                if original is None:
                    owner_name = getattr(owner, "__qualname__", getattr(owner, "__name__", owner))
                    self.missing.append(f"{owner_name}.{name}")
                    continue
                left = self._left.pop((owner, name), None)
                if left is not None and _reaches_safely(original, left[3]):
                    # Ours is still called, under the patch someone put over
                    # it (sentry-sdk's, initialised after us): taken up again,
                    # not wrapped a second time, which would record each
                    # call twice.
                    left[4].append(True)
                    self._applied.append(left)
                    continue
                switch = [True]
                if isinstance(how, Fast):
                    replacement: object = how.make(_as_called(original, owner))
                    setattr(replacement, PATCH_MARK, True)
                    setattr(replacement, _MADE_CODE, replacement.__code__)  # type: ignore[attr-defined]
                else:
                    # Enabled while installed (its switch not empty, asked
                    # in C): one that uninstall has to leave under someone
                    # else's patch passes calls through, and so does one it
                    # took out that someone still calls (sentry-sdk's start on
                    # gevent's Thread calls ours inherited from the standard
                    # library's): the next install's would record each call
                    # twice.
                    replacement = wrapt.FunctionWrapper(
                        original, how, enabled=functools.partial(bool, switch)
                    )
                setattr(owner, name, replacement)
                self._applied.append(
                    (owner, name, _INHERITED if inherited else original, replacement, switch)
                )
            if self.missing:
                logger.warning(
                    "switchtrace: the installed %s lacks %s; what passes there is not "
                    "recorded, everything else is",
                    self._what,
                    ", ".join(self.missing),
                )

    def uninstall(self) -> None:
        with self._lock:
            while self._applied:
                entry = self._applied.pop()
                owner, name, original, replacement, switch = entry
                switch.clear()
                current = vars(owner).get(name)
                if _is_read_off(current, replacement) and not _rewritten(replacement):
                    # Ours, or ours as read off the class: what wrapt's and
                    # OpenTelemetry's unwrap put back when they took out a
                    # wrapper someone put over ours.
                    if original is _INHERITED:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)
                    continue
                if _is_read_off(current, original) or (current is None and original is _INHERITED):
                    # Someone took ours out already, putting back what it
                    # replaced (OpenTelemetry's uninstrument() unwraps the
                    # wrapper on top, ours, not its own under it).
                    continue
                # Someone patched over us; their patch, which calls ours, is
                # left in place, and ours in it: a wrapt one passes calls
                # through until the next install takes it up again; a Fast
                # one records nothing, no request being recorded meanwhile.
                self._left[(owner, name)] = entry
                if (owner, name) not in self._told:
                    self._told.add((owner, name))
                    logger.warning(
                        "switchtrace: %s.%s was patched again by someone else; left as it is "
                        "(said once)",
                        owner,
                        name,
                    )


#: Where a :class:`Fast` replacement keeps the code it was made with.
_MADE_CODE = "__switchtrace_code__"


def _rewritten(replacement: object) -> bool:
    """Whether someone rewrote the code of our :class:`Fast` replacement in
    place, patching it there (ddtrace's wrapping of ``submit``, set up after
    switchtrace): taking ours out would take theirs out with it."""
    made = getattr(replacement, _MADE_CODE, None)
    return made is not None and getattr(replacement, "__code__", None) is not made


def _is_read_off(current: object, attribute: object) -> bool:
    """Whether ``current``, in an owner's namespace, is ``attribute`` or
    ``attribute`` as read off the class: a wrapt wrapper's bound one, whose
    parent it is, which is what ``unwrap`` (OpenTelemetry's) puts back, as
    it takes the ``__wrapped__`` of the wrapper it reads off the class."""
    if current is attribute:
        return True
    try:
        return getattr(current, "_self_parent", None) is attribute
    except Exception:  # an object whose attributes raise: not that one
        return False


def _as_called(original: Any, owner: object) -> Any:
    """``original``, from the owner's namespace, as a :class:`Fast` patch
    calls it: with the instance as its first argument. A function is that
    already; someone's wrapt wrapper put there before ours (OpenTelemetry's
    threading instrumentor's on ``ThreadPoolExecutor.submit``), called as
    it is, would hand its wrapper no instance and the executor as the
    function: read off the class, as Python reads a method, it takes the
    instance from the first argument."""
    if type(original) is types.FunctionType:
        return original
    get = None
    try:
        get = getattr(type(original), "__get__", None)
        return original if get is None else get(original, None, owner)
    except Exception:  # a descriptor that binds to instances alone: bound on each call
        if get is None:
            return original

    def bound(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return get(original, self, type(self))(*args, **kwargs)

    return bound


def _reaches(patch: Any, ours: object, depth: int = 0) -> bool:
    """Whether calling ``patch`` calls ``ours``: it is ours, or wraps it
    (``__wrapped__``, or a closure over it, as sentry-sdk's patches hold what
    they replaced: read off the class, a wrapt wrapper of ours is one bound
    to it, whose parent is ours), a few levels down at most."""
    if patch is ours:
        return True
    if depth >= 4:
        return False
    inner = [getattr(patch, "__func__", None), getattr(patch, "_self_parent", None)]
    try:
        # Stopping at ours as read off the class too (a wrapt wrapper's bound
        # one, whose __wrapped__ is past ours: New Relic wraps that).
        inner.append(inspect.unwrap(patch, stop=lambda f: _is_read_off(f, ours)))
    except ValueError:  # a cycle of __wrapped__
        pass
    for cell in getattr(patch, "__closure__", None) or ():
        try:
            inner.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return any(
        candidate is not None and candidate is not patch and _reaches(candidate, ours, depth + 1)
        for candidate in inner
    )


def _reaches_safely(patch: object, ours: object) -> bool:
    try:
        return _reaches(patch, ours)
    except Exception:  # an object whose attributes raise: not ours, then
        return False


def _uvloop_targets() -> list[Target]:
    """uvloop's loop, once the application has imported uvloop: a C type
    under a Python class (``uvloop.Loop``, also what its policy and
    ``uvloop.run`` make), which the patches on asyncio's ``BaseEventLoop``
    do not reach. Its loops are counted as created, and its
    ``run_until_complete`` called from synchronous code is a crossing."""
    uvloop = sys.modules.get("uvloop")
    loop = getattr(uvloop, "Loop", None)
    if not isinstance(loop, type):
        return []
    targets: list[Target] = [
        (loop, "__new__", Added(_wrap_loop_handles)),
        (loop, "__init__", Added(_wrap_loop_init)),
        (loop, "run_until_complete", Added(Fast(_patch_run_until_complete))),
    ]
    if not hasattr(asyncio, "Runner") and callable(getattr(uvloop, "run", None)):
        # Python 3.10: uvloop.run is a copy of asyncio.run's body (later, it
        # calls asyncio's Runner), whose run_until_complete calls are its own.
        targets.append((uvloop, "run", _wrap_asyncio_run))
    return targets


uvloop_patcher = Patcher(_uvloop_targets, "uvloop")
#: Whether install_uvloop has looked for uvloop to watch for its import.
_looked_for_uvloop = False


def install_uvloop() -> None:
    """Patch uvloop's loop now if the application has imported uvloop, else
    as soon as it does (a post-import hook: switchtrace never imports it).

    wrapt's post-import hook puts a finder at the head of ``sys.meta_path``
    for the rest of the process, which no uninstall can take out: it is
    registered only where uvloop is installed and not imported yet, so that
    an application without uvloop sees its import system as it was."""
    global _looked_for_uvloop
    if "uvloop" in sys.modules:
        uvloop_patcher.install()
        return
    if _looked_for_uvloop:
        return
    _looked_for_uvloop = True
    if _importable("uvloop"):
        wrapt.register_post_import_hook(_uvloop_imported, "uvloop")


def _importable(name: str) -> bool:
    """Whether the top-level module ``name`` is installed, found as its
    import would find it, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # a finder that raises: watched, as if it were installed
        return True


#: Held while uvloop's patches follow the others': the hook (on whatever
#: thread imports uvloop) does not patch uvloop after an uninstall that ran
#: between its look at the patcher and its install.
uvloop_lock = threading.Lock()


def _uvloop_imported(module: types.ModuleType) -> None:
    # Runs inside the application's `import uvloop`, which must not fail
    # for switchtrace's sake.
    try:
        with uvloop_lock:
            if patcher.installed:
                uvloop_patcher.install()
    except Exception:
        swallow("uvloop import hook")


def _clear_pending_loops() -> None:
    _unclaimed_loops.clear()
    _request_loops.clear()
    _runner_set_ups.clear()
    _returns_at_close.clear()
    _crossing_loops.clear()


patcher = Patcher(_targets, "asgiref/Python")
