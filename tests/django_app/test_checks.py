"""System checks: exact messages and ids for every kind of bad setting."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core import checks
from django.test import override_settings
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import lazystr
from django.utils.translation import gettext_lazy

from switchtrace.django_app.conf import MIDDLEWARE_PATH, Config, build_config
from switchtrace.django_app.middleware import SwitchTraceMiddleware

from .test_predict import BUILTIN, builtin_stack

BASE_MIDDLEWARE = [MIDDLEWARE_PATH, "tests.views.SyncOnlyMiddleware"]


def own_messages() -> list[tuple[str, str, str | None]]:
    return [
        (m.id, m.msg, m.hint)
        for m in checks.run_checks()
        if m.id and m.id.startswith("switchtrace.")
    ]


def allow_everyone(request):
    return True


async def async_show(request):
    return True


class _AsyncShow:
    async def __call__(self, request):
        return True


async_show_object = _AsyncShow()


def no_arguments():
    return True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            ["ENABLED"],
            [
                (
                    "switchtrace.E001",
                    "The SWITCHTRACE setting must be a dict, not list.",
                    'For example: SWITCHTRACE = {"ENABLED": True}.',
                )
            ],
        ),
        (
            {"ENABLED": True, "SHOW_HEADER": True},
            [
                (
                    "switchtrace.E002",
                    "Unknown key 'SHOW_HEADER' in the SWITCHTRACE setting.",
                    "Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, MAX_EVENTS, "
                    "OTLP_ENDPOINT, OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, "
                    "SHOW_HEADERS.",
                )
            ],
        ),
        (
            {"ENABLED": "yes"},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['ENABLED'] is 'yes', which is not allowed.",
                    "Allowed: True or False.",
                )
            ],
        ),
        (
            {"ENABLED": True, "MAX_EVENTS": -1},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['MAX_EVENTS'] is -1, which is not allowed.",
                    "Allowed: an integer from 0 to 1000000.",
                )
            ],
        ),
        (
            {"ENABLED": True, "SHOW_HEADERS": 3},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['SHOW_HEADERS'] is 3, which is not allowed.",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        (
            {"ENABLED": True, "SHOW_HEADERS": "myproject.nowhere.show"},
            [
                (
                    "switchtrace.E004",
                    "SWITCHTRACE['SHOW_HEADERS'] = 'myproject.nowhere.show' cannot be "
                    "imported: ModuleNotFoundError: No module named 'myproject'.",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        (
            {"ENABLED": True, "SHOW_HEADERS": "tests.show_raising.show"},
            [
                (
                    "switchtrace.E004",
                    "SWITCHTRACE['SHOW_HEADERS'] = 'tests.show_raising.show' cannot be "
                    "imported: RuntimeError: a bug in the module.",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        *(
            (
                {"ENABLED": True, "SHOW_HEADERS": show},
                [
                    (
                        "switchtrace.E005",
                        f"SWITCHTRACE['SHOW_HEADERS'] is {show!r}, an async callable; calling "
                        "it from the synchronous path would cost the switches switchtrace "
                        "counts.",
                        "Give a plain function `(request) -> bool` that reads the request "
                        "only (headers, META, path), without database access.",
                    )
                ],
            )
            for show in (f"{__name__}.async_show", f"{__name__}.async_show_object")
        ),
        (
            {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.no_arguments"},
            [
                (
                    "switchtrace.E003",
                    f"SWITCHTRACE['SHOW_HEADERS'] is '{__name__}.no_arguments', which cannot "
                    "be called with one argument (the request).",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        (
            {"ENABLED": True, "QUEUE_SIZE": 10**5000},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['QUEUE_SIZE'] is <int object>, which is not allowed.",
                    "Allowed: an integer from 1 to 100000.",
                )
            ],
        ),
        *(
            (
                {"ENABLED": True, "FILE_MAX_BYTES": size},
                [
                    (
                        "switchtrace.E003",
                        f"SWITCHTRACE['FILE_MAX_BYTES'] is {size!r}, which is not allowed.",
                        "Allowed: None (no limit) or an integer from 1.",
                    )
                ],
            )
            for size in (0, "100MB", 1e8, True)
        ),
        (
            {"ENABLED": True, "SERVICE_NAME": ["x" * 300]},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['SERVICE_NAME'] is ['" + "x" * 195 + "..., which is not allowed.",
                    "Allowed: None (OTEL_SERVICE_NAME, else service.name in "
                    "OTEL_RESOURCE_ATTRIBUTES, else 'django') or a non-empty string.",
                )
            ],
        ),
        (
            # 200 characters, the most a message shows of a value: whole.
            {"ENABLED": True, "SERVICE_NAME": ["x" * 196]},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['SERVICE_NAME'] is ['" + "x" * 196 + "'], which is not allowed.",
                    "Allowed: None (OTEL_SERVICE_NAME, else service.name in "
                    "OTEL_RESOURCE_ATTRIBUTES, else 'django') or a non-empty string.",
                )
            ],
        ),
        *(
            (
                {"ENABLED": True, "MAX_EVENTS": events},
                [
                    (
                        "switchtrace.E003",
                        f"SWITCHTRACE['MAX_EVENTS'] is {events!r}, which is not allowed.",
                        "Allowed: an integer from 0 to 1000000.",
                    )
                ],
            )
            # Past the top, a bool (an int to Python), an int as text.
            for events in (1_000_001, True, "10")
        ),
        (
            # Wrong, so switchtrace is off: nothing is said of the
            # environment it would use (here a FILE_PATH it cannot write).
            {"ENABLED": "yes", "FILE_PATH": "/nonexistent-switchtrace-dir/traces.jsonl"},
            [
                (
                    "switchtrace.E003",
                    "SWITCHTRACE['ENABLED'] is 'yes', which is not allowed.",
                    "Allowed: True or False.",
                )
            ],
        ),
    ],
)
def test_bad_settings_are_check_errors_naming_the_key(value, expected):
    with override_settings(SWITCHTRACE=value, MIDDLEWARE=BASE_MIDDLEWARE):
        assert own_messages() == expected


EXPORT_HINTS = {
    "OTLP_PROTOCOL": "Allowed: None (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else "
    "OTEL_EXPORTER_OTLP_PROTOCOL, else 'http/protobuf'), 'grpc' or 'http/protobuf'.",
    "FILE_PATH": "Allowed: a path to a file in an existing, writable directory.",
    "SERVICE_NAME": "Allowed: None (OTEL_SERVICE_NAME, else service.name in "
    "OTEL_RESOURCE_ATTRIBUTES, else 'django') or a non-empty string.",
    "SAMPLE_RATE": "Allowed: None (OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG) or a number "
    "from 0 to 1.",
    "QUEUE_SIZE": "Allowed: an integer from 1 to 100000.",
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # OTLP/JSON, which the OTLP specification has and switchtrace does not.
        ("OTLP_PROTOCOL", "http/json"),
        ("FILE_PATH", ""),
        ("FILE_PATH", 42),
        ("SERVICE_NAME", ""),
        # Past either end, a bool (a number to Python), a number as text.
        *(("SAMPLE_RATE", rate) for rate in (-0.1, 1.1, True, "0.5", Decimal("NaN"))),
        *(("QUEUE_SIZE", size) for size in (0, 100_001, True, "512")),
    ],
)
def test_bad_export_settings_are_e003_naming_what_is_allowed(key, value):
    with override_settings(SWITCHTRACE={"ENABLED": True, key: value}, MIDDLEWARE=BASE_MIDDLEWARE):
        assert own_messages() == [
            (
                "switchtrace.E003",
                f"SWITCHTRACE[{key!r}] is {value!r}, which is not allowed.",
                EXPORT_HINTS[key],
            )
        ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"SERVICE_NAME": "shop"}, {"service_name": "shop"}),  # over OTEL_SERVICE_NAME
        ({"FILE_MAX_BYTES": None}, {"file_max_bytes": None}),
        ({"FILE_MAX_BYTES": 1}, {"file_max_bytes": 1}),
        # Either end, and an int for a float.
        ({"SAMPLE_RATE": 0}, {"sample_rate": 0.0}),
        ({"SAMPLE_RATE": 1}, {"sample_rate": 1.0}),
        ({"SAMPLE_RATE": 0.25}, {"sample_rate": 0.25}),
        # Numbers of other kinds (they were refused).
        ({"SAMPLE_RATE": Decimal("0.5")}, {"sample_rate": 0.5}),
        ({"SAMPLE_RATE": Fraction(1, 4)}, {"sample_rate": 0.25}),
        ({"QUEUE_SIZE": 1}, {"queue_size": 1}),
        ({"QUEUE_SIZE": 100_000}, {"queue_size": 100_000}),
    ],
)
def test_the_export_settings_allowed_are_taken_as_given(settings, expected, tmp_path):
    from pathlib import Path

    raw = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": Path(tmp_path / "t.jsonl")}
    config = build_config({**raw, **settings}, environ={"OTEL_SERVICE_NAME": "other"})
    assert config.problems == ()
    assert config.export.file_path == str(tmp_path / "t.jsonl")  # a Path taken too
    assert {name: getattr(config.export, name) for name in expected} == expected


def test_a_bad_setting_keeps_switchtrace_disabled_and_logs_why(caplog):
    from switchtrace import tracer

    with caplog.at_level("ERROR", logger="switchtrace"):
        with override_settings(SWITCHTRACE={"ENABLED": True, "COLOUR": "red"}):
            assert not tracer.installed()
    assert tracer.installed()
    assert caplog.records[0].getMessage() == (
        "switchtrace disabled: Unknown key 'COLOUR' in the SWITCHTRACE setting. "
        "(switchtrace.E002) Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, "
        "MAX_EVENTS, OTLP_ENDPOINT, OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, "
        "SHOW_HEADERS."
    )


def test_a_bad_setting_back_as_overrides_are_undone_is_logged_once(caplog):
    """The project's own bad SWITCHTRACE was logged again each time a test's
    override_settings was undone (each test's teardown, under pytest-django's
    settings fixture); a value a test gives is told of, even an equal one,
    and so is the same one with other problems (changed in place)."""
    colour = (
        "switchtrace disabled: Unknown key 'COLOUR' in the SWITCHTRACE setting. "
        "(switchtrace.E002) Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, "
        "MAX_EVENTS, OTLP_ENDPOINT, OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, "
        "SHOW_HEADERS."
    )
    events = (
        "switchtrace disabled: SWITCHTRACE['MAX_EVENTS'] is -1, which is not allowed. "
        "(switchtrace.E003) Allowed: an integer from 0 to 1000000."
    )
    project_setting = {"ENABLED": True, "COLOUR": "blue"}
    with caplog.at_level("ERROR", logger="switchtrace"):
        with override_settings(SWITCHTRACE=project_setting):
            for _ in range(3):
                with override_settings(SWITCHTRACE={"ENABLED": False}):
                    pass
            with override_settings(SWITCHTRACE=dict(project_setting)):
                pass
            project_setting["MAX_EVENTS"] = -1
            with override_settings(SWITCHTRACE=project_setting):
                pass
    told = [r.getMessage() for r in caplog.records if r.name == "switchtrace"]
    assert told == [colour, colour, colour, events]


def test_good_settings_give_no_message():
    with override_settings(
        SWITCHTRACE={
            "ENABLED": True,
            "SHOW_HEADERS": f"{__name__}.allow_everyone",
            "MAX_EVENTS": 0,
        },
        MIDDLEWARE=BASE_MIDDLEWARE,
    ):
        assert own_messages() == []
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": allow_everyone}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == []
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "MAX_EVENTS": 1_000_000}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == []
    # Unset (None, as a settings module may leave it): switchtrace off, nothing to say.
    with override_settings(SWITCHTRACE=None, MIDDLEWARE=[]):
        assert own_messages() == []
        assert build_config(None) == Config()


class ProjectsOwnSwitchTrace(SwitchTraceMiddleware):
    """A project's subclass of the middleware, under its own path."""


def test_a_subclass_of_the_middleware_is_the_middleware_to_the_checks():
    """It adds the headers: W001 said none did. Placed as the middleware is."""
    own = f"{__name__}.ProjectsOwnSwitchTrace"
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[own, *BASE_MIDDLEWARE[1:]]):
        assert own_messages() == []
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[*BASE_MIDDLEWARE[1:], own]):
        [(check_id, _message, hint)] = own_messages()
    assert (check_id, hint) == ("switchtrace.W002", f"Move {own!r} to the top of MIDDLEWARE.")


def test_missing_or_misplaced_middleware_is_a_warning():
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE[1:]):
        assert [m[0] for m in own_messages()] == ["switchtrace.W001"]
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE[::-1]):
        assert own_messages() == [
            (
                "switchtrace.W002",
                "SwitchTraceMiddleware is not first in MIDDLEWARE: a response that a middleware "
                "above it makes itself (a redirect) gets no headers, and one that a cache above "
                "it serves gets them only if the request that stored it was shown them, "
                "whatever SHOW_HEADERS says of this request.",
                f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
            )
        ]
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        assert own_messages() == []


def test_the_middleware_opentelemetry_instrumentation_django_puts_first_is_no_w002():
    """DjangoInstrumentor().instrument() (in manage.py, or under
    opentelemetry-instrument) inserts its middleware, and with
    is_sql_commentor_enabled its SQL commenter, at the top of MIDDLEWARE
    when it runs, above switchtrace's, which the project's settings list
    first: W002 told the user to move switchtrace's to the top, which no
    change of theirs could do. Neither answers a request; the server span
    of the first becomes the request span. Anything else above it still is
    a W002."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor  # (the test extra's)

    instrumentor = DjangoInstrumentor()

    def w002() -> list[str]:
        return [m[0] for m in own_messages() if m[0] == "switchtrace.W002"]

    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=list(BASE_MIDDLEWARE)):
        from django.conf import settings

        instrumentor.instrument(is_sql_commentor_enabled=True)
        try:
            assert settings.MIDDLEWARE[2:] == BASE_MIDDLEWARE  # both above switchtrace's
            assert w002() == []
            settings.MIDDLEWARE.insert(0, "tests.views.SyncOnlyMiddleware")
            assert w002() == ["switchtrace.W002"]
        finally:
            instrumentor.uninstrument()


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        (
            {"ENABLED": True, "OTLP_ENDPOINT": "localhost:4317"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'localhost:4317', which is not an http:// or "
            "https:// URL.",
        ),
        (
            # urlsplit drops the '\r': every export over OTLP/HTTP failed.
            {"ENABLED": True, "OTLP_ENDPOINT": "http://collector:4318\r"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://collector:4318\\r', which has a space or "
            "a control character in it.",
        ),
        (
            {"ENABLED": True},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": " http://collector:4318/otlp path "},
            "The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is "
            "'http://collector:4318/otlp path', which has a space or a control character in it.",
        ),
        (
            {"ENABLED": True},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:notaport"},
            "The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is "
            "'http://collector:notaport', whose port is not a number from 1 to 65535.",
        ),
        (
            {"ENABLED": True, "OTLP_ENDPOINT": "https://collector:65536"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'https://collector:65536', whose port is not a "
            "number from 1 to 65535.",
        ),
        (
            # A user and password in the endpoint are not shown (they were,
            # in the check's message and in the log as the app started).
            {"ENABLED": True},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://apiuser:SECRET@collector.example:0/x"},
            "The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is "
            "'https://REDACTED:REDACTED@collector.example:0/x', whose port is not a number from "
            "1 to 65535.",
        ),
        (
            # A base64 token holds a / (and here a ? and a #).
            {"ENABLED": True, "OTLP_ENDPOINT": "http://apikey:Zm9v/YmFy+c?Q#=@collector:4318\n"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://REDACTED:REDACTED@collector:4318\\n', "
            "which has a space or a control character in it.",
        ),
        (
            # A scheme mistyped: shown as written (a password holding :// too).
            {"ENABLED": True, "OTLP_ENDPOINT": "http//alice:pa://ss@collector:4318"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http//REDACTED:REDACTED@collector:4318', which is "
            "not an http:// or https:// URL.",
        ),
        (
            # An @ in the query is no user's (one in the path is taken for one): host and
            # port shown.
            {"ENABLED": True, "OTLP_ENDPOINT": "http://collector:0/v1/traces?tenant=ops@acme"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://collector:0/v1/traces?tenant=ops@acme', "
            "whose port is not a number from 1 to 65535.",
        ),
        (
            {"ENABLED": True, "OTLP_ENDPOINT": "http://u:p@collector:0/v1/traces?tenant=ops@acme"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is "
            "'http://REDACTED:REDACTED@collector:0/v1/traces?tenant=ops@acme', "
            "whose port is not a number from 1 to 65535.",
        ),
        (
            # The exporters connected to port 80 instead.
            {"ENABLED": True, "OTLP_ENDPOINT": "http://collector:0"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://collector:0', whose port is not a number "
            "from 1 to 65535.",
        ),
        (
            # Read by urlsplit as [::1]: every export failed ("Failed to parse").
            {"ENABLED": True},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]x:4318"},
            "The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is 'http://[::1]x:4318', whose "
            "host is not a name or an [IPv6 address] followed by its port.",
        ),
        (
            {"ENABLED": True, "OTLP_ENDPOINT": "http://:4318"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://:4318', which is not an http:// or "
            "https:// URL.",
        ),
        *(
            (
                {"ENABLED": True, "OTLP_ENDPOINT": endpoint},
                {},
                f"SWITCHTRACE['OTLP_ENDPOINT'] is {endpoint!r}, which is not an http:// or "
                "https:// URL.",
            )
            # Another scheme; not a string (the port alone); what urlsplit
            # raises ValueError for (an unclosed IPv6 bracket).
            for endpoint in ("grpc://collector:4317", 4317, "http://[::1:4318")
        ),
        (
            # A control character that is not space (an escape pasted in).
            {"ENABLED": True, "OTLP_ENDPOINT": "http://collector:4318/\x1b"},
            {},
            "SWITCHTRACE['OTLP_ENDPOINT'] is 'http://collector:4318/\\x1b', which has a space "
            "or a control character in it.",
        ),
        *(
            (
                # host:port: a gRPC target, which OTLP/HTTP does not take.
                {"ENABLED": True, **setting},
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
                "The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is 'collector:4317', "
                "which is not an http:// or https:// URL.",
            )
            for setting in ({}, {"OTLP_PROTOCOL": "http/protobuf"})
        ),
        *(
            (
                # No gRPC target either: no port, or not a host.
                {"ENABLED": True, "OTLP_PROTOCOL": "grpc"},
                {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
                f"The environment variable OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint!r}, which "
                "is not an http:// or https:// URL.",
            )
            for endpoint in ("collector", "collector:0", "col/lector:4317", "[::1:4317", ":4317")
        ),
        (
            {"ENABLED": True},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            },
            "The environment variable OTEL_EXPORTER_OTLP_PROTOCOL is 'http/json', which "
            "switchtrace does not support.",
        ),
        (
            # The gRPC exporter raised for it at startup (a traceback from
            # AppConfig.ready); the HTTP one ignores it.
            {"ENABLED": True, "OTLP_PROTOCOL": "grpc"},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "abc",
            },
            "The environment variable OTEL_EXPORTER_OTLP_TIMEOUT is 'abc', which is not a "
            "positive number of seconds, at most 1e9.",
        ),
        (
            {"ENABLED": True},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0",
            },
            "The environment variable OTEL_EXPORTER_OTLP_TRACES_TIMEOUT is '0', which is not "
            "a positive number of seconds, at most 1e9.",
        ),
        (
            # A number, but no timeout an export could wait out.
            {"ENABLED": True},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "inf",
            },
            "The environment variable OTEL_EXPORTER_OTLP_TIMEOUT is 'inf', which is not "
            "a positive number of seconds, at most 1e9.",
        ),
        (
            # Past the platform's time_t: every export failed.
            {"ENABLED": True},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "1e10",
            },
            "The environment variable OTEL_EXPORTER_OTLP_TIMEOUT is '1e10', which is not "
            "a positive number of seconds, at most 1e9.",
        ),
        (
            # Empty: the gRPC exporter raised for it ("could not convert
            # string to float: ''"), an E006 naming no variable.
            {"ENABLED": True, "OTLP_PROTOCOL": "grpc"},
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "10",
            },
            "The environment variable OTEL_EXPORTER_OTLP_TRACES_TIMEOUT is '', which is not "
            "a positive number of seconds, at most 1e9.",
        ),
        *(
            (
                # Headers the transport cannot send: every export failed, a
                # -bin key under gRPC as "internal error in span export" with
                # a traceback (the exporter raised TypeError), the others
                # with gRPC's or requests' error; the check said no issues.
                {"ENABLED": True, "OTLP_PROTOCOL": protocol},
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                    "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc",
                    f"OTEL_EXPORTER_OTLP_{traces}HEADERS": headers,
                },
                f"The environment variable OTEL_EXPORTER_OTLP_{traces}HEADERS holds the header "
                f"{why}, so every export would fail.",
            )
            for protocol, traces, headers, why in (
                (
                    "grpc",
                    "",
                    "api-key=abc,x-bin=1",
                    "'x-bin': its key ends in -bin, which gRPC takes for binary metadata (bytes)",
                ),
                (
                    "grpc",
                    "TRACES_",
                    "x-key=caf%C3%A9",
                    "'x-key': its value holds 'é' (percent-decoded), which gRPC does not take",
                ),
                (
                    "http/protobuf",
                    "TRACES_",
                    "x-key=%E2%82%AC",
                    "'x-key': its value holds '€' (percent-decoded), which HTTP does not take",
                ),
                (
                    "http/protobuf",
                    "",
                    "x-key=a%0Ab",
                    "'x-key': its value holds '\\n' (percent-decoded), which HTTP does not take",
                ),
                ("http/protobuf", "", "x%3Akey=1", "'x:key': HTTP does not take its name"),
                ("grpc", "", "x%2Fkey=1", "'x/key': gRPC does not take its key"),
            )
        ),
    ],
)
def test_a_malformed_endpoint_or_protocol_is_e006(value, environ, expected, monkeypatch):
    for name, setting in environ.items():
        monkeypatch.setenv(name, setting)
    with override_settings(SWITCHTRACE=value, MIDDLEWARE=BASE_MIDDLEWARE):
        [(check_id, msg, _hint)] = own_messages()
    assert (check_id, msg) == ("switchtrace.E006", expected)


@pytest.mark.parametrize(
    ("protocol", "headers"),
    [
        ("grpc", "authorization=Bearer%20abc,x-tenant=a.b_c-1"),
        # Latin-1; a name that is no token, a NUL: requests sends them.
        ("http/protobuf", "Authorization=Bearer abc,x-key=caf%C3%A9,x%40y=a%00b"),
    ],
)
def test_headers_the_transport_sends_are_no_problem(protocol, headers, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "OTLP_PROTOCOL": protocol}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == []


@pytest.mark.parametrize(
    ("environ", "settings", "problem"),
    [
        ({"OTEL_SERVICE_NAME": "caf\udce9"}, {}, "service.name is 'caf\\udce9'"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=caf\udce9"}, {}, "team is 'caf\\udce9'"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=caf\udce9"},
            {},
            "service.name is 'caf\\udce9'",
        ),
        # Not what the spans' resource holds: the setting's name is.
        ({"OTEL_SERVICE_NAME": "caf\udce9"}, {"SERVICE_NAME": "shop"}, None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=caf\udce9"}, {"SERVICE_NAME": "shop"}, None),
    ],
)
def test_a_resource_that_is_not_utf8_is_e006(environ, settings, problem, tmp_path, monkeypatch):
    """'café' from an environment file saved in Latin-1: Python reads the
    byte as a lone surrogate, and every span's encoding raised ('internal
    error in span attribute encoding', a traceback; the check said no
    issues). Spans off, headers on, as for the span limits; not when
    SERVICE_NAME names the service instead."""
    from switchtrace.django_app import telemetry

    from ..support import wsgi_request
    from .test_middleware import project

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    switchtrace = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with project(SWITCHTRACE={**switchtrace, **settings}) as (_asgi, wsgi):
        made = telemetry.pipeline() is not None
        assert wsgi_request(wsgi, "/async/").figures() == (2, 2, 1, 1)
        with override_settings(MIDDLEWARE=BASE_MIDDLEWARE):
            messages = own_messages()
        for name in environ:  # (for the suite's own settings, made again as this block ends)
            monkeypatch.delenv(name)
    if problem is None:
        assert (made, messages) == (True, [])
    else:
        assert (made, messages) == (
            False,
            [
                (
                    "switchtrace.E006",
                    f"The spans' resource cannot be written, so no spans are exported: its "
                    f"attribute {problem}, which holds bytes that are not UTF-8 (from "
                    "SERVICE_NAME, OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES).",
                    "Correct or unset the OTEL_* variable it names, or choose another EXPORTER.",
                )
            ],
        )
    assert telemetry.failure() is None


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_general_timeout_is_not_checked_when_the_traces_one_is_set(protocol, monkeypatch):
    """The OTLP exporters read OTEL_EXPORTER_OTLP_TRACES_TIMEOUT first and the
    general variable only without it: a value there they never read (another
    tool's) kept switchtrace disabled as E006."""
    from switchtrace.exporters.pipeline import build_exporter

    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5s",
    }
    for name, value in environ.items():  # the exporters read os.environ themselves
        monkeypatch.setenv(name, value)
    config = build_config({"ENABLED": True})
    assert (config.problems, config.enabled) == ((), True)
    exporter = build_exporter(config.export)  # (raised for 5s without the traces one)
    try:
        timeout = getattr(exporter, "_timeout", None)  # gRPC's, or the HTTP client's
        assert (timeout or exporter._client._timeout) == 5.0
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "insecure", "secure"),
    [
        ("collector:4317", None, True),
        ("otel_collector:4317", "true", False),
        ("[::1]:4317", "false", True),
        ("10.0.0.7:4317", "TRUE", False),
    ],
)
def test_a_grpc_target_is_an_otlp_grpc_endpoint(endpoint, insecure, secure, monkeypatch):
    """host:port, which gRPC takes as its target (OpenTelemetry's exporter
    specification has OTLP/gRPC take what the gRPC client takes): no E006,
    and the exporter sends to it as it is, with TLS unless
    OTEL_EXPORTER_OTLP_INSECURE is true, as the exporter reads it."""
    from switchtrace.exporters.pipeline import build_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    if insecure is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", insecure)
    for setting, environ in (({"OTLP_PROTOCOL": "grpc"}, {}), ({}, {"PROTOCOL": "grpc"})):
        for name, value in environ.items():
            monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{name}", value)
        config = build_config({"ENABLED": True, **setting})
        assert (config.problems, config.enabled) == ((), True)
        assert (config.export.protocol, config.export.endpoint) == ("grpc", endpoint)
        exporter = build_exporter(config.export)
        try:
            assert (exporter._endpoint, exporter._insecure) == (endpoint, not secure)
        finally:
            exporter.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "target", "secure"),
    [("https://collector:4317", "collector:4317", True), ("http://c:4317/", "c:4317", False)],
)
def test_a_grpc_url_means_tls_by_its_scheme(endpoint, target, secure):
    """https:// is TLS, http:// is not."""
    from switchtrace.exporters.pipeline import build_exporter

    config = build_config({"ENABLED": True, "OTLP_PROTOCOL": "grpc", "OTLP_ENDPOINT": endpoint})
    assert (config.problems, config.enabled) == ((), True)
    exporter = build_exporter(config.export)
    try:
        assert (exporter._endpoint, exporter._insecure) == (target, not secure)
    finally:
        exporter.shutdown()


def test_an_empty_timeout_is_unset_for_the_http_exporter(monkeypatch):
    """The HTTP exporter takes an empty OTEL_EXPORTER_OTLP_TIMEOUT as unset
    (its default, 10 seconds): only the gRPC one raises for it, the E006 of
    test_a_malformed_endpoint_or_protocol_is_e006."""
    from switchtrace.exporters.pipeline import build_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "")
    config = build_config({"ENABLED": True})
    assert (config.problems, config.enabled) == ((), True)
    assert (config.export.exporter, config.export.protocol) == ("otlp", "http/protobuf")
    exporter = build_exporter(config.export)
    try:
        assert exporter._client._timeout == 10.0
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_timeout_under_a_second_is_a_positive_number_of_seconds(protocol):
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
    }
    config = build_config({"ENABLED": True}, environ=environ)
    assert (config.problems, config.enabled) == ((), True)


def test_an_otel_variable_the_otlp_exporter_refuses_is_e006_and_leaves_the_headers(
    monkeypatch, caplog
):
    """The gRPC exporter raises for an OTEL_EXPORTER_OTLP_COMPRESSION it does
    not take: at startup, a traceback out of AppConfig.ready stopped the
    server; now it is told, spans are off and requests keep their headers."""
    from switchtrace.django_app import telemetry

    from ..support import wsgi_request
    from .test_middleware import project

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "bogus")
    expected = (
        "The otlp exporter cannot be made, so no spans are exported: "
        'InvalidCompressionValueException: Invalid value "bogus" for compression envvar '
        "OTEL_EXPORTER_OTLP_COMPRESSION"
    )
    with (
        caplog.at_level("ERROR", logger="switchtrace"),
        project(SWITCHTRACE={"ENABLED": True}) as (_asgi, wsgi),
    ):
        assert telemetry.pipeline() is None
        assert wsgi_request(wsgi, "/async/").figures() == (2, 2, 1, 1)
        with override_settings(MIDDLEWARE=BASE_MIDDLEWARE):
            assert own_messages() == [
                (
                    "switchtrace.E006",
                    expected + ".",
                    "Correct or unset the OTEL_* variable it names, or choose another EXPORTER.",
                )
            ]
    # As a setting that keeps switchtrace disabled is logged: with the id and hint.
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: " + expected + ". (switchtrace.E006) Correct or unset the OTEL_* "
        "variable it names, or choose another EXPORTER."
    ]
    assert telemetry.failure() is None  # the suite's own settings back


def test_the_same_export_settings_again_retry_an_exporter_that_could_not_be_made(
    monkeypatch, caplog
):
    """The exporter could not be made (a variable the gRPC exporter refuses);
    the variable corrected, the same export settings configured again make
    it, rather than keeping none."""
    from switchtrace.django_app import telemetry

    from .test_middleware import project

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "bogus")
    with caplog.at_level("CRITICAL"), project(SWITCHTRACE={"ENABLED": True}):
        assert telemetry.pipeline() is None
        options = telemetry._options
        assert telemetry.failure() is not None
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_COMPRESSION")
        telemetry.configure(options)
        assert telemetry.failure() is None
        assert telemetry.pipeline().options == options
    assert telemetry.pipeline().options.exporter == "memory"  # the suite's own back


def test_a_span_limit_the_sdk_refuses_is_e006_naming_it(monkeypatch, caplog, tmp_path):
    """The SDK's provider refuses an OTEL_*_LIMIT that is not a non-negative
    integer: spans off, headers on, as for an exporter that cannot be made;
    but the message blamed the file exporter and the hint an
    OTEL_EXPORTER_OTLP_* variable. It names the span limits now."""
    from switchtrace.django_app import telemetry

    from ..support import wsgi_request
    from .test_middleware import project

    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4k")
    expected = (
        "The OpenTelemetry span limits cannot be read, so no spans are exported: "
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT must be a non-negative integer but got 4k"
    )
    settings = {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(tmp_path / "t.jsonl")}
    with (
        caplog.at_level("ERROR", logger="switchtrace"),
        project(SWITCHTRACE=settings) as (_asgi, wsgi),
    ):
        assert telemetry.pipeline() is None
        assert wsgi_request(wsgi, "/async/").figures() == (2, 2, 1, 1)
        with override_settings(MIDDLEWARE=BASE_MIDDLEWARE):
            assert own_messages() == [
                (
                    "switchtrace.E006",
                    expected + ".",
                    "Correct or unset the OTEL_* variable it names, or choose another EXPORTER.",
                )
            ]
        # (For the suite's own settings, made again as this block ends.)
        monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    assert [r.getMessage() for r in caplog.records if r.name == "switchtrace"] == [
        "switchtrace: " + expected + ". (switchtrace.E006) Correct or unset the OTEL_* "
        "variable it names, or choose another EXPORTER."
    ]
    assert telemetry.failure() is None


_SPAN_COUNT_LIMIT = """
import os, sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["switchtrace.django_app"],
    MIDDLEWARE=["switchtrace.django_app.middleware.SwitchTraceMiddleware"],
    SWITCHTRACE={{"ENABLED": {enabled}, "EXPORTER": "memory"}},
)
django.setup()
from django.core.management import call_command
try:
    call_command("check")
except Exception as exc:
    print(exc)
import opentelemetry.sdk.trace as sdk
print(os.environ["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"], sdk.SPAN_ATTRIBUTE_COUNT_LIMIT)
"""


@pytest.mark.parametrize("enabled", [False, True])
def test_a_span_count_limit_the_sdk_refuses_on_import_is_e006_too(enabled):
    """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT is read as opentelemetry.sdk.trace is
    imported, which raised ValueError out of Django's startup, switchtrace
    disabled too. The import is made with the variable set aside (the
    variable as it was once it is done); enabled, the SDK's span limits
    refuse it: E006, as for the other limits."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _SPAN_COUNT_LIMIT.format(enabled=enabled)],
        env={**os.environ, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "abc"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stderr) == (0, "")
    e006 = (
        "SystemCheckError: System check identified some issues:\n\nERRORS:\n"
        "?: (switchtrace.E006) The OpenTelemetry span limits cannot be read, so no spans are "
        "exported: OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT must be a non-negative integer but got abc."
        "\n\tHINT: Correct or unset the OTEL_* variable it names, or choose another EXPORTER."
        "\n\nSystem check identified 1 issue (0 silenced).\n"
    )
    if enabled:
        assert out.stdout == e006 + "abc 128\n"
    else:
        assert out.stdout == "System check identified no issues (0 silenced).\nabc 128\n"


@pytest.mark.parametrize(
    "value",
    [
        {"ENABLED": True, "EXPORTER": "none"},
        {"ENABLED": True, "EXPORTER": "file"},
        {"ENABLED": True, "EXPORTER": "console"},
        {"ENABLED": True},  # no endpoint: the file exporter
        {"ENABLED": False},  # installed and off (production settings)
    ],
)
def test_otel_variables_matter_only_when_spans_go_out_over_otlp(value, monkeypatch, tmp_path):
    # Other tools set these, with values switchtrace does not support.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    if value != {"ENABLED": True}:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with override_settings(SWITCHTRACE=value, MIDDLEWARE=BASE_MIDDLEWARE):
        assert own_messages() == []
        assert build_config(value).enabled is value["ENABLED"]
    # Nor, while off, a FILE_PATH this process cannot write (a read-only
    # file system in production).
    off = {"ENABLED": False, "FILE_PATH": str(tmp_path / "missing" / "t.jsonl")}
    assert build_config(off).problems == ()


def test_an_unknown_exporter_names_the_allowed_ones():
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "EXPORTER": "jaeger"}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == [
            (
                "switchtrace.E003",
                "SWITCHTRACE['EXPORTER'] is 'jaeger', which is not allowed.",
                "Allowed: None (OTEL_TRACES_EXPORTER's otlp, console or none, else otlp when "
                "an OTLP endpoint is configured, else file), 'otlp', 'file', 'console', "
                "'memory' or 'none'.",
            )
        ]


def test_each_middleware_that_adds_avoidable_switches_under_asgi_is_a_warning():
    from project.settings import STARTPROJECT_MIDDLEWARE

    with override_settings(
        SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[MIDDLEWARE_PATH, *STARTPROJECT_MIDDLEWARE]
    ):
        messages = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert [m.obj for m in messages] == STARTPROJECT_MIDDLEWARE
    assert messages[1].msg == (
        "SessionMiddleware is async_capable but its process_request and process_response are "
        "synchronous: under ASGI each request crosses the sync/async boundary 4 more times "
        "for it (Django ticket #37177)."
    )
    assert messages[1].hint == (
        "Use a subclass of SessionMiddleware with async_capable = False, or rewrite it as a "
        "sync-and-async middleware (an async __call__ for an async get_response: "
        "MiddlewareMixin runs every hook in sync_to_async, and an async hook fails there); "
        "'switchtrace explain' shows what each change saves."
    )
    assert messages[-1].msg.startswith(
        "XFrameOptionsMiddleware is async_capable but its process_response is synchronous: "
        "under ASGI each request crosses the sync/async boundary 2 more times"
    )
    csrf = next(m for m in messages if m.obj.endswith("CsrfViewMiddleware"))
    assert csrf.msg == (
        "CsrfViewMiddleware is async_capable but its process_request and process_response "
        "are synchronous: under ASGI each request crosses the sync/async boundary 4 more "
        "times for it (Django ticket #37177). Its process_view is synchronous too: 2 more "
        "for each request that reaches a view, which only an async process_view saves."
    )


class SyncOnlyMiddleware:
    """Synchronous only, as WhiteNoise's and django-silk's are."""

    sync_capable, async_capable = True, False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def test_middleware_above_a_synchronous_only_one_runs_synchronously_and_is_no_warning():
    """Under ASGI a synchronous-only middleware makes every middleware above
    it run synchronously (Django's load_middleware), their hooks then costing
    no switch: each was still warned of as costing 2 or 4. Those below it
    still run in async mode; a synchronous process_view costs 2 wherever it
    is (Django adapts the view middleware to the handler)."""
    from project.settings import STARTPROJECT_MIDDLEWARE

    sync_only = f"{__name__}.SyncOnlyMiddleware"
    security, *below = STARTPROJECT_MIDDLEWARE
    with override_settings(
        SWITCHTRACE={"ENABLED": True},
        MIDDLEWARE=[MIDDLEWARE_PATH, security, sync_only, *below],
    ):
        messages = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert [m.obj for m in messages] == below
    with override_settings(
        SWITCHTRACE={"ENABLED": True},
        MIDDLEWARE=[MIDDLEWARE_PATH, *STARTPROJECT_MIDDLEWARE, sync_only],
    ):
        messages = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert [(m.obj, m.msg) for m in messages] == [
        (
            "django.middleware.csrf.CsrfViewMiddleware",
            "CsrfViewMiddleware's process_view is synchronous: under ASGI each request that "
            "reaches a view crosses the sync/async boundary 2 more times for it.",
        )
    ]


def test_a_middleware_without_either_flag_is_synchronous_only_for_the_check():
    """A middleware class that sets neither sync_capable nor async_capable
    is synchronous only, as Django's load_middleware reads it: the
    startproject middleware above it run synchronously and are no warning."""
    from project.settings import STARTPROJECT_MIDDLEWARE

    with override_settings(
        SWITCHTRACE={"ENABLED": True},
        MIDDLEWARE=[
            MIDDLEWARE_PATH,
            *STARTPROJECT_MIDDLEWARE,
            "tests.test_predict_support.OldStyle",
        ],
    ):
        messages = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert [m.obj for m in messages] == ["django.middleware.csrf.CsrfViewMiddleware"]


class ViewOnlyMiddleware:
    """Not a MiddlewareMixin: only its process_view costs switches under ASGI."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        return None


def test_a_middleware_whose_only_synchronous_hook_is_process_view_is_a_warning():
    path = f"{__name__}.ViewOnlyMiddleware"
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[MIDDLEWARE_PATH, path]):
        [message] = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert (message.obj, message.msg, message.hint) == (
        path,
        "ViewOnlyMiddleware's process_view is synchronous: under ASGI each request that "
        "reaches a view crosses the sync/async boundary 2 more times for it.",
        "Give ViewOnlyMiddleware an async process_view; 'switchtrace explain' shows what it "
        "saves, and whether marking ViewOnlyMiddleware sync-only (async_capable = False) "
        "saves more.",
    )


class SyncOnlyViewMiddleware(ViewOnlyMiddleware):
    async_capable = False


class AsyncOnlyViewMiddleware(ViewOnlyMiddleware):
    sync_capable = False


@pytest.mark.parametrize("name", ["SyncOnlyViewMiddleware", "AsyncOnlyViewMiddleware"])
def test_a_one_mode_middleware_whose_process_view_is_synchronous_is_not_told_to_be_sync_only(
    name,
):
    """Sync-only already; async-only, marked sync-only too it would be
    neither, which Django refuses at startup."""
    path = f"{__name__}.{name}"
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[MIDDLEWARE_PATH, path]):
        [message] = [m for m in checks.run_checks() if m.id == "switchtrace.W003"]
    assert message.hint == (
        f"Give {name} an async process_view; 'switchtrace explain' shows what it saves."
    )


class AsyncViewMiddleware(ViewOnlyMiddleware):
    """Its process_view is async: it costs no switch under ASGI."""

    async def process_view(self, request, view, args, kwargs):
        return None


class HelperMethodsMiddleware:
    """Not a MiddlewareMixin: methods named as its hooks are its own, which
    Django does not call (its __call__ could, without a switch)."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_request(self, request):
        return None

    def process_response(self, request, response):
        return response


class SyncOnlyMixinMiddleware(MiddlewareMixin):
    sync_capable, async_capable = True, False

    def process_request(self, request):
        return None


def test_middleware_whose_hooks_cost_no_switch_is_no_warning():
    for name in ("AsyncViewMiddleware", "HelperMethodsMiddleware"):
        with override_settings(
            SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=[MIDDLEWARE_PATH, f"{__name__}.{name}"]
        ):
            assert [m for m in checks.run_checks() if m.id == "switchtrace.W003"] == [], name


def test_with_an_unimportable_middleware_the_others_are_still_judged():
    """Django does not start then, so the modes are not worked out: every
    async_capable middleware is taken to run in async mode (a synchronous-only
    one still is no warning)."""
    from switchtrace.django_app.checks import check_middleware_switches

    session = "django.contrib.sessions.middleware.SessionMiddleware"
    middleware = [
        MIDDLEWARE_PATH,
        "shop.middleware.Missing",
        f"{__name__}.SyncOnlyMixinMiddleware",
        session,
    ]
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=middleware):
        messages = [(m.id, m.obj) for m in check_middleware_switches()]
    assert messages == [("switchtrace.E007", None), ("switchtrace.W003", session)]


def test_middleware_costs_are_not_told_while_switchtrace_is_off():
    from project.settings import STARTPROJECT_MIDDLEWARE

    with override_settings(
        SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[MIDDLEWARE_PATH, *STARTPROJECT_MIDDLEWARE]
    ):
        assert [m for m in checks.run_checks() if m.id == "switchtrace.W003"] == []


def test_an_unimportable_middleware_is_named():
    with override_settings(MIDDLEWARE=[MIDDLEWARE_PATH, "shop.middleware.Missing"]):
        [message] = [m for m in checks.run_checks() if m.id == "switchtrace.E007"]
    assert message.msg == (
        "MIDDLEWARE entry 'shop.middleware.Missing' cannot be imported: No module named 'shop'."
    )


def test_a_middleware_whose_module_raises_on_import_is_named():
    # Not only an ImportError: a module that checks its settings on import
    # (ImproperlyConfigured), or has a bug. Before, the check raised it, and
    # `manage.py check` and `migrate` (which import no middleware) failed
    # with a traceback. (switchtrace's check alone: Django >= 5.1's auth
    # check imports the middleware too, and raises it.)
    from switchtrace.django_app.checks import check_middleware_switches

    with override_settings(MIDDLEWARE=[MIDDLEWARE_PATH, "tests.show_raising.Middleware"]):
        [message] = [m for m in check_middleware_switches() if m.id == "switchtrace.E007"]
    assert message.msg == (
        "MIDDLEWARE entry 'tests.show_raising.Middleware' cannot be imported: "
        "RuntimeError: a bug in the module."
    )


def switchtraces_own_checks() -> list[tuple[str, str, str | None]]:
    """What switchtrace's checks say, without Django's (Django >= 5.1's auth
    check imports every MIDDLEWARE entry and raises what it cannot)."""
    from switchtrace.django_app import checks as own

    return [
        (m.id, m.msg, m.hint)
        for check in (own.check_settings, own.check_middleware_switches, own.check_internal_ips)
        for m in check()
    ]


class _UnequalText(str):
    """A string whose ``==`` raises."""

    def __eq__(self, other):
        raise ValueError("no ==")

    __hash__ = str.__hash__

    def __repr__(self):
        return "<unequal>"


class _Unmeasurable(str):
    """A repr whose length cannot be taken."""

    def __len__(self):
        raise RuntimeError("no len")


class _OddlyShown:
    """A value whose repr is no plain str."""

    def __repr__(self):
        return _Unmeasurable("<oddly shown>")


class _Unequal:
    """A value whose ``==`` raises (``in`` asks it)."""

    def __eq__(self, other):
        raise ValueError("no ==")

    __hash__ = None

    def __repr__(self):
        return "<unequal>"


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        (
            "EXPORTER",
            "None (OTEL_TRACES_EXPORTER's otlp, console or none, else otlp when an OTLP "
            "endpoint is configured, else file), 'otlp', 'file', 'console', 'memory' or 'none'.",
        ),
        (
            "OTLP_PROTOCOL",
            "None (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else "
            "'http/protobuf'), 'grpc' or 'http/protobuf'.",
        ),
    ],
)
@pytest.mark.parametrize("unequal", [_Unequal(), _UnequalText("(not one)")], ids=["object", "str"])
def test_a_value_whose_equality_raises_is_e003(key, allowed, unequal):
    """Asked whether it is one of the allowed strings, the value's own
    ``__eq__`` (a str subclass's is asked first) raised out of the checks,
    and Django did not start."""
    with override_settings(SWITCHTRACE={"ENABLED": True, key: unequal}):
        assert switchtraces_own_checks() == [
            (
                "switchtrace.E003",
                f"SWITCHTRACE['{key}'] is <unequal>, which is not allowed.",
                f"Allowed: {allowed}",
            )
        ]


def test_a_value_whose_repr_is_no_plain_str_is_shown_as_one():
    """repr() may return a str subclass: its own __len__ raised out of the
    checks as the value was named."""
    with override_settings(SWITCHTRACE={"ENABLED": True, "FILE_PATH": _OddlyShown()}):
        [(code, text, _hint)] = switchtraces_own_checks()
    assert (code, text) == (
        "switchtrace.E003",
        "SWITCHTRACE['FILE_PATH'] is <oddly shown>, which is not allowed.",
    )


@pytest.mark.parametrize(
    "text", [lazystr, gettext_lazy, _UnequalText], ids=["lazystr", "gettext_lazy", "str"]
)
def test_an_allowed_exporter_or_protocol_given_as_a_lazy_or_odd_string_is_taken(text):
    """A lazy string is its text, a str subclass its value as a str (its own
    ``==`` never asked)."""
    config = build_config(
        {"ENABLED": True, "EXPORTER": text("otlp"), "OTLP_PROTOCOL": text("grpc")}
    )
    assert config.problems == ()
    assert (type(config.export.exporter), config.export.exporter) == (str, "otlp")
    assert (type(config.export.protocol), config.export.protocol) == (str, "grpc")


@pytest.mark.parametrize("lazy", [lazystr, gettext_lazy], ids=["lazystr", "gettext_lazy"])
def test_every_string_setting_given_as_a_lazy_string_is_its_text(lazy, tmp_path):
    """Lazy strings were taken for EXPORTER and OTLP_PROTOCOL only: a lazy
    OTLP_ENDPOINT was "'http://localhost:4318', which is not an http:// or
    https:// URL", a FILE_PATH, SERVICE_NAME or SHOW_HEADERS path refused as
    what they are."""
    config = build_config(
        {
            "ENABLED": True,
            "EXPORTER": "otlp",
            "OTLP_ENDPOINT": lazy("http://localhost:4318"),
            "SERVICE_NAME": lazy("shop"),
            "FILE_PATH": lazy(str(tmp_path / "t.jsonl")),
            "SHOW_HEADERS": lazy("switchtrace.django_app.headers.internal_ips"),
        },
        environ={},
    )
    assert config.problems == ()
    assert (config.export.endpoint, config.export.service_name) == ("http://localhost:4318", "shop")
    assert config.export.file_path == str(tmp_path / "t.jsonl")


def test_a_lazy_object_of_another_type_is_not_taken_for_its_repr():
    """A lazy bytes or int is refused as what it is, not taken as the text
    of its repr ("b'shop'", "5")."""
    from django.utils.functional import lazy

    config = build_config(
        {
            "ENABLED": True,
            "SERVICE_NAME": lazy(lambda: b"shop", bytes)(),
            "MAX_EVENTS": lazy(lambda: 5, int)(),
        }
    )
    assert [problem.msg for problem in config.problems] == [
        "SWITCHTRACE['MAX_EVENTS'] is 5, which is not allowed.",
        "SWITCHTRACE['SERVICE_NAME'] is b'shop', which is not allowed.",
    ]
    # Told by its type, not by its ==, which a str subclass's may raise.
    unequal = build_config({"ENABLED": True, "SERVICE_NAME": lazy(_UnequalText, str)("shop")})
    assert (unequal.problems, unequal.export.service_name) == ((), "shop")


UNPRINTABLE = "tests.unprintable_raising.Unprintable: (its message cannot be shown: str() raises)"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # A key or value whose repr() raises: an int of more digits than
        # Python converts (ValueError), an exception whose __str__ raises.
        # Each raised out of the checks (and out of AppConfig.ready).
        (
            {"SWITCHTRACE": {"ENABLED": True, 10**5000: 1}},
            [
                (
                    "switchtrace.E002",
                    "Unknown key <int object> in the SWITCHTRACE setting.",
                    "Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, MAX_EVENTS, "
                    "OTLP_ENDPOINT, OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, "
                    "SHOW_HEADERS.",
                )
            ],
        ),
        (
            {"SWITCHTRACE": {"ENABLED": True, "SHOW_HEADERS": "tests.unprintable_raising.show"}},
            [
                (
                    "switchtrace.E004",
                    "SWITCHTRACE['SHOW_HEADERS'] = 'tests.unprintable_raising.show' cannot be "
                    "imported: Unprintable: (its message cannot be shown: str() raises).",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        (
            {"MIDDLEWARE": [MIDDLEWARE_PATH, "tests.unprintable_raising.Middleware", 10**5000]},
            [
                (
                    "switchtrace.E007",
                    "MIDDLEWARE entry 'tests.unprintable_raising.Middleware' cannot be imported: "
                    "Unprintable: (its message cannot be shown: str() raises).",
                    "Fix the dotted path; Django will not start with it.",
                ),
                (
                    "switchtrace.E007",
                    "MIDDLEWARE entry <int object> cannot be imported: AttributeError: 'int' "
                    "object has no attribute 'rsplit'.",
                    "Fix the dotted path; Django will not start with it.",
                ),
            ],
        ),
        # MIDDLEWARE that is no list: a number raised TypeError out of the
        # checks; one dotted path (a tuple's comma forgotten) was taken for
        # a list of its characters, each an E007 of its own, and W001 said
        # the middleware was not in MIDDLEWARE.
        *(
            (
                {"MIDDLEWARE": value},
                [
                    (
                        "switchtrace.E007",
                        "MIDDLEWARE must be a list of dotted paths; it is of type "
                        f"{kind}: {value!r}.",
                        f"For example: MIDDLEWARE = [{MIDDLEWARE_PATH!r}, ...].",
                    )
                ],
            )
            for value, kind in ((5, "int"), (MIDDLEWARE_PATH, "str"))
        ),
    ],
)
def test_what_cannot_be_shown_or_iterated_is_an_error_not_an_exception(settings, expected):
    settings = {"SWITCHTRACE": {"ENABLED": True}, "MIDDLEWARE": BASE_MIDDLEWARE, **settings}
    with override_settings(**settings):
        assert switchtraces_own_checks() == expected


def test_unset_or_empty_middleware_is_still_no_middleware():
    for value in (None, [], (), ""):
        with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=value):
            assert [m[0] for m in switchtraces_own_checks()] == ["switchtrace.W001"]


class _BytesPath:
    def __fspath__(self):
        return b"/tmp/t.jsonl"

    def __repr__(self):
        return "_BytesPath()"


class _IntPath(_BytesPath):
    def __fspath__(self):
        return 3

    def __repr__(self):
        return "_IntPath()"


class _RaisingPath(_BytesPath):
    def __fspath__(self):
        raise OSError("no path")

    def __repr__(self):
        return "_RaisingPath()"


@pytest.mark.parametrize("path", [_BytesPath(), _IntPath(), _RaisingPath()])
def test_a_file_path_object_that_gives_no_text_path_is_e003(path):
    """An os.PathLike is taken for FILE_PATH; one whose __fspath__ raised, or
    gave an int, raised out of the checks; one that gave bytes (refused when
    given directly) passed, then raised TypeError once the file exporter was
    chosen."""
    for enabled in (False, True):
        config = build_config(
            {"ENABLED": enabled, "EXPORTER": "file", "FILE_PATH": path}, environ={}
        )
        assert [(p.id, p.msg, p.hint) for p in config.problems] == [
            (
                "switchtrace.E003",
                f"SWITCHTRACE['FILE_PATH'] is {path!r}, which is not allowed.",
                "Allowed: a path to a file in an existing, writable directory.",
            )
        ]


@pytest.mark.parametrize("value", ["true", "TRUE", " True ", "true\n"])
def test_otel_sdk_disabled_is_read_as_the_sdk_reads_it(value):
    """Compared case-insensitively, blanks around it ignored, as the SDK does:
    no spans are made (the headers stay)."""
    config = build_config({"ENABLED": True}, environ={"OTEL_SDK_DISABLED": value})
    assert (config.enabled, config.export, config.problems) == (True, None, ())


def test_a_timeout_of_1e9_seconds_is_allowed_and_one_above_is_e006():
    def problems(seconds: str) -> list[str]:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": seconds,
        }
        return [p.id for p in build_config({"ENABLED": True}, environ=environ).problems]

    assert [problems(s) for s in ("1e9", "1000000000", "1000000000.5", "1e10")] == [
        [],
        [],
        ["switchtrace.E006"],
        ["switchtrace.E006"],
    ]


def test_a_mapping_that_is_no_dict_is_e001():
    import types

    [problem] = build_config(types.MappingProxyType({"ENABLED": True}), environ={}).problems
    assert problem.id == "switchtrace.E001"


def test_deploy_check_warns_when_every_client_gets_the_headers():
    def deploy_ids():
        return [
            m.id
            for m in checks.run_checks(include_deployment_checks=True)
            if m.id == "switchtrace.W004"
        ]

    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE):
        assert deploy_ids() == ["switchtrace.W004"]
        assert [m for m in checks.run_checks() if m.id == "switchtrace.W004"] == []
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": False}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert deploy_ids() == []
    # Shown to some: what W004 recommends, no warning.
    for show in ("switchtrace.django_app.headers.internal_ips", lambda request: True):
        with override_settings(
            SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": show},
            MIDDLEWARE=BASE_MIDDLEWARE,
            INTERNAL_IPS=["127.0.0.1"],
        ):
            assert deploy_ids() == []
    # Installed and off (production settings): nothing shown to anyone.
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=BASE_MIDDLEWARE):
        assert deploy_ids() == []


def test_headers_shown_to_internal_ips_with_none_is_w005():
    show = {"ENABLED": True, "SHOW_HEADERS": "switchtrace.django_app.headers.internal_ips"}

    def w005(**settings):
        with override_settings(MIDDLEWARE=BASE_MIDDLEWARE, **settings):
            return [m for m in checks.run_checks() if m.id == "switchtrace.W005"]

    [message] = w005(SWITCHTRACE=show, INTERNAL_IPS=[])
    assert (message.msg, message.hint) == (
        "SWITCHTRACE['SHOW_HEADERS'] shows the headers to the addresses in INTERNAL_IPS, and "
        "INTERNAL_IPS is empty: no response gets them.",
        "Add the addresses that may see them to INTERNAL_IPS, e.g. INTERNAL_IPS = ['127.0.0.1'].",
    )
    assert w005(SWITCHTRACE=show, INTERNAL_IPS=["127.0.0.1"]) == []
    assert w005(SWITCHTRACE={**show, "ENABLED": False}, INTERNAL_IPS=[]) == []
    assert w005(SWITCHTRACE={"ENABLED": True}, INTERNAL_IPS=[]) == []

    class EveryAddress(list):  # the allow-all idiom: empty, and holds any address
        def __contains__(self, address):
            return True

    assert w005(SWITCHTRACE=show, INTERNAL_IPS=EveryAddress()) == []

    class Unreadable(list):  # (not the check's to judge, nor to raise)
        def __bool__(self):
            raise RuntimeError("no bool")

    assert w005(SWITCHTRACE=show, INTERNAL_IPS=Unreadable()) == []


@pytest.mark.parametrize(
    "where",
    [
        "a directory",
        "a missing directory",
        "a NUL character",
        "a name too long",
        # Each of these passed, and every export failed (or the check raised).
        "a name the file system cannot encode",
        "a directory's name",
        "a link into a missing directory",
    ],
)
def test_a_file_path_the_file_exporter_cannot_write_is_e008(where, tmp_path):
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "traces.jsonl")
    path, reason = {
        "a name the file system cannot encode": (
            f"{tmp_path}/\ud800.jsonl",  # (a lone surrogate: no encoding has it)
            f"its name cannot be written in the file system's encoding "
            f"({sys.getfilesystemencoding()})",
        ),
        "a directory's name": (
            f"{tmp_path}/traces/",
            "it ends with a path separator, as a directory's name does",
        ),
        "a link into a missing directory": (
            tmp_path / "link",
            f"the directory {tmp_path / 'gone'} does not exist",
        ),
        "a directory": (tmp_path, "it is a directory"),
        "a missing directory": (
            tmp_path / "gone" / "traces.jsonl",
            f"the directory {tmp_path / 'gone'} does not exist",
        ),
        "a NUL character": (tmp_path / "traces\0.jsonl", "it contains a NUL character"),
        # Its rotation's name, NAME.1, one byte too long.
        "a name too long": (
            tmp_path / ("t" * (longest - 1)),
            f"its name, with the .1 of rotation, is longer than the {longest} bytes allowed",
        ),
    }[where]
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "FILE_PATH": str(path)}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        shown = repr(str(path))
        if len(shown) > 200:  # the value as messages show it: 200 characters at most
            shown = shown[:197] + "..."
        assert own_messages() == [
            (
                "switchtrace.E008",
                f"SWITCHTRACE['FILE_PATH'] is {shown}, which the file exporter cannot "
                f"write: {reason}.",
                "Give a path to a file in an existing directory this process may write to, "
                "or choose another EXPORTER.",
            )
        ]
    # Not checked when spans go elsewhere.
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "FILE_PATH": str(path), "EXPORTER": "console"},
        MIDDLEWARE=BASE_MIDDLEWARE,
    ):
        assert own_messages() == []


def test_a_file_path_that_is_a_link_to_a_file_not_made_yet_is_written_through(tmp_path):
    """A link to a file in a directory that exists: the first export makes
    the file where the link leads."""
    from switchtrace.exporters import FileSpanExporter
    from switchtrace.exporters.encode import EncodedSpans

    (tmp_path / "spans").mkdir()
    link = tmp_path / "traces.jsonl"
    link.symlink_to(tmp_path / "spans" / "traces.jsonl")
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "FILE_PATH": str(link)}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == []
    FileSpanExporter(link).export(EncodedSpans('{"resourceSpans":[]}', 1))
    assert (tmp_path / "spans" / "traces.jsonl").read_text() == '{"resourceSpans":[]}\n'


_WITHOUT_ROOT = """
import json, os, sys
from switchtrace.django_app.conf import build_config
settings = json.loads(sys.stdin.read())
build_config(settings[0], environ={})  # what it imports, imported while root
try:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
except PermissionError as exc:
    sys.exit(f"cannot become nobody: {exc}")
print(json.dumps([[p.msg for p in build_config(raw, environ={}).problems] for raw in settings]))
"""


def _problems_without_root(settings: list[dict]) -> list[list[str]]:
    """build_config's messages for each of ``settings``, as a process that
    is not root finds the file system (root may write anywhere: as root, in
    a new interpreter that has become nobody once it has imported
    switchtrace, whose checkout only root may read in CI's temporary
    directory; a new process rather than a fork of this one, which has
    threads)."""
    import json
    import subprocess
    import sys

    def messages() -> list[list[str]]:
        return [[p.msg for p in build_config(raw, environ={}).problems] for raw in settings]

    if os.geteuid() != 0:
        return messages()
    child = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ROOT],
        input=json.dumps(settings),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=60,
    )
    if child.returncode and "cannot become nobody" in child.stderr:
        pytest.skip(child.stderr.strip())
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_another_users_file_or_link_in_a_directory_every_user_may_write_is_e008(tmp_path):
    """The exporter refuses it (tests/exporters/test_outputs.py): said at
    startup rather than by a warning at the first request."""
    from ..support import NOBODY, directory_every_user_may_write

    shared = directory_every_user_may_write(tmp_path)
    (shared / "planted.jsonl").write_text("")
    (shared / "link.jsonl").symlink_to(tmp_path / "mine")
    for name in ("planted.jsonl", "link.jsonl"):
        os.lchown(shared / name, NOBODY, NOBODY)
    (shared / "own.jsonl").write_text("")
    problems = [
        [
            (p.id, p.msg)
            for p in build_config(
                {"ENABLED": True, "EXPORTER": "file", "FILE_PATH": str(shared / name)},
                environ={},
            ).problems
        ]
        for name in ("planted.jsonl", "link.jsonl", "own.jsonl", "new.jsonl")
    ]
    uid = os.geteuid()
    assert problems == [
        [
            (
                "switchtrace.E008",
                f"SWITCHTRACE['FILE_PATH'] is {str(shared / name)!r}, which the file exporter "
                f"cannot write: it is {what} of another user (uid {NOBODY}) in a directory every "
                "user may write, where only a file, named pipe or link of this process's user "
                f"(uid {uid}) or of the directory's owner (uid {uid}) is appended to.",
            )
        ]
        for name, what in (("planted.jsonl", "a file"), ("link.jsonl", "a symbolic link"))
    ] + [[], []]


def test_a_file_or_directory_this_process_may_not_write_is_e008():
    """A read-only file, or a directory this process may not create the file
    in (a container's read-only application directory)."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp()  # (not under tmp_path, which only root may enter)
    try:
        os.chmod(top, 0o755)
        closed = os.path.join(top, "closed")
        os.mkdir(closed, 0o555)
        read_only = os.path.join(top, "traces.jsonl")
        with open(read_only, "w"):
            pass
        os.chmod(read_only, 0o444)
        writable = os.path.join(top, "open.jsonl")
        with open(writable, "w"):
            pass
        os.chmod(writable, 0o666)
        paths = [os.path.join(closed, "traces.jsonl"), read_only, writable]
        problems = _problems_without_root(
            [{"ENABLED": True, "EXPORTER": "file", "FILE_PATH": path} for path in paths]
        )
    finally:
        shutil.rmtree(top)
    assert problems == [
        [
            f"SWITCHTRACE['FILE_PATH'] is {paths[0]!r}, which the file exporter cannot write: "
            f"the directory {closed} is not writable."
        ],
        [
            f"SWITCHTRACE['FILE_PATH'] is {read_only!r}, which the file exporter cannot write: "
            "the file is not writable."
        ],
        [],
    ]


def test_a_file_name_whose_rotation_name_just_fits_is_no_e008(tmp_path):
    """NAME.1, the name rotation gives the file, may be as long as the file
    system allows, not a byte more (a name one byte longer is E008 above)."""
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("t" * (longest - 2))
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "FILE_PATH": str(path)}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        assert own_messages() == []


@pytest.mark.parametrize(
    ("environ", "endpoint", "protocol", "service_name"),
    [
        # The traces-specific endpoint is used as it is; the general one is a base.
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/otlp/traces"},
            "http://c:4318/otlp/traces",
            "http/protobuf",
            "django",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/otlp"},
            "http://c:4318/otlp/v1/traces",
            "http/protobuf",
            "django",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318",
            },
            "http://c:4318/t",
            "http/protobuf",
            "django",
        ),
        # The traces-specific protocol wins over the general one.
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            None,
            "grpc",
            "django",
        ),
        # service.name: OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then django.
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,"
                "service.name=shop%20api",
            },
            "http://c:4318/v1/traces",
            "http/protobuf",
            "shop api",
        ),
        (
            # A pair without "=" is skipped, as the SDK skips it (with a warning).
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name,service.name=shop",
            },
            "http://c:4318/v1/traces",
            "http/protobuf",
            "shop",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=shop",
                "OTEL_SERVICE_NAME": "checkout",
            },
            "http://c:4318/v1/traces",
            "http/protobuf",
            "checkout",
        ),
    ],
)
def test_the_otel_environment_is_read_as_the_specification_says(
    environ, endpoint, protocol, service_name
):
    from switchtrace.django_app.conf import build_config
    from switchtrace.exporters.pipeline import build_exporter

    config = build_config({"ENABLED": True}, environ=environ)
    assert config.problems == ()
    options = config.export
    assert (options.exporter, options.protocol, options.service_name) == (
        "otlp",
        protocol,
        service_name,
    )
    if protocol == "http/protobuf":
        assert build_exporter(options)._endpoint == endpoint


def test_the_otlp_endpoint_setting_is_a_base_that_gets_v1_traces():
    """SWITCHTRACE['OTLP_ENDPOINT'] is read as OTEL_EXPORTER_OTLP_ENDPOINT is
    (OTLP/HTTP appends /v1/traces), and wins over both variables."""
    from switchtrace.exporters.pipeline import build_exporter

    environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/t"}
    settings = {"ENABLED": True, "OTLP_ENDPOINT": "http://c:4318/otlp"}
    config = build_config(settings, environ=environ)
    assert config.problems == ()
    assert config.export.endpoint_is_traces_url is False
    assert build_exporter(config.export)._endpoint == "http://c:4318/otlp/v1/traces"


@pytest.mark.parametrize(
    ("endpoint", "sent_to"),
    [
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        # Collectors serve /v1/traces alone: a 404 for each export.
        ("http://c:4318/otlp/v1/traces/", "http://c:4318/otlp/v1/traces"),
        # The path goes before the query string (appended to the whole URL,
        # ?tenant=a/v1/traces: a 404); a fragment is never sent.
        ("http://c:4318?tenant=a", "http://c:4318/v1/traces?tenant=a"),
        ("http://c:4318/otlp/?tenant=a#top", "http://c:4318/otlp/v1/traces?tenant=a#top"),
    ],
)
def test_an_otlp_endpoint_setting_gets_the_signals_path_once(endpoint, sent_to):
    """A base that already names the signal's path gets no second one (nor
    the default endpoint: the exporter's own, localhost)."""
    from switchtrace.exporters.pipeline import build_exporter

    config = build_config({"ENABLED": True, "OTLP_ENDPOINT": endpoint}, environ={})
    assert config.problems == ()
    assert config.export.endpoint_is_traces_url is False
    assert build_exporter(config.export)._endpoint == sent_to


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("http://user:secret@c:4317", "c:4317"),
        ("https://[::1]:4317/ignored", "[::1]:4317"),
        ("http://c", "c"),
    ],
)
def test_over_grpc_only_the_endpoints_host_and_port_are_used(endpoint, target):
    """The user name and password made the target unresolvable ("Misformatted
    domain name"), and were printed in each of the exporter's error lines."""
    from switchtrace.exporters.pipeline import build_exporter

    settings = {"ENABLED": True, "OTLP_ENDPOINT": endpoint, "OTLP_PROTOCOL": "grpc"}
    config = build_config(settings, environ={})
    assert config.problems == ()
    assert build_exporter(config.export)._endpoint == target


def test_otlp_over_grpc_without_an_endpoint_is_the_exporters_default(monkeypatch):
    """No endpoint set anywhere: the gRPC exporter's own default, as over
    OTLP/HTTP (an exporter all the same, not none)."""
    from switchtrace.exporters.pipeline import ExportOptions, build_exporter

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    exporter = build_exporter(ExportOptions(exporter="otlp", protocol="grpc"))
    assert (exporter._endpoint, exporter.takes_encoded) == ("localhost:4317", True)


@pytest.mark.parametrize("blank", ["\r", "  "])
@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
@pytest.mark.parametrize(
    ("protocol", "default"),
    [("grpc", "localhost:4317"), ("http/protobuf", "http://localhost:4318/v1/traces")],
)
def test_an_endpoint_variable_of_space_alone_is_the_exporters_default(
    blank, variable, protocol, default, monkeypatch
):
    """Space alone is unset (a CRLF env file's empty value): the checks
    found no endpoint, but the exporter, reading the variable itself, took
    its '\\r' for one, and every span was lost ("Invalid URL", "errors
    resolving")."""
    from switchtrace.exporters.pipeline import build_exporter

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, blank)
    settings = {"ENABLED": True, "EXPORTER": "otlp", "OTLP_PROTOCOL": protocol}
    config = build_config(settings, environ={variable: blank})
    assert config.problems == ()
    assert build_exporter(config.export)._endpoint == default


SAMPLERS_HINT = (
    "Allowed: always_on, always_off, traceidratio, parentbased_always_on, "
    "parentbased_always_off, parentbased_traceidratio (the OpenTelemetry SDK's), the name "
    "of a sampler an installed package registers (entry point group "
    "opentelemetry_traces_sampler), or set SWITCHTRACE['SAMPLE_RATE'] instead."
)
RATE_HINT = "Allowed: a number from 0 to 1, e.g. 0.1 to keep one request in ten."


def own_messages_with(environ, monkeypatch):
    """The checks' messages with ``environ`` set, switchtrace enabled. The
    variables only inside the settings' override: the suite's own settings,
    restored at its end, make spans too."""
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE):
        with monkeypatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            return own_messages()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            # A typo, and a sampler of the specification the Python SDK lacks:
            # it logged a warning and recorded every request.
            {"OTEL_TRACES_SAMPLER": "always-off"},
            (
                "The environment variable OTEL_TRACES_SAMPLER is 'always-off', a sampler "
                "the OpenTelemetry SDK does not know: it would record every request.",
                SAMPLERS_HINT,
            ),
        ),
        (
            {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
            (
                "The environment variable OTEL_TRACES_SAMPLER is 'jaeger_remote', a sampler "
                "the OpenTelemetry SDK does not know: it would record every request.",
                SAMPLERS_HINT,
            ),
        ),
        (
            # 10 meant as 10 %: the SDK took 1.0.
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10"},
            (
                "The environment variable OTEL_TRACES_SAMPLER_ARG is '10', which is not a "
                "number from 0 to 1 (the share of requests OTEL_TRACES_SAMPLER="
                "'traceidratio' keeps): the OpenTelemetry SDK would record every request.",
                RATE_HINT,
            ),
        ),
        (
            {"OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": "5%"},
            (
                "The environment variable OTEL_TRACES_SAMPLER_ARG is '5%', which is not a "
                "number from 0 to 1 (the share of requests OTEL_TRACES_SAMPLER="
                "'ParentBased_TraceIdRatio' keeps): the OpenTelemetry SDK would record "
                "every request.",
                RATE_HINT,
            ),
        ),
        *(
            (
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": argument},
                (
                    f"The environment variable OTEL_TRACES_SAMPLER_ARG is {argument!r}, which "
                    "is not a number from 0 to 1 (the share of requests OTEL_TRACES_SAMPLER="
                    "'traceidratio' keeps): the OpenTelemetry SDK would record every request.",
                    RATE_HINT,
                ),
            )
            # Just outside either end.
            for argument in ("-0.5", "1.5")
        ),
    ],
)
def test_a_sampler_variable_the_sdk_cannot_use_is_e009(environ, expected, monkeypatch):
    assert own_messages_with(environ, monkeypatch) == [("switchtrace.E009", *expected)]


@pytest.mark.parametrize(
    ("settings", "environ"),
    [
        # What the SDK takes: its six samplers in any case, no argument or an
        # empty one for a ratio (1.0, the specification's default), a number
        # from 0 to 1; and any value where switchtrace does not sample.
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}),
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": "traceidratio"}),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ""},
        ),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
        ),
        # Either end, and space alone (unset: 1.0).
        (
            {"ENABLED": True},
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
        ),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"},
        ),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": " "},
        ),
        # Not a ratio sampler: the argument is not read.
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "x"}),
        ({"ENABLED": True, "SAMPLE_RATE": 0.5}, {"OTEL_TRACES_SAMPLER": "bogus"}),
        ({"ENABLED": True, "EXPORTER": "console"}, {"OTEL_TRACES_SAMPLER": "bogus"}),
        ({"ENABLED": True, "EXPORTER": "none"}, {"OTEL_TRACES_SAMPLER": "bogus"}),
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": "bogus", "OTEL_SDK_DISABLED": "true"}),
        ({"ENABLED": False}, {"OTEL_TRACES_SAMPLER": "bogus"}),
        # Empty is unset (the specification's rule for every OTEL_* variable):
        # the default sampler, parentbased_always_on.
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": ""}),
        ({"ENABLED": True}, {"OTEL_TRACES_SAMPLER": " "}),
    ],
)
def test_sampler_variables_the_sdk_takes_or_switchtrace_does_not_read_pass(settings, environ):
    config = build_config(settings, environ=environ)
    assert config.problems == ()


def keep_none(argument):
    """A sampler factory, as a package registers one."""
    from opentelemetry.sdk.trace import sampling

    return sampling.ALWAYS_OFF


@pytest.fixture
def registered_sampler(tmp_path, monkeypatch):
    """A distribution on the path that registers ``keep_none`` as the
    sampler ``zz_keep_none`` (what opentelemetry-instrument builds from)."""
    info = tmp_path / "zz_sampler-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zz-sampler\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[opentelemetry_traces_sampler]\nzz_keep_none = {__name__}:keep_none\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # The SDK reads the entry points once for the process (a test that had
    # it look for a sampler before hid this one): read again here, and after.
    cached = getattr(
        importlib.import_module("opentelemetry.util._importlib_metadata"),
        "_original_entry_points_cached",
        None,
    )
    forget = getattr(cached, "cache_clear", lambda: None)
    forget()
    yield "zz_keep_none"
    forget()


def test_a_sampler_a_package_registers_is_taken_and_used(registered_sampler, monkeypatch):
    from opentelemetry.sdk.trace import sampling

    from switchtrace.exporters.pipeline import _environ_sampler

    environ = {"OTEL_TRACES_SAMPLER": registered_sampler}
    assert build_config({"ENABLED": True}, environ=environ).problems == ()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", registered_sampler)
    # switchtrace's own provider samples with it (the SDK's default reading
    # of the variable would record every request).
    assert _environ_sampler() is sampling.ALWAYS_OFF
    assert sampling._get_from_env_or_default() is not sampling.ALWAYS_OFF


def test_a_broken_distribution_on_the_path_keeps_the_sampler_check_from_judging(
    tmp_path, monkeypatch
):
    """An entry_points.txt importlib.metadata cannot parse (a line without
    '=') makes every entry point lookup raise TypeError: build_config, which
    never raises, takes any sampler name then, as not its to judge."""
    info = tmp_path / "zz_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zz-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[opentelemetry_traces_sampler]\nbroken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    environ = {"OTEL_TRACES_SAMPLER": "zz_anything"}
    assert build_config({"ENABLED": True}, environ=environ).problems == ()


# A wrong setting, said once: by the system checks in a command that runs
# them, by the log once Django's handler is built in a server, which does not.
_STARTUP = """
import os, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["switchtrace.django_app"],
    MIDDLEWARE={middleware!r},
    ROOT_URLCONF="tests.urls",
    ALLOWED_HOSTS=["*"],
    SWITCHTRACE={{"ENABLED": True, "COLOUR": "red"}},
    SILENCED_SYSTEM_CHECKS={silenced!r},
)
django.setup()
print("set up", file=sys.stderr, flush=True)
{then}
"""
_UNKNOWN_KEY = (
    "switchtrace disabled: Unknown key 'COLOUR' in the SWITCHTRACE setting. (switchtrace.E002) "
    "Allowed keys: ENABLED, EXPORTER, FILE_MAX_BYTES, FILE_PATH, MAX_EVENTS, OTLP_ENDPOINT, "
    "OTLP_PROTOCOL, QUEUE_SIZE, SAMPLE_RATE, SERVICE_NAME, SHOW_HEADERS."
)
_HANDLER = "from django.core.handlers.wsgi import WSGIHandler\nhandler = WSGIHandler()\n"


def _run_startup(then: str, middleware: list[str], silenced: tuple[str, ...] = ()) -> list[str]:
    return _stderr_lines(_STARTUP.format(middleware=middleware, then=then, silenced=list(silenced)))


def _stderr_lines(code: str) -> list[str]:
    """What ``code``, run from the checkout with the example project on the
    path, wrote to stderr, once it has exited 0."""
    import os
    import subprocess
    import sys

    from ..conftest import EXAMPLE, ROOT

    path = os.pathsep.join([str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stderr.splitlines()


def test_a_wrong_setting_is_said_once_by_the_system_checks():
    lines = _run_startup(
        "from django.core.management import call_command\n"
        "try:\n"
        "    call_command('check')\n"
        "except Exception as exc:\n"
        "    print(exc, file=sys.stderr)\n",
        [MIDDLEWARE_PATH],
    )
    assert lines[0] == "set up"
    assert lines[1] == "SystemCheckError: System check identified some issues:"
    assert [line for line in lines if "COLOUR" in line] == [
        "?: (switchtrace.E002) Unknown key 'COLOUR' in the SWITCHTRACE setting."
    ]


def test_a_wrong_setting_the_system_checks_said_is_not_logged_again_once_served():
    """As runserver does: the checks, then the handler and a request."""
    lines = _run_startup(
        "from django.core.management import call_command\n"
        "try:\n"
        "    call_command('check')\n"
        "except Exception as exc:\n"
        "    print(exc, file=sys.stderr)\n" + _HANDLER + "from django.test import Client\n"
        "assert Client().get('/sync/').status_code == 200\n"
        "print('served', file=sys.stderr, flush=True)\n",
        [MIDDLEWARE_PATH],
    )
    assert [line for line in lines if "COLOUR" in line] == [
        "?: (switchtrace.E002) Unknown key 'COLOUR' in the SWITCHTRACE setting."
    ]
    assert lines[-1] == "served"


def test_a_wrong_setting_is_logged_once_the_handler_is_built():
    assert _run_startup(_HANDLER, [MIDDLEWARE_PATH]) == ["set up", _UNKNOWN_KEY]


def test_without_the_middleware_a_wrong_setting_is_logged_at_the_first_request():
    lines = _run_startup(
        _HANDLER + "print('built', file=sys.stderr, flush=True)\n"
        "from django.test import Client\n"
        "for _ in range(2):\n"
        "    assert Client().get('/sync/').status_code == 200\n",
        [],
    )
    assert lines == ["set up", "built", _UNKNOWN_KEY]


#: settings.py importing switchtrace (for a SHOW_HEADERS callable), and a
#: LOGGING as many projects have it: disable_existing_loggers (dictConfig's
#: default) disables every logger made before Django configures logging.
_IMPORTED_BEFORE_LOGGING = """
import os, sys
import switchtrace.django_app.headers, switchtrace.testing
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["switchtrace.django_app"],
    MIDDLEWARE=[{middleware!r}],
    ROOT_URLCONF="tests.urls",
    ALLOWED_HOSTS=["*"],
    SWITCHTRACE={{"ENABLED": True, "COLOUR": "red"}},
    LOGGING={{
        "version": 1,
        "handlers": {{"stderr": {{"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}}}},
        "root": {{"handlers": ["stderr"], "level": "INFO"}},
    }},
)
django.setup()
from django.core.handlers.wsgi import WSGIHandler
handler = WSGIHandler()
"""


def test_a_wrong_setting_is_logged_when_settings_imported_switchtrace_before_logging():
    """switchtrace's logger was made as the settings imported switchtrace,
    before Django configured logging, which disabled it: every message of
    switchtrace's was lost, where the same settings without the import kept
    them. It is looked up as it is used."""
    code = _IMPORTED_BEFORE_LOGGING.format(middleware=MIDDLEWARE_PATH)
    assert _stderr_lines(code) == [_UNKNOWN_KEY]


@pytest.mark.parametrize(
    ("value", "argument", "expected"),
    [
        # Around the name, what the SDK's default reading of the variable does
        # not strip (it recorded every request for "always_off " while the
        # check passed), as opentelemetry-instrument does.
        ("always_off ", None, "AlwaysOffSampler"),
        (" TraceIdRatio\r", " 0.25 ", "TraceIdRatioBased{0.25}"),
        ("parentbased_traceidratio", "", "ParentBased{root:TraceIdRatioBased{1.0},"),
        ("traceidratio", " ", "TraceIdRatioBased{1.0}"),
        ("traceidratio", "0", "TraceIdRatioBased{0.0}"),
        ("traceidratio", "1", "TraceIdRatioBased{1.0}"),
        ("", None, "ParentBased{root:AlwaysOnSampler,"),
        (None, None, "ParentBased{root:AlwaysOnSampler,"),
    ],
)
def test_switchtraces_own_provider_samples_with_what_the_check_passed(
    value, argument, expected, monkeypatch
):
    from switchtrace.exporters.pipeline import _environ_sampler

    environ = {"OTEL_TRACES_SAMPLER": value, "OTEL_TRACES_SAMPLER_ARG": argument}
    for name, setting in environ.items():
        if setting is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, setting)
    given = {name: setting for name, setting in environ.items() if setting is not None}
    assert build_config({"ENABLED": True}, environ=given).problems == ()
    assert _environ_sampler().get_description().startswith(expected)


@pytest.mark.parametrize(
    ("value", "argument", "expected"),
    [
        ("traceidratio", "0.25", "TraceIdRatioBased{0.25}"),
        ("parentbased_traceidratio", "0.25", "ParentBased{root:TraceIdRatioBased{0.25},"),
        # Not a number from 0 to 1 (switchtrace.E009): the specification's
        # 1.0, as the SDK makes it.
        ("traceidratio", "abc", "TraceIdRatioBased{1.0}"),
        ("traceidratio", "1.5", "TraceIdRatioBased{1.0}"),
        ("parentbased_traceidratio", "-0.1", "ParentBased{root:TraceIdRatioBased{1.0},"),
        ("traceidratio", "nan", "TraceIdRatioBased{1.0}"),
        # A sampler neither the SDK nor a package provides (E009): the SDK's
        # default reading's, with its warning.
        ("bogus", "0.25", "ParentBased{root:AlwaysOnSampler,"),
    ],
)
def test_switchtraces_own_provider_samples_as_the_sdk_does(value, argument, expected, monkeypatch):
    """The sampler and ratio of switchtrace's own provider are those the SDK
    makes of the same variables."""
    from opentelemetry.sdk.trace import sampling

    from switchtrace.exporters.pipeline import _environ_sampler

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", value)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", argument)
    description = _environ_sampler().get_description()
    assert description.startswith(expected)
    # ParentBased's description goes on with its four fixed parent cases.
    assert description == sampling._get_from_env_or_default().get_description()
    assert description == sampling._get_from_env_or_default().get_description()


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_sampler_variable_is_unset_without_a_warning(value, monkeypatch, caplog):
    """The specification: an empty value is unset, the default sampler
    (the SDK's default reading warns that it does not know the name)."""
    from switchtrace.exporters.pipeline import _environ_sampler

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", value)
    with caplog.at_level(logging.DEBUG):
        description = _environ_sampler().get_description()
    assert description.startswith("ParentBased{root:AlwaysOnSampler,")
    assert [r.getMessage() for r in caplog.records] == []


def test_a_wrong_setting_whose_check_is_silenced_is_still_logged_once_served():
    """The checks do not show a silenced error: dropped there as said, it
    left runserver serving with switchtrace disabled and nothing saying so."""
    lines = _run_startup(
        "from django.core.management import call_command\ncall_command('check')\n" + _HANDLER,
        [MIDDLEWARE_PATH],
        silenced=("switchtrace.E002",),
    )
    assert lines == ["set up", _UNKNOWN_KEY]


@pytest.mark.parametrize(
    ("settings", "environ", "exporter"),
    [
        # SWITCHTRACE['EXPORTER'] unset: OpenTelemetry's OTEL_TRACES_EXPORTER
        # chooses, among the exporters switchtrace has (in any case, the
        # space around it not part of it).
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "None\r"}, None),
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": " OTLP , otlp"}, "otlp"),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            None,
        ),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "console",
        ),
        # Empty, or space alone, is unset: otlp with an endpoint, else file.
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": ""}, "file"),
        (
            {"ENABLED": True},
            {"OTEL_TRACES_EXPORTER": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "otlp",
        ),
        # The setting, when given, is what is read.
        ({"ENABLED": True, "EXPORTER": "file"}, {"OTEL_TRACES_EXPORTER": "none"}, "file"),
        ({"ENABLED": True, "EXPORTER": "memory"}, {"OTEL_TRACES_EXPORTER": "zipkin"}, "memory"),
        # Not read while no spans are made, or switchtrace is off.
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_SDK_DISABLED": "true"}, None),
        ({"ENABLED": False}, {"OTEL_TRACES_EXPORTER": "zipkin"}, None),
    ],
)
def test_otel_traces_exporter_chooses_the_exporter_the_settings_leave_unset(
    settings, environ, exporter
):
    config = build_config(settings, environ=environ)
    assert config.problems == ()
    assert config.enabled is settings["ENABLED"]
    assert (config.export and config.export.exporter) == exporter


@pytest.mark.parametrize(
    ("settings", "environ", "protocol"),
    [
        # The Python SDK's names of its two OTLP exporters: otlp, over their protocol...
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "otlp_proto_grpc"}, "grpc"),
        ({"ENABLED": True}, {"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, "http/protobuf"),
        # ... whatever the protocol variables say (as the SDK's configuration).
        (
            {"ENABLED": True},
            {"OTEL_TRACES_EXPORTER": "otlp_proto_grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "grpc",
        ),
        # otlp: the protocol variables, else http/protobuf.
        (
            {"ENABLED": True},
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "grpc",
        ),
        # The setting, when given, is what is read.
        (
            {"ENABLED": True, "OTLP_PROTOCOL": "http/protobuf"},
            {"OTEL_TRACES_EXPORTER": "otlp_proto_grpc"},
            "http/protobuf",
        ),
    ],
)
def test_the_sdks_otlp_exporter_names_choose_their_protocol(settings, environ, protocol):
    config = build_config(settings, environ=environ)
    assert config.problems == ()
    assert (config.export.exporter, config.export.protocol) == ("otlp", protocol)


TRACES_EXPORTER_HINT = (
    "Allowed: 'otlp' (or the Python SDK's 'otlp_proto_grpc', 'otlp_proto_http'), 'console' "
    "or 'none' (unset or empty: otlp when an OTLP endpoint is configured, else file), or set "
    "SWITCHTRACE['EXPORTER'], which is then read instead."
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "zipkin",
            "The environment variable OTEL_TRACES_EXPORTER is 'zipkin', an exporter "
            "switchtrace does not have (SWITCHTRACE['EXPORTER'] is unset: this variable "
            "says where its spans go).",
        ),
        (
            "otpl",
            "The environment variable OTEL_TRACES_EXPORTER is 'otpl', an exporter "
            "switchtrace does not have (SWITCHTRACE['EXPORTER'] is unset: this variable "
            "says where its spans go).",
        ),
        (
            "otlp,console",
            "The environment variable OTEL_TRACES_EXPORTER is 'otlp,console', more than one "
            "exporter: switchtrace's spans go to one (SWITCHTRACE['EXPORTER'] is unset: this "
            "variable says where).",
        ),
    ],
)
def test_an_otel_traces_exporter_switchtrace_cannot_follow_is_e010(value, message, monkeypatch):
    """OTEL_TRACES_EXPORTER was ignored: "none" still wrote every request's
    spans to a file, "otlp" without an endpoint too."""
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE):
        with monkeypatch.context() as patch:
            patch.setenv("OTEL_TRACES_EXPORTER", value)
            messages = own_messages()
    assert messages == [("switchtrace.E010", message, TRACES_EXPORTER_HINT)]


def _manage_py_check(tmp_path, settings_module: str):
    """``django-admin check`` of the project in ``tmp_path``, in a process
    of its own (the app configs of INSTALLED_APPS are set up there)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings", settings_module],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_installed_apps_naming_switchtrace_instead_of_its_app_is_e011(tmp_path):
    """``"switchtrace"`` is not the Django app: nothing is recorded, and
    ``manage.py check`` found no issue. Django finds switchtrace/apps.py's
    app for that entry, whose check says so."""
    (tmp_path / "misnamed_settings.py").write_text(
        'SECRET_KEY = "x"\nINSTALLED_APPS = ["switchtrace"]\n'
        'MIDDLEWARE = ["switchtrace.django_app.middleware.SwitchTraceMiddleware"]\n'
        'SWITCHTRACE = {"ENABLED": True}\n'
    )
    out = _manage_py_check(tmp_path, "misnamed_settings")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert (
        "?: (switchtrace.E011) INSTALLED_APPS has 'switchtrace', which is not switchtrace's "
        "Django app: nothing is recorded and no header is added.\n"
        "\tHINT: Replace 'switchtrace' with 'switchtrace.django_app' in INSTALLED_APPS.\n"
    ) in out.stderr
    assert "1 issue" in out.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_a_subclass_of_the_apps_config_that_skips_its_ready_is_e014(tmp_path, enabled):
    """A project's SwitchTraceConfig whose ready() does not call
    super().ready() registers none of switchtrace's checks: ``manage.py
    check`` found no issue (the middleware alone logged it, once serving).
    Turned off, nothing is lost, and nothing is said."""
    (tmp_path / "project_apps.py").write_text(
        "from switchtrace.django_app.apps import SwitchTraceConfig\n\n\n"
        "class ProjectConfig(SwitchTraceConfig):\n"
        "    def ready(self):\n"
        "        pass\n"
    )
    (tmp_path / "skipping_settings.py").write_text(
        'SECRET_KEY = "x"\nINSTALLED_APPS = ["project_apps.ProjectConfig"]\n'
        'MIDDLEWARE = ["switchtrace.django_app.middleware.SwitchTraceMiddleware"]\n'
        f'SWITCHTRACE = {{"ENABLED": {enabled}, "EXPORTER": "none"}}\n'
    )
    out = _manage_py_check(tmp_path, "skipping_settings")
    if not enabled:
        assert (out.returncode, out.stdout, out.stderr) == (
            0, "System check identified no issues (0 silenced).\n", ""
        )  # fmt: skip
        return
    assert out.returncode == 1
    assert out.stderr == (
        "SystemCheckError: System check identified some issues:\n\nERRORS:\n"
        "?: (switchtrace.E014) INSTALLED_APPS has project_apps.ProjectConfig, whose ready() does "
        "not call SwitchTraceConfig.ready(): nothing is recorded, no response carries the "
        "headers, and switchtrace's other checks are not run.\n"
        "\tHINT: Call super().ready() in ProjectConfig.ready().\n\n"
        "System check identified 1 issue (0 silenced).\n"
    )
    # A config class of the app that is none of SwitchTraceConfig's: a
    # super().ready() would be AppConfig's, which does nothing.
    (tmp_path / "other_apps.py").write_text(
        "from django.apps import AppConfig\n\nimport switchtrace.django_app.apps\n\n\n"
        "class OtherConfig(AppConfig):\n"
        '    name = "switchtrace.django_app"\n'
        '    label = "switchtrace"\n'
    )
    (tmp_path / "other_settings.py").write_text(
        'from skipping_settings import *\nINSTALLED_APPS = ["other_apps.OtherConfig"]\n'
    )
    out = _manage_py_check(tmp_path, "other_settings")
    assert out.returncode == 1
    assert (
        "\tHINT: Make OtherConfig a subclass of switchtrace.django_app.apps.SwitchTraceConfig, "
        "and call super().ready() in its ready().\n"
    ) in out.stderr


@pytest.mark.parametrize("which", [*BUILTIN, "all"], ids=lambda p: p.rpartition(".")[2])
def test_the_check_warns_of_each_middleware_django_ships_what_it_costs(which):
    """switchtrace.W003 names each of Django's own middleware that costs
    switches under ASGI, no other, and the switches its warnings give add
    up to what the hooks cost (those of the remote-user middleware before
    Django 5.2 only)."""
    from switchtrace.django_app.checks import check_middleware_switches

    middleware, cost = builtin_stack(which)
    with override_settings(MIDDLEWARE=middleware):
        warnings_ = check_middleware_switches()
    assert [w.obj for w in warnings_] == [p for p in middleware if BUILTIN[p][1]]
    assert sum(int(n) for w in warnings_ for n in re.findall(r"(\d+) more", w.msg)) == cost


EXCLUDED_HINT = (
    "Comma-separated Python regular expressions, each searched for in a request's URL without "
    "its query (e.g. healthz,/static/), as opentelemetry-instrumentation-django reads them."
)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "healthz, /static/("},
            "The environment variable OTEL_PYTHON_DJANGO_EXCLUDED_URLS is 'healthz, /static/(', "
            "which is not a list of regular expressions ('/static/(': missing ), unterminated "
            "subpattern at position 8).",
        ),
        (
            # The generic variable, read when the instrumentation's is unset or blank.
            {"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": " ", "OTEL_PYTHON_EXCLUDED_URLS": "*.css"},
            "The environment variable OTEL_PYTHON_EXCLUDED_URLS is '*.css', which is not a list "
            "of regular expressions ('*.css': nothing to repeat at position 0).",
        ),
        (
            # Each entry is one, but not all of them together.
            {"OTEL_PYTHON_EXCLUDED_URLS": "(?P<a>x),(?P<a>y)"},
            "The environment variable OTEL_PYTHON_EXCLUDED_URLS is '(?P<a>x),(?P<a>y)', which is "
            "not a list of regular expressions (together: redefinition of group name 'a' as "
            "group 2; was group 1 at position 13).",
        ),
    ],
)
def test_excluded_urls_that_are_no_regular_expressions_are_e012(environ, message, monkeypatch):
    messages = own_messages_with(environ, monkeypatch)
    assert messages == [("switchtrace.E012", message, EXCLUDED_HINT)]


def propagators_messages(value, monkeypatch):
    """The checks' messages with OTEL_PROPAGATORS set to ``value``, in a
    process that has not imported OpenTelemetry's propagate module yet (as
    Django starts; once imported, it has loaded its propagators and reads
    the variable no more)."""
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "opentelemetry.propagate", raising=False)
        return own_messages_with({"OTEL_PROPAGATORS": value}, monkeypatch)


#: sentry-sdk 2.x registers a "sentry" propagator (its OpenTelemetry
#: integration's, gone in 3.x, which registers none).
SENTRY_2 = importlib.metadata.version("sentry-sdk").split(".")[0] == "2"
#: The propagators the test extras install: OpenTelemetry's API's own two,
#: opentelemetry-propagator-b3's two, and sentry-sdk 2.x's.
SENTRY = "sentry, " if SENTRY_2 else ""
PROPAGATORS_HINT = (
    f"Allowed: comma-separated names of installed propagators (b3, b3multi, baggage, {SENTRY}"
    "tracecontext here; b3 and b3multi come with opentelemetry-propagator-b3, jaeger with "
    "opentelemetry-propagator-jaeger), or none; unset, the default tracecontext,baggage."
)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("jaeger", "a propagator no installed package provides: 'jaeger'"),
        # Names are matched as they are written: no lowercasing, as OpenTelemetry reads them.
        ("TraceContext,baggage", "a propagator no installed package provides: 'TraceContext'"),
        ("tracecontext, ", "an empty propagator (a comma too many, or space alone)"),
        (" ", "an empty propagator (a comma too many, or space alone)"),
        # One not installed before none still fails the import.
        ("xray,none", "a propagator no installed package provides: 'xray'"),
    ],
)
def test_propagators_opentelemetry_cannot_load_are_e013(value, named, monkeypatch):
    """Each fails ``import opentelemetry.propagate`` with a ValueError."""
    code = f"import os; os.environ['OTEL_PROPAGATORS'] = {value!r}; import opentelemetry.propagate"
    failed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "ValueError: Propagator" in failed.stderr
    messages = propagators_messages(value, monkeypatch)
    message = (
        f"The environment variable OTEL_PROPAGATORS is {value!r}, which names {named}. "
        "OpenTelemetry's propagate module fails to import with it, and no incoming trace "
        "context could be read."
    )
    assert messages == [("switchtrace.E013", message, PROPAGATORS_HINT)]


@pytest.mark.parametrize(
    ("value", "failure"),
    [
        ("missing_module", "ModuleNotFoundError: No module named 'no_such_module_here'"),
        ("tracecontext,raising", "RuntimeError: cannot start"),
    ],
)
def test_a_propagator_that_does_not_load_is_e013(value, failure, tmp_path, monkeypatch):
    """Installed (a distribution registers the name), but its module is not
    there or its class raises when OpenTelemetry makes one: that import
    fails too."""
    dist = tmp_path / "broken_propagators-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-propagators\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_propagator]\n"
        "missing_module = no_such_module_here:Propagator\n"
        "raising = raising_propagator:Propagator\n"
    )
    (tmp_path / "raising_propagator.py").write_text(
        "class Propagator:\n    def __init__(self):\n        raise RuntimeError('cannot start')\n"
    )
    code = (
        f"import os, sys; sys.path.insert(0, {str(tmp_path)!r}); "
        f"os.environ['OTEL_PROPAGATORS'] = {value!r}; import opentelemetry.propagate"
    )
    failed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1, failed.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    name = value.rpartition(",")[2]
    [(check_id, message, hint)] = propagators_messages(value, monkeypatch)
    assert (check_id, message) == (
        "switchtrace.E013",
        f"The environment variable OTEL_PROPAGATORS is {value!r}, which names a propagator "
        f"that does not load: {name!r} ({failure}). OpenTelemetry's propagate module fails to "
        "import with it, and no incoming trace context could be read.",
    )
    assert f"b3, b3multi, baggage, missing_module, raising, {SENTRY}tracecontext here" in hint


@pytest.mark.parametrize(
    "value",
    ["", "tracecontext", " b3multi , baggage ", "none", "NONE,xray"] + ["sentry"] * SENTRY_2,
)
def test_propagators_opentelemetry_loads_are_no_error(value, monkeypatch):
    code = f"import os; os.environ['OTEL_PROPAGATORS'] = {value!r}; import opentelemetry.propagate"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode
        == 0
    )
    assert propagators_messages(value, monkeypatch) == []


@pytest.mark.skipif(SENTRY_2, reason="sentry-sdk 2.x registers the sentry propagator")
@pytest.mark.parametrize("value", ["sentry", "tracecontext,sentry"])
def test_sentry_3_has_no_sentry_propagator_e013(value, monkeypatch):
    """OTEL_PROPAGATORS=sentry, as sentry-sdk 2.x's OpenTelemetry setup asked,
    under sentry-sdk 3.x: OpenTelemetry cannot import its propagate module
    (in the application too), and switchtrace is disabled, as for any
    propagator not installed."""
    code = f"import os; os.environ['OTEL_PROPAGATORS'] = {value!r}; import opentelemetry.propagate"
    failed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "ValueError: Propagator sentry not found." in failed.stderr
    assert propagators_messages(value, monkeypatch) == [
        (
            "switchtrace.E013",
            f"The environment variable OTEL_PROPAGATORS is {value!r}, which names a propagator "
            "no installed package provides: 'sentry'. OpenTelemetry's propagate module fails "
            "to import with it, and no incoming trace context could be read.",
            PROPAGATORS_HINT,
        )
    ]


def test_propagators_are_not_checked_once_opentelemetry_has_loaded_them(monkeypatch):
    """Imported (by switchtrace's pipeline, by the application), the
    propagate module has its propagators: a variable set since is read by
    no one, and does not turn switchtrace off."""
    import opentelemetry.propagate  # noqa: F401

    assert own_messages_with({"OTEL_PROPAGATORS": "jaeger"}, monkeypatch) == []


def test_propagators_are_not_read_for_the_console(monkeypatch):
    """The console exporter makes no spans: no trace context is read (in a
    process that has not imported the propagate module, as Django starts)."""
    with override_settings(
        SWITCHTRACE={"ENABLED": True, "EXPORTER": "console"}, MIDDLEWARE=BASE_MIDDLEWARE
    ):
        with monkeypatch.context() as patch:
            patch.delitem(sys.modules, "opentelemetry.propagate", raising=False)
            patch.setenv("OTEL_PROPAGATORS", "jaeger")
            assert own_messages() == []


@pytest.mark.parametrize(
    ("settings", "environ", "pattern"),
    [
        ({"ENABLED": True}, {}, None),
        ({"ENABLED": True}, {"OTEL_PYTHON_EXCLUDED_URLS": ""}, None),
        ({"ENABLED": True}, {"OTEL_PYTHON_EXCLUDED_URLS": " \r"}, None),
        # Commas alone: no entry (an empty pattern would match every URL);
        # the other variable is read then.
        ({"ENABLED": True}, {"OTEL_PYTHON_EXCLUDED_URLS": " , ,"}, None),
        (
            {"ENABLED": True},
            {"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": ",", "OTEL_PYTHON_EXCLUDED_URLS": "ping"},
            "ping",
        ),
        # Space around each entry is not part of it; empty entries are left
        # out (an empty one would match every URL).
        (
            {"ENABLED": True},
            {"OTEL_PYTHON_EXCLUDED_URLS": " healthz ,, /static/ ,"},
            "healthz|/static/",
        ),
        # The instrumentation's own variable first.
        (
            {"ENABLED": True},
            {"OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "ping", "OTEL_PYTHON_EXCLUDED_URLS": "("},
            "ping",
        ),
        # Not read where no span is made.
        ({"ENABLED": True, "EXPORTER": "console"}, {"OTEL_PYTHON_EXCLUDED_URLS": "("}, None),
        ({"ENABLED": True, "EXPORTER": "none"}, {"OTEL_PYTHON_EXCLUDED_URLS": "("}, None),
        ({"ENABLED": True}, {"OTEL_PYTHON_EXCLUDED_URLS": "(", "OTEL_SDK_DISABLED": "true"}, None),
        ({"ENABLED": False}, {"OTEL_PYTHON_EXCLUDED_URLS": "("}, None),
    ],
)
def test_excluded_urls_read_as_the_instrumentation_reads_them(settings, environ, pattern):
    config = build_config({"EXPORTER": "memory", **settings}, environ=environ)
    assert config.problems == ()
    excluded = config.export.excluded_urls if config.export is not None else None
    assert (excluded.pattern if excluded is not None else None) == pattern
