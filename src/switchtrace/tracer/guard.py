"""The one guard around switchtrace's own bookkeeping.

Every patch does its bookkeeping inside ``try: ... except Exception:
swallow(where)`` and calls the original *outside* it, so the application's own
exceptions pass through unchanged and ours never reach the application.

In production a swallowed error is logged once per place and kind. A test
suite installs an error hook (see ``tests/conftest.py``) that collects what was
swallowed and fails the test, so that our bugs cannot hide.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, cast

from .weak import WeakIdentityMap


class _Logger:
    """The ``switchtrace`` logger, looked up as it is used rather than made
    as switchtrace is imported. A project whose settings import switchtrace
    (a SHOW_HEADERS callable) had it made before Django configured logging,
    and a LOGGING with ``disable_existing_loggers`` (dictConfig's default)
    disabled it: every message of switchtrace's was lost, where the same
    settings without the import kept them."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(logging.getLogger("switchtrace"), name)


#: What switchtrace logs goes to the ``switchtrace`` logger, through this.
logger = cast(logging.Logger, _Logger())

ErrorHook = Callable[[BaseException, str], None]

_error_hook: ErrorHook | None = None
_reported: set[tuple[str, type[BaseException]]] = set()
#: What was logged for each object of the application's, while it lives.
_reported_theirs: WeakIdentityMap[set[tuple[str, type[BaseException]]]] = WeakIdentityMap()
_lock = threading.Lock()


def set_error_hook(hook: ErrorHook | None) -> ErrorHook | None:
    """Route swallowed errors to ``hook`` too; returns the previous hook."""
    global _error_hook
    previous, _error_hook = _error_hook, hook
    return previous


def swallow(where: str, theirs: object = None) -> None:
    """Call from an ``except`` block (``Exception``; ``BaseException`` in
    switchtrace's own thread): log once, never raise.

    With ``theirs``, the code that raised is the application's (a listener
    it added), not switchtrace's: said so, and logged once for that object
    (by identity, for as long as it lives: another made later, even with the
    same name, is logged again), or for ``where`` if it cannot be referred to
    weakly."""
    exc = sys.exc_info()[1]
    if exc is None:  # pragma: no cover - misuse
        return
    hook = _error_hook
    if hook is not None:
        try:
            hook(exc, where)
        except Exception:  # pragma: no cover - a broken hook must not break requests
            pass
    key = (where, type(exc))
    seen = _reported
    if theirs is not None:
        # Made outside the lock: what is made under it may set off a garbage
        # collection, whose finalizers (a coroutine's finally, ending its
        # request) may come back here on this thread.
        found = _reported_theirs.get(theirs)
        if found is None:
            try:
                # (Two threads telling of it at once get one set.)
                found = _reported_theirs.setdefault(theirs, set())
            except TypeError:  # not weakly referable (a class with __slots__)
                found = _reported
        seen = found
    with _lock:
        if key in seen:
            return
        seen.add(key)
    if theirs is None:
        logger.error(
            "switchtrace: internal error in %s (logged once; the request goes on untouched)",
            where,
            exc_info=exc,
        )
    else:
        logger.error(
            "switchtrace: %s raised; the error is its own, not switchtrace's (logged once for "
            "it and this exception type)",
            where,
            exc_info=exc,
        )


def put_back(
    variable: contextvars.ContextVar[Any], token: contextvars.Token[Any], where: str
) -> None:
    """``variable.reset(token)`` where a coroutine ends (its ``finally``).
    A coroutine closed from another context (GeneratorExit: a task destroyed
    pending, whose coroutine the garbage collector closes wherever it runs)
    has nothing of that context to put back: quiet. One resumed in another
    context (driven by hand) leaves the variable set in the first: ours to
    say, as ``where``."""
    try:
        variable.reset(token)
    except ValueError as error:
        if not _while_closed(error):
            swallow(where)


def _while_closed(error: BaseException) -> bool:
    """Whether ``error`` was raised while a GeneratorExit was being handled:
    directly, or under what a close from another context makes the
    coroutine's other ``finally`` blocks raise before ours: a context
    variable's reset refused (asgiref's ThreadSensitiveContext, whose
    ``__aexit__`` resets its own first under Django's ASGI handler), or
    "Event loop is closed" (Django 6.1's handler's TaskGroup, cancelling its
    tasks on a loop since closed). Any other error on the way, an
    application's, is not the close's: what it carries is not looked into."""
    seen = 0
    context = error.__context__
    while context is not None and _of_a_close(context) and seen < 100:  # a loop made by hand
        context = context.__context__
        seen += 1
    return isinstance(context, GeneratorExit)


def _of_a_close(error: BaseException) -> bool:
    if isinstance(error, ValueError):
        return str(error).endswith("was created in a different Context")
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def reset_reported() -> None:
    """Forget which errors were logged, so the next one is logged again."""
    with _lock:
        _reported.clear()


#: switchtrace's own source files start with this.
_OURS = __file__.rsplit("tracer", 1)[0]


def raised_elsewhere(excinfo: Any) -> bool:
    """pytest's ``__tracebackhide__`` of the modules whose wrappers run the
    application's code (tracer.patches, the Django integration, the test
    clients'): their frames are left out of a failure's traceback, whose
    exception is the application's, unless switchtrace's own code raised
    it (its innermost frame is ours, but one that hides itself, a budget's
    failure, or a wrapper's: a call of the application's given arguments it
    does not take raises there): a bug of ours shows where it is."""
    try:
        tb, raised_in = excinfo.tb, None
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_locals.get("__tracebackhide__") is not True:
                raised_in = frame
            tb = tb.tb_next
        return (
            raised_in is None
            or not raised_in.f_code.co_filename.startswith(_OURS)
            or raised_in.f_globals.get("__tracebackhide__") is raised_elsewhere
        )
    except Exception:  # (pytest 7 may give None)
        return True
