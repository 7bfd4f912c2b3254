"""System checks: exact messages and ids for every kind of bad setting."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from switchtrace.django_app.conf import MIDDLEWARE_PATH

BASE_MIDDLEWARE = [MIDDLEWARE_PATH, "django.middleware.common.CommonMiddleware"]


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
                    "Allowed keys: ENABLED, MAX_EVENTS, SHOW_HEADERS.",
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
                    "imported: No module named 'myproject'.",
                    "Allowed: True (every response), False (none), or a callable "
                    "`(request) -> bool` given as a dotted path or directly.",
                )
            ],
        ),
        (
            {"ENABLED": True, "SHOW_HEADERS": f"{__name__}.async_show"},
            [
                (
                    "switchtrace.E005",
                    "SWITCHTRACE['SHOW_HEADERS'] is an async function; calling it from the "
                    "synchronous path would cost the switches switchtrace counts.",
                    "Give a plain function `(request) -> bool` that reads the request only "
                    "(headers, META, path), without database access.",
                )
            ],
        ),
    ],
)
def test_bad_settings_are_check_errors_naming_the_key(value, expected):
    with override_settings(SWITCHTRACE=value, MIDDLEWARE=BASE_MIDDLEWARE):
        assert own_messages() == expected


def test_a_bad_setting_keeps_switchtrace_disabled_and_logs_why(caplog):
    from switchtrace import tracer

    with caplog.at_level("ERROR", logger="switchtrace"):
        with override_settings(SWITCHTRACE={"ENABLED": True, "COLOUR": "red"}):
            assert not tracer.installed()
    assert tracer.installed()
    assert caplog.records[0].getMessage() == (
        "switchtrace disabled: Unknown key 'COLOUR' in the SWITCHTRACE setting. "
        "(switchtrace.E002) Allowed keys: ENABLED, MAX_EVENTS, SHOW_HEADERS."
    )


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
    with override_settings(SWITCHTRACE={"ENABLED": True, "SHOW_HEADERS": allow_everyone}):
        assert own_messages() == []


def test_missing_or_misplaced_middleware_is_a_warning():
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE[1:]):
        assert [m[0] for m in own_messages()] == ["switchtrace.W001"]
    with override_settings(SWITCHTRACE={"ENABLED": True}, MIDDLEWARE=BASE_MIDDLEWARE[::-1]):
        assert own_messages() == [
            (
                "switchtrace.W002",
                "SwitchTraceMiddleware is not first in MIDDLEWARE: a middleware above it that "
                "answers a request itself (a cache, a redirect) keeps the headers off that "
                "response.",
                f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
            )
        ]
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        assert own_messages() == []
