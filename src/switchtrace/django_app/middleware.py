"""SwitchTraceMiddleware: puts the request's figures on its response.

Both sync- and async-capable, so Django never adapts it: it runs in whichever
mode the chain is in at its place and adds no switch of its own. The figures
it writes count everything done for the request so far, including what lies
outside its reach (the ``request_started`` signal, the outer adaptation of the
middleware chain), and the return trip of every bridge call still in
progress around it. The handler integration writes them once more at the
moment the headers are sent, so anything between here and there counts too:
under a server, in the headers Django sends, whatever other requests that
returned the same response object wrote on it (see integration.py).

A server span that a middleware above this one started
(opentelemetry-instrumentation-django's) becomes the request span, and gets
the figures written here: it ends before the headers are sent.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import apps
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed

from .. import text, tracer
from ..tracer.guard import logger, raised_elsewhere, swallow
from . import integration, telemetry
from .apps import readied, release_startup_errors
from .conf import Config, get_config
from .headers import stamp, unstamp

#: pytest leaves this module's frames out of a failure's traceback (see
#: tracer.guard.raised_elsewhere): the middleware runs the project's code.
__tracebackhide__ = raised_elsewhere

#: The ERROR of a middleware without its app has been logged.
_missing_app_told = False
#: The ERROR of an app whose ready() did not run has been logged.
_not_ready_told = False


def _missing_app_message() -> str:
    """What a server logs when 'switchtrace.django_app' is not installed:
    switchtrace.E011 when ``"switchtrace"`` stands in its place (adding the
    app beside that entry would stop Django: two apps labelled
    switchtrace), else that the app is missing."""
    from ..apps import check_app_name

    for error in check_app_name():
        return f"switchtrace disabled: {error.msg} ({error.id}) {error.hint}"
    return (
        "switchtrace disabled: SwitchTraceMiddleware is in MIDDLEWARE but "
        "'switchtrace.django_app' is not in INSTALLED_APPS, so nothing is recorded "
        "and no response carries the headers. Add 'switchtrace.django_app' to "
        "INSTALLED_APPS."
    )


APP = "switchtrace.django_app"


def _not_ready_message() -> str:
    """What a server logs when the app is installed but its ready() never
    ran: a project's subclass of SwitchTraceConfig whose ready() does not
    call ``super().ready()`` (nothing patched, no check registered)."""
    installed = next((c for c in apps.get_app_configs() if c.name == APP), None)
    name = f"{type(installed).__module__}.{type(installed).__qualname__}"
    return (
        f"switchtrace disabled: INSTALLED_APPS has {name}, whose ready() does not call "
        "SwitchTraceConfig.ready(), so nothing is recorded and no response carries the "
        "headers. Call super().ready() in its ready()."
    )


def _app_installed() -> bool:
    """Whether ``switchtrace.django_app`` is installed. Django's
    ``apps.is_installed()`` tells only of the apps that a TransactionTestCase's
    ``available_apps`` leaves, during its tests: then the app is installed if
    its ready() ran for an entry INSTALLED_APPS still lists."""
    if apps.is_installed(APP):
        return True
    listed = getattr(settings, "INSTALLED_APPS", ())
    return any(entry in readied for entry in listed if isinstance(entry, str))


def _not_turned_off() -> bool:
    """Whether the SWITCHTRACE setting, which has problems (that keep
    switchtrace disabled), does not say ``"ENABLED": False`` either."""
    raw = getattr(settings, "SWITCHTRACE", None)
    return not (isinstance(raw, Mapping) and raw.get("ENABLED") is False)


class SwitchTraceMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        # Django's handler is being built: the project is served (no system
        # checks run in a server), so what start-up held about the settings
        # is logged now.
        release_startup_errors()
        config = get_config()
        if not config.enabled and not (config.problems and _not_turned_off()):
            raise MiddlewareNotUsed("SWITCHTRACE['ENABLED'] is not True")
        if not _app_installed():
            # Its AppConfig.ready() installs the patches and registers the
            # system checks: without it nothing is recorded, and nothing
            # else would say so (nor would anything say what is wrong with
            # the settings: its checks say that). Once: Django builds a
            # handler for each test client too.
            global _missing_app_told
            if not _missing_app_told:
                _missing_app_told = True
                logger.error(_missing_app_message())
            raise MiddlewareNotUsed("'switchtrace.django_app' is not in INSTALLED_APPS")
        if not readied and apps.ready:
            # (Not while the apps are still being readied: a handler built in
            # another app's ready(), a warm-up request, before this one's.)
            global _not_ready_told
            if not _not_ready_told:
                _not_ready_told = True
                logger.error(_not_ready_message())
            raise MiddlewareNotUsed("switchtrace.django_app's ready() did not run")
        if not config.enabled:  # the settings' problems, which the app logged
            raise MiddlewareNotUsed("SWITCHTRACE has problems (see switchtrace's checks)")
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        if self.async_mode:
            return self.__acall__(request)
        _capture()
        response = self.get_response(request)
        _stamp(request, response)
        return response

    async def __acall__(self, request: Any) -> Any:
        __traceback_hide__ = True  # (Django's debug page, Sentry)
        get_response: Callable[[Any], Awaitable[Any]] = self.get_response
        _capture()
        response = await get_response(request)
        _stamp(request, response)
        return response


def _capture() -> None:
    """The application's server span, when a middleware above this one
    started it (opentelemetry-instrumentation-django's, first in MIDDLEWARE):
    the request's switch spans go under it, as under one that was already
    active when the handler received the request. Not in a sub-request: a
    server span current there is the sub-request's (started by that
    middleware in the handler serving it, where none was current: served
    above the request's own)."""
    record = tracer.current_record()
    if record is None or record.finished or "otel.server_span" in record.extra:
        return
    if integration.serving_a_sub_request():
        return
    try:
        pipeline = telemetry.pipeline()
        if pipeline is not None:
            pipeline.capture(record)
    except Exception:
        swallow("SwitchTraceMiddleware")


def _stamp(request: Any, response: Any) -> None:
    record = tracer.current_record()
    if record is None or record.finished:
        return
    try:
        figures = record.figures(tracer.current_crossing())
        shown = _show(request)
        # A sub-request's response is one no server sends: the request's
        # decision, kept for the headers it is sent, and its server span are
        # its own.
        sub_request = integration.serving_a_sub_request()
        if integration.SHOWN in record.extra:
            # Served by a server: another request may be reading this
            # response's headers, in another thread or task (one object
            # returned by both).
            if sub_request:
                integration.show_to_a_sub_request(response, figures, shown)
            else:
                integration.show(record, response, figures, shown)
        elif shown:
            stamp(response, figures)
        else:
            unstamp(response)
        if sub_request:
            return
        # A server span started by a middleware above this one ends before
        # the headers are sent: its figures are those of this moment.
        if "otel.server_span" in record.extra and (pipeline := telemetry.pipeline()):
            pipeline.at_headers(record, figures)
    except Exception:
        swallow("SwitchTraceMiddleware")


def _show(request: Any) -> bool:
    config = get_config()
    show = config.show_headers
    if show is True or show is False:
        return show
    # The project's own callable: what goes wrong in it is its error, not
    # switchtrace's, and is said so; its request gets no headers.
    try:
        shown = show(request)
    except Exception as exc:
        _refused(config, f"raised {text.raised(exc)}", type(exc), exc)
        return False
    if not inspect.isawaitable(shown):
        try:
            return bool(shown)
        except Exception as exc:  # its result has no truth value (a numpy array)
            what = f"returned {text.shown(shown)}, whose truth value raised {type(exc).__name__}"
            _refused(config, f"{what}: {text.message(exc)}; allowed: True or False", type(exc), exc)
            return False
    # The checks turn async callables away; a plain one returning an
    # awaitable would otherwise show the headers to everyone.
    if inspect.iscoroutine(shown):
        shown.close()
    # Logged once whatever its type (a coroutine, a Future, an object of
    # the project's), as each exception class is.
    _refused(config, "returned an awaitable; allowed: True or False", Awaitable, None)
    return False


#: The configuration whose SHOW_HEADERS callable failed, and the kinds of its
#: failures already logged: each is logged once per configuration.
_refused_before: tuple[Config | None, set[type]] = (None, set())


def _refused(config: Config, what: str, kind: type, exc: BaseException | None) -> None:
    global _refused_before
    logged_for, kinds = _refused_before
    if logged_for is not config:
        kinds = set()
        _refused_before = (config, kinds)
    if kind in kinds:
        return
    kinds.add(kind)
    show = config.show_headers
    try:
        name = f"{show.__module__}.{show.__qualname__}"  # type: ignore[union-attr]
    except Exception:  # an object whose __call__ is the callable
        name = text.shown(show)
    logger.error(
        "switchtrace: SWITCHTRACE['SHOW_HEADERS'] (%s) %s; the request gets no headers "
        "(logged once)",
        name,
        what,
        exc_info=exc,
    )
