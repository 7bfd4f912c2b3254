"""Switch budgets for tests: record every request a block of code makes and
fail when one costs more context switches than allowed.

    from switchtrace.testing import assert_max_switches

    with assert_max_switches(12):
        client.get("/orders/")

Works with Django's test ``Client`` and ``AsyncClient`` and with raw ASGI/WSGI
calls, without the switchtrace middleware in MIDDLEWARE and without any
exporter: the patches are installed for the block if switchtrace is not
enabled. The pytest plugin (``switchtrace.pytest_plugin``) builds on this.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from . import tracer
from .plural import count
from .text import shown
from .tracer.guard import raised_elsewhere

#: A test function, method or class that a budget decorates: given back
#: with its own type (a decorated test keeps its signature for type checkers).
_Decorated = TypeVar("_Decorated", bound=Callable[..., Any])

#: pytest leaves this module's frames out of a failure's traceback: the
#: test clients' wrappers run the project's code (see
#: tracer.guard.raised_elsewhere); a budget's failure, or a bad budget,
#: points at the test's own line.
__tracebackhide__ = raised_elsewhere

_lock = threading.Lock()
_users = 0
#: The open recordings' keys, each with the thread that opened it (a new
#: dict for each change: read without the lock).
_open_on: dict[object, threading.Thread] = {}
#: Requests a recording left open while another thread's recording held the
#: patches on, switchtrace disabled: see :func:`_end_left_open`.
_left_open: list[tracer.RequestRecord] = []
#: The keys of the recordings opened in this context or the one it was
#: copied from (asgiref's and asyncio's threads and tasks copy the context;
#: an asyncio test runner's may be a copy made before some opened); some
#: may have ended since. Keys, not recordings: a context kept for a whole
#: module keeps no records.
_opened_here: contextvars.ContextVar[tuple[object, ...]] = contextvars.ContextVar(
    "switchtrace_recordings", default=()
)


def check_budget(budget: Any, where: str = "the budget") -> int:
    """``budget`` as an int, or a ValueError naming what is wrong (the value
    shown as text.shown shows it: an int too long for ``repr()``, or an
    object whose ``__repr__`` raises, made that error another one)."""
    __tracebackhide__ = True  # the test's bad budget: its own line shown
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(
            f"{where} must be a non-negative integer (context switches per request), "
            f"not {shown(budget)}"
        )
    return budget


#: How long a recording waits, when asked for its records, for the requests
#: begun in it that another thread is still serving (seconds).
SETTLE_SECONDS = 10.0


class Recorded(list[tracer.RequestRecord]):
    """The records of the requests begun inside a recording, in the order
    they finished.

    A request begun where recordings are open (in its context, or in one
    it was copied from: a block around an ``async_to_sync`` or a
    ``sync_to_async``; else on its thread) is the recordings' opened on
    their threads: two threads' budgets each judge their own thread's
    requests, while blocks of one thread (nested, in two of its asyncio
    tasks) take each other's. One begun where none is open (a live server's
    thread, a thread the test started) is every open recording's.
    A request served on another thread (a live server's: pytest-django's
    ``live_server``, a uvicorn started by the test) ends when that thread
    closes the response, after the client has read the body and possibly
    after the test is done with it: :meth:`settle` waits for those.
    A request that was already being served when the recording began is
    not one of its requests, even if it ends inside it."""

    def __init__(self) -> None:
        super().__init__()
        #: The thread that opened it (its object: an ident is reused once
        #: the thread has ended).
        self._thread = threading.current_thread()
        self._key = object()
        self._changed = threading.Condition()
        #: Begun in the recording, not finished: each with the thread it began on.
        self._open: dict[tracer.RequestRecord, threading.Thread] = {}
        self._given_up: set[tracer.RequestRecord] = set()
        #: Whether a request begun now is the recording's (see :meth:`close`).
        self._open_to_more = True
        #: Those begun in the block's context, or a copy of it (a task, an
        #: asgiref crossing's thread), not in a server's thread of its own.
        self._in_its_context: set[tracer.RequestRecord] = set()

    def _begun(self, record: tracer.RequestRecord) -> None:
        # On the thread that opens the record: the test's, or a server's.
        opened_on = _open_on
        if len(opened_on) > 1:
            threads = [opened_on[key] for key in _opened_here.get() if key in opened_on]
            if not threads:  # (a context copied before any opened: a test runner's)
                here = threading.current_thread()
                threads = [here] if here in opened_on.values() else []
            if threads and self._thread not in threads:
                return
        with self._changed:
            if self._open_to_more:
                self._open[record] = threading.current_thread()
                if self._key in _opened_here.get():
                    self._in_its_context.add(record)

    def _finished(self, record: tracer.RequestRecord) -> None:
        # On the thread that closes the response.
        with self._changed:
            if self._open.pop(record, None) is None:
                return
            self._in_its_context.discard(record)
            self.append(record)
            self._changed.notify_all()

    def settle(self, timeout: float | None = None) -> None:
        """Wait, up to ``timeout`` seconds (default :data:`SETTLE_SECONDS`),
        until every request begun in the recording on a thread other than
        the one that began the recording has finished. (One begun on that
        thread and not finished is not waited for: nothing else will finish
        it.) A request still running then is not waited for again."""

        def elsewhere() -> list[tracer.RequestRecord]:
            return [
                record
                for record, thread in self._open.items()
                if thread is not self._thread and record not in self._given_up
            ]

        with self._changed:
            self._changed.wait_for(
                lambda: not elsewhere(), SETTLE_SECONDS if timeout is None else timeout
            )
            self._given_up.update(elsewhere())

    async def asettle(self, timeout: float | None = None) -> None:
        """:meth:`settle` from an async test, in its event loop, which may
        be what ends them: the ASGI requests begun in this thread run in
        that loop (one driven by hand, a Channels ``HttpCommunicator``'s,
        whose ``get_response()`` returns before Django has closed the
        response), and a WSGI application under asgiref's ``WsgiToAsgi``
        driven there is ended by it too. They are waited for with the loop
        running, within the same ``timeout``. (Not a WSGI request begun in
        this thread: only the test's code can close its response.)"""
        timeout = SETTLE_SECONDS if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def running() -> bool:
            with self._changed:
                return any(
                    record not in self._given_up
                    and not (thread is self._thread and record.kind == tracer.WSGI)
                    for record, thread in self._open.items()
                )

        while running() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        self.settle(max(0.0, deadline - time.monotonic()))

    def restart(self) -> None:
        """Forget the requests begun so far, finished or not: one still
        running is no longer the recording's when it ends."""
        with self._changed:
            self.clear()
            self._open.clear()
            self._given_up.clear()
            self._in_its_context.clear()
            self._open_to_more = True

    def close(self) -> None:
        """The requests begun from now on are not the recording's (those
        begun so far still are, as they finish)."""
        with self._changed:
            self._open_to_more = False

    def _left_to_this_loop(self) -> list[tracer.RequestRecord]:
        """Those not finished that an event loop running in this thread may
        be what ends (see :meth:`asettle`): begun on this thread (an ASGI
        request driven in the loop, in a context of its own too: asgiref's
        ApplicationCommunicator, Channels' HttpCommunicator), or in the
        block's context on another (a WSGI one in WsgiToAsgi's thread), not
        in a server's thread of its own. (Not a WSGI request begun in this
        thread: only the test's code can close its response.)"""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return []
        with self._changed:
            return [
                record
                for record, thread in self._open.items()
                if (record in self._in_its_context or thread is self._thread)
                and not (thread is self._thread and record.kind == tracer.WSGI)
            ]

    def split(self) -> tuple[list[tracer.RequestRecord], list[tracer.RequestRecord]]:
        """The requests begun in the recording: those finished, and those
        not finished (yet), taken at one moment."""
        with self._changed:
            return list(self), list(self._open)


def record_requests() -> _Recording:
    """Every request begun inside the block, as it finishes (but those of
    another thread's recordings: see :class:`Recorded`), those that a server
    in another thread still serves waited for at its end (see
    :meth:`Recorded.settle`). ``async with`` waits as well for those that
    the block's event loop still runs, the loop running (see
    :meth:`Recorded.asettle`)."""
    return _Recording()


class _Recording:
    """:func:`record_requests`' context manager, for ``with`` and ``async
    with``."""

    def __init__(self, warn: bool = True) -> None:
        self._recording = _record_requests(settle=False)
        self._records: Recorded | None = None
        self._warn = warn

    def __enter__(self) -> Recorded:
        self._records = self._recording.__enter__()
        return self._records

    def __exit__(self, *exc_info: Any) -> bool | None:
        left: list[tracer.RequestRecord] = []
        if exc_info[0] is None and self._records is not None:
            try:
                self._records.settle()
            except BaseException as exc:  # (interrupted: that is the block's outcome)
                self._recording.__exit__(type(exc), exc, exc.__traceback__)  # (returns False)
                raise
            if self._warn:
                left = self._records._left_to_this_loop()
        ended = self._recording.__exit__(*exc_info)
        if left:
            # (Once the recording has ended: -W error makes this an exception.)
            import warnings

            one = len(left) == 1
            warnings.warn(
                f"record_requests(): {count(len(left), 'request')} begun in the block "
                f"{'was' if one else 'were'} still running when it ended, in the event loop "
                f"that a plain 'with' does not let run, and {'is' if one else 'are'} not "
                "among its records: let each end in the block (a Channels "
                "HttpCommunicator: await communicator.wait()), or use 'async with "
                "record_requests()', which waits for them with the loop running",
                RuntimeWarning,
                stacklevel=2,
            )
        return ended

    async def __aenter__(self) -> Recorded:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        if exc_info[0] is None and self._records is not None:
            try:
                await self._records.asettle()
            except BaseException as exc:  # (cancelled: that is the block's outcome)
                self._recording.__exit__(type(exc), exc, exc.__traceback__)  # (returns False)
                raise
        return self._recording.__exit__(*exc_info)


@contextlib.contextmanager
def _record_requests(settle: bool) -> Iterator[Recorded]:
    """:func:`record_requests`; ``settle``: whether its end waits. (The
    pytest plugin's fixture and marker wait when their figures are read.)"""
    global _users, _open_on
    from .django_app import integration
    from .django_app.conf import get_config

    # Django's settings first: without them (ImproperlyConfigured) nothing
    # in the block would be recorded, and that is told before it runs, not
    # from within (once from the end, integration.release, where it took
    # the place of the block's own outcome, the test's failure among them).
    get_config()
    current = tracer.current_record()
    if current is not None and current.finished:
        # Ended from another thread as the patches came off (see
        # _end_left_open), and still current here: no request's now.
        tracer.finish_request(current)
    integration.hold()
    with _lock:
        client_patcher.install()
        _users += 1
    records = Recorded()
    with _lock:
        _open_on = {**_open_on, records._key: records._thread}
    opened = (*_opened_here.get(), records._key)
    token = _opened_here.set(opened)
    tracer.add_start_listener(records._begun)
    tracer.add_listener(records._finished)
    try:
        yield records
        if settle:
            # A request a server in another thread serves ends after its
            # client has the body (request_finished, the response's close).
            records.settle()
    finally:
        tracer.remove_start_listener(records._begun)
        tracer.remove_listener(records._finished)
        # (Ended in another context, e.g. a fixture's teardown, the record
        # left in this one is of a recording no longer open: ignored.)
        _leave(token, opened, records._key)
        with _lock:
            _open_on = {key: on for key, on in _open_on.items() if key is not records._key}
            _users -= 1
            if _users == 0:
                client_patcher.uninstall()
        _end_left_open(records.split()[1])


def _end_left_open(left: list[tracer.RequestRecord]) -> None:
    """The patches not kept on by the app's settings (switchtrace disabled,
    or no app), and no recording left: a request still open
    would never end (its response's close no longer seen), and stay current
    where it began, taking what runs there once something patches again.
    Ended as the patches come off: those of this recording, and those
    left open by recordings that ended while another thread's held the
    patches on."""
    global _left_open
    from .django_app import integration

    integration.release()
    with _lock:
        if integration.patcher.installed:
            if not integration.applied():
                # Held by another recording: kept for the one that takes
                # them off (those finished meanwhile forgotten). Kept on by
                # the app's settings, the patches stay on, and each ends as
                # any request does.
                _left_open = [r for r in _left_open if not r.finished] + left
            return
        left, _left_open = _left_open + left, []
    tracer.finish_all([record for record in left if not record.finished])


def _leave(token: contextvars.Token[tuple[object, ...]], opened: Any, key: object) -> None:
    """The recording's key out of this context: the variable as it was
    before (unset, if it was: none of switchtrace's left in the test's
    context, which asgiref copies at each crossing), else, ended out of
    order or in another context (a fixture's teardown), its key alone."""
    if _opened_here.get() is opened:
        try:
            _opened_here.reset(token)
            return
        except (ValueError, RuntimeError):  # another context's token
            pass
    _opened_here.set(tuple(other for other in _opened_here.get() if other is not key))


def describe_requests(records: list[tracer.RequestRecord]) -> list[str]:
    from .django_app import components
    from .exporters.console import format_record

    return [format_record(record, components.resolve) for record in records]


def over_budget(records: Recorded | list[tracer.RequestRecord], budget: int) -> str | None:
    """The failure message if any request exceeds ``budget``, or is still
    running (what it will cost is not known), else None.

    A :class:`Recorded` is settled first (see :meth:`Recorded.settle`), and
    its requests still running are judged on their figures so far: one over
    the budget already fails as over it, one within it as still running."""
    judged, running = list(records), list[tracer.RequestRecord]()
    if isinstance(records, Recorded):
        records.settle()
        judged, running = records.split()
    over = [record for record in judged + running if record.context_switches > budget]
    unknown = [record for record in running if record not in over]
    if not (over or unknown):
        return None
    total = count(len(judged) + len(running), "request")
    budget_text = count(budget, "context switch", "context switches")
    messages = []
    if over:
        lines = [
            line + (" (still running: its figures so far)" if record in running else "")
            for record, line in zip(over, describe_requests(over), strict=True)
        ]
        messages.append(
            f"{len(over)} of {total} exceeded the budget of {budget_text} per request:\n"
            + "\n".join(f"  {line}" for line in lines)
        )
    if unknown:
        messages.append(
            f"{len(unknown)} of {total} {'was' if len(unknown) == 1 else 'were'} still running "
            f"when judged against the budget of {budget_text} per request, which counts the "
            "whole request: let each end in the test (a Channels HttpCommunicator: await "
            "communicator.wait()); its figures so far:\n"
            + "\n".join(f"  {line}" for line in describe_requests(unknown))
        )
    return "\n".join(messages)


def assert_max_switches(budget: int) -> _Budget:
    """Fail (AssertionError) if a request made in the block has more than
    ``budget`` context switches (the whole request, work after the response
    headers included, but for the body of a streaming response, which the
    test clients return unread: reading and closing it happen in the test,
    outside the request). A context manager (the block's records as its
    value) and a decorator, of sync and async functions alike, and of a
    test class (each of its test methods without a budget of its own)."""
    return _Budget(check_budget(budget))


class _Budget:
    """:func:`assert_max_switches`' context manager: a class, not a
    generator, so that under pytest the failure points at the test's line
    (a generator's is raised in contextlib's ``__exit__``, which pytest
    shows as the failing frame)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._recording: contextlib.AbstractContextManager[Recorded] | None
        self._recording = None
        self._records = Recorded()

    def _recreate_cm(self) -> _Budget:
        # As a decorator: a fresh one for each call.
        return _Budget(self.budget)

    def __call__(self, func: _Decorated) -> _Decorated:
        if isinstance(func, type):
            return self._decorate_class(func)  # type: ignore[return-value]  # (the same class)
        # Not contextlib.ContextDecorator's wrapper: under pytest its frame,
        # in contextlib, was the failure's; and it is synchronous: around a
        # coroutine function it recorded nothing (the block ended before the
        # coroutine ran) and hid that the test is async (Django's async test
        # methods were never awaited, and passed).
        if not iscoroutinefunction(func):

            @functools.wraps(func)
            def inner(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True  # under pytest, the failure shows no frame of ours
                with self._recreate_cm():
                    return func(*args, **kwargs)

        else:

            @functools.wraps(func)
            async def inner(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True  # under pytest, the failure shows no frame of ours
                async with self._recreate_cm():
                    return await func(*args, **kwargs)

        budgeted: Any = inner
        budgeted._switchtrace_budget = self.budget
        return budgeted

    def _decorate_class(self, cls: type) -> type:
        """Each test method gets the budget, as Django's override_settings
        applies to each test of a class it decorates (ContextDecorator made
        the class a function, which no test runner collects). A method with
        a budget of its own keeps it; one inherited with the budget of a
        decorated base class gets this class's instead (the closest wins, as
        with the markers); a static or class method (which pytest collects)
        stays one."""
        prefix = getattr(cls, "testMethodPrefix", "test")
        for name in dir(cls):
            if not name.startswith(prefix):
                continue
            # As defined, not as read: reading a static or class method
            # gives its function, or a method bound to the class.
            method = inspect.getattr_static(cls, name, None)
            kind = type(method) if isinstance(method, (staticmethod, classmethod)) else None
            func = method.__func__ if kind is not None else method
            if not inspect.isfunction(func):
                continue
            # The function as it was before a base class's budget wrapped it.
            func = getattr(func, "_switchtrace_class_budget_of", func)
            if hasattr(func, "_switchtrace_budget"):
                continue
            budgeted = self(func)
            budgeted._switchtrace_class_budget_of = func
            setattr(cls, name, budgeted if kind is None else kind(budgeted))
        return cls

    def __enter__(self) -> Recorded:
        with _lock:
            if self._recording is not None:
                # Replaced, the open block's recording ended with the inner
                # one's, and the open block judged nothing.
                raise RuntimeError(
                    f"this assert_max_switches({self.budget}) is already open (a block of it "
                    "not ended, in this thread or another): each block needs its own, call "
                    f"assert_max_switches({self.budget}) again"
                )
            self._recording = recording = _Recording(warn=False)  # (its failure tells)
        try:
            self._records = recording.__enter__()
        except BaseException:
            self._recording = None
            raise
        return self._records

    def __exit__(self, *exc_info: Any) -> None:
        __tracebackhide__ = True  # under pytest, the failure points at the test's line
        recording, self._recording = self._recording, None
        message = None
        try:
            if exc_info[0] is None:  # else the block raised: that is the failure
                message = over_budget(self._records, self.budget)
        finally:
            if recording is not None:
                recording.__exit__(*exc_info)
        if message is not None:
            raise AssertionError(message)

    async def __aenter__(self) -> Recorded:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        """As ``__exit__``, once the requests still running in the test's
        event loop have ended (see :meth:`Recorded.asettle`)."""
        __tracebackhide__ = True
        if exc_info[0] is None:
            try:
                await self._records.asettle()
            except BaseException as exc:  # (cancelled: that is the block's outcome)
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        self.__exit__(*exc_info)


# -- Django's test client handlers ----------------------------------------------


def _wrap_client_call(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Django's test Client: the request runs and its response is closed inside
    # this call (streaming content excepted). One that a view makes (a
    # sub-request it serves itself) is part of its request, as on a server.
    from .django_app import integration

    if integration.in_a_request():
        return integration.as_sub_request(wrapped, args, kwargs)
    # Kept as the settings bound a server's (MAX_EVENTS): the same spans.
    record, token = tracer.start_request(tracer.WSGI, integration.get_config().max_events)
    _attributes(record, args[0] if args else kwargs.get("environ", {}), wsgi=True)
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        integration.failed(record, exc)
        raise
    finally:
        tracer.finish_request(record, token)


def _wrap_async_client_call(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    from .django_app import integration

    if integration.in_a_request():
        # A sub-request a view serves itself: part of its request.
        return integration.as_sub_request_async(wrapped(*args, **kwargs))
    scope = args[0] if args else kwargs.get("scope", {})
    return _trace_async_client(wrapped(*args, **kwargs), scope)


#: Marks the records of the test AsyncClient's requests (record.extra).
ASYNC_CLIENT = "switchtrace.async_client"
#: record.extra's key, set when the AsyncClient's request calls
#: get_response_async: a call after it is a sub-request's.
_ANSWERED = "switchtrace.async_client_answered"


async def _trace_async_client(call: Any, scope: Any) -> Any:
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Django's test AsyncClient, in the test's event loop.
    from .django_app import integration

    try:
        record, token = tracer.start_request(tracer.ASGI, integration.get_config().max_events)
    except BaseException:
        call.close()  # (a start listener's BaseException: never awaited)
        raise
    record.extra[ASYNC_CLIENT] = True
    _attributes(record, scope, wsgi=False)
    try:
        response = await call
        status = getattr(response, "status_code", None)
        if status is not None:
            record.attributes["http.response.status_code"] = status
        return response
    except BaseException as exc:
        integration.failed(record, exc)
        raise
    finally:
        tracer.finish_request(record, token)


def _wrap_get_response_async(wrapped, instance, args, kwargs):
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # Runs in the task that awaits it. Only the AsyncClient request's own
    # call, the first: one made inside it (a sub-request its view serves)
    # returns the sub-request's response, before the request's headers.
    record = tracer.current_record()
    if record is None or not record.extra.get(ASYNC_CLIENT) or _ANSWERED in record.extra:
        return wrapped(*args, **kwargs)
    record.extra[_ANSWERED] = True
    return _headers_after(wrapped(*args, **kwargs))


async def _headers_after(call: Any) -> Any:
    __traceback_hide__ = True  # (Django's debug page, Sentry)
    # The AsyncClient has no server to send headers: they would go out when
    # get_response_async returns, before it closes the response (which sends
    # request_finished), as the test Client's get_response does for WSGI.
    response = await call
    record = tracer.current_record()
    if (
        record is not None
        and record.extra.get(ASYNC_CLIENT)
        and record.at_headers is None
        and not record.finished
    ):
        try:
            from .django_app.integration import at_headers

            at_headers(record, response)
        except Exception:
            from .tracer.guard import swallow

            swallow("test client headers")
    return response


def _attributes(record: tracer.RequestRecord, source: Any, *, wsgi: bool) -> None:
    # As a server's request gets them (the path as Django reads it), and
    # while spans are made what its server, client and network attributes
    # come from: exported as a server's request is.
    from .django_app.integration import arrived_asgi, arrived_wsgi

    try:
        (arrived_wsgi if wsgi else arrived_asgi)(record, source)
    except Exception:
        from .tracer.guard import swallow

        swallow("test client attributes")


def _client_targets() -> list[Any]:
    from django.core.handlers.base import BaseHandler
    from django.test.client import AsyncClientHandler, ClientHandler

    return [
        (ClientHandler, "__call__", _wrap_client_call),
        (AsyncClientHandler, "__call__", _wrap_async_client_call),
        (BaseHandler, "get_response_async", _wrap_get_response_async),
    ]


client_patcher = tracer.patches.Patcher(_client_targets, "Django test client")
