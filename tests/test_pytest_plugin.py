"""The pytest plugin, run in separate pytest processes (pytester) against the
example project, as a user's test suite would run it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import EXAMPLE

CONFTEST = f"""
import os, sys
sys.path.insert(0, {str(EXAMPLE)!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
os.environ["SWITCHTRACE_EXAMPLE_TRACES"] = os.path.join(os.getcwd(), "traces.jsonl")
import django
from django.conf import settings
django.setup()
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_budget_that_holds_passes_and_one_that_does_not_fails_with_the_causes(suite):
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from django.test import AsyncClient, Client


            @pytest.mark.max_context_switches(0)
            def test_wsgi_sync_view_makes_no_switch():
                assert Client().get("/sync/").status_code == 200


            @pytest.mark.max_context_switches(4)
            def test_asgi_sync_view_over_budget():
                import asyncio
                asyncio.run(AsyncClient().get("/sync/"))
                Client().get("/async/")
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_asgi_sync_view_over_budget*",
            "*1 of 2 requests exceeded the budget of 4 context switches per request:",
            "*  GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops, 2 threads; top: "
            "CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4, "
            "CommonMiddleware 4, MessageMiddleware 4",
        ]
    )
    # No traceback of the plugin's own frames: the message is the failure.
    assert "pytest_plugin.py" not in result.stdout.str()


def test_the_fixture_records_every_kind_of_request_without_middleware_or_exporter(suite):
    suite.makepyfile(
        textwrap.dedent(
            """
            import asyncio
            from django.core.handlers.asgi import ASGIHandler
            from django.core.handlers.wsgi import WSGIHandler
            from django.test import AsyncClient, Client, override_settings
            from switchtrace.example import asgi_request, wsgi_request

            BARE = {"ENABLED": False}


            @override_settings(SWITCHTRACE=BARE, MIDDLEWARE=[])
            def test_records(switchtrace):
                Client().get("/async-to-sync/")
                asyncio.run(AsyncClient().get("/async/"))
                wsgi_request(WSGIHandler(), "/asyncio-run/")
                asyncio.run(asgi_request(ASGIHandler(), "/sync/"))
                summary = [
                    (r.kind, r.attributes["url.path"], r.context_switches, r.event_loops_created)
                    for r in switchtrace.requests
                ]
                assert summary == [
                    ("wsgi", "/async-to-sync/", 6, 3),
                    ("asgi", "/async/", 4, 0),
                    ("wsgi", "/asyncio-run/", 2, 1),
                    ("asgi", "/sync/", 6, 0),
                ]
                switchtrace.assert_max_switches(6)


            @override_settings(SWITCHTRACE=BARE, MIDDLEWARE=[])
            def test_fixture_assertion_fails(switchtrace):
                Client().get("/async-to-sync/")
                switchtrace.assert_max_switches(5)
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: 1 of 1 request exceeded the budget of 5 context switches per "
            "request:",
            "*GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, 3 loops, "
            "3 threads; top: noop 6",
        ]
    )
    # The traceback ends at the test's own line, not in the plugin's frames.
    assert "switchtrace.assert_max_switches(5)" in result.stdout.str()
    assert "pytest_plugin.py" not in result.stdout.str()


def test_a_streaming_body_read_by_the_test_is_outside_the_request(suite):
    """As the README says: the test clients return a streaming response
    before its body is read, so reading it (Django's sync_to_async over a
    synchronous iterator under ASGI) and closing it are not counted; served,
    they are."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import asyncio
            from django.core.handlers.asgi import ASGIHandler
            from django.test import AsyncClient
            from switchtrace.example import asgi_request


            def test_stream(switchtrace):
                async def read():
                    response = await AsyncClient().get("/stream/")
                    return b"".join([chunk async for chunk in response])

                asyncio.run(read())
                asyncio.run(asgi_request(ASGIHandler(), "/stream/"))
                figures = [
                    (r.context_switches, r.at_headers.context_switches)
                    for r in switchtrace.requests
                ]
                assert figures == [(30, 30), (34, 30)]
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("budget", ["-1", "'ten'", "2.5", "True"])
def test_a_budget_that_is_not_a_non_negative_integer_is_named(suite, budget):
    suite.makepyfile(
        f"""
        import pytest

        @pytest.mark.max_context_switches({budget})
        def test_it():
            pass
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_context_switches(...) must be a non-negative integer "
            f"(context switches per request), not {eval(budget)!r}"
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("arguments", "given"),
    [("", "none"), ("budget=0", "budget=0"), ("0, 100", "0, 100"), ("0, n=100", "0, n=100")],
)
def test_a_marker_without_exactly_one_budget_is_named(suite, arguments, given):
    """No argument was told as 'not None'; a keyword other than n, the same;
    a second argument was ignored."""
    suite.makepyfile(
        f"""
        import pytest
        from django.test import Client

        @pytest.mark.max_context_switches({arguments})
        def test_it():
            Client().get("/async-to-sync/")
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"@pytest.mark.max_context_switches({arguments}) takes one argument, the budget: a "
            "non-negative integer (context switches per request), e.g. "
            f"@pytest.mark.max_context_switches(12); it was given {given}"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_marker_given_n_by_keyword(suite):
    suite.makepyfile(
        """
        import pytest
        from django.test import Client

        @pytest.mark.max_context_switches(n=5)
        def test_it():
            Client().get("/async-to-sync/")
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["1 of 1 request exceeded the budget of 5 context switches*"])


def test_assert_max_switches_fails_at_the_tests_line(suite):
    """switchtrace.testing.assert_max_switches as a context manager: the
    failure was raised in contextlib's __exit__, which pytest showed as the
    failing frame under the test's. (As a decorator, it still fails the
    test.)"""
    suite.makepyfile(
        textwrap.dedent(
            """
            from django.test import Client
            from switchtrace.testing import assert_max_switches


            def test_block():
                with assert_max_switches(5) as records:
                    Client().get("/async-to-sync/")
                raise AssertionError("not reached")


            @assert_max_switches(5)
            def test_decorated():
                Client().get("/async-to-sync/")


            def test_within_budget_then_raising():
                with assert_max_switches(6) as records:
                    Client().get("/async-to-sync/")
                assert [r.context_switches for r in records] == [6]
                with assert_max_switches(0):
                    raise KeyError("the block's own")
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    block = output.split("test_block")[2].split("test_decorated")[0]
    assert "contextlib" not in block
    assert "testing.py" not in block
    # Nor does the plugin's hook around every test show (here under the
    # decorated test, whose traceback pytest cannot cut at the test's code).
    assert "pytest_plugin.py" not in output
    result.stdout.fnmatch_lines(
        [
            ">       with assert_max_switches(5) as records:",
            "E       AssertionError: 1 of 1 request exceeded the budget of 5 context switches*",
            "test_assert_max_switches_fails_at_the_tests_line.py:6: AssertionError",
            "*test_decorated*",
            "E       AssertionError: 1 of 1 request exceeded the budget of 5 context switches*",
            "*test_within_budget_then_raising*",
            'E * KeyError: "the block\'s own"',
        ]
    )


def test_assert_max_switches_outside_pytest(tmp_path):
    script = CONFTEST + textwrap.dedent(
        """
        from django.test import Client
        from switchtrace.testing import assert_max_switches
        with assert_max_switches(0):
            Client().get("/sync/")
        try:
            with assert_max_switches(1):
                Client().get("/async/")
        except AssertionError as exc:
            print(str(exc).splitlines()[0])
        try:
            assert_max_switches(-2).__enter__()
        except ValueError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "1 of 1 request exceeded the budget of 1 context switch per request:",
        "the budget must be a non-negative integer (context switches per request), not -2",
    ]


def test_loading_the_plugin_imports_no_django():
    code = (
        "import sys, switchtrace.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'opentelemetry', 'asgiref', 'wrapt')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
