"""The ``SWITCHTRACE`` settings dict: its keys, defaults, and validation.

Read through :func:`get_config`, which caches; a ``setting_changed`` receiver
(connected as this module is imported) resets the cache, so
``override_settings`` works, with the app installed (whose own receiver then
applies the change) or without it (the budgets of ``switchtrace.testing``).
Validation never raises: it returns the problems, which the system checks
report at startup (``switchtrace.E001`` ...) and which keep switchtrace
disabled rather than failing a request.
"""

from __future__ import annotations

import inspect
import ipaddress
import math
import numbers
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.utils import functional
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from ..exporters.otlp_json import foreign
from ..exporters.pipeline import (
    DEFAULT_FILE_MAX_BYTES,
    EXPORTERS,
    PROTOCOLS,
    ExportOptions,
    application_provider,
)
from ..text import raised, shown, without_credentials
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
            "EXPORTER",
            None,
            "None (OTEL_TRACES_EXPORTER's otlp, console or none, else otlp when an OTLP "
            "endpoint is configured, else file), 'otlp', 'file', 'console', 'memory' or 'none'",
            "Where each request's spans go: an OTLP collector such as Jaeger, an "
            "OTLP-JSON file, one line per request on stderr, memory (tests), or "
            "nowhere. Headers are unaffected.",
        ),
        Option(
            "OTLP_ENDPOINT",
            None,
            "None (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT) "
            "or an http:// or https:// URL",
            "The collector's address, e.g. http://localhost:4317 (gRPC) or "
            "http://localhost:4318 (HTTP; /v1/traces is appended, except to "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which is used as it is).",
        ),
        Option(
            "OTLP_PROTOCOL",
            None,
            "None (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, "
            "else 'http/protobuf'), 'grpc' or 'http/protobuf'",
            "The OTLP transport.",
        ),
        Option(
            "SERVICE_NAME",
            None,
            "None (OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, "
            "else 'django') or a non-empty string",
            "The service.name of the spans.",
        ),
        Option(
            "FILE_PATH",
            "switchtrace-traces.jsonl",
            "a path to a file in an existing, writable directory",
            "Where the file exporter appends OTLP JSON, one export request per line.",
        ),
        Option(
            "FILE_MAX_BYTES",
            DEFAULT_FILE_MAX_BYTES,
            "None (no limit) or an integer from 1",
            "How large the file exporter's file grows: an export that would take "
            "it past this first renames it FILE_PATH + '.1' (replacing the one "
            "before) and starts a new file, so at most about twice this is kept.",
        ),
        Option(
            "SAMPLE_RATE",
            None,
            "None (OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG) or a number from 0 to 1",
            "The share of requests whose spans are recorded (parent-based: an "
            "incoming sampled traceparent is followed). Headers are computed for "
            "every request.",
        ),
        Option(
            "QUEUE_SIZE",
            512,
            "an integer from 1 to 100000",
            "Finished requests waiting to be turned into spans (or console lines). "
            "When it is full, spans are dropped and counted, never waited for.",
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
    #: None when no spans are made (EXPORTER 'none', or OTEL_SDK_DISABLED=true).
    export: ExportOptions | None = None
    problems: tuple[Problem, ...] = field(default=())


def _is_bool(value: Any) -> bool:
    return value is True or value is False


def _load_show_callback(value: Any, problems: list[Problem]) -> bool | ShowCallback:
    if _is_bool(value):
        return bool(value)
    given = value  # named in the messages as the user wrote it (a dotted path)
    if isinstance(value, str):
        try:
            value = import_string(value)
        except Exception as exc:  # the user's module may raise anything on import
            problems.append(
                Problem(
                    "switchtrace.E004",
                    f"SWITCHTRACE['SHOW_HEADERS'] = {shown(value)} cannot be imported: "
                    f"{raised(exc)}.",
                    f"Allowed: {OPTIONS['SHOW_HEADERS'].allowed}.",
                )
            )
            return False
    if not callable(value):
        problems.append(_wrong("SHOW_HEADERS", given))
        return False
    from asgiref.sync import iscoroutinefunction

    if iscoroutinefunction(value) or iscoroutinefunction(type(value).__call__):
        problems.append(
            Problem(
                "switchtrace.E005",
                f"SWITCHTRACE['SHOW_HEADERS'] is {shown(given)}, an async callable; "
                "calling it from "
                "the synchronous path would cost the switches switchtrace counts.",
                "Give a plain function `(request) -> bool` that reads the request "
                "only (headers, META, path), without database access.",
            )
        )
        return False
    try:
        inspect.signature(value).bind(None)
    except TypeError:
        problems.append(
            Problem(
                "switchtrace.E003",
                f"SWITCHTRACE['SHOW_HEADERS'] is {shown(given)}, which cannot be called "
                "with one argument (the request).",
                f"Allowed: {OPTIONS['SHOW_HEADERS'].allowed}.",
            )
        )
        return False
    except ValueError:  # no signature to read (some builtins): trust it
        pass
    return value  # type: ignore[no-any-return]


def build_config(raw: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a ``SWITCHTRACE`` value (and the OTEL_* variables it relies
    on); never raises."""
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
    # A lazy string (gettext_lazy) is its text, for every key: a check
    # refused one as "not a URL", showing a URL.
    raw = {key: _text_if_lazy(value) for key, value in raw.items()}
    problems: list[Problem] = []
    for key in raw:
        if key not in OPTIONS:
            problems.append(
                Problem(
                    "switchtrace.E002",
                    f"Unknown key {shown(key)} in the SWITCHTRACE setting.",
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
    environ = os.environ if environ is None else environ
    export = _export_options(raw, environ, problems, enabled=bool(enabled))
    if problems:
        return Config(problems=tuple(problems))
    return Config(enabled=bool(enabled), show_headers=show, max_events=max_events, export=export)


#: What a wrong EXPORTER or OTLP_PROTOCOL is read as, once said wrong: the
#: value given may be an object whose ``==`` raises.
_WRONG = "(wrong)"


#: What Django's lazy proxy pickles itself with, its result classes among
#: the arguments (private: a Django without it takes every lazy object's
#: ``str()``).
_LAZY_UNPICKLE = getattr(functional, "_lazy_proxy_unpickle", object())


def _text_if_lazy(value: Any) -> Any:
    """A lazy string's text; a lazy object of another type (``lazy(f,
    bytes)``, whose ``str()`` is its repr), or one that raises, itself:
    refused as what it is. (Its type told by the result classes Django's
    proxy pickles itself with, not by its ``==``, which a str subclass's
    may raise.)"""
    if not isinstance(value, Promise):
        return value
    try:
        reduced = value.__reduce__()
        if isinstance(reduced, tuple) and reduced[:1] == (_LAZY_UNPICKLE,):
            classes = reduced[1][3:]
            if not any(isinstance(c, type) and issubclass(c, str) for c in classes):
                return value
        text = str(value)
        return str.__str__(text) if isinstance(text, str) else value
    except Exception:
        return value


def _among(value: Any, allowed: Any) -> str | None:
    """``value`` as the plain string it is, if one of the ``allowed`` ones (a
    lazy string is its text); else None. ``in`` alone asks the value's own
    ``__eq__`` (a str subclass's first), which may raise."""
    try:
        text = str(value) if isinstance(value, Promise) else value
        if not isinstance(text, str):
            return None
        text = str.__str__(text)  # a subclass's value as a str
    except Exception:
        return None
    return text if text in allowed else None


def _export_options(
    raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem], *, enabled: bool
) -> ExportOptions | None:
    """Where spans go. The settings are checked always (a wrong value is
    wrong); the environment (OTEL_* variables, whether FILE_PATH can be
    written) only when switchtrace is enabled and would use it."""
    before = len(problems)
    #: An application's provider, set before Django started (as
    #: opentelemetry-instrument sets one), makes switchtrace's spans with its
    #: own exporters: what only switchtrace's exporter would read (OTEL_*
    #: variables its exporters read too, FILE_PATH) is not checked then.
    own_provider = not application_provider()
    exporter = raw.get("EXPORTER")
    if exporter is not None:
        plain = _among(exporter, EXPORTERS)
        if plain is None:
            problems.append(_wrong("EXPORTER", exporter))
        exporter = _WRONG if plain is None else plain
    endpoint = raw.get("OTLP_ENDPOINT")
    #: The traces-specific variable names the URL spans go to, as it is; the
    #: others are a base that gets /v1/traces (OTLP/HTTP).
    signal_endpoint = False
    #: What is wrong in OTEL_* variables: an error only if spans go out over
    #: OTLP (other tools set these too, with values of their own).
    environ_problems: list[Problem] = []
    #: An endpoint variable's host:port without a scheme: a gRPC target,
    #: which OTLP/gRPC takes (the exporter's TLS then as its
    #: OTEL_EXPORTER_OTLP_INSECURE says), and OTLP/HTTP does not.
    grpc_only: Problem | None = None
    if endpoint is not None:
        why = _not_a_url(endpoint)
        if why is not None:
            problems.append(_bad_url("SWITCHTRACE['OTLP_ENDPOINT']", endpoint, why))
    else:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            # Space around a value is not part of it (a CRLF env file's
            # '\r', which urlsplit drops and the HTTP exporter does not),
            # and space alone is unset, as for every OTEL_* variable here.
            if environ.get(name, "").strip():
                endpoint = environ[name].strip()
                signal_endpoint = name == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                why = _not_a_url(endpoint)
                if why is not None:
                    where = f"The environment variable {name}"
                    if _is_grpc_target(endpoint):
                        grpc_only = _bad_url(where, endpoint, why)
                    else:
                        environ_problems.append(_bad_url(where, endpoint, why))
                break
    # With EXPORTER unset, OpenTelemetry's OTEL_TRACES_EXPORTER chooses
    # (unless an application's provider, set before Django started, makes
    # the spans: its exporters are then the ones it read that variable for).
    traces_exporter: TracesExporter | None = None
    if exporter is None and own_provider:
        traces_exporter = _traces_exporter(environ)
    protocol = raw.get("OTLP_PROTOCOL")
    if protocol is not None:
        plain = _among(protocol, PROTOCOLS)
        if plain is None:
            problems.append(_wrong("OTLP_PROTOCOL", protocol))
        protocol = _WRONG if plain is None else plain
    elif protocol is None and traces_exporter is not None and traces_exporter.protocol:
        protocol = traces_exporter.protocol  # otlp_proto_grpc, otlp_proto_http
    elif protocol is None:
        protocol = "http/protobuf"
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            if environ.get(name, "").strip():  # stripped, as the SDK's configuration does
                protocol = environ[name].strip()
                if protocol not in PROTOCOLS:
                    environ_problems.append(
                        Problem(
                            "switchtrace.E006",
                            f"The environment variable {name} is {shown(protocol)}, "
                            "which switchtrace does not support.",
                            "Allowed: 'grpc' or 'http/protobuf'.",
                        )
                    )
                break
    if grpc_only is not None and protocol != "grpc":
        environ_problems.append(grpc_only)
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        # Read by the OTLP exporters themselves, the traces-specific one
        # first (the other is then not read): the gRPC one raises at startup
        # for what is not a number, even empty; the HTTP one takes an empty
        # value as unset, and ignores what is not a number.
        timeout = environ.get(name)
        if timeout or (timeout == "" and protocol == "grpc"):
            if not _is_seconds(timeout):
                environ_problems.append(
                    Problem(
                        "switchtrace.E006",
                        f"The environment variable {name} is {shown(timeout)}, which is not "
                        "a positive number of seconds, at most 1e9.",
                        "For example: 10 (the OTLP exporters' default; they read seconds, not "
                        "the milliseconds of OpenTelemetry's specification).",
                    )
                )
            break
    headers_problem = _headers_problem(environ, protocol)
    if headers_problem is not None:
        environ_problems.append(headers_problem)
    service = raw.get("SERVICE_NAME")
    if service is not None and (not isinstance(service, str) or not service):
        problems.append(_wrong("SERVICE_NAME", service))
    file_path = raw.get("FILE_PATH", OPTIONS["FILE_PATH"].default)
    path = _text_path(file_path)
    if not path:
        problems.append(_wrong("FILE_PATH", file_path))
    max_bytes = raw.get("FILE_MAX_BYTES", OPTIONS["FILE_MAX_BYTES"].default)
    if max_bytes is not None and (
        _is_bool(max_bytes) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        problems.append(_wrong("FILE_MAX_BYTES", max_bytes))
    rate = raw.get("SAMPLE_RATE")
    if rate is not None and (
        _is_bool(rate) or not isinstance(rate, (numbers.Real, Decimal)) or not _is_rate(rate)
    ):
        problems.append(_wrong("SAMPLE_RATE", rate))
    queue_size = raw.get("QUEUE_SIZE", OPTIONS["QUEUE_SIZE"].default)
    if _is_bool(queue_size) or not isinstance(queue_size, int) or not 1 <= queue_size <= 100_000:
        problems.append(_wrong("QUEUE_SIZE", queue_size))
    if len(problems) > before:
        return None
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not enabled:
        return None
    if traces_exporter is not None:
        if traces_exporter.problem is not None:
            problems.append(traces_exporter.problem)
            return None
        exporter = traces_exporter.exporter
        if exporter == "none":
            return None
    if exporter is None:
        exporter = "otlp" if endpoint else "file"
    if exporter == "otlp" and environ_problems and own_provider:
        problems.extend(environ_problems)
        return None
    if rate is None and exporter != "console" and own_provider:
        # switchtrace's provider samples as the SDK's default does, from these
        # variables; the SDK takes what it cannot use for every request. (An
        # application's provider, set before Django started, samples with its
        # own sampler: its variables are its concern.)
        sampler_problem = _sampler_problem(environ)
        if sampler_problem is not None:
            problems.append(sampler_problem)
            return None
    if exporter != "console":
        # The propagator requests' trace context is read with (as the
        # application reads it): one OpenTelemetry cannot load fails the
        # import of opentelemetry.propagate.
        propagators_problem = _propagators_problem(environ)
        if propagators_problem is not None:
            problems.append(propagators_problem)
            return None
    # (The console's lines are written for every request.)
    excluded_urls = None if exporter == "console" else _excluded_urls(environ, problems)
    if len(problems) > before:
        return None
    if exporter == "file" and own_provider:
        unwritable = _unwritable(path)
        if unwritable:
            problems.append(
                Problem(
                    "switchtrace.E008",
                    f"SWITCHTRACE['FILE_PATH'] is {shown(file_path)}, which the file "
                    f"exporter cannot write: {unwritable}.",
                    "Give a path to a file in an existing directory this process may "
                    "write to, or choose another EXPORTER.",
                )
            )
            return None
    return ExportOptions(
        exporter=exporter,
        endpoint=endpoint,
        endpoint_is_traces_url=signal_endpoint,
        protocol=protocol,
        service_name=service
        or environ.get("OTEL_SERVICE_NAME")
        or _resource_service_name(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        or "django",
        file_path=path,
        file_max_bytes=max_bytes,
        sample_rate=None if rate is None else float(rate),
        queue_size=queue_size,
        excluded_urls=excluded_urls,
    )


#: Where opentelemetry-instrumentation-django reads the URLs it does not
#: trace: its own variable, else the one of every Python instrumentation.
EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


def _excluded_urls(environ: Mapping[str, str], problems: list[Problem]) -> re.Pattern[str] | None:
    """The URLs no spans are made for, as opentelemetry-instrumentation-django
    reads them: comma-separated regular expressions, each searched for in a
    request's URL, space around each not part of it. Empty entries are left
    out (the instrumentation's reading makes an empty one, after a trailing
    comma, match every URL), and a variable of none but those (empty, blank,
    commas alone) is unset."""
    for name in EXCLUDED_URLS_VARIABLES:
        value = environ.get(name, "")
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if not entries:
            continue  # unset, blank or commas alone: an empty pattern leaves out every URL
        for entry in entries:
            try:
                re.compile(entry)
            except re.error as exc:
                problems.append(_bad_pattern(name, value, f"{shown(entry)}: {exc}"))
                return None
        try:
            return re.compile("|".join(entries))
        except re.error as exc:  # entries that cannot go together ((?i) but first)
            problems.append(_bad_pattern(name, value, f"together: {exc}"))
            return None
    return None


def _bad_pattern(name: str, value: str, why: str) -> Problem:
    return Problem(
        "switchtrace.E012",
        f"The environment variable {name} is {shown(value)}, which is not a list of "
        f"regular expressions ({why}).",
        "Comma-separated Python regular expressions, each searched for in a request's "
        "URL without its query (e.g. healthz,/static/), as "
        "opentelemetry-instrumentation-django reads them.",
    )


#: OTEL_TRACES_EXPORTER's names (lowercased) of the exporters switchtrace has:
#: (its exporter, the OTLP protocol the name fixes). otlp_proto_grpc and
#: otlp_proto_http are the Python SDK's names of its two OTLP exporters.
TRACES_EXPORTERS = {
    "otlp": ("otlp", None),
    "otlp_proto_grpc": ("otlp", "grpc"),
    "otlp_proto_http": ("otlp", "http/protobuf"),
    "console": ("console", None),
    "none": ("none", None),
}


@dataclass(frozen=True)
class TracesExporter:
    """What OTEL_TRACES_EXPORTER asks of switchtrace's spans."""

    #: One of EXPORTERS, or None: unset (the default applies), or a problem.
    exporter: str | None = None
    #: The OTLP protocol the name fixes, if it does.
    protocol: str | None = None
    problem: Problem | None = None


def _traces_exporter(environ: Mapping[str, str]) -> TracesExporter | None:
    """OTEL_TRACES_EXPORTER, OpenTelemetry's choice of exporter (a
    comma-separated list for the SDK), read for switchtrace's spans: one of
    the exporters switchtrace has, in any case; the space around a name is
    not part of it, and empty, or space alone, is unset (None)."""
    value = environ.get("OTEL_TRACES_EXPORTER", "")
    names = {name.strip().lower() for name in value.split(",")} - {""}
    if not names:
        return None
    if len(names) > 1:
        return TracesExporter(
            problem=Problem(
                "switchtrace.E010",
                f"The environment variable OTEL_TRACES_EXPORTER is {shown(value)}, more than "
                "one exporter: switchtrace's spans go to one (SWITCHTRACE['EXPORTER'] is "
                "unset: this variable says where).",
                TRACES_EXPORTER_HINT,
            )
        )
    [name] = names
    if name not in TRACES_EXPORTERS:
        return TracesExporter(
            problem=Problem(
                "switchtrace.E010",
                f"The environment variable OTEL_TRACES_EXPORTER is {shown(value)}, an exporter "
                "switchtrace does not have (SWITCHTRACE['EXPORTER'] is unset: this variable "
                "says where its spans go).",
                TRACES_EXPORTER_HINT,
            )
        )
    exporter, protocol = TRACES_EXPORTERS[name]
    return TracesExporter(exporter, protocol)


TRACES_EXPORTER_HINT = (
    "Allowed: 'otlp' (or the Python SDK's 'otlp_proto_grpc', 'otlp_proto_http'), 'console' "
    "or 'none' (unset or empty: otlp when an OTLP endpoint is configured, else file), or set "
    "SWITCHTRACE['EXPORTER'], which is then read instead."
)


#: The samplers the OpenTelemetry SDK builds from OTEL_TRACES_SAMPLER (its
#: name lowercased); the ratio ones read OTEL_TRACES_SAMPLER_ARG.
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def _sampler_problem(environ: Mapping[str, str]) -> Problem | None:
    """OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the SDK reads them:
    a sampler it does not know, or a ratio that is not a number from 0 to 1
    (an empty or unset one is 1.0, the specification's default), it replaces
    with a sampler that records every request, with a log line at most.
    Space around a value is not part of it (switchtrace's provider strips
    it, as ``opentelemetry-instrument`` does), and an empty value is unset
    (the specification's rule for every ``OTEL_*`` variable): the default
    sampler, ``parentbased_always_on``."""
    sampler = environ.get("OTEL_TRACES_SAMPLER")
    if sampler is None or not sampler.strip():
        return None
    name = sampler.strip().lower()
    if name not in SAMPLERS and not is_sampler_entry_point(sampler):
        return Problem(
            "switchtrace.E009",
            f"The environment variable OTEL_TRACES_SAMPLER is {shown(sampler)}, a sampler "
            "the OpenTelemetry SDK does not know: it would record every request.",
            "Allowed: " + ", ".join(SAMPLERS) + " (the OpenTelemetry SDK's), the name "
            "of a sampler an installed package registers (entry point group "
            "opentelemetry_traces_sampler), or set SWITCHTRACE['SAMPLE_RATE'] instead.",
        )
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG")
    if name in RATIO_SAMPLERS and argument and argument.strip() and not _is_share(argument):
        return Problem(
            "switchtrace.E009",
            f"The environment variable OTEL_TRACES_SAMPLER_ARG is {shown(argument)}, which "
            "is not a number from 0 to 1 (the share of requests OTEL_TRACES_SAMPLER="
            f"{shown(sampler)} keeps): the OpenTelemetry SDK would record every request.",
            "Allowed: a number from 0 to 1, e.g. 0.1 to keep one request in ten.",
        )
    return None


def _propagators_problem(environ: Mapping[str, str]) -> Problem | None:
    """OTEL_PROPAGATORS as ``opentelemetry.propagate`` reads it when it is
    imported: comma-separated names of propagators that installed packages
    register (entry point group ``opentelemetry_propagator``), each without
    the space around it, and ``none`` (in any case) ends the list with none.
    Unset or empty is the default (``tracecontext,baggage``); a name it
    cannot find, an empty one too (space alone, after a trailing comma),
    fails that import with a ValueError, and a propagator that raises as it
    is loaded (its module, its class called) with what it raised."""
    value = environ.get("OTEL_PROPAGATORS")
    if not value or "opentelemetry.propagate" in sys.modules:
        # (Imported, it has loaded its propagators: the variable is not read
        # again, nor is its value now switchtrace's concern.)
        return None
    for name in value.split(","):
        name = name.strip()
        if name.lower() == "none":
            return None
        if not _is_entry_point("opentelemetry_propagator", name):
            what = (
                f"a propagator no installed package provides: {shown(name)}"
                if name
                else "an empty propagator (a comma too many, or space alone)"
            )
        else:
            failure = _propagator_failure(name)
            if failure is None:
                continue
            what = f"a propagator that does not load: {shown(name)} ({failure})"
        installed = sorted(_entry_point_names("opentelemetry_propagator"))
        return Problem(
            "switchtrace.E013",
            f"The environment variable OTEL_PROPAGATORS is {shown(value)}, which names {what}. "
            "OpenTelemetry's propagate module fails to import with it, and no incoming trace "
            "context could be read.",
            "Allowed: comma-separated names of installed propagators ("
            + ", ".join(installed)
            + " here; b3 and b3multi come with opentelemetry-propagator-b3, jaeger "
            "with opentelemetry-propagator-jaeger), or none; unset, the default "
            "tracecontext,baggage.",
        )
    return None


def _propagator_failure(name: str) -> str | None:
    """What loading the propagator ``name`` registers raises, as
    OpenTelemetry loads it (its class, then an instance): None if it loads."""
    from importlib.metadata import entry_points

    try:
        for entry in entry_points(group="opentelemetry_propagator", name=name):
            entry.load()()
            break
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _is_entry_point(group: str, name: str) -> bool:
    from importlib.metadata import entry_points

    try:
        return bool(entry_points(group=group, name=name))
    except Exception:  # a broken distribution on the path: not ours to judge
        return True


def _entry_point_names(group: str) -> set[str]:
    from importlib.metadata import entry_points

    try:
        return {entry.name for entry in entry_points(group=group)}
    except Exception:
        return set()


def is_sampler_entry_point(name: str) -> bool:
    """Whether ``name`` is a sampler a package registers for the SDK's
    configuration (entry point group ``opentelemetry_traces_sampler``, which
    ``opentelemetry-instrument`` and switchtrace's own provider build from)."""
    return _is_entry_point("opentelemetry_traces_sampler", name.strip())


def _is_share(value: str) -> bool:
    try:
        share = float(value)
    except ValueError:
        return False
    return 0 <= share <= 1


def _text_path(value: Any) -> str:
    """The path ``value`` gives as a string, or '' if it gives none: not a
    string nor an ``os.PathLike``, or one whose ``__fspath__`` raises or
    gives bytes (as bytes given directly are refused)."""
    if not isinstance(value, (str, os.PathLike)):
        return ""
    try:
        path = os.fspath(value)
    except Exception:  # a __fspath__ of the project's that raises, or returns an int
        return ""
    return path if isinstance(path, str) else ""


def _unwritable(path: str) -> str | None:
    """Why the file exporter could not append to ``path``, or None."""
    if "\0" in path:  # (os.path's tests take it for a path that is not there)
        return "it contains a NUL character"
    try:
        os.fsencode(path)
    except UnicodeEncodeError:  # (os.path's tests raise it)
        return (
            "its name cannot be written in the file system's encoding "
            f"({sys.getfilesystemencoding()})"
        )
    if os.path.isdir(path):
        return "it is a directory"
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        return "it ends with a path separator, as a directory's name does"
    refused = foreign(path)
    if refused is not None:
        return refused
    if os.path.islink(path) and not os.path.exists(path):
        # A link to a file not made yet: made where the link leads.
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"the directory {directory} does not exist"
    try:
        longest = os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no limit
        longest = -1
    # Rotation renames the file to NAME.1 (FILE_MAX_BYTES): that must fit too.
    if 0 < longest < len(os.fsencode(os.path.basename(path) + ".1")):
        return f"its name, with the .1 of rotation, is longer than the {longest} bytes allowed"
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            return "the file is not writable"
    elif not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable"
    return None


def _resource_service_name(resource_attributes: str) -> str | None:
    """``service.name`` from OTEL_RESOURCE_ATTRIBUTES (comma-separated
    ``key=value`` pairs, values percent-encoded), as the SDK reads it."""
    for pair in resource_attributes.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == "service.name":
            return unquote(value.strip()) or None
    return None


def _not_a_url(value: Any) -> str | None:
    """What keeps ``value`` from being an http:// or https:// URL an exporter
    can send to, as the end of a message, or None."""
    # Space or a control character anywhere (urlsplit drops '\t', '\r' and
    # '\n', and int() reads a port with space around it) is no URL: the
    # OTLP/HTTP exporter would send to it and fail every export.
    not_a_url = "which is not an http:// or https:// URL"
    if not isinstance(value, str):
        return not_a_url
    if any(c.isspace() or not c.isprintable() for c in value):
        return "which has a space or a control character in it"
    try:
        parts = urlsplit(value)
    except ValueError:
        return not_a_url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return not_a_url
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("[") and host.partition("]")[2][:1] not in ("", ":"):
        # http://[::1]x:4318, which urlsplit reads as [::1]: every export failed.
        return "whose host is not a name or an [IPv6 address] followed by its port"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # the exporters connected to port 80 (or 443) instead
        return "whose port is not a number from 1 to 65535"
    return None


def _is_grpc_target(value: str) -> bool:
    """Whether ``value`` is a host and port with no scheme (``collector:4317``,
    ``[::1]:4317``), which gRPC's channels take as their target."""
    if "://" in value or any(c.isspace() or not c.isprintable() for c in value):
        return False
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isascii() or not port.isdigit() or len(port) > 5:
        return False
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    elif not all(
        part and part.isascii() and part.replace("-", "").replace("_", "").isalnum()
        for part in host.split(".")
    ):
        return False
    return 1 <= int(port) <= 65535


def _is_rate(value: numbers.Real | Decimal) -> bool:
    """From 0 to 1: a float, an int, a Decimal or a Fraction (compared as a
    float: Decimal('NaN') raises in a comparison)."""
    try:
        return 0 <= float(value) <= 1
    except (OverflowError, ValueError):
        return False


def _is_seconds(value: str) -> bool:
    """A timeout an export can wait out: from 1e10 on, every export failed
    (past the platform's time_t under HTTP; gRPC's deadline exceeded, and
    retried without end). 1e9 (31 years) still works."""
    try:
        seconds = float(value)
    except ValueError:
        return False
    return math.isfinite(seconds) and 0 < seconds <= 1e9


#: A gRPC metadata key: what gRPC takes (it refuses the call otherwise).
_GRPC_KEY = re.compile(r"[0-9a-z_.-]+")
#: An HTTP header's name as requests and http.client send it: ASCII, no
#: colon and no line break (nor space first, which parsing strips).
_HTTP_NAME = re.compile(r"[^:\s][^:\r\n]*")


def _headers_problem(environ: Mapping[str, str], protocol: Any) -> Problem | None:
    """A header of ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (else
    ``OTEL_EXPORTER_OTLP_HEADERS``), as the OTLP exporters read it, that
    their transport cannot send: every export failed, with gRPC's or
    requests' error (a ``-bin`` key under gRPC: an internal error of
    switchtrace's, as the exporter raised)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        if environ.get(name):
            break
    else:
        return None
    from opentelemetry.util.re import parse_env_headers

    try:
        headers = parse_env_headers(environ[name], liberal=True)
    except TypeError:  # an SDK that reads them strictly only
        headers = parse_env_headers(environ[name])
    for key, value in headers.items():
        # Not the value itself in the message: it is often a credential.
        if protocol == "grpc":
            wrong = next((char for char in value if not " " <= char <= "~"), None)
            if key.endswith("-bin"):
                why = "its key ends in -bin, which gRPC takes for binary metadata (bytes)"
            elif not _GRPC_KEY.fullmatch(key):
                why = "gRPC does not take its key"
            elif wrong is not None:
                why = f"its value holds {shown(wrong)} (percent-decoded), which gRPC does not take"
            else:
                continue
            allowed = (
                "Allowed under OTLP/gRPC: keys of lowercase letters, digits, '-', '_' and "
                "'.', not ending in -bin, with values of printable ASCII."
            )
        else:
            wrong = next((char for char in value if char in "\r\n" or ord(char) > 0xFF), None)
            if not key.isascii() or not _HTTP_NAME.fullmatch(key):
                why = "HTTP does not take its name"
            elif wrong is not None:
                why = f"its value holds {shown(wrong)} (percent-decoded), which HTTP does not take"
            else:
                continue
            allowed = (
                "Allowed under OTLP/HTTP: names in ASCII, without a colon or a line break, "
                "with values in Latin-1 without line breaks."
            )
        return Problem(
            "switchtrace.E006",
            f"The environment variable {name} holds the header {shown(key)}: {why}, so "
            "every export would fail.",
            allowed,
        )
    return None


def _bad_url(where: str, value: Any, why: str) -> Problem:
    return Problem(
        "switchtrace.E006",
        f"{where} is {shown(without_credentials(value))}, {why}.",
        "For example: http://localhost:4317 (OTLP/gRPC) or http://localhost:4318 (OTLP/HTTP).",
    )


def _wrong(key: str, value: Any) -> Problem:
    return Problem(
        "switchtrace.E003",
        f"SWITCHTRACE[{key!r}] is {shown(value)}, which is not allowed.",
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


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset_config()


# Not the AppConfig's alone: without the app in INSTALLED_APPS (the
# budgets need none), the first settings read were kept for the whole run.
setting_changed.connect(_setting_changed, dispatch_uid="switchtrace.config_cache")
