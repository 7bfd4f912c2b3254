"""``switchtrace explain`` / ``manage.py switchtrace_explain``: the predicted
switches of each kind of request, their causes and fixes, and, with
``--measure``, what one real request of each kind measures through Django's
own ASGIHandler and WSGIHandler, driven in-process as a server drives them.

Bad input (the arguments, MIDDLEWARE, ROOT_URLCONF, ALLOWED_HOSTS) is an
ExplainError; a measured request that is not the view's (the project's code
raising, an error status of 400 or more, a middleware answering before the
view, a stream still going after MEASURE_SECONDS) an ApplicationError: the
two commands exit with status 2 and 1 for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.client import responses
from typing import Any, NamedTuple, TextIO, cast
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.template.response import SimpleTemplateResponse
from django.utils.encoding import repercent_broken_unicode
from django.utils.module_loading import import_string

from .. import text, tracer
from ..example import describe_error
from ..plural import count
from ..tracer import Crossing, RequestRecord
from ..tracer.describe import qualified_name
from . import components
from .predict import Cause, Prediction, own_part, predict

CASES = (("asgi", False), ("asgi", True), ("wsgi", False), ("wsgi", True))


class ExplainError(Exception):
    """Bad input: a message naming what is wrong."""

    def __str__(self) -> str:
        # (It may quote a URL pattern, a view's name, an exception's message:
        # the project's words, escapes and all.)
        return text.without_escapes(super().__str__())


class ApplicationError(ExplainError):
    """The measured request is not the view's: the project's code raised (a
    message naming the exception and where), answered 400 or more, answered
    from a middleware before the view, or had not ended after
    MEASURE_SECONDS."""

    #: True when the request could not be stopped and still runs in a thread
    #: the interpreter would wait for at exit: the command then ends the
    #: process at once (os._exit), after its output.
    left_running = False


def check_middleware(paths: Any) -> list[str]:
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise ExplainError(
            f"MIDDLEWARE must be a list of dotted paths; it is of type {type(paths).__name__}"
        )
    for path in paths:
        if not isinstance(path, str):
            raise ExplainError(
                f"MIDDLEWARE entry {text.shown(path)} is of type {type(path).__name__}; "
                "allowed: the dotted path of a middleware, as a string"
            )
        if not path.strip():
            # (Django's import error for it reads "  doesn't look like a module path".)
            raise ExplainError(
                f"MIDDLEWARE entry {path!r} is {'blank' if path else 'empty'}; allowed: the "
                "dotted path of a middleware"
            )
        try:
            import_string(path)
        except ImportError as exc:
            raise ExplainError(
                f"MIDDLEWARE entry {path!r} cannot be imported: {text.message(exc)}"
            ) from None
        except Exception as exc:  # its module raised something else on import
            raise ExplainError(
                f"MIDDLEWARE entry {path!r} cannot be imported: {describe_error(exc)}"
            ) from None
    return list(paths)


def split_url(url: str) -> tuple[str, str]:
    """(the path to resolve, percent-decoded as Django decodes it; the URL to
    request: that path with its query string) of ``url``, or an ExplainError
    if it is not a path."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        # (urlsplit drops tabs and line breaks: '/sync/\n' resolved as /sync/.)
        raise ExplainError(
            f"--url {url!r} holds a control character; allowed: a path of the project, "
            "with such characters percent-encoded (e.g. %0A)"
        )
    if not url.startswith("/") or url.startswith("//"):
        raise ExplainError(
            f"--url {url!r} is not a path; allowed: a path of the project beginning with "
            "'/', optionally with a query string, e.g. /sync/ or /search/?q=x"
        )
    try:
        # The bytes a locale that is not UTF-8 (LC_ALL=C) could not decode
        # were decoded with surrogateescape: '/café/' is '/caf\udcc3\udca9/'.
        url = url.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:  # bytes that are not UTF-8 on the command line
        raise ExplainError(
            f"--url {url!r} holds bytes that are not UTF-8; allowed: a path in UTF-8, "
            "with other bytes percent-encoded (e.g. /%FF/)"
        ) from None
    parts = urlsplit(url)
    # As Django's handlers and test client: bytes that are not UTF-8 stay
    # percent-encoded (/%FF/ resolves as "/%FF/", not as a replacement char).
    path = repercent_broken_unicode(unquote_to_bytes(parts.path)).decode()
    return path, parts.path + (f"?{parts.query}" if parts.query else "")


def load_urlconf() -> None:
    """ROOT_URLCONF (if set) imported, as a server's first request imports
    it: the receivers of the request signals that it, or a module it
    imports, connects are in the requests' figures from then on (their
    switches were left out without --url). An ExplainError if it does not
    load."""
    from django.urls import get_resolver

    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if not urlconf:
        return
    try:
        get_resolver(urlconf).url_patterns  # noqa: B018 (imports it, checks its patterns)
    except Exception as exc:  # the URLconf (or a module it imports) does not import
        raise ExplainError(
            f"ROOT_URLCONF {urlconf!r} cannot be loaded: {describe_error(exc)}"
        ) from None


class ViewKind(NamedTuple):
    is_async: bool
    name: str
    #: What makes this sync view async, where "make the view async" would
    #: not do (a DRF view: DRF calls its handlers without awaiting them).
    async_fix: str | None = None


#: The fix for a sync view of Django REST framework's.
DRF_ASYNC_FIX = (
    "make the view async on adrf (its APIView, ViewSet or api_view), if its work is async: "
    "DRF's views are synchronous"
)


def view_kind(url: str, middleware: Sequence[str] = ()) -> ViewKind:
    """(is the view async, its name, what makes it async) for ``url`` as the project's
    ``middleware`` serve it, or an ExplainError (an ApplicationError when
    the project's code raises while the URL is resolved: a path
    converter's)."""
    from asgiref.sync import iscoroutinefunction
    from django.core.exceptions import ImproperlyConfigured
    from django.http import Http404
    from django.urls import resolve
    from django.utils import translation

    path, _target = split_url(url)
    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if not urlconf:
        raise ExplainError("--url needs the settings' ROOT_URLCONF, which is not set")
    load_urlconf()
    try:
        language = _path_language(path, urlconf, middleware)
    except Exception as exc:  # the URLconf (or a module it imports) does not import
        raise ExplainError(
            f"ROOT_URLCONF {urlconf!r} cannot be loaded: {describe_error(exc)}"
        ) from None
    try:
        with translation.override(language) if language else contextlib.nullcontext():
            match = resolve(path)
    except Http404:  # Resolver404, or a path converter's own (Django answers 404)
        raise ExplainError(
            f"the URL {url!r} does not resolve to a view{_files_under(path)}; allowed: a URL "
            f"of ROOT_URLCONF {urlconf!r}"
        ) from None
    except ImproperlyConfigured as exc:  # an include()d URLconf, loaded as it is reached
        raise ExplainError(
            f"ROOT_URLCONF {urlconf!r} cannot be loaded: {describe_error(exc)}"
        ) from None
    except Exception as exc:  # the project's code (a path converter's to_python)
        raise ApplicationError(f"resolving {url!r} raised {describe_error(exc)}") from None
    func = match.func
    view_class = getattr(func, "view_class", None)
    is_async = bool(getattr(view_class, "view_is_async", False)) or iscoroutinefunction(func)
    # A class-based view or an API framework's dispatcher by the code that
    # answers GET (the --measure request), as its crossing is named.
    target = components.find_view_target(func, "GET")
    # (Not a repr: an object's, a functools.partial's, hold an address.)
    name = target.name if target is not None else qualified_name(func)
    # (A viewset's view holds its class as "cls" alone.)
    drf = _of_drf_alone(view_class or components.attribute(func, "cls"))
    return ViewKind(is_async, name, DRF_ASYNC_FIX if drf else None)


def _of_drf_alone(view_class: Any) -> bool:
    """Whether ``view_class`` is a view of DRF's (an APIView, what its
    api_view makes) and of no framework that makes DRF's views async (adrf)."""
    try:
        modules = [k.__module__ for k in type.__getattribute__(view_class, "__mro__")]
    except TypeError:  # no class
        return False
    return "rest_framework.views" in modules and not any(
        isinstance(m, str) and (m == "adrf" or m.startswith("adrf.")) for m in modules
    )


def _files_under(path: str) -> str:
    """Why ``path`` has no view when it lies under STATIC_URL or MEDIA_URL
    (a path of this site's, not another host's): those files are served
    outside the URLconf. Empty otherwise. Django puts the script prefix
    (FORCE_SCRIPT_NAME) before both when they are relative, which ``path``,
    resolved as the URLconf sees it, does not have; one written absolute
    outside that prefix (``/uploads/`` for a site at ``/shop``) is none of
    the site's URLs."""
    from django.urls import get_script_prefix

    script = get_script_prefix()
    served = {
        "STATIC_URL": "the staticfiles app's handler, WhiteNoise or the web server",
        "MEDIA_URL": "the web server",
    }
    for name, by in served.items():
        try:
            prefix = urlsplit(str(getattr(settings, name, None) or ""))
        except ValueError:  # not a URL (the settings' own check says so)
            continue
        start = prefix.path
        if start.startswith(script):
            start = "/" + start[len(script) :]
        elif script != "/":
            continue
        if prefix.netloc or start in ("", "/") or not path.startswith(start):
            continue
        return (
            f": it is under {name} {prefix.path!r}, whose files are served outside the "
            f"URLconf (by {by}), with no view for switchtrace to explain"
        )
    return ""


def _path_language(path: str, urlconf: str, middleware: Sequence[str]) -> str | None:
    """The language that LocaleMiddleware (or a subclass of it) in
    ``middleware`` activates from ``path`` before the URL is resolved, where
    the URLconf has i18n_patterns: /fr/… resolves in French (its prefix, its
    translated routes). None otherwise (the request's language is then the
    project's LANGUAGE_CODE, as --measure's request sends no cookie and no
    Accept-Language)."""
    from django.conf.urls.i18n import is_language_prefix_patterns_used
    from django.middleware.locale import LocaleMiddleware
    from django.utils import translation

    classes = (import_string(entry) for entry in middleware)
    if not any(isinstance(cls, type) and issubclass(cls, LocaleMiddleware) for cls in classes):
        return None
    if not is_language_prefix_patterns_used(urlconf)[0]:
        return None
    return translation.get_language_from_path(path)


def request_host() -> str:
    """A Host that the project's ALLOWED_HOSTS lets through, checked as
    ``HttpRequest.get_host()`` checks it (with DEBUG and an empty list Django
    allows localhost, 127.0.0.1 and [::1]; a project made by startproject
    answers any other Host, 'testserver' too, with a 400). An ExplainError
    naming ALLOWED_HOSTS if no host can pass."""
    from django.http.request import split_domain_port, validate_host

    allowed = settings.ALLOWED_HOSTS
    if not isinstance(allowed, (list, tuple)):
        raise ExplainError(
            f"ALLOWED_HOSTS must be a list of host names; it is of type {type(allowed).__name__}"
        )
    for pattern in allowed:
        if not isinstance(pattern, str):  # Django's host check would raise on it
            raise ExplainError(
                f"ALLOWED_HOSTS entry {text.shown(pattern)} is of type {type(pattern).__name__}; "
                "allowed: a host name, '.example.com' or '*', as a string"
            )
    patterns = list(allowed)
    if settings.DEBUG and not patterns:
        patterns = [".localhost", "127.0.0.1", "[::1]"]  # as get_host() does
    for pattern in patterns:
        # '*' matches any host, '.example.com' example.com and its subdomains.
        candidate = "localhost" if pattern == "*" else pattern.removeprefix(".")
        domain, _port = split_domain_port(candidate)
        if domain and validate_host(domain, patterns):
            return domain
    empty = " (DEBUG is False: an empty list allows no host)" if not patterns else ""
    raise ExplainError(
        f"--measure needs a Host the project accepts, and ALLOWED_HOSTS = {allowed!r} allows "
        f"none{empty}; allowed in ALLOWED_HOSTS: a host name (e.g. 'localhost'), "
        "'.example.com' (a domain and its subdomains) or '*'"
    )


@dataclass
class Measured:
    """One measured request: its record, and what its response was."""

    record: RequestRecord
    status: int
    reason: str
    #: What Django logged about the response (why a 403, a 400), if anything.
    logged: str | None
    #: Whether Django called the view (no middleware answered first).
    view_called: bool = True
    #: Whether the view raised (process_exception_by_middleware ran): a
    #: middleware's process_exception may still answer below 400.
    view_raised: bool = False
    #: Whether the view's exception became a response (Django's
    #: response_for_exception): it raised and no process_exception answered.
    exception_response: bool = False
    #: A TemplateResponse.
    template: bool = False
    #: A streaming response whose iterator costs switches on this server (a
    #: synchronous one under ASGI, an asynchronous one under WSGI).
    streams: bool = False
    #: False when the body was still coming after MEASURE_SECONDS.
    complete: bool = True


#: How long --measure reads a response's body (an endless stream: server-sent
#: events, a long poll) before it stops, as a client going away.
MEASURE_SECONDS = 30.0

#: How many crossings (and loop creations, thread starts) a measured request
#: keeps in detail, whatever the project's MAX_EVENTS: its causes are named
#: from them (a view's 1,100 ``sync_to_async`` calls listed as 1,998
#: switches under the default 1,000; none under 0). The most MAX_EVENTS allows.
MEASURE_MAX_EVENTS = 1_000_000


def measure(server: str, url: str, host: str) -> Measured:
    """One request through Django's own ASGIHandler or WSGIHandler, driven
    in-process as a server drives it (the body read to its end, streaming
    included, for :data:`MEASURE_SECONDS` at most, and the response closed),
    with the Host ``host`` (over https when SECURE_SSL_REDIRECT would
    redirect plain http), exporting no span. The view raising (Django
    answers 500 and logs it), or the project raising out of the handler, is
    an ApplicationError. What Django logs about it is kept, not written: the
    caller tells the request's outcome in one line."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    from ..example import asgi_request, ignore_streaming_warnings, wsgi_request
    from ..testing import record_requests
    from . import telemetry

    # Django's warning for a stream of the other kind of iterator than the
    # server's: the prediction says what it costs ("+2 when the response
    # streams from a synchronous iterator"); its line, amid the output,
    # pointed at switchtrace's code that read the body.
    ignore_streaming_warnings()

    # As a server passes them: the path percent-decoded (ASGI: as UTF-8;
    # WSGI: its bytes as ISO-8859-1), the query string apart, no fragment.
    parts = urlsplit(url)
    path = unquote_to_bytes(parts.path)
    scheme = "https" if getattr(settings, "SECURE_SSL_REDIRECT", False) else "http"
    seen = _Seen()
    complete = True
    status: int | None = None

    def in_detail(record: RequestRecord) -> None:
        # (Not a request of another thread, in a process serving others.)
        if threading.current_thread().name == _MEASURE_THREAD:
            record.max_events = MEASURE_MAX_EVENTS

    tracer.add_start_listener(in_detail)
    try:
        with record_requests() as records, _django_logs() as logged, telemetry.detached():
            try:
                if server == "asgi":
                    headers = [(b"host", host.encode("ascii"))]
                    decoded = path.decode("utf-8", "replace")
                    handler = seen.watch(ASGIHandler(), "get_response_async")
                    call = asgi_request(handler, decoded, headers, query=parts.query, scheme=scheme)
                    status, complete = _in_thread(lambda: asyncio.run(_bounded(call)), url, server)
                else:
                    decoded = path.decode("iso-8859-1")
                    environ = {"HTTP_HOST": host, "wsgi.url_scheme": scheme}
                    handler = seen.watch(WSGIHandler(), "get_response")

                    def serve() -> tuple[int | None, bool]:
                        result = wsgi_request(
                            handler, decoded, query=parts.query, seconds=MEASURE_SECONDS, **environ
                        )
                        return result.status, result.complete

                    status, complete = _in_thread(serve, url, server)
            except ApplicationError:  # left running: said as it is
                raise
            except Exception as exc:
                raise ApplicationError(
                    f"GET {url} under {server.upper()} raised {describe_error(exc)}"
                ) from None
    finally:
        tracer.remove_start_listener(in_detail)
    if not records:
        raise ApplicationError(f"GET {url} under {server.upper()} was not recorded")
    record = records[-1]
    if status is None:  # cancelled while streaming: the status went out with the headers
        status = int(record.attributes.get("http.response.status_code") or 0)
    if status >= 500:  # the view raised: Django logged it with the exception
        for entry in logged:
            raised = entry.exc_info[1] if entry.exc_info else None
            if isinstance(raised, Exception):
                raise ApplicationError(
                    f"GET {url} under {server.upper()} raised {describe_error(raised)}"
                )
    said = " ".join(logged[0].getMessage().split()) if logged else None
    response = seen.response
    streaming = bool(getattr(response, "streaming", False))
    return Measured(
        record,
        status,
        responses.get(status, "Unknown Status Code"),
        said,
        view_called=seen.view_called,
        view_raised=seen.view_raised,
        exception_response=seen.view_raised and not seen.exception_answered,
        template=isinstance(response, SimpleTemplateResponse),
        # Of the iterator kind that costs on this server (see predict).
        streams=streaming and bool(getattr(response, "is_async", False)) == (server == "wsgi"),
        complete=complete,
    )


#: The thread a measured request is served in (see :func:`_in_thread`).
_MEASURE_THREAD = "switchtrace-measure"

#: How long a measured request may take to end after MEASURE_SECONDS (an
#: ASGI one is cancelled then), before it is left running.
CANCEL_SECONDS = 5.0


async def _bounded(call: Any) -> tuple[int | None, bool]:
    """(status, complete) of an ASGI request, cancelled after MEASURE_SECONDS
    (the status then None). Told by asyncio.wait, not by a TimeoutError: one
    of the project's own, let out of the handler, is its error."""
    task = asyncio.ensure_future(call)
    done, _pending = await asyncio.wait({task}, timeout=MEASURE_SECONDS)
    if task in done:
        return task.result().status, True
    task.cancel()
    await asyncio.wait({task})
    return None, False


def _in_thread(serve: Callable[[], tuple[int | None, bool]], url: str, server: str) -> Any:
    """``serve()``, in a thread of its own, waited for MEASURE_SECONDS and
    CANCEL_SECONDS more. What no deadline of the reader stops (a stream
    Django reads whole itself, in a thread no cancellation stops: a
    synchronous one under ASGI, an asynchronous one under WSGI; a view that
    takes its time under WSGI) is left running: an ApplicationError says so,
    with ``left_running`` set, since the interpreter would wait for that
    thread at exit."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = serve()
        except BaseException as exc:  # the project's own, raised again below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=_MEASURE_THREAD, daemon=True)
    thread.start()
    thread.join(MEASURE_SECONDS + CANCEL_SECONDS)
    if thread.is_alive():
        error = ApplicationError(
            f"GET {url} under {server.upper()} had not ended after "
            f"{MEASURE_SECONDS + CANCEL_SECONDS:g} s, and cannot be stopped (a stream Django "
            "reads whole itself, a synchronous one under ASGI or an asynchronous one under "
            "WSGI, never ends under a server either if it is endless; or the view is that "
            "slow); measure a --url whose response ends"
        )
        error.left_running = True
        raise error
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class _Shown:
    """``out``, to which every line is written as :func:`text.without_escapes` shows it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, said: str) -> int:
        self.out.write(text.without_escapes(said))
        return len(said)

    def flush(self) -> None:
        self.out.flush()


class _Seen:
    """What a measured request's handler did: the response its get_response
    made, whether it called the view (every process_view let it through:
    Django makes the view atomic just before calling it), whether the view
    raised (Django hands the exception to the middleware's
    process_exception), and whether a process_exception answered it (else
    the exception becomes the response). Noted by methods set on the
    handler instance, not by a subclass: Django sends the request signals
    with the handler's class as sender, which must stay its own."""

    def __init__(self) -> None:
        self.response: Any = None
        self.view_called = False
        self.view_raised = False
        self.exception_answered = False

    def watch(self, handler: Any, get_response: str) -> Any:
        original = getattr(handler, get_response)
        make_view_atomic = handler.make_view_atomic
        process_exception = handler.process_exception_by_middleware

        def view_atomic(view: Any) -> Any:
            self.view_called = True
            return make_view_atomic(view)

        # Django bridges this one (sync_to_async under ASGI): wraps keeps it
        # named as what it stands for.
        @functools.wraps(process_exception)
        def exception_noted(exception: Any, request: Any) -> Any:
            self.view_raised = True
            response = process_exception(exception, request)
            # A process_exception's response: no exception became the
            # response (one that raises instead has its exception do so).
            self.exception_answered = response is not None
            return response

        async def noted_async(request: Any) -> Any:
            self.response = await original(request)
            return self.response

        def noted(request: Any) -> Any:
            self.response = original(request)
            return self.response

        handler.make_view_atomic = view_atomic
        handler.process_exception_by_middleware = exception_noted
        is_async = get_response == "get_response_async"
        setattr(handler, get_response, noted_async if is_async else noted)
        return handler


class _Keep(logging.Handler):
    def __init__(self, kept: list[logging.LogRecord]) -> None:
        super().__init__()
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)


#: One measurement at a time: _django_logs changes loggers for the process.
_measuring = threading.Lock()


@contextlib.contextmanager
def _django_logs() -> Iterator[list[logging.LogRecord]]:
    """The records Django logs about the requests of the block, kept instead
    of written: django.request (a raising view's traceback, 'Not Found: ...')
    and django.security with its children (a rejected Host, a CSRF failure),
    whatever the project's LOGGING did to them (disabled them, raised their
    level, filtered them). Everything about those loggers is put back after
    the block. The request runs in this thread (WSGI) or in asyncio.run()'s
    loop and its executor threads (ASGI): all of it inside the block."""
    kept: list[logging.LogRecord] = []
    keep = _Keep(kept)
    names = ["django.request", "django.security"]
    # django.security's children the project's LOGGING configured apart
    # (django.security.DisallowedHost with handlers of its own, say).
    names += [
        name
        for name, logger in list(logging.root.manager.loggerDict.items())
        if name.startswith("django.security.") and isinstance(logger, logging.Logger)
    ]
    with _measuring:
        saved = []
        for name in names:
            logger = logging.getLogger(name)
            saved.append(
                (
                    logger,
                    logger.handlers,
                    logger.propagate,
                    logger.disabled,
                    logger.level,
                    logger.filters,
                )
            )
            logger.handlers = [keep]
            logger.propagate = False
            logger.disabled = False
            logger.filters = []
            logger.setLevel(logging.WARNING)
        try:
            yield kept
        finally:
            for logger, handlers, propagate, disabled, level, filters in saved:
                logger.handlers = handlers
                logger.propagate = propagate
                logger.disabled = disabled
                logger.filters = filters
                logger.setLevel(level)


def render(
    url: str | None,
    do_measure: bool,
    out: TextIO,
    note: str = "",
    warn: Callable[[str], None] | None = None,
) -> int:
    """The prediction of each kind of request (of ``url``'s view), and with
    ``do_measure`` what one request of each measures. Everything that is bad
    input is checked before the first line is written; ``note`` goes to
    stderr then, before it, and then a warning, if any, to ``warn``
    (default: stderr, as ``switchtrace explain: warning: …``)."""
    if do_measure and url is None:
        raise ExplainError("--measure needs --url")
    out = cast(TextIO, _Shown(out))
    paths = check_middleware(settings.MIDDLEWARE)
    cases: list[tuple[str, bool]] = list(CASES)
    target = host = async_fix = None
    if url is not None:
        _path, target = split_url(url)
        is_async, name, async_fix = view_kind(url, paths)
        cases = [("asgi", is_async), ("wsgi", is_async)]
        if do_measure:
            host = request_host()
    warning = None
    if url is None:
        try:
            load_urlconf()
        except ExplainError as exc:
            # (With --url, bad input: that URL cannot be resolved.)
            warning = (
                f"{exc}; the request signals' receivers it would connect may be missing from "
                "the prediction"
            )
    if note and sys.stderr is not None:  # (closed, print would write it to stdout)
        print(note, file=sys.stderr, flush=True)
    if warning is not None:
        warning = text.without_escapes(warning)
        if warn is not None:
            warn(warning)
        elif sys.stderr is not None:
            print(f"switchtrace explain: warning: {warning}", file=sys.stderr, flush=True)
    if url is not None:
        out.write(f"{url} → {name} ({'async' if is_async else 'sync'} view)\n")
    out.write(f"MIDDLEWARE: {count(len(paths), 'entry', 'entries')}\n")
    for server, is_async in cases:
        prediction = predict(server, is_async, paths, async_view_fix=async_fix)
        _render_case(prediction, out)
        if target is not None and host is not None:
            _render_measured(server, target, host, prediction, out)
    return 0


def _render_measured(
    server: str, target: str, host: str, prediction: Prediction, out: TextIO
) -> None:
    measured = measure(server, target, host)
    record = measured.record
    figures = (
        f"{count(record.context_switches, 'switch', 'switches')}, "
        f"{count(record.thread_hops, 'hop')}, {count(record.event_loops_created, 'loop')}"
    )
    response = f"{measured.status} {measured.reason}"
    if measured.status >= 400:
        # Not the view's response: its figures are another path's (Django's
        # exception handling, a middleware answering first).
        out.write(
            f"  measured: {figures}, of a {response} response (an error response: not "
            "compared with the prediction)\n"
        )
        logged = f' (Django logged "{measured.logged}")' if measured.logged else ""
        raise ApplicationError(
            f"GET {target} under {server.upper()} answered {response}{logged}, not a response "
            "the view makes normally; measure a --url that the view answers with a status "
            "below 400"
        )
    if not measured.complete and not measured.status:  # cancelled before the headers
        out.write(
            f"  measured: {figures}, no response within {MEASURE_SECONDS:g} s (measured until "
            "then: not compared with the prediction)\n"
        )
        raise ApplicationError(
            f"GET {target} under {server.upper()} gave no response within "
            f"{MEASURE_SECONDS:g} s; measure a --url the view answers"
        )
    if not measured.complete:
        out.write(
            f"  measured: {figures}, of a {response} response not ended after "
            f"{MEASURE_SECONDS:g} s (measured until then: not compared with the prediction)\n"
        )
        raise ApplicationError(
            f"GET {target} under {server.upper()} had not ended after "
            f"{MEASURE_SECONDS:g} s; measure a --url whose response ends"
        )
    if not measured.view_called:
        out.write(
            f"  measured: {figures}, of a {response} response (a middleware answered before "
            "the view ran: not compared with the prediction)\n"
        )
        raise ApplicationError(
            f"GET {target} under {server.upper()} was answered {response} by a middleware, "
            "before the view ran; measure a --url that reaches the view"
        )
    status = "" if measured.status < 300 else f", of a {response} response"
    unmodelled = _unmodelled(record)
    # A middleware's own bridge is taken only as often as its code was
    # bridged, by name (among the crossings no modelled component made, and
    # those named as a middleware's hook), outside the view: the view's own
    # bridge of the same name is not one.
    bridged = dict(unmodelled)
    outside = dict(_unmodelled(record, outside_view=True, hooks=True))
    applicable = [
        c
        for c in prediction.conditional
        if (c.when != "bridges" or _take(outside, bridged, c))
        and (c.when != "template" or measured.template)
        and (c.when != "stream" or measured.streams)
        and (c.when != "raised" or measured.view_raised)
        # The view's exception became a response, which a middleware above
        # replaced with this one (a 403 redirected to a login page); not
        # when a process_exception answered instead.
        and (c.when != "exception" or measured.exception_response)
        and c.when != "error"  # (a status below 400 here)
        and c.when != "body"  # (a GET, without a body)
    ]
    extra = _conditionals_taken(
        prediction, record.context_switches, record.event_loops_created, applicable
    )
    # Those a middleware's own bridge listed above accounts for aside.
    unmodelled = [(name, switches) for name, switches in bridged.items() if switches]
    # With the bridge calls no prediction can see set aside, the conditional
    # causes the rest took (adrf's initial(), beside the render of its
    # Response: the 2 of the render were left unexplained).
    beside = None
    if extra is None and unmodelled:
        # The loops those bridge calls made aside too (an async_to_sync of
        # the view's own under WSGI makes one), or not (a middleware's own
        # async_to_sync whose loop Django's adapter below then ran on, not
        # making the one predicted).
        loops = _unmodelled_loops(record)
        rest = record.context_switches - sum(switches for _name, switches in unmodelled)
        beside = _conditionals_taken(
            prediction,
            rest,
            record.event_loops_created - sum(loops.get(name, 0) for name, _s in unmodelled),
            applicable,
        )
        if beside is None:
            beside = _conditionals_taken(prediction, rest, record.event_loops_created, applicable)
    if extra is None:
        verdict = "DIFFERS from the prediction"
        if beside:
            verdict += (
                f": with {sum(c.switches for c in beside)} of the conditional switches listed "
                "above, and the bridge calls below"
            )
        elif beside is not None:
            verdict += ": by the bridge calls below"
    elif extra:
        # Not named: conditional causes of the same size cannot be told apart.
        verdict = (
            f"as predicted, with {sum(c.switches for c in extra)} of the conditional "
            "switches listed above"
        )
    else:
        verdict = "as predicted"
    out.write(f"  measured: {figures}{status} ({verdict})\n")
    if record.dropped:
        # (Past MEASURE_MAX_EVENTS: the figures are exact, the names not all.)
        out.write(
            f"  ({count(record.dropped, 'event')} past the {MEASURE_MAX_EVENTS:,} a measured "
            "request keeps in detail: not named below, nor matched with the prediction's causes)\n"
        )
    if unmodelled and extra is None:
        out.write(
            "  not in the prediction, bridge calls the code makes itself (a view's, a "
            "middleware's or a package's own): "
            + ", ".join(f"{name} {switches}" for name, switches in unmodelled)
            + "\n"
        )


def _take(outside: dict[str, int], bridged: dict[str, int], cause: Cause) -> bool:
    """Whether the crossings left ``outside`` (switches by the name of the
    code bridged, made outside the view) hold one of ``cause``'s; if so it
    is taken from them and from ``bridged`` (all of them, to be listed)."""
    if outside.get(cause.bridged, 0) < cause.switches:
        return False
    outside[cause.bridged] -= cause.switches
    if cause.bridged in bridged:  # (not a middleware's hook: never listed)
        bridged[cause.bridged] -= cause.switches
    return True


def _unmodelled(
    record: RequestRecord, outside_view: bool = False, hooks: bool = False
) -> list[tuple[str, int]]:
    """(bridged code, switches) of the crossings made by code that is none of
    the Django components the prediction models (a middleware's own
    sync_to_async of a helper, as django-debug-toolbar's show_toolbar), in
    the order they were made; with ``outside_view``, only those made while
    the view was not running; with ``hooks``, a middleware's hooks too (a
    middleware's own async code bridging its process_request is named so)."""
    record.describe(components.resolve)
    switches: dict[str, int] = {}
    for crossing in record.crossings:
        if _modelled(crossing, record) and not (
            hooks and crossing.component is not None and crossing.component.kind == "middleware"
        ):
            continue
        if outside_view and components.in_view(crossing, record):
            continue
        # Named after the code bridged (its own component: a view's
        # ``aget`` bridges QuerySet.get, which the view caused).
        name = str(components.resolve.own(crossing, record))
        switches[name] = switches.get(name, 0) + record.switches_of(crossing)
    return list(switches.items())


def _unmodelled_loops(record: RequestRecord) -> dict[str, int]:
    """The event loops the crossings of :func:`_unmodelled` created, by the
    name of the code bridged."""
    loops: dict[str, int] = {}
    for crossing in record.crossings:
        if crossing.loop_created and not _modelled(crossing, record):
            name = str(components.resolve.own(crossing, record))
            loops[name] = loops.get(name, 0) + 1
    return loops


#: The signals the prediction models: Django sends them around every request
#: (got_request_exception, sent for a 500, is a conditional cause taken by
#: its name, outside the view: see predict's).
REQUEST_SIGNALS = frozenset({"request_started", "request_finished"})


def _modelled(crossing: Crossing, record: RequestRecord) -> bool:
    """Whether a component the prediction models made ``crossing``: a
    middleware, its adapters, the handler, the response, the request
    signals, and Django's adaptation of the view itself. Not another signal
    (the view's own ``asend`` of one, the receivers of ``user_logged_in``
    that ``alogin`` sends), nor what the view's code bridges (a class-based
    view's own method, a framework's ``sync_to_async(operation.run)``),
    although those are named after a signal or the view."""
    component = crossing.component
    if component is None or component.kind == "other":
        return False
    if component.kind == "signal":
        return component.name in REQUEST_SIGNALS
    if component.kind == "view":
        return components.is_adapted_view(crossing.func, record.extra.get("view"))
    return True


def _conditionals_taken(
    prediction: Prediction, switches: int, loops: int, applicable: list[Cause] | None = None
) -> list[Cause] | None:
    """The fewest of the conditional causes that may apply (``applicable``:
    those that fit what the response was; all of the prediction's by
    default) that account for the measured figures: [] when the prediction
    alone does, None when nothing does."""
    if applicable is None:
        applicable = prediction.conditional
    conditional = applicable[:_MAX_CONDITIONAL]
    for size in range(len(conditional) + 1):
        for taken in itertools.combinations(conditional, size):
            if (
                prediction.switches + sum(c.switches for c in taken),
                prediction.loops + sum(c.loops for c in taken),
            ) == (switches, loops):
                return list(taken)
    return None


#: How many conditional causes a measurement is matched against (2**n subsets).
_MAX_CONDITIONAL = 12


def _render_case(prediction: Prediction, out: TextIO) -> None:
    out.write(
        f"\n{prediction.server.upper()}, {prediction.view} view: "
        f"{count(prediction.switches, 'switch', 'switches')} ({prediction.before_headers} "
        f"before the headers), {count(prediction.hops, 'hop')}, "
        f"{count(prediction.loops, 'event loop')} created\n"
    )
    width = max((len(str(c.switches)) for c in prediction.causes), default=1)
    for cause in prediction.causes:
        out.write(f"  {cause.switches:>{width}}  {cause.what}\n")
        if cause.fix:
            out.write(f"  {'':>{width}}  → {cause.fix}{_saving(cause)}\n")
    for cause in prediction.conditional:
        out.write(f"  +{cause.switches}  {cause.what}\n")


def _saving(cause: Cause) -> str:
    """What the fix saves. For a middleware's "sync-only, or rewrite" fix,
    ``saves`` is what marking it sync-only saves (predicted again with it
    so), and rewriting it as a sync-and-async middleware saves its own
    switches. An adapter's fix and a process_view's say their savings."""
    own, saves = cause.switches, cause.saves
    if cause.adapter or cause.sync_only:  # its options say what each saves
        return ""
    if not cause.mark_or_rewrite:
        return f" (saves {saves})" if saves else ""
    # Of what marking it sync-only saves, middleware's own sync_to_async
    # calls (a middleware above it then run synchronously); rewritten, it
    # stays async, and so do they.
    of_them = own_part(cause.saves_own)
    if saves < 0:
        # Near the top of the chain: Django then adapts the handler below it
        # with async_to_sync and runs what is above it in sync_to_async.
        return (
            f" (made sync-only it costs {-saves} more here, in the adapters Django then puts "
            f"around it{own_part(cause.saves_own, cost=True)}; rewritten it saves {own})"
        )
    if saves == 0:
        return (
            " (made sync-only it saves nothing here: the adapters Django then puts around it "
            f"cost as much{f' as it saves{of_them}' if of_them else ''}; rewritten it saves {own})"
        )
    if saves > own:
        return (
            f" (made sync-only it saves {saves}{of_them}: Django then runs every sync-capable "
            f"middleware above it synchronously too; rewritten it saves {own})"
        )
    if saves < own or of_them:
        return f" (made sync-only it saves {saves}{of_them}; rewritten it saves {own})"
    return f" (saves {saves})"
