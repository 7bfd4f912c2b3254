"""Run the example project (``examples/project``) in-process: Django's real
ASGIHandler and WSGIHandler driven directly, as a server would, for each
middleware variant. Used by ``switchtrace demo``, ``switchtrace bench`` and the
tests.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import shutil
import site
import stat
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plural import count
from .text import argument
from .text import message as text_of

#: The middleware variants of the example project (SWITCHTRACE_EXAMPLE_MIDDLEWARE).
VARIANTS = ("shipped", "sync-only", "none")


class ProjectNotFound(Exception):
    def __init__(self, message: str, looked_in: list[Path] | None = None) -> None:
        super().__init__(message)
        #: Where the example project was looked for, when no --project was given.
        self.looked_in = looked_in or []


#: The --project help of demo and bench: where :func:`find_project` looks.
PROJECT_HELP = (
    "the example project (default: $SWITCHTRACE_EXAMPLE_PROJECT, else examples/project of "
    "the switchtrace checkout or of the current directory, else the copy installed with "
    "switchtrace)"
)


#: The copy of examples/project that an installed switchtrace carries (the
#: wheel maps it there: pyproject.toml's package-dir).
PACKAGED = Path(__file__).resolve().parent / "example_project"


def project_argument(value: str) -> str:
    """argparse's ``type`` of ``--project``: an empty one (``--project
    "$DIR"`` with the variable unset) is bad input, not the current
    directory nor no ``--project``, which ``explain`` silently took it for
    with DJANGO_SETTINGS_MODULE set."""
    if not value:
        raise argparse.ArgumentTypeError("'' names no directory; allowed: a directory")
    return value


#: The example's settings module, as source or sourceless (an installed
#: switchtrace compiled with ``compileall -b`` and its sources removed).
_SETTINGS = ("settings.py", "settings.pyc")


def find_project(explicit: str | os.PathLike[str] | None = None, packaged: bool = True) -> Path:
    """The example project: ``explicit``, $SWITCHTRACE_EXAMPLE_PROJECT,
    examples/project of the checkout switchtrace runs from (editable, or on
    the path) or of the current directory, or (``packaged``) the copy an installed
    switchtrace carries (:data:`PACKAGED`)."""
    candidates = []
    #: How the one place to look in was given (--project, the variable).
    given = None
    if explicit is not None:
        candidates.append(Path(explicit))
        given = f"--project {argument(explicit)}"
    elif os.environ.get("SWITCHTRACE_EXAMPLE_PROJECT"):
        candidates.append(Path(os.environ["SWITCHTRACE_EXAMPLE_PROJECT"]))
        given = f"SWITCHTRACE_EXAMPLE_PROJECT={argument(candidates[0])}"
    else:
        # A switchtrace installed from a wheel carries the example
        # (PACKAGED) and has no checkout around it: two levels up from this
        # file is then site-packages' parent, not worth looking in, nor
        # naming to the developer as a place looked in.
        if not PACKAGED.is_dir():
            checkout = Path(__file__).resolve().parents[2]
            candidates.append(checkout / "examples" / "project")
        with contextlib.suppress(OSError):  # a current directory removed meanwhile
            candidates.append(Path.cwd() / "examples" / "project")
        if packaged:
            candidates.append(PACKAGED)
    for candidate in candidates:
        # (os.path's test: Path's raises for a name too long, a directory
        # that may not be entered.)
        if any(os.path.isfile(candidate / "project" / name) for name in _SETTINGS):
            return candidate.resolve()
    if given is not None:
        # Not "pass --project PATH": it was passed, or the variable wins over it.
        found = not_a_project(candidates[0])
        allowed = "the examples/project directory of a switchtrace checkout, or a copy of it"
        if explicit is None:
            allowed += ", or the variable unset"
        raise ProjectNotFound(
            f"{given} is not the example project ({found}); allowed: {allowed}",
            None if explicit is not None else candidates,
        )
    raise ProjectNotFound(
        "cannot find the example project (examples/project with project/settings.py); "
        f"looked in: {', '.join(str(c) for c in candidates)}. Run from a switchtrace "
        "checkout, or pass --project PATH.",
        candidates,
    )


def not_a_project(path: Path) -> str:
    """Why ``path`` is not the example project, for the error line."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such directory"
    except OSError as exc:  # a name too long, a parent that may not be entered
        return f"it cannot be used: {exc.strerror or exc}"
    if not stat.S_ISDIR(mode):
        return "not a directory"
    for name in _SETTINGS:
        try:
            os.stat(path / "project" / name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            return f"its project/{name} cannot be read: {exc.strerror or exc}"
    return "it has no project/settings.py"


class SetupError(Exception):
    """Django could not be set up. ``status`` 2: the configuration is wrong
    (the settings module cannot be imported, Django rejects the settings);
    1: the project's own code raised (an AppConfig.ready())."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def setup(project: Path, settings_module: str = "project.settings") -> None:
    """Configure Django with the example project's settings (once per process);
    a DJANGO_SETTINGS_MODULE of the environment wins. SetupError if it fails."""
    if project == PACKAGED:
        # Installed, not a checkout: what the project writes goes to the
        # current directory (its traces, as the demo's last line says) or
        # to a temporary directory removed at exit (its database, only ever
        # asked SELECT 1), not into site-packages. Not an in-memory
        # database: Django never closes one, and Python 3.13 warns of each
        # connection left open (one a thread) at exit.
        if "SWITCHTRACE_EXAMPLE_TRACES" not in os.environ:
            try:
                here = Path.cwd()
            except OSError:  # removed meanwhile
                raise SetupError(
                    "the current directory no longer exists, and the installed example "
                    "project writes its traces there; allowed: run from a directory that "
                    "exists, or set SWITCHTRACE_EXAMPLE_TRACES to a file path"
                ) from None
            os.environ["SWITCHTRACE_EXAMPLE_TRACES"] = str(here / "switchtrace-traces.jsonl")
        if "SWITCHTRACE_EXAMPLE_DB" not in os.environ:
            os.environ["SWITCHTRACE_EXAMPLE_DB"] = _temporary_database()
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    from_environment = bool(os.environ.get("DJANGO_SETTINGS_MODULE"))
    if not from_environment:  # unset or empty
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ.setdefault("SWITCHTRACE_EXAMPLE_MIDDLEWARE", "shipped")
    try:
        setup_django()
    except SetupError as exc:
        if not from_environment:
            raise
        # Exported for a project of one's own, most often: the way out too.
        raise SetupError(
            f"{exc}; or unset DJANGO_SETTINGS_MODULE (set in the environment) for the example "
            "project's settings",
            exc.status,
        ) from None
    from django.conf import settings

    if not isinstance(getattr(settings, "STARTPROJECT_MIDDLEWARE", None), list):
        # A DJANGO_SETTINGS_MODULE exported for a project of one's own wins
        # over the example project's: say where the settings came from.
        where = " (DJANGO_SETTINGS_MODULE, set in the environment)" if from_environment else ""
        unset = "unset DJANGO_SETTINGS_MODULE for " if from_environment else ""
        raise SetupError(
            f"the settings {os.environ['DJANGO_SETTINGS_MODULE']}{where} have no "
            f"STARTPROJECT_MIDDLEWARE list; allowed: {unset}the example project's settings "
            "(examples/project, or a copy of it given with --project)"
        )


def _temporary_database() -> str:
    """A database file in a directory of its own, removed as the process
    exits (the servers ``bench --driver server`` starts share it, and end
    first), or ends without its exit hooks (:func:`remove_temporary`); in
    memory if no temporary directory can be made."""
    try:
        directory = tempfile.mkdtemp(prefix="switchtrace-example-")
    except OSError:
        return ":memory:"
    if not _temporary:
        atexit.register(remove_temporary)
    _temporary.append(directory)
    return os.path.join(directory, "db.sqlite3")


#: The directories of :func:`_temporary_database`.
_temporary: list[str] = []


def remove_temporary() -> None:
    """Remove what :func:`_temporary_database` made: at exit, and before the
    command line's ``os._exit`` (an interruption, a view left running),
    which runs no exit hook."""
    while _temporary:
        shutil.rmtree(_temporary.pop(), ignore_errors=True)


def require_enabled(disabled_ok: bool = False, without_spans: bool = False) -> None:
    """SetupError (exit status 2) naming the first problem, unless the
    settings as they now stand keep switchtrace enabled: served otherwise,
    the project would be measured without it (its middleware removes itself
    while disabled). ``disabled_ok``: only a wrong setting is refused, not
    switchtrace left disabled on purpose (no SWITCHTRACE, ENABLED False).
    ``without_spans``: the settings as a process that makes no spans reads
    them (OTEL_SDK_DISABLED=true, as the servers of ``bench --driver
    server``): what concerns only the export (OTEL_* variables, FILE_PATH's
    directory) is no problem, a wrong value in SWITCHTRACE still is."""
    from django.conf import settings

    from .django_app.conf import build_config, get_config

    if without_spans:
        raw = getattr(settings, "SWITCHTRACE", None)
        config = build_config(raw, {**os.environ, "OTEL_SDK_DISABLED": "true"})
    else:
        config = get_config()
    if config.problems:
        first, *others = config.problems
        more = f" (and {count(len(others), 'more problem')})" if others else ""
        raise SetupError(
            f"the settings keep switchtrace disabled: {first.msg} ({first.id}) {first.hint}{more}"
        )
    if not config.enabled and not disabled_ok:
        raise SetupError(
            "the settings keep switchtrace disabled: SWITCHTRACE['ENABLED'] is not True; "
            "allowed: the example project's settings, which enable it"
        )


def require_spans() -> None:
    """SetupError (exit status 2) if the exporter the settings ask for could
    not be made (switchtrace.E006 of the system checks: an OTEL_EXPORTER_OTLP_*
    variable the OTLP exporter refuses, an OTEL_*_LIMIT the SDK refuses): spans
    would be off, headers on."""
    from .django_app import telemetry

    failure = telemetry.failure()
    if failure is not None:
        raise SetupError(
            f"the settings keep spans off: {failure}. (switchtrace.E006) {telemetry.FAILURE_HINT}"
        )


def setup_unlogged(project: Path) -> None:
    """:func:`setup`, holding back what switchtrace logs at start-up about the
    settings (a problem that keeps it disabled, an exporter that cannot be
    made): the commands say it as their error, in one line (see
    :func:`require_enabled`, :func:`require_spans`)."""
    from .django_app.apps import discard_startup_errors

    with unlogged(*settings_messages()):
        setup(project)
    # What start-up held until the handlers are built (a server's log) is
    # said by the commands, in their own line, or is no concern of theirs.
    discard_startup_errors()


def settings_messages() -> tuple[str, ...]:
    """The beginnings of what switchtrace logs about the settings when they
    are applied (at start-up, or changed): one that keeps it disabled, an
    exporter that cannot be made, span limits that cannot be read."""
    from .exporters import EXPORTERS

    cannot_be_made = (f"switchtrace: The {name} exporter cannot be made" for name in EXPORTERS)
    limits = "switchtrace: The OpenTelemetry span limits cannot be read"
    return ("switchtrace disabled:", *cannot_be_made, limits)


@contextlib.contextmanager
def unlogged(*beginnings: str) -> Iterator[None]:
    """The messages of the ``switchtrace`` logger beginning so, held back
    (the commands say what matters to them in one line of their own)."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(beginnings)

    logger = logging.getLogger("switchtrace")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def setup_django() -> None:
    """django.setup() for the module DJANGO_SETTINGS_MODULE names, every
    failure a SetupError naming what went wrong and where (no traceback)."""
    import importlib

    name = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    what = f"DJANGO_SETTINGS_MODULE={name!r}"
    if not all(part.isidentifier() for part in name.split(".")):
        raise SetupError(
            f"{what} is not a dotted module name; allowed: the dotted name of an importable "
            "settings module, e.g. mysite.settings"
        )
    try:
        # Imported here first, so that its failures are told apart from Django's.
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise SetupError(
                f"{what}: no module named {exc.name!r} on the Python path; allowed: the dotted "
                "name of an importable settings module (add its directory with --project or "
                "PYTHONPATH)"
            ) from None
        raise SetupError(f"{what} cannot be imported: {describe_error(exc)}") from None
    except SystemExit as exc:  # a settings module refusing its environment
        if exc.code is None or isinstance(exc.code, int):
            said = f"it called sys.exit({'' if exc.code is None else exc.code})"
        else:
            said = " ".join(str(exc.code).split())
        raise SetupError(f"{what} cannot be imported: {said}") from None
    except Exception as exc:
        raise SetupError(f"{what} cannot be imported: {describe_error(exc)}") from None
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.log import configure_logging

    try:
        # Loading them checks some of their values (TIME_ZONE's a ValueError).
        settings.INSTALLED_APPS  # noqa: B018
    except Exception as exc:
        raise SetupError(f"Django rejects the settings of {what}: {describe_error(exc)}") from None
    try:
        django.setup()
    except (ImproperlyConfigured, ImportError, SyntaxError) as exc:
        raise SetupError(f"Django rejects the settings of {what}: {describe_error(exc)}") from None
    except Exception as exc:
        raised: BaseException = exc
        if _raised_through(exc, configure_logging.__code__):
            raised = exc.__cause__ or exc  # dictConfig's "Unable to configure handler 'file'"
            if not _in_own_code(raised):
                # The project's LOGGING refused (a FileHandler's missing
                # directory): what and why, not where in logging it failed.
                said = _named(exc) if raised is exc else f"{_named(exc)}, from {_named(raised)}"
                raise SetupError(f"Django rejects the LOGGING setting of {what}: {said}") from None
        # An app's ready(), or a LOGGING_CONFIG or handler of the project's, raising.
        raise SetupError(
            f"django.setup() raised with {what}: {describe_error(raised)}", status=1
        ) from None


def _in_own_code(exc: BaseException) -> bool:
    """Whether ``exc`` was raised through the project's own code (see
    :func:`describe_error`)."""
    return any(own for *_, own in _source_frames(exc))


def _raised_through(exc: BaseException, code: types.CodeType) -> bool:
    """Whether ``exc`` was raised through a frame running ``code``."""
    return any(frame.f_code is code for frame, _ in traceback.walk_tb(exc.__traceback__))


def _source_frames(exc: BaseException) -> list[tuple[str, int, str, bool]]:
    """The frames of real source ``exc`` was raised through (importlib's
    frozen ones skipped), outermost first: file, line, function, and whether
    it is the project's own code (not installed: see :func:`_installed_code`)."""
    installed = _installed_code()
    return [
        (
            frame.f_code.co_filename,
            line,
            frame.f_code.co_name,
            not os.path.realpath(frame.f_code.co_filename).startswith(installed),
        )
        for frame, line in traceback.walk_tb(exc.__traceback__)
        if not frame.f_code.co_filename.startswith("<")
    ]


def _installed_code() -> tuple[str, ...]:
    """Where code that is not the project's lives: the standard library,
    site-packages, and switchtrace."""
    paths = sysconfig.get_paths()
    roots = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages())
    roots.add(str(Path(__file__).resolve().parent))
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots)


def _named(exc: BaseException) -> str:
    """The exception's class and message, on one line."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    message = " ".join(text_of(exc).split())  # one line, whatever the message holds
    return f"{name}: {message}" if message else name


def describe_error(exc: BaseException) -> str:
    """One line: the exception's class and message, and where it was raised:
    the innermost frame of the project's own code, where the developer would
    look (a view calling Django's ``get()``, not Django's line that raised
    DoesNotExist), else the innermost of real source (importlib's frozen
    frames are skipped)."""
    text = _named(exc)
    if isinstance(exc, SyntaxError):  # its message names the file and line
        return text
    frames = _source_frames(exc)
    if not frames:
        return text
    # The innermost of the project's own, else the innermost.
    filename, line, function, _ = ([frame for frame in frames if frame[3]] or frames)[-1]
    try:
        relative = os.path.relpath(filename)
    except (ValueError, OSError):  # another drive; a current directory removed meanwhile
        relative = filename
    if not relative.startswith(".."):
        filename = relative
    inside = "" if function == "<module>" else f", in {function}"
    return f"{text} ({filename}, line {line}{inside})"


@contextlib.contextmanager
def handlers(
    variant: str = "shipped", switchtrace_middleware: bool = True, **settings: Any
) -> Iterator[tuple[Any, Any]]:
    """(ASGIHandler, WSGIHandler) for one middleware variant: the seven
    ``startproject`` middleware as shipped, made sync-only, or none."""
    from django.conf import settings as django_settings
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings
    from django.utils.deprecation import MiddlewareMixin

    from .django_app.conf import MIDDLEWARE_PATH

    if variant not in VARIANTS:
        raise ValueError(f"unknown middleware variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    startproject = list(django_settings.STARTPROJECT_MIDDLEWARE)
    middleware = [] if variant == "none" else startproject
    if switchtrace_middleware:
        middleware = [MIDDLEWARE_PATH, *middleware]
    settings.setdefault("MIDDLEWARE", middleware)
    saved = MiddlewareMixin.async_capable
    MiddlewareMixin.async_capable = variant != "sync-only"
    try:
        with override_settings(**settings):
            yield ASGIHandler(), WSGIHandler()
    finally:
        MiddlewareMixin.async_capable = saved


#: The beginning of Django's warning for a streaming response of the other
#: kind of iterator than its server's, which the example project's /stream/
#: and /async-stream/ serve on purpose under the other server.
STREAMING_WARNING = "StreamingHttpResponse must consume"


def ignore_streaming_warnings() -> None:
    """demo and bench serve those endpoints under both servers: the warning
    says nothing the tables do not."""
    import warnings

    warnings.filterwarnings("ignore", message=STREAMING_WARNING)


class ErrorResponse(SetupError):
    """A measured request was answered with an error status (400 or more, a
    404 of an endpoint the project does not serve): its figures are those of
    Django's error path, not the endpoint's. Exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=1)


#: What the project's code raised in the requests of :func:`answering`'s
#: block (Django's got_request_exception: the uncaught exceptions that it
#: turns into a 500 response), by request (the id of its ASGI scope or WSGI
#: environ, which Django's request keeps: Result.key), None outside one.
_raised: dict[int, BaseException] | None = None
_raised_lock = threading.Lock()


def _note_raised(sender: Any, request: Any = None, **kwargs: Any) -> None:
    raised = _raised
    exc = sys.exc_info()[1]  # sent from the except block of Django's handler
    source = getattr(request, "scope", None) or getattr(request, "environ", None)
    if raised is not None and exc is not None and source is not None:
        with _raised_lock:
            raised.setdefault(id(source), exc)


@contextlib.contextmanager
def answering() -> Iterator[None]:
    """A block whose requests go through :func:`answered`: the exceptions
    that the project's code raises while they are served are noted."""
    from django.core.signals import got_request_exception

    global _raised
    _raised = {}
    got_request_exception.connect(_note_raised, dispatch_uid="switchtrace.example")
    try:
        yield
    finally:
        got_request_exception.disconnect(dispatch_uid="switchtrace.example")
        _raised = None


def answered(result: Result, server: str, endpoint: str, variant: str) -> Result:
    """``result``, unless the request was answered with an error status: the
    exception the project's code raised in that request (whose traceback
    names the project's own line), else :class:`ErrorResponse`. The
    benchmark and the demo must not measure an error response as the
    endpoint's (in an :func:`answering` block)."""
    raised = _raised
    exc = None
    if raised is not None:
        with _raised_lock:
            # Taken whatever the status (a middleware may have answered a
            # 200 for it): the key, an object's id, may be another's later.
            exc = raised.pop(result.key, None)
    if result.status < 400:
        return result
    if exc is not None:
        raise exc
    from http import HTTPStatus

    try:
        reason = f" {HTTPStatus(result.status).phrase}"
    except ValueError:
        reason = ""
    raise ErrorResponse(
        f"GET {endpoint} under {server.upper()} ({variant} middleware) answered "
        f"{result.status}{reason}: the figures of an error response are not the endpoint's; "
        "allowed: endpoints the project answers with a status below 400"
    )


_server_loop: asyncio.AbstractEventLoop | None = None


def run_in_server_loop(coroutine: Any) -> Any:
    """Run ``coroutine`` in one event loop that lives on between calls, as an
    ASGI server's does (asgiref before 3.9 keeps the loop an adapter first
    saw, so a new loop per request would make it create loops that a server
    never would)."""
    global _server_loop
    if _server_loop is None or _server_loop.is_closed():
        _server_loop = asyncio.new_event_loop()
    return _server_loop.run_until_complete(coroutine)


def close_server_loop() -> None:
    """Close the loop of :func:`run_in_server_loop`, once the command is
    done with it (left open, it was a ResourceWarning at exit: an error
    under ``-W error``)."""
    global _server_loop
    loop, _server_loop = _server_loop, None
    if loop is not None and not loop.is_closed() and not loop.is_running():
        loop.close()


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    #: False when the body was still coming when the reader stopped (see
    #: wsgi_request's ``seconds``).
    complete: bool = True
    #: ``time.perf_counter()`` just before the handler was called (the
    #: request built: a server's parsing, not the application's work).
    called_at: float | None = None
    #: The id of the request's ASGI scope or WSGI environ (see answered).
    key: int = 0
    #: ``time.perf_counter()`` when the client had the whole response: the
    #: last body message sent (ASGI), the body read (WSGI), before Django
    #: closes the response (``request_finished``, switchtrace's record
    #: handed over).
    received_at: float | None = None

    def figures(self) -> tuple[int, int, int, int] | None:
        if "X-Context-Switches" not in self.headers:
            return None
        return (
            int(self.headers["X-Context-Switches"]),
            int(self.headers["X-Thread-Hops"]),
            int(self.headers["X-Event-Loops"]),
            int(self.headers["X-Threads-Started"]),
        )


def http_scope(
    path: str,
    query: str = "",
    headers: list[Any] | None = None,
    scheme: str = "http",
    method: str = "GET",
) -> dict[str, Any]:
    """The scope of an HTTP request as an ASGI server gives it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers or [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def asgi_request(
    handler: Any,
    path: str,
    headers: list[Any] | None = None,
    query: str | None = None,
    scheme: str = "http",
    method: str = "GET",
    body: list[bytes] | None = None,
) -> Result:
    """One request (a GET unless ``method`` says) through an ASGI application,
    as an ASGI server sends it, its ``body`` in one ``http.request`` message
    for each part (by default one empty message). ``path`` may end with the query
    string, unless ``query`` gives it (then ``path`` is taken whole: a decoded
    path may hold a '?')."""
    if query is None:
        path, _, query = path.partition("?")
    scope = http_scope(path, query, headers, scheme, method)
    sent: list[dict[str, Any]] = []
    if not body:
        pending = [{"type": "http.request", "body": b"", "more_body": False}]
    else:
        pending = [
            {"type": "http.request", "body": part, "more_body": n < len(body) - 1}
            for n, part in enumerate(body)
        ]
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await never.wait()
        return {"type": "http.disconnect"}

    received_at = None

    async def send(message: dict[str, Any]) -> None:
        nonlocal received_at
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            received_at = time.perf_counter()

    called_at = time.perf_counter()
    await handler(scope, receive, send)
    start = sent[0]
    return Result(
        start["status"],
        {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
        called_at=called_at,
        key=id(scope),
        received_at=received_at,
    )


def wsgi_request(
    handler: Any, path: str, query: str | None = None, seconds: float | None = None, **environ: Any
) -> Result:
    """One GET through a WSGI application, iterated and closed as a server
    does. ``path`` (PATH_INFO) may end with the query string, unless
    ``query`` gives it. With ``seconds``, the body is read for that long at
    most (an endless stream), then closed as a client going away."""
    from django.test.client import RequestFactory

    if query is None:
        path, _, query = path.partition("?")
    env = RequestFactory()._base_environ(
        PATH_INFO=path, REQUEST_METHOD="GET", QUERY_STRING=query, **environ
    )
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    called_at = time.perf_counter()
    response = handler(env, start_response)
    complete = True
    parts = []
    try:
        if seconds is None:
            parts.extend(response)
        else:
            deadline = time.monotonic() + seconds
            for part in response:
                parts.append(part)
                if time.monotonic() > deadline:
                    complete = False
                    break
        received_at = time.perf_counter() if complete else None
    finally:
        response.close()
    return Result(
        captured["status"],
        captured["headers"],
        b"".join(parts),
        complete,
        called_at=called_at,
        key=id(env),
        received_at=received_at,
    )
