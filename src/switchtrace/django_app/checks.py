"""System checks. Static and cheap: they read settings and never run a request.

| id | level | what |
|---|---|---|
| switchtrace.E001 | error | ``SWITCHTRACE`` is not a dict |
| switchtrace.E002 | error | an unknown key in ``SWITCHTRACE`` |
| switchtrace.E003 | error | a key with a value of the wrong type or range |
| switchtrace.E004 | error | ``SHOW_HEADERS`` is a dotted path that does not import |
| switchtrace.E005 | error | ``SHOW_HEADERS`` is an async callable |
| switchtrace.E006 | error | an OTLP endpoint (setting or OTEL_* variable) that is not a URL, an
  unsupported ``OTEL_EXPORTER_OTLP_PROTOCOL``, an ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` (else
  ``OTEL_EXPORTER_OTLP_TIMEOUT``) that is not a positive number of seconds up to 1e9, a header of
  ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (else ``..._HEADERS``) the transport cannot send, or
  another OTEL_* variable the OTLP exporter refuses, or an OTEL_*_LIMIT the SDK's span limits
  refuse (those two leave the headers on) |
| switchtrace.E007 | error | (enabled) a ``MIDDLEWARE`` entry that cannot be imported, or a
  ``MIDDLEWARE`` that is no list of them (one dotted path, a number) |
| switchtrace.E008 | error | (enabled) the file exporter's ``FILE_PATH`` cannot be written |
| switchtrace.E009 | error | (enabled, spans made by switchtrace's own provider,
  ``SAMPLE_RATE`` unset) an ``OTEL_TRACES_SAMPLER`` neither the SDK nor an installed package
  provides, or an ``OTEL_TRACES_SAMPLER_ARG`` of a ratio sampler that is not from 0 to 1 |
| switchtrace.E010 | error | (enabled, ``EXPORTER`` unset, no application's provider) an
  ``OTEL_TRACES_EXPORTER`` other than ``otlp`` (``otlp_proto_grpc``, ``otlp_proto_http``),
  ``console`` and ``none``, or naming more than one |
| switchtrace.E011 | error | ``INSTALLED_APPS`` names ``"switchtrace"`` (see switchtrace/apps.py) |
| switchtrace.E012 | error | (enabled, spans made) an ``OTEL_PYTHON_DJANGO_EXCLUDED_URLS`` (else
  ``OTEL_PYTHON_EXCLUDED_URLS``) that is not a list of regular expressions |
| switchtrace.E013 | error | (enabled, spans made) an ``OTEL_PROPAGATORS`` naming a propagator no
  installed package provides, or one that raises as it loads (OpenTelemetry's propagate module
  fails to import) |
| switchtrace.E014 | error | (enabled, or settings with problems not turned off) the app's
  config class, a SwitchTraceConfig subclass, does not call its ready() (registered in
  apps.py: this module's checks are not) |
| switchtrace.W001 | warning | enabled, but the middleware is not in ``MIDDLEWARE`` |
| switchtrace.W002 | warning | enabled, the middleware in ``MIDDLEWARE`` but not first (but
  for opentelemetry-instrumentation-django's) |
| switchtrace.W003 | warning | (enabled) a middleware that adds avoidable switches under ASGI |
| switchtrace.W004 | warning | (``check --deploy``) enabled with headers shown to every client |
| switchtrace.W005 | warning | enabled, headers shown to ``INTERNAL_IPS`` only, and it is empty |
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from ..text import message as text_of
from ..text import raised, shown
from .conf import MIDDLEWARE_PATH, build_config, get_config

#: What opentelemetry-instrumentation-django inserts at the top of MIDDLEWARE
#: when it instruments Django, above switchtrace's where the settings put
#: that first: its middleware, whose server span becomes the request span
#: (see middleware.py), and its SQL commenter. Neither answers a request.
INSTRUMENTATION_MIDDLEWARE = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware",
    "opentelemetry.instrumentation.django.middleware.sqlcommenter_middleware.SqlCommenter",
)


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from .apps import discard_startup_errors

    # What start-up held back is said here instead (unless silenced).
    discard_startup_errors(getattr(settings, "SILENCED_SYSTEM_CHECKS", ()))
    config = build_config(getattr(settings, "SWITCHTRACE", None))
    messages: list[Any] = [
        Error(problem.msg, hint=problem.hint, id=problem.id) for problem in config.problems
    ]
    if not config.enabled:
        return messages
    from . import telemetry

    failure = telemetry.failure()
    if failure is not None:
        messages.append(
            Error(
                failure + ".",
                hint=telemetry.FAILURE_HINT,
                id="switchtrace.E006",
            )
        )
    middleware = _middleware()
    if middleware is None:
        messages.append(
            Error(
                "MIDDLEWARE must be a list of dotted paths; it is of type "
                f"{type(settings.MIDDLEWARE).__name__}: {shown(settings.MIDDLEWARE)}.",
                hint=f"For example: MIDDLEWARE = [{MIDDLEWARE_PATH!r}, ...].",
                id="switchtrace.E007",
            )
        )
    elif (ours := _our_position(middleware)) is None:
        messages.append(
            Warning(
                "switchtrace is enabled but its middleware is not in MIDDLEWARE, so no "
                "response carries the X-Context-Switches headers.",
                hint=f"Add {MIDDLEWARE_PATH!r} first in MIDDLEWARE.",
                id="switchtrace.W001",
            )
        )
    elif any(path not in INSTRUMENTATION_MIDDLEWARE for path in middleware[:ours]):
        messages.append(
            Warning(
                "SwitchTraceMiddleware is not first in MIDDLEWARE: a response that a "
                "middleware above it makes itself (a redirect) gets no headers, and one "
                "that a cache above it serves gets them only if the request that stored "
                "it was shown them, whatever SHOW_HEADERS says of this request.",
                # (A subclass of the middleware by its own path.)
                hint=f"Move {middleware[ours]!r} to the top of MIDDLEWARE.",
                id="switchtrace.W002",
            )
        )
    return messages


def _our_position(middleware: list[Any]) -> int | None:
    """Where SwitchTraceMiddleware, or a subclass of it (a project's own,
    named by its own path), is in ``middleware``; None if it is not."""
    from .middleware import SwitchTraceMiddleware

    for index, path in enumerate(middleware):
        if path == MIDDLEWARE_PATH:
            return index
        if not isinstance(path, str):
            continue
        try:
            entry = import_string(path)
        except Exception:  # check_middleware_switches says it: E007
            continue
        if isinstance(entry, type) and issubclass(entry, SwitchTraceMiddleware):
            return index
    return None


def _middleware() -> list[Any] | None:
    """MIDDLEWARE as a list (unset or empty: none), or None if it is not a
    list of dotted paths Django can load: one dotted path (a tuple's comma
    forgotten), whose characters the checks took for as many entries, or
    nothing to iterate over (a number), which raised out of the checks.
    check_settings says so, once, as switchtrace.E007."""
    middleware = getattr(settings, "MIDDLEWARE", None)
    if isinstance(middleware, str) and middleware:
        return None
    try:
        return list(middleware or [])
    except Exception:  # not iterable, or its __bool__ or __iter__ raises
        return None


@register()
def check_middleware_switches(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Ticket #37177's pattern: async_capable middleware with synchronous hooks.
    Only while switchtrace is enabled: installed and turned off (production
    settings), it keeps quiet."""
    from asgiref.sync import iscoroutinefunction

    from .predict import HOOKS, middleware_modes, runs_hooks_in_sync_to_async

    messages: list[Any] = []
    if not get_config().enabled:
        return messages
    entries: list[tuple[str, Any]] = []
    middleware = _middleware()
    if middleware is None:  # check_settings says it
        return messages
    for path in middleware:
        try:
            entries.append((path, import_string(path)))
        except Exception as exc:  # its module may raise anything on import
            reason = text_of(exc) if isinstance(exc, ImportError) else raised(exc)
            messages.append(
                Error(
                    f"MIDDLEWARE entry {shown(path)} cannot be imported: {reason}.",
                    hint="Fix the dotted path; Django will not start with it.",
                    id="switchtrace.E007",
                )
            )
    # Which run in async mode under ASGI: a synchronous-only middleware
    # (WhiteNoise's) makes those above it run synchronously, their hooks
    # then costing nothing. With an entry missing, Django does not start.
    if len(entries) == len(middleware):
        modes, _top = middleware_modes([cls for _path, cls in entries], is_async=True)
        runs_async = [mode for mode, _adapter in modes]
    else:
        runs_async = [True] * len(entries)
    for (path, cls), in_async_mode in zip(entries, runs_async, strict=True):
        if not isinstance(cls, type):
            continue
        view_hook = getattr(cls, "process_view", None)
        view_is_sync = view_hook is not None and not iscoroutinefunction(view_hook)
        hooks = []
        if (
            in_async_mode
            and runs_hooks_in_sync_to_async(cls)
            and getattr(cls, "async_capable", False)
        ):
            hooks = [
                h for h in HOOKS if hasattr(cls, h) and not iscoroutinefunction(getattr(cls, h))
            ]
        name = cls.__name__
        if hooks:
            also = (
                " Its process_view is synchronous too: 2 more for each request that reaches "
                "a view, which only an async process_view saves."
                if view_is_sync
                else ""
            )
            message = (
                f"{name} is async_capable but its {' and '.join(hooks)} "
                f"{'is' if len(hooks) == 1 else 'are'} synchronous: under ASGI each request "
                f"crosses the sync/async boundary {2 * len(hooks)} more times for it "
                f"(Django ticket #37177).{also}"
            )
            hint = (
                f"Use a subclass of {name} with async_capable = False, or rewrite it as a "
                "sync-and-async middleware (an async __call__ for an async get_response: "
                "MiddlewareMixin runs every hook in sync_to_async, and an async hook fails "
                "there); 'switchtrace explain' shows what each change saves."
            )
        elif view_is_sync:
            # Adapted to the handler's mode whatever async_capable says.
            message = (
                f"{name}'s process_view is synchronous: under ASGI each request that reaches "
                "a view crosses the sync/async boundary 2 more times for it."
            )
            hint = f"Give {name} an async process_view; 'switchtrace explain' shows what it saves"
            if getattr(cls, "async_capable", False) and getattr(cls, "sync_capable", True):
                # Innermost, the whole chain then turns synchronous.
                hint += f", and whether marking {name} sync-only (async_capable = False) saves more"
            hint += "."
        else:
            continue
        messages.append(Warning(message, hint=hint, obj=path, id="switchtrace.W003"))
    return messages


@register(Tags.security, deploy=True)
def check_headers_in_production(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    config = get_config()
    if config.enabled and config.show_headers is True:
        return [
            Warning(
                "switchtrace is enabled with SHOW_HEADERS = True: every client gets "
                "X-Context-Switches, X-Thread-Hops, X-Event-Loops, X-Threads-Started and "
                "Server-Timing on every response, which tell how the site is built.",
                hint="switchtrace is meant for staging. In production set "
                "SWITCHTRACE['SHOW_HEADERS'] to a callable that lets only your own people "
                "see them (e.g. 'switchtrace.django_app.headers.internal_ips', the "
                "addresses in INTERNAL_IPS), or False, or disable switchtrace.",
                id="switchtrace.W004",
            )
        ]
    return []


def _no_address(addresses: Any) -> bool:
    """Whether ``addresses`` (INTERNAL_IPS) is empty: not the allow-all idiom,
    an empty list whose ``__contains__`` says yes to every address."""
    try:
        return not addresses and "127.0.0.1" not in addresses
    except Exception:  # (not the checks' to raise)
        return False


@register()
def check_internal_ips(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from .headers import internal_ips

    config = get_config()
    if (
        config.enabled
        and config.show_headers is internal_ips
        and _no_address(settings.INTERNAL_IPS)
    ):
        return [
            Warning(
                "SWITCHTRACE['SHOW_HEADERS'] shows the headers to the addresses in "
                "INTERNAL_IPS, and INTERNAL_IPS is empty: no response gets them.",
                hint="Add the addresses that may see them to INTERNAL_IPS, e.g. "
                "INTERNAL_IPS = ['127.0.0.1'].",
                id="switchtrace.W005",
            )
        ]
    return []
