"""The ``SWITCHTRACE`` settings dict: its keys, defaults, and validation.

Read through :func:`get_config`, which caches; a ``setting_changed`` receiver
(connected in the AppConfig) resets the cache, so ``override_settings`` works.
Validation never raises: it returns the problems, which the system checks
report at startup (``switchtrace.E001`` ...) and which keep switchtrace
disabled rather than failing a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ..tracer import DEFAULT_MAX_EVENTS

SETTING = "SWITCHTRACE"
MIDDLEWARE_PATH = "switchtrace.django_app.middleware.SwitchTraceMiddleware"

ShowCallback = Callable[[Any], bool]


@dataclass(frozen=True)
class Option:
    key: str
    default: Any
    allowed: str
    doc: str


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option(
            "ENABLED",
            False,
            "True or False",
            "Patch asgiref, asyncio and threading and record every request. "
            "While False nothing is patched and the middleware removes itself.",
        ),
        Option(
            "SHOW_HEADERS",
            True,
            "True (every response), False (none), or a callable "
            "`(request) -> bool` given as a dotted path or directly",
            "Who gets the X-Context-Switches, X-Thread-Hops, X-Event-Loops, "
            "X-Threads-Started and Server-Timing headers. A callable is called on "
            "the request's own path (sync or async) without a switch, so it must "
            "not touch the database synchronously.",
        ),
        Option(
            "MAX_EVENTS",
            DEFAULT_MAX_EVENTS,
            "an integer from 0 to 1000000",
            "How many crossings, loop creations and thread starts each request "
            "record keeps in detail. The counts stay exact beyond it; what is not "
            "kept is counted as dropped.",
        ),
    )
}


@dataclass(frozen=True)
class Problem:
    """A configuration error, as a system check reports it."""

    id: str
    msg: str
    hint: str


@dataclass(frozen=True)
class Config:
    enabled: bool = False
    show_headers: bool | ShowCallback = True
    max_events: int = DEFAULT_MAX_EVENTS
    problems: tuple[Problem, ...] = field(default=())


def _is_bool(value: Any) -> bool:
    return value is True or value is False


def _load_show_callback(value: Any, problems: list[Problem]) -> bool | ShowCallback:
    if _is_bool(value):
        return bool(value)
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            problems.append(
                Problem(
                    "switchtrace.E004",
                    f"SWITCHTRACE['SHOW_HEADERS'] = {value!r} cannot be imported: {exc}.",
                    f"Allowed: {OPTIONS['SHOW_HEADERS'].allowed}.",
                )
            )
            return False
    if not callable(value):
        problems.append(
            Problem(
                "switchtrace.E003",
                f"SWITCHTRACE['SHOW_HEADERS'] is {value!r}, which is not allowed.",
                f"Allowed: {OPTIONS['SHOW_HEADERS'].allowed}.",
            )
        )
        return False
    from asgiref.sync import iscoroutinefunction

    if iscoroutinefunction(value):
        problems.append(
            Problem(
                "switchtrace.E005",
                "SWITCHTRACE['SHOW_HEADERS'] is an async function; calling it from "
                "the synchronous path would cost the switches switchtrace counts.",
                "Give a plain function `(request) -> bool` that reads the request "
                "only (headers, META, path), without database access.",
            )
        )
        return False
    return value  # type: ignore[no-any-return]


def build_config(raw: Any) -> Config:
    """Validate a ``SWITCHTRACE`` value; never raises."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return Config(
            problems=(
                Problem(
                    "switchtrace.E001",
                    f"The SWITCHTRACE setting must be a dict, not {type(raw).__name__}.",
                    'For example: SWITCHTRACE = {"ENABLED": True}.',
                ),
            )
        )
    problems: list[Problem] = []
    for key in raw:
        if key not in OPTIONS:
            problems.append(
                Problem(
                    "switchtrace.E002",
                    f"Unknown key {key!r} in the SWITCHTRACE setting.",
                    "Allowed keys: " + ", ".join(sorted(OPTIONS)) + ".",
                )
            )
    enabled = raw.get("ENABLED", OPTIONS["ENABLED"].default)
    if not _is_bool(enabled):
        problems.append(_wrong("ENABLED", enabled))
        enabled = False
    max_events = raw.get("MAX_EVENTS", OPTIONS["MAX_EVENTS"].default)
    if _is_bool(max_events) or not isinstance(max_events, int) or not 0 <= max_events <= 1_000_000:
        problems.append(_wrong("MAX_EVENTS", max_events))
        max_events = DEFAULT_MAX_EVENTS
    show = _load_show_callback(raw.get("SHOW_HEADERS", OPTIONS["SHOW_HEADERS"].default), problems)
    if problems:
        return Config(problems=tuple(problems))
    return Config(enabled=bool(enabled), show_headers=show, max_events=max_events)


def _wrong(key: str, value: Any) -> Problem:
    return Problem(
        "switchtrace.E003",
        f"SWITCHTRACE[{key!r}] is {value!r}, which is not allowed.",
        f"Allowed: {OPTIONS[key].allowed}.",
    )


_cache: Config | None = None
_cache_lock = threading.Lock()


def get_config() -> Config:
    global _cache
    config = _cache
    if config is None:
        with _cache_lock:
            config = _cache = build_config(getattr(settings, SETTING, None))
    return config


def reset_config() -> None:
    global _cache
    _cache = None
