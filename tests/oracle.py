"""An independent count of one request's crossings, to hold switchtrace's
figures against: the profiler's call and return events of asgiref's and
asyncio's own functions, and nothing of switchtrace's (neither imported nor
called: only its wrappers' frames are stepped over, by module name, where
the caller of ``run_until_complete`` or ``run_in_executor`` is asked for).

What is counted, after the README's Definitions:

- a ``sync_to_async`` whose sync code ran: ``SyncToAsync.thread_handler``
  returning (it runs the code on the worker thread). Two switches; two hops
  when that thread is not the one running the caller's loop (its ``loop``
  argument's thread).
- an ``async_to_sync`` whose async code ran: ``AsyncToSync.__call__``
  returning, on the caller's thread, after ``AsyncToSync.main_wrap`` started
  for its ``call_result`` (on the loop's thread). Two switches; two hops when
  main_wrap ran on another thread than the caller's.
- ``asyncio.run()`` and ``loop.run_until_complete()`` from sync code,
  returning: two switches, no hop (the loop runs on the calling thread).
  Not counted when they are asgiref's own way of running an
  ``async_to_sync`` (``asyncio.run`` of a coroutine of asgiref's,
  ``run_until_complete`` called from asgiref's ``sync.py``) or asyncio.run's
  own calls (called from ``asyncio/runners.py``).
- an offload from a loop to an executor's thread (``asyncio.to_thread``,
  ``loop.run_in_executor``): ``BaseEventLoop.run_in_executor`` called, but
  from asgiref's ``sync.py`` (a ``sync_to_async``, counted above). Two
  switches, two hops (an executor's workers are threads of its own), counted
  when the offload is made: the views here await every one.
- an event loop created: ``BaseEventLoop.__init__`` called.
- a thread started: ``threading.Thread.start`` returning with the thread
  started (its ``ident`` set).

Everything is counted between :meth:`Oracle.begin` and :meth:`Oracle.end`,
on every thread: one request at a time. ``sys.setprofile`` reaches only the
calling thread and ``threading.setprofile`` only threads started later, so
:meth:`Oracle.install` must come before any thread a request may use is
started (in a process of its own, before Django is set up).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.runners
import sys
import threading
from concurrent.futures import Future
from types import CodeType, FrameType
from typing import Any

from asgiref import sync as asgiref_sync


def _code(owner: Any, name: str) -> CodeType:
    """The code object of ``owner.name`` as its module defines it, under any
    wrapper put around it since."""
    function = vars(owner)[name]
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function.__code__


#: The files of asgiref's bridges and of asyncio.run, as their code names them.
ASGIREF_SYNC = _code(asgiref_sync.AsyncToSync, "__call__").co_filename
RUNNERS = _code(asyncio.runners, "run").co_filename
#: The modules whose frames are stepped over when asking who called a
#: function: the wrappers a tracer puts around it.
WRAPPERS = ("switchtrace", "wrapt")


def _caller_file(frame: FrameType) -> str:
    """The file of the function that called ``frame``'s."""
    caller = frame.f_back
    while caller is not None and caller.f_globals.get("__name__", "").startswith(WRAPPERS):
        caller = caller.f_back
    return "" if caller is None else caller.f_code.co_filename


class Oracle:
    def __init__(self) -> None:
        self.active = False
        self._lock = threading.Lock()
        self.switches = self.hops = self.loops = self.threads = 0
        # call_result future of an async_to_sync -> (it, thread main_wrap ran on)
        self._main_wraps: dict[int, tuple[Future[Any], int]] = {}
        self._on_call = {
            _code(asgiref_sync.AsyncToSync, "main_wrap"): self._main_wrap_started,
            _code(asyncio.base_events.BaseEventLoop, "__init__"): self._loop_created,
        }
        self._on_return = {
            _code(asgiref_sync.SyncToAsync, "thread_handler"): self._sync_to_async_done,
            _code(asgiref_sync.AsyncToSync, "__call__"): self._async_to_sync_done,
            _code(asyncio.runners, "run"): self._asyncio_run_done,
            _code(asyncio.base_events.BaseEventLoop, "run_until_complete"): self._run_done,
            _code(asyncio.base_events.BaseEventLoop, "run_in_executor"): self._offloaded,
            _code(threading.Thread, "start"): self._thread_started,
        }

    def install(self) -> None:
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)

    def begin(self) -> None:
        self.switches = self.hops = self.loops = self.threads = 0
        self._main_wraps.clear()
        self.active = True

    def end(self) -> tuple[int, int, int, int]:
        self.active = False
        self._main_wraps.clear()
        return self.figures()

    def figures(self) -> tuple[int, int, int, int]:
        """Switches, hops, loops created, threads started, so far."""
        return self.switches, self.hops, self.loops, self.threads

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.active:
            return
        if event == "call":
            handler = self._on_call.get(frame.f_code)
        elif event == "return":
            handler = self._on_return.get(frame.f_code)
        else:
            return
        if handler is not None:
            handler(frame)

    def _crossing(self, hop: bool) -> None:
        """A bridge call done: there and back."""
        with self._lock:
            self.switches += 2
            if hop:
                self.hops += 2

    def _sync_to_async_done(self, frame: FrameType) -> None:
        # On the worker thread; `loop` is the caller's running loop, and
        # _thread_id asyncio's note of the thread running it.
        loop = frame.f_locals["loop"]
        self._crossing(hop=threading.get_ident() != loop._thread_id)

    def _main_wrap_started(self, frame: FrameType) -> None:
        # In the target loop, on its thread; every resumption of the
        # coroutine is a call event too: the first one is kept.
        call_result = frame.f_locals["call_result"]
        self._main_wraps.setdefault(id(call_result), (call_result, threading.get_ident()))

    def _async_to_sync_done(self, frame: FrameType) -> None:
        # On the caller's thread.
        call_result = frame.f_locals.get("call_result")
        started = self._main_wraps.get(id(call_result))
        if started is not None and started[0] is call_result:
            self._crossing(hop=threading.get_ident() != started[1])

    def _asyncio_run_done(self, frame: FrameType) -> None:
        code = getattr(frame.f_locals.get("main"), "cr_code", None)
        if code is None or code.co_filename != ASGIREF_SYNC:
            self._crossing(hop=False)

    def _run_done(self, frame: FrameType) -> None:
        if _caller_file(frame) not in (ASGIREF_SYNC, RUNNERS):
            self._crossing(hop=False)

    def _offloaded(self, frame: FrameType) -> None:
        if _caller_file(frame) != ASGIREF_SYNC:
            self._crossing(hop=True)

    def _loop_created(self, frame: FrameType) -> None:
        with self._lock:
            self.loops += 1

    def _thread_started(self, frame: FrameType) -> None:
        if frame.f_locals["self"].ident is not None:
            with self._lock:
                self.threads += 1
