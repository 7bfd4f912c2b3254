"""What the span pipeline and the console exporter share: finished records
handed to a bounded queue on the request's path, and one thread of their own
that deals with them after the response.

:class:`QueueWorker` owns the queue, the thread (started outside any request,
again in a forked child; in one forked past Python's at-fork hooks, once its
first record has ended), :meth:`~QueueWorker.flush`, and the part of shutting
down that both do: wake the thread, wait for it until the deadline, and count
what it never took as dropped. What a record becomes (spans, a
line) and how the thread waits for the next one are the subclass's.
"""

from __future__ import annotations

import atexit
import contextvars
import os
import queue
import sys
import threading
import time
import weakref
from typing import Any

from ..plural import count
from ..tracer.guard import logger, swallow


class Flush(threading.Event):
    """Queued by :meth:`QueueWorker.flush`: set once what was queued before it
    is dealt with, or ``dropped`` by a shutdown whose time ran out."""

    dropped = False


class QueueWorker:
    """A bounded queue of records and the thread that takes them (its
    ``_run``, which sets a :class:`Flush` when it takes one, and returns on
    ``None``, or once ``_stopping`` is set and ``_deadline`` passed)."""

    #: The thread's name.
    thread_name = "switchtrace"
    #: The warning's words for the records still queued at the end of
    #: shutdown's time ({} is "N requests").
    lost_what = "the work of {} not done"
    #: Records never dealt with (subclasses count their other losses here too).
    dropped = 0
    #: Those of them that shutdown's time ran out on (its warning tells them).
    lost_at_stop = 0

    def _start(self, queue_size: int) -> None:
        """Called once by the subclass's ``__init__``, when it is ready."""
        #: Set by :meth:`_stop`; the thread then stops by ``_deadline``.
        self._stopping = threading.Event()
        self._deadline = 0.0
        self._start_worker(queue_size)
        _workers.add(self)
        atexit.register(self._shutdown_at_exit)
        self._leave_with_multiprocessing(forked=False)
        _say_if_threads_cannot_run()

    def _start_worker(self, queue_size: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._worker = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._worker.start()
        #: The process the thread runs in: see :meth:`_here`. Noted once it
        #: runs: the child's other threads, which look at it without the
        #: lock, then find the new queue and a thread that is alive.
        self._pid = os.getpid()

    def _here(self) -> bool:
        """Whether the thread runs in this process. In a child forked past
        Python's at-fork hooks (a fork() from C, which calls no
        PyOS_AfterFork_Child), it does once this has done there what the
        hook does, on the child's first record or flush. uWSGI forks its
        workers so from a master that loaded the application, unless told to
        call the hooks (``py-call-osafterfork``, ``py-call-uwsgi-fork-hooks``):
        the thread and the queue there were the master's, and the records of
        its workers waited unexported until their shutdown's time ran out.
        The thread starts in an empty context: it is not the request's."""
        if self._pid != os.getpid():
            with _adopting:  # the child's first requests, on threads of its own
                if self._pid != os.getpid() and not self._stopping.is_set():
                    try:
                        contextvars.Context().run(self._after_fork_in_child)
                    except Exception:
                        swallow(f"{self.thread_name} thread after fork")
        return self._pid == os.getpid()

    def _run(self) -> None:
        raise NotImplementedError

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's thread is gone; a new one, with a
        new queue (the parent's records are the parent's)."""
        self._start_worker(self._queue.maxsize)
        self._leave_with_multiprocessing(forked=True)

    #: Whether a child that multiprocessing forks from this process (or from
    #: a child of it) calls :meth:`_shut_down_with_multiprocessing`.
    _multiprocessing_forks = False
    #: The finalizer of :meth:`_shut_down_with_multiprocessing`, if any.
    _multiprocessing_exit: Any = None

    def _leave_with_multiprocessing(self, forked: bool) -> None:
        """Shut down at the end of a process that multiprocessing started
        (granian's workers, --workers of uvicorn and hypercorn, Django's
        parallel test runner), as at the end of any other. One it forks
        (its ``fork`` and ``forkserver`` methods) leaves through os._exit
        once its target returns: past atexit's hooks before Python 3.13,
        and on 3.13 past those the parent registered (it clears them).
        multiprocessing's finalizers run there first, in every version.
        Nothing where multiprocessing is not imported: a process that it
        starts, or that starts one, has imported it."""
        util = sys.modules.get("multiprocessing.util")
        if util is None:
            return
        try:
            if not self._multiprocessing_forks:
                # Called in the child after multiprocessing's own at-fork
                # reset, which drops the finalizers the parent had; once for
                # this worker in every process that descends from this one.
                util.register_after_fork(self, QueueWorker._shut_down_with_multiprocessing)
                self._multiprocessing_forks = True
            if not forked and util.process.parent_process() is not None:
                self._shut_down_with_multiprocessing()
        except Exception:
            swallow(f"{self.thread_name} thread's exit with multiprocessing")

    def _shut_down_with_multiprocessing(self) -> None:
        if self._stopping.is_set():
            return
        util = sys.modules["multiprocessing.util"]
        self._multiprocessing_exit = util.Finalize(None, self._shutdown_at_exit, exitpriority=0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued before it is dealt with; False when
        ``timeout`` passed first or :meth:`shutdown`'s time ran out (tests,
        ``switchtrace bench``)."""
        if not self._here() or not self._worker.is_alive():
            return self._queue.empty()
        deadline = time.monotonic() + timeout
        done = Flush()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(max(deadline - time.monotonic(), 0)) and not done.dropped

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop(timeout)

    def _shutdown_at_exit(self) -> None:
        """The exit hook: :meth:`shutdown`. A Ctrl-C while it waits (a
        collector that does not answer, a second Ctrl-C to a server) ends
        the wait, as asked: what it leaves undone is told in one warning,
        not in a traceback of switchtrace's."""
        try:
            self.shutdown()
        except KeyboardInterrupt:
            try:
                undone = self._undone()
                logger.warning(
                    "switchtrace: shutdown interrupted (Ctrl-C)%s",
                    f" with {undone}" if undone else "",
                )
            except KeyboardInterrupt:
                pass  # a third: the process leaves at once, as asked

    def _undone(self) -> str:
        """What an interrupted shutdown leaves undone: the records still
        queued (subclasses add their own)."""
        items = list(self._queue.queue)
        queued = sum(1 for item in items if item is not None and not isinstance(item, Flush))
        return self.lost_what.format(count(queued, "request")) if queued else ""

    def _stop(self, timeout: float) -> bool:
        """Stop the thread once it has dealt with what is queued, within
        ``timeout`` seconds; what it has not taken by then is counted as
        dropped (the thread stops as soon as it is free: a daemon thread
        meanwhile). False when already stopped."""
        atexit.unregister(self._shutdown_at_exit)
        _workers.discard(self)
        if self._multiprocessing_exit is not None:
            self._multiprocessing_exit.cancel()
            self._multiprocessing_exit = None
        if self._stopping.is_set():
            return False
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._pid != os.getpid():
            # Forked past the at-fork hooks, and nothing queued here since:
            # the thread, and whatever its queue holds, are the parent's.
            self._queue = queue.Queue(self._queue.maxsize)
            return True
        try:
            self._queue.put_nowait(None)  # wakes the thread if it waits for records
        except queue.Full:
            pass  # it takes what is queued without waiting, then stops
        if self._worker.is_alive():
            self._worker.join(max(self._deadline - time.monotonic(), 0))
        # Whether the thread ended at the deadline or still works on one
        # record, what it has not taken will not be dealt with.
        lost = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Flush):  # a flush waiting: it failed
                item.dropped = True
                item.set()
            elif item is not None:
                lost += 1
        if lost:
            self.dropped += lost
            self.lost_at_stop = lost
            logger.warning(
                "switchtrace: shut down with %s (the shutdown's time ran out)",
                self.lost_what.format(count(lost, "request")),
            )
        return True


#: Every worker in use and not shut down, held weakly: a forked child gets a
#: thread for each of them (and only them) from the one at-fork hook below.
_workers: weakref.WeakSet[QueueWorker] = weakref.WeakSet()


_said_threads = False


def _say_if_threads_cannot_run() -> None:
    """Warn (once) where the thread cannot run while the process waits:
    under uWSGI without Python threads (its ``enable-threads``, which uWSGI
    before 2.0.27 leaves off unless asked, and 2.0.27 on turns on), a
    worker holds the GIL while it waits for requests. Read off uWSGI's own
    module, which only its processes have (never imported here)."""
    global _said_threads
    uwsgi: Any = sys.modules.get("uwsgi")
    if _said_threads or uwsgi is None or uwsgi.__dict__.get("has_threads", 1):
        return
    _said_threads = True
    logger.warning(
        "switchtrace: uWSGI runs without Python threads, so switchtrace's thread only runs "
        "while a worker runs Python code, never while it waits for requests: spans and "
        "console lines wait for the worker's next requests or its exit, and what does not "
        "fit in the queue meanwhile is dropped. Turn threads on in uWSGI's options: "
        "enable-threads = true (or threads = N)."
    )


#: Held while a child forked past the at-fork hooks gives a worker its thread.
_adopting = threading.Lock()


def _after_fork_in_child() -> None:
    _adopting._at_fork_reinit()  # type: ignore[attr-defined]
    for worker in list(_workers):
        try:
            worker._after_fork_in_child()
        except Exception:
            swallow(f"{worker.thread_name} thread after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
