"""System checks. Static and cheap: they read settings and never run a request.

| id | level | what |
|---|---|---|
| switchtrace.E001 | error | ``SWITCHTRACE`` is not a dict |
| switchtrace.E002 | error | an unknown key in ``SWITCHTRACE`` |
| switchtrace.E003 | error | a key with a value of the wrong type or range |
| switchtrace.E004 | error | ``SHOW_HEADERS`` is a dotted path that does not import |
| switchtrace.E005 | error | ``SHOW_HEADERS`` is an async function |
| switchtrace.E006 | error | an OTLP endpoint (setting or OTEL_* variable) that is not a URL, or an
  unsupported ``OTEL_EXPORTER_OTLP_PROTOCOL`` |
| switchtrace.W001 | warning | enabled, but the middleware is not in ``MIDDLEWARE`` |
| switchtrace.W002 | warning | the middleware is not first in ``MIDDLEWARE`` |
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import MIDDLEWARE_PATH, build_config


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    config = build_config(getattr(settings, "SWITCHTRACE", None))
    messages: list[Any] = [
        Error(problem.msg, hint=problem.hint, id=problem.id) for problem in config.problems
    ]
    if not config.enabled:
        return messages
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        messages.append(
            Warning(
                "switchtrace is enabled but its middleware is not in MIDDLEWARE, so no "
                "response carries the X-Context-Switches headers.",
                hint=f"Add {MIDDLEWARE_PATH!r} first in MIDDLEWARE.",
                id="switchtrace.W001",
            )
        )
    elif middleware[0] != MIDDLEWARE_PATH:
        messages.append(
            Warning(
                "SwitchTraceMiddleware is not first in MIDDLEWARE: a middleware above it "
                "that answers a request itself (a cache, a redirect) keeps the headers "
                "off that response.",
                hint=f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
                id="switchtrace.W002",
            )
        )
    return messages
