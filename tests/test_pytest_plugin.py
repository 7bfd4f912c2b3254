"""The pytest plugin, run in separate pytest processes (pytester) against the
example project, as a user's test suite would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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


#: The plugin without pytest-django (which the test extra installs, and which
#: would otherwise configure Django in these runs from the
#: DJANGO_SETTINGS_MODULE this suite exports): Django set up by a conftest.py.
WITHOUT_PYTEST_DJANGO = "[pytest]\naddopts = -p no:django\n"


@pytest.fixture
def suite(pytester):
    pytester.makeini(WITHOUT_PYTEST_DJANGO)
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
    # --strict-markers: the plugin registers its marker (unregistered, it is
    # a collection error there, and a warning without it).
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_asgi_sync_view_over_budget*",
            "*1 of 2 requests exceeded the budget of 4 context switches per request:",
            "*  GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops, 2 threads; top: "
            "CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4, "
            "CommonMiddleware 4, MessageMiddleware 4",
            # Where the test is (its decorator's line), as a traceback would end.
            "test_a_budget_that_holds_passes_and_one_that_does_not_fails_with_the_causes.py:10: "
            "test_asgi_sync_view_over_budget",
            "=*short test summary info*=",
        ]
    )
    # No traceback of the plugin's own frames: the message is the failure;
    # and no word of frames hidden (it was all pytest had left to show).
    assert "pytest_plugin.py" not in result.stdout.str()
    assert "traceback entries are hidden" not in result.stdout.str()


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
            "3 threads; top: async_to_sync_view → noop 6",
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


LIVE_SERVER = """
import threading
import urllib.request

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.signals import request_finished

body_done = threading.Event()


async def noop():
    pass


def after_the_body(sender, **kwargs):
    # On the server's thread, as it closes the response: the client has the
    # whole body by then, and the test goes on without waiting for this.
    body_done.wait()
    async_to_sync(noop)()


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def live():
    # What pytest-django's live_server and Django's LiveServerTestCase run.
    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    request_finished.connect(after_the_body)
    yield f"http://127.0.0.1:{server.server_port}"
    request_finished.disconnect(after_the_body)
    server.shutdown()
    server.server_close()


def get(url):
    body_done.clear()
    with urllib.request.urlopen(url) as response:
        return response.read()
"""


def test_a_request_a_live_server_closes_after_the_test_body_is_the_tests(suite):
    """A live server (a real threaded server) closes the response after the
    client has the body: what runs then (request_finished's receivers) ran
    after the test had gone on. The marker let such a request escape its
    budget, the fixture's requests missed it, and a recording begun
    meanwhile counted it as its own."""
    suite.makepyfile(
        LIVE_SERVER
        + textwrap.dedent(
            """
            from switchtrace import tracer
            from switchtrace.testing import record_requests


            @pytest.mark.max_context_switches(0)
            def test_marker(live):
                get(live + "/sync/")
                body_done.set()


            def test_fixture(live, switchtrace):
                assert get(live + "/sync/") == b"Hello, world\\n"
                body_done.set()
                assert [r.context_switches for r in switchtrace.requests] == [2]


            def test_begun_before_the_recording(live):
                finished = threading.Event()
                get(live + "/sync/")
                with record_requests() as records:
                    # After the recording's own listener.
                    tracer.add_listener(lambda record: finished.set())
                    body_done.set()
                    finished.wait()
                    tracer.remove_listener(tracer._listeners[-1])
                assert records == []
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_marker _*",
            "1 of 1 request exceeded the budget of 0 context switches per request:",
            "  GET /sync/ 200: 2 switches (0 before headers), 2 hops, 1 loop, 1 thread; "
            "top: noop 2",
        ]
    )


def test_a_request_a_live_server_has_not_ended_is_judged_on_its_figures_so_far(suite):
    suite.makepyfile(
        LIVE_SERVER
        + textwrap.dedent(
            """
            import switchtrace.testing

            crossed = threading.Event()


            def cross_then_hang(sender, **kwargs):
                async_to_sync(noop)()
                crossed.set()
                body_done.wait()


            @pytest.mark.max_context_switches(1)
            def test_it(live, monkeypatch):
                monkeypatch.setattr(switchtrace.testing, "SETTLE_SECONDS", 0.1)
                request_finished.disconnect(after_the_body)
                request_finished.connect(cross_then_hang)
                get(live + "/sync/")
                crossed.wait()


            def test_release(live):
                request_finished.disconnect(cross_then_hang)
                request_finished.connect(after_the_body)
                body_done.set()
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "1 of 1 request exceeded the budget of 1 context switch per request:",
            "  GET /sync/ 200: 2 switches (0 before headers), 2 hops, 1 loop, 1 thread; "
            "top: noop 2 (still running: its figures so far)",
        ]
    )


@pytest.mark.parametrize(
    ("budget", "shown"),
    [
        ("-1", "-1"),
        ("'ten'", "'ten'"),
        ("2.5", "2.5"),
        ("True", "True"),
        # Past int's str() limit (4300 digits): the failure was that limit's
        # ValueError, naming neither the marker nor what it allows.
        ("-10**5000", "<int object>"),
    ],
)
def test_a_budget_that_is_not_a_non_negative_integer_is_named(suite, budget, shown):
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
            f"*@pytest.mark.max_context_switches({shown}) must be a non-negative integer "
            f"(context switches per request), not {shown}"
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("arguments", "given"),
    [
        ("", "none"),
        ("budget=0", "budget=0"),
        ("0, 100", "0, 100"),
        ("0, n=100", "0, n=100"),
        ("10**5000, 1", "<int object>, 1"),
    ],
)
def test_a_marker_without_exactly_one_budget_is_named(suite, arguments, given):
    """No argument was told as 'not None'; a keyword other than n, the same;
    a second argument was ignored. An int past str()'s limit (4300 digits)
    failed with that limit's ValueError instead (found fuzzing the markers)."""
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
            f"@pytest.mark.max_context_switches({'' if given == 'none' else given}) takes one "
            "argument, the budget: a "
            "non-negative integer (context switches per request), e.g. "
            f"@pytest.mark.max_context_switches(12); it was given {given}",
            "test_a_marker_without_exactly_one_budget_is_named.py:4: test_it",
            "=*short test summary info*=",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "traceback entries are hidden" not in result.stdout.str()


def test_where_a_failure_points_is_a_path_from_where_pytest_runs(pytester):
    """A monorepo's CI runs ``pytest backend/tests`` from above the project,
    whose pytest.ini is the rootdir: the failure's last line named
    tests/test_views.py, which is not there, where pytest's own lines name
    backend/tests/test_views.py."""
    backend = pytester.mkdir("backend")
    (backend / "pytest.ini").write_text(WITHOUT_PYTEST_DJANGO)
    (backend / "conftest.py").write_text(CONFTEST)
    (backend / "tests").mkdir()
    (backend / "tests" / "test_views.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from django.test import Client

            @pytest.mark.max_context_switches(1)
            def test_over():
                Client().get("/async/")
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "backend/tests")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "1 of 1 request exceeded the budget of 1 context switch per request:",
            "  GET /async/ 200: 2 switches *",
            f"backend{os.sep}tests{os.sep}test_views.py:5: test_over",
        ]
    )


def test_the_closest_marker_wins_and_two_on_one_test_are_named(suite):
    """Two markers on one function: the one written first was silently
    ignored (the test passed under a budget of 0)."""
    suite.makepyfile(
        """
        import pytest
        from django.test import Client

        pytestmark = pytest.mark.max_context_switches(100)


        @pytest.mark.max_context_switches(0)
        @pytest.mark.max_context_switches(100)
        def test_two():
            Client().get("/async-to-sync/")


        @pytest.mark.max_context_switches(5)
        class TestClass:
            @pytest.mark.max_context_switches(6)
            def test_method_over_class(self):
                Client().get("/async-to-sync/")

            def test_class_over_module(self):
                Client().get("/async-to-sync/")


        class TestSubclassOverBase(TestClass):
            pytestmark = [pytest.mark.max_context_switches(6)]

            def test_subclass_over_base(self):
                Client().get("/async-to-sync/")


        @pytest.mark.max_context_switches(7)
        @pytest.mark.max_context_switches(8)
        class TestTwoOnAClass(TestClass):
            def test_two_on_the_class(self):
                Client().get("/async-to-sync/")


        @pytest.mark.max_context_switches()
        @pytest.mark.max_context_switches(1, 2)
        def test_two_one_given_nothing():
            pass
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=5)
    # A marker given nothing was shown as nothing: "markers ( and 1, 2)"
    # (found fuzzing the markers).
    result.stdout.fnmatch_lines(
        [
            "*::test_two_one_given_nothing has two @pytest.mark.max_context_switches markers "
            "(none and 1, 2): give it one budget",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ TestTwoOnAClass.test_two_on_the_class _*",
            "test_the_closest_marker_wins_and_two_on_one_test_are_named.py::TestTwoOnAClass "
            "has two @pytest.mark.max_context_switches markers (7 and 8): give it one budget",
        ]
    )
    # A subclass's marker is closer than its base class's (pytest gathers a
    # class's markers along its MRO, the bases' first): it was taken for a
    # second marker on the subclass, and before that the base's had won.
    assert "TestSubclassOverBase has two" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_two _*",
            "test_the_closest_marker_wins_and_two_on_one_test_are_named.py::test_two has two "
            "@pytest.mark.max_context_switches markers (0 and 100): give it one budget",
            "test_the_closest_marker_wins_and_two_on_one_test_are_named.py:7: test_two",
            "*_ TestClass.test_class_over_module _*",
            "1 of 1 request exceeded the budget of 5 context switches per request:",
        ]
    )


def test_a_parametrized_cases_marker_is_closer_than_its_functions(suite):
    """``pytest.param(..., marks=...)``: pytest puts the case's marker beside
    its function's, and the two were refused as two markers on the test."""
    suite.makepyfile(
        """
        import pytest
        from django.test import Client


        @pytest.mark.parametrize(
            "path",
            [
                pytest.param(
                    "/async-to-sync/", marks=pytest.mark.max_context_switches(6), id="own"
                ),
                pytest.param("/async-to-sync/", id="functions"),
                pytest.param(
                    "/async-to-sync/",
                    marks=[
                        pytest.mark.max_context_switches(6),
                        pytest.mark.max_context_switches(7),
                    ],
                    id="two",
                ),
            ],
        )
        @pytest.mark.max_context_switches(5)
        def test_cases(path):
            Client().get(path)
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_cases[[]functions[]] _*",
            "1 of 1 request exceeded the budget of 5 context switches per request:",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*::test_cases[[]two[]] has two @pytest.mark.max_context_switches markers "
            "(6 and 7): give it one budget",
        ]
    )


def test_a_class_budget_in_pytestmark_beside_other_markers_or_alone(suite):
    """A class's own ``pytestmark`` may be one marker, not a list, and may
    hold other markers beside the budget: only its budget is the class's,
    over its base's (given by a decorator, which pytest keeps in the base's
    pytestmark list)."""
    suite.makepyfile(
        """
        import pytest
        from django.test import Client


        class TestBase:
            pytestmark = pytest.mark.max_context_switches(5)

            def test_it(self):
                Client().get("/async-to-sync/")


        class TestSubclass(TestBase):
            pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.max_context_switches(6)]


        @pytest.mark.max_context_switches(1)
        class TestDecoratedBase:
            def test_it(self):
                Client().get("/async-to-sync/")


        class TestOneMarkerSubclass(TestDecoratedBase):
            pytestmark = pytest.mark.max_context_switches(6)
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*TestBase::test_it FAILED*",
            "*TestSubclass::test_it PASSED*",
            "*TestDecoratedBase::test_it FAILED*",
            "*TestOneMarkerSubclass::test_it PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["1 of 1 request exceeded the budget of 5 context switches per request:"]
    )


def test_no_frame_of_switchtraces_shows_in_a_failures_traceback(suite):
    """The project's exception raised through async_to_sync, and a budget
    failing in an async test method of Django's (run in async_to_sync):
    pytest showed switchtrace's wrappers among the frames (tracer/patches.py),
    which set Django's __traceback_hide__ but not pytest's __tracebackhide__."""
    suite.makepyfile(
        textwrap.dedent(
            """
            from asgiref.sync import async_to_sync
            from django.test import SimpleTestCase
            from switchtrace.testing import assert_max_switches


            async def fails():
                raise ValueError("the project's own")


            def test_raising_through_a_bridge(switchtrace):
                async_to_sync(fails)()


            class AsyncTests(SimpleTestCase):
                @assert_max_switches(1)
                async def test_over_budget(self):
                    await self.async_client.get("/sync/")


            def test_a_call_given_what_it_does_not_take():
                # Raised in the wrapper's frame, where the call is made.
                import threading
                threading.Thread(target=print).start(1)
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*test_no_frame_of_switchtraces_shows_in_a_failures_traceback.py:2*: TypeError"]
    )
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["*ValueError: the project's own*"])
    result.stdout.fnmatch_lines(["*1 of 1 request exceeded the budget of 1 context switch*"])
    assert "switchtrace/" not in output.split("= FAILURES =")[1].split("short test summary")[0]


def test_an_error_raised_in_switchtraces_own_code_shows_its_frames(suite):
    """Raised by switchtrace's own code (here as if its test client's
    wrapper failed), outside the guard that logs its errors: its frames
    show where, rather than the error seeming Django's."""
    suite.makepyfile(
        textwrap.dedent(
            """
            from django.test import Client
            from switchtrace import example, tracer


            def test_it(switchtrace, monkeypatch):
                def broken(*args, **kwargs):
                    example.find_project("/no/such/project")

                monkeypatch.setattr(tracer, "start_request", broken)
                Client().get("/sync/")
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    shown = result.stdout.str().split("= FAILURES =")[1]
    assert "switchtrace/testing.py" in shown
    assert "switchtrace/example.py" in shown


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
    failing frame under the test's; as a decorator of a sync test, the
    failing frame shown was ContextDecorator's wrapper in contextlib."""
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
    decorated = output.split(" test_decorated _")[1].split(" test_within_budget_then_raising _")[0]
    assert "contextlib" not in decorated
    assert "testing.py" not in decorated
    # Nor does the plugin's hook around every test show (here under the
    # decorated test, whose traceback pytest cannot cut at the test's code).
    assert "pytest_plugin.py" not in output
    result.stdout.fnmatch_lines(
        [
            ">       with assert_max_switches(5) as records:",
            "E       AssertionError: 1 of 1 request exceeded the budget of 5 context switches*",
            "test_assert_max_switches_fails_at_the_tests_line.py:6: AssertionError",
            "*test_decorated*",
            # The test had returned: no frame of its is left to show.
            "E   AssertionError: 1 of 1 request exceeded the budget of 5 context switches*",
            "      GET /async-to-sync/ 200: 6 switches *",
            "All traceback entries are hidden.*",
            "*test_within_budget_then_raising*",
            'E * KeyError: "the block\'s own"',
        ]
    )


def test_the_marker_on_a_unittest_test_counts_the_test_method_alone(suite):
    """pytest runs a TestCase's setUp, test method and tearDown in one call,
    which the marker recorded whole: setUp's requests (the test's fixture)
    counted against the budget, where the decorator leaves them out. Sync
    and async test methods (Django makes the latter sync with async_to_sync)."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from asgiref.sync import async_to_sync
            from django.test import SimpleTestCase


            class Fixtures(SimpleTestCase):
                def setUp(self):
                    self.client.get("/async-to-sync/")  # 6 switches
                    async_to_sync(self.async_client.get)("/sync/")  # 32

                def tearDown(self):
                    self.client.get("/async-to-sync/")

                @pytest.mark.max_context_switches(2)
                def test_within(self):
                    self.client.get("/async/")  # 2

                @pytest.mark.max_context_switches(30)
                async def test_async_within(self):
                    await self.async_client.get("/async/")  # 30

                @pytest.mark.max_context_switches(1)
                def test_over(self):
                    self.client.get("/async/")
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Fixtures.test_over*",
            "1 of 1 request exceeded the budget of 1 context switch per request:",
            "  GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; top: "
            "async_view 2",
            "test_the_marker_on_a_unittest_test_counts_the_test_method_alone.py:22: test_over",
        ]
    )


def test_the_marker_on_a_unittest_test_puts_back_what_it_finds_on_the_instance(suite):
    """The marker wraps the TestCase instance's _callTestMethod while the
    test runs: one that another plugin had put on the instance is called
    within it, and is the instance's again after."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from django.test import SimpleTestCase

            calls = []


            @pytest.fixture(autouse=True)
            def other_plugin(request):
                case = request.instance
                if case is None:
                    yield
                    return
                original = case._callTestMethod

                def theirs(method):
                    calls.append(method.__name__)
                    return original(method)

                case._callTestMethod = theirs
                yield
                assert case.__dict__["_callTestMethod"] is theirs


            class Budgeted(SimpleTestCase):
                @pytest.mark.max_context_switches(2)
                def test_within(self):
                    self.client.get("/async/")


            def test_theirs_was_called():
                assert calls == ["test_within"]
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_assert_max_switches_decorates_async_tests(suite):
    """contextlib's ContextDecorator wraps a coroutine function in a sync
    function: the budget's block ended before the test's coroutine ran, and
    Django, no longer seeing an async test method, never awaited it (the
    test passed, its body never run)."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import inspect

            from django.test import SimpleTestCase
            from switchtrace.testing import assert_max_switches


            class Async(SimpleTestCase):
                @assert_max_switches(1)
                async def test_over(self):
                    await self.async_client.get("/async/")

                @assert_max_switches(30)
                async def test_within(self):
                    response = await self.async_client.get("/async/")
                    self.assertEqual(response.status_code, 200)


            def test_still_a_coroutine_function():
                assert inspect.iscoroutinefunction(Async.test_over)
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Async.test_over*",
            "E * AssertionError: 1 of 1 request exceeded the budget of 1 context switch per "
            "request:",
            # The first request of the process may start one thread more.
            "E * GET /async/ 200: 30 switches (28 before headers), 30 hops, 0 loops, "
            "* thread*; top: CsrfViewMiddleware 6, *",
        ]
    )
    assert "never awaited" not in result.stdout.str()
    # The traceback ends at the test, not in the budget's wrapper.
    assert "testing.py" not in result.stdout.str()


def test_assert_max_switches_decorates_a_test_class(suite):
    """On a class, as Django's override_settings is used, the budget is each
    test method's: ContextDecorator made the class a function, which neither
    unittest nor pytest collects (no test of the class ran, and the run
    passed). A method's own budget wins over its class's."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import inspect

            from django.test import SimpleTestCase
            from switchtrace.testing import assert_max_switches


            @assert_max_switches(1)
            class Budgeted(SimpleTestCase):
                def test_within(self):
                    self.client.get("/sync/")

                def test_over(self):
                    self.client.get("/async/")

                async def test_async_over(self):
                    await self.async_client.get("/async/")

                @assert_max_switches(2)
                def test_own_budget(self):
                    self.client.get("/async/")

                def helper(self):
                    pass


            def test_still_a_class_whose_helpers_are_untouched():
                assert inspect.isclass(Budgeted)
                assert not hasattr(Budgeted.helper, "__wrapped__")
                assert hasattr(Budgeted.test_within, "__wrapped__")
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines_random(
        ["FAILED *Budgeted::test_over*", "FAILED *Budgeted::test_async_over*"]
    )
    result.stdout.fnmatch_lines_random(
        [
            "E * GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; "
            "top: async_view 2",
            "E * GET /async/ 200: 30 switches (28 before headers), 30 hops, 0 loops, *",
        ]
    )


def test_a_subclass_budget_wins_over_its_base_class_budget(suite):
    """The closest budget wins, as with the markers (and as a subclass's
    override_settings over its base's): the test methods a decorated class
    inherits from a decorated base get the subclass's budget. They kept the
    base's, so no subclass could loosen (or tighten) it. A subclass without
    a budget keeps its base's, and a method's own budget wins over both."""
    suite.makepyfile(
        textwrap.dedent(
            """
            from django.test import SimpleTestCase
            from switchtrace.testing import assert_max_switches


            @assert_max_switches(1)
            class Base(SimpleTestCase):
                def test_async_view(self):
                    self.client.get("/async/")

                @assert_max_switches(0)
                def test_own_budget(self):
                    self.client.get("/async/")


            @assert_max_switches(2)
            class Looser(Base):
                pass


            class Inheriting(Base):
                pass


            @assert_max_switches(0)
            class Tighter(Looser):
                pass
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=7)
    # Each failure's section in the order the tests ran, with its budget.
    failures = [
        ("Base.test_async_view", "1 context switch "),
        ("Base.test_own_budget", "0 context switches"),
        ("Looser.test_own_budget", "0 context switches"),
        ("Inheriting.test_async_view", "1 context switch "),
        ("Inheriting.test_own_budget", "0 context switches"),
        ("Tighter.test_async_view", "0 context switches"),
        ("Tighter.test_own_budget", "0 context switches"),
    ]
    result.stdout.fnmatch_lines(
        [
            line
            for test, budget in failures
            for line in (f"_* {test} _*", f"E * exceeded the budget of {budget}*")
        ]
    )
    assert "Looser.test_async_view" not in result.stdout.str()


def test_a_subclass_budget_wins_for_inherited_static_and_class_methods(suite):
    """Both at once: a decorated subclass re-budgets the static and class
    methods it inherits from a decorated base, and keeps them what they are."""
    suite.makepyfile(
        textwrap.dedent(
            """
            from django.test import Client
            from switchtrace.testing import assert_max_switches


            @assert_max_switches(1)
            class TestBase:
                @staticmethod
                def test_static():
                    Client().get("/async/")

                @classmethod
                def test_class(cls):
                    Client().get("/async/")


            @assert_max_switches(2)
            class TestLooser(TestBase):
                pass
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*TestBase::test_static FAILED*",
            "*TestBase::test_class FAILED*",
            "*TestLooser::test_static PASSED*",
            "*TestLooser::test_class PASSED*",
        ]
    )


def test_assert_max_switches_on_a_class_keeps_static_and_class_methods_what_they_are(suite):
    """pytest collects a test class's static and class methods too: on the
    class, the budget made a static test method an instance method (TypeError:
    takes 0 positional arguments but 1 was given) and left a class method
    without the budget (its 2 switches passed a budget of 1)."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import inspect

            from django.test import Client
            from switchtrace.testing import assert_max_switches


            @assert_max_switches(1)
            class TestBudgeted:
                @staticmethod
                def test_static_within():
                    Client().get("/sync/")

                @staticmethod
                def test_static_over():
                    Client().get("/async/")

                @classmethod
                def test_class_over(cls):
                    assert cls is TestBudgeted
                    Client().get("/async/")


            def test_still_what_they_were():
                static = inspect.getattr_static(TestBudgeted, "test_static_over")
                bound = inspect.getattr_static(TestBudgeted, "test_class_over")
                assert (type(static), type(bound)) == (staticmethod, classmethod)
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        ["FAILED *TestBudgeted::test_static_over*", "FAILED *TestBudgeted::test_class_over*"]
    )
    # Each failure's report (the summary's lines are cut to the terminal's
    # width, unless CI is set), the test method's frames all hidden.
    reports = [line for line in result.outlines if line.startswith("      GET ")]
    assert [line.strip() for line in reports] == 2 * [
        "GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; "
        "top: async_view 2"
    ]
    assert "TypeError" not in result.stdout.str()


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


def test_the_old_style_hook_wrapper_for_pluggy_before_1_1(suite):
    # pluggy < 1.1 (older pytest 7 releases) has no new-style hook wrappers:
    # the plugin then registers this one (and loading it failed there with a
    # TypeError that broke every test run of a project installing
    # switchtrace). Registered here by hand, the entry point's plugin off.
    suite.makeconftest(
        CONFTEST
        + textwrap.dedent(
            """
            import pytest
            from switchtrace import pytest_plugin as plugin

            pytest_configure = plugin.pytest_configure
            switchtrace = plugin.switchtrace
            pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(
                plugin._runtest_call_old_style
            )
            """
        )
    )
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from django.test import Client


            @pytest.mark.max_context_switches(0)
            def test_within():
                assert Client().get("/sync/").status_code == 200


            @pytest.mark.max_context_switches(1)
            def test_over():
                Client().get("/async/")


            @pytest.mark.max_context_switches(0)
            def test_raising():
                Client().get("/async/")
                raise KeyError("the test's own")


            @pytest.mark.max_context_switches(-1)
            def test_bad_budget():
                pass


            def test_unmarked():
                pass


            @pytest.fixture
            def made_a_request(switchtrace):
                Client().get("/async/")


            def test_the_fixtures_requests_are_the_tests_own(switchtrace, made_a_request):
                Client().get("/sync/")
                assert [r.attributes["url.path"] for r in switchtrace.requests] == ["/sync/"]
            """
        )
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:switchtrace")
    result.assert_outcomes(passed=3, failed=3)
    # Our failures without the hook wrapper's frame, as with the new-style one.
    assert "pytest_plugin.py" not in result.stdout.str()
    # The message alone, as lines of their own (with a traceback, pytest's
    # own frames came first, and the message after "E   Failed: ").
    result.stdout.fnmatch_lines(
        [
            "1 of 1 request exceeded the budget of 1 context switch per request:",
            "  GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; top: "
            "async_view 2",
            "test_the_old_style_hook_wrapper_for_pluggy_before_1_1.py:10: test_over",
        ]
    )
    # The test's own failure is its own, not the budget's.
    result.stdout.fnmatch_lines(['*KeyError: "the test\'s own"'])
    assert "exceeded the budget of 0" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*max_context_switches(-1) must be a non-negative integer*"])


#: A Python with pytest 7.0 and pluggy 1.0 installed, and switchtrace's
#: requirements (.ci/run makes one): the old-style hook wrapper's own pluggy.
PYTEST_7 = os.environ.get("SWITCHTRACE_PYTEST_7_PYTHON")


@pytest.mark.skipif(not PYTEST_7, reason="SWITCHTRACE_PYTEST_7_PYTHON is not set (.ci/run sets it)")
def test_under_pluggy_1_0_a_budgets_failure_keeps_the_tests_output(tmp_path):
    """pluggy 1.0 has no force_exception: the hook wrapper raised, and pluggy
    then skipped the teardown of the wrappers below it: the test's log was
    lost and its stdout filed under its teardown (with the progress line's
    F in it). The old-style wrapper's budget of a TestCase's method leaves
    out its setUp's requests, as the new one's does."""
    (tmp_path / "tox.ini").write_text(WITHOUT_PYTEST_DJANGO)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_over.py").write_text(
        textwrap.dedent(
            """
            import logging

            import pytest
            from django.test import Client


            @pytest.mark.max_context_switches(1)
            def test_over():
                print("printed by test_over")
                logging.getLogger("app").error("logged by test_over")
                Client().get("/async/")


            def test_next():
                print("printed by test_next")
                assert False
            """
        )
    )
    # And a TestCase's method: its budget is of its own requests, not of
    # those its setUp made (6 switches).
    (tmp_path / "test_case.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from django.test import SimpleTestCase


            class Fixtures(SimpleTestCase):
                def setUp(self):
                    self.client.get("/async-to-sync/")

                @pytest.mark.max_context_switches(2)
                def test_within(self):
                    self.client.get("/async/")
            """
        )
    )
    src = Path(__file__).resolve().parent.parent / "src"
    out = subprocess.run(
        [PYTEST_7, "-m", "pytest", "-p", "no:cacheprovider", "-rf"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(src), "CI": "true"},
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert "pluggy-1.0" in lines[1], out.stdout
    assert [
        line.split()[:2] for line in lines if line.startswith(("test_case.py ", "test_over.py "))
    ] == [
        ["test_case.py", "."],
        ["test_over.py", "FF"],
    ]
    over = out.stdout.split(" test_over _")[1].split(" test_next _")[0].splitlines()
    assert over[1:-1] == [
        "1 of 1 request exceeded the budget of 1 context switch per request:",
        "  GET /async/ 200: 2 switches (2 before headers), 2 hops, 1 loop, 1 thread; "
        "top: async_view 2",
        "test_over.py:8: test_over",
        "----------------------------- Captured stdout call -----------------------------",
        "printed by test_over",
        "------------------------------ Captured log call -------------------------------",
        "ERROR    app:test_over.py:11 logged by test_over",
    ], out.stdout
    assert "Captured stdout teardown" not in out.stdout
    assert out.returncode == 1


def test_without_django_settings_the_budget_and_the_fixture_say_so(pytester, monkeypatch):
    # No conftest: no DJANGO_SETTINGS_MODULE. The test's own outcome is not
    # replaced by ImproperlyConfigured from the end of the recording; the
    # budget fails before the test runs, naming what is missing.
    pytester.makeini(WITHOUT_PYTEST_DJANGO)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest


            @pytest.mark.max_context_switches(0)
            def test_marked():
                raise KeyError("not reached")


            def test_fixture(switchtrace):
                pass


            def test_unmarked():
                pass
            """
        )
    )
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    output = result.stdout.str()
    assert "KeyError" not in output
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_fixture _*",
            "switchtrace records requests only with Django's settings configured: *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_marked _*",
            "switchtrace records requests only with Django's settings configured: Requested "
            "setting SWITCHTRACE, but settings are not configured.*call django.setup() in a "
            "conftest.py)",
            "test_without_django_settings_the_budget_and_the_fixture_say_so.py:4: test_marked",
        ]
    )


def test_a_settings_module_that_does_not_import_is_said_so(pytester, monkeypatch):
    """DJANGO_SETTINGS_MODULE naming a module that is not there: one line
    naming it, where a traceback through switchtrace's recording ended in
    Django's settings. A settings module whose own import fails is its
    error, with its traceback."""
    pytester.makeini(WITHOUT_PYTEST_DJANGO)
    (pytester.mkpydir("cfg") / "settings.py").write_text("from cfg import local\n")
    (pytester.mkpydir("cfg2") / "settings.py").write_text("import cfg2.local\n")
    pytester.makepyfile(
        badsettings="import not_installed_anywhere\n",
        mysite_settings_ci="from mysite_settings import *\n",
        test_it=textwrap.dedent(
            """
            import pytest


            @pytest.mark.max_context_switches(0)
            def test_marked():
                pass
            """
        ),
    )
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "nosuch.settings")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_marked _*",
            "switchtrace records requests only with Django's settings configured: "
            "DJANGO_SETTINGS_MODULE='nosuch.settings' cannot be imported (ModuleNotFoundError: "
            "No module named 'nosuch'); allowed: the dotted path of a settings module on the "
            "Python path",
            "test_it.py:4: test_marked",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", ".settings")  # relative: import_module refuses
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "switchtrace records requests only with Django's settings configured: "
            "DJANGO_SETTINGS_MODULE='.settings' cannot be imported (TypeError: *); allowed: the "
            "dotted path of a settings module on the Python path",
        ]
    )
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "badsettings")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E   ModuleNotFoundError: No module named 'not_installed_anywhere'"]
    )
    # What a package's settings import from it (its ImportError names the
    # package, a part of DJANGO_SETTINGS_MODULE) is theirs too.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "cfg.settings")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   ImportError: cannot import name 'local' from 'cfg'*"])
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "cfg2.settings")  # a module of its package
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   ModuleNotFoundError: No module named 'cfg2.local'"])
    # A missing module whose name begins the settings module's, no package
    # of it ('mysite_settings' for 'mysite_settings_ci'): theirs too.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite_settings_ci")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   ModuleNotFoundError: No module named 'mysite_settings'"])


# -- Under pytest-django and pytest-xdist, as Django projects run it in CI -------

#: Django configured by pytest-django alone: its ini setting, the example
#: project on pytest's path, no conftest.py.
PYTEST_DJANGO_INI = f"""
[pytest]
DJANGO_SETTINGS_MODULE = project.settings
pythonpath = {EXAMPLE} .
"""

#: README's example: the test marked max_context_switches(4), its decorator
#: on line 10 of tests/test_views.py.
README_EXAMPLE = """
\"\"\"pytest-django's fixtures under budgets.\"\"\"

import asyncio

import pytest

from project.views import async_to_sync_view


@pytest.mark.max_context_switches(4)
def test_sync_view_under_asgi(client, async_client):
    asyncio.run(async_client.get("/sync/"))
    assert client.get("/async/").status_code == 200


@pytest.mark.max_context_switches(0)
def test_client_within_budget(client):
    assert client.get("/sync/").status_code == 200


@pytest.mark.anyio
@pytest.mark.max_context_switches(32)
async def test_async_client_within_budget(async_client, switchtrace):
    assert (await async_client.get("/sync/")).status_code == 200
    figures = [
        (r.kind, r.context_switches, r.at_headers.context_switches)
        for r in switchtrace.requests
    ]
    assert figures == [("asgi", 32, 30)]


@pytest.mark.anyio
@pytest.mark.max_context_switches(31)
async def test_async_client_over_budget(async_client):
    assert (await async_client.get("/sync/")).status_code == 200


def test_fixture_over_budget(client, switchtrace):
    client.get("/async-to-sync/")
    switchtrace.assert_max_switches(5)


@pytest.mark.django_db
@pytest.mark.max_context_switches(0)
def test_database(client):
    assert client.get("/db-sync/").content == b"1\\n"


def test_settings_fixture(client, async_client, settings, switchtrace):
    settings.SWITCHTRACE = {"ENABLED": False}
    settings.MIDDLEWARE = []
    client.get("/async-to-sync/")
    asyncio.run(async_client.get("/sync/"))
    figures = [(r.kind, r.context_switches) for r in switchtrace.requests]
    assert figures == [("wsgi", 6), ("asgi", 6)]


def test_settings_restored(async_client, switchtrace):
    asyncio.run(async_client.get("/sync/"))
    assert [r.context_switches for r in switchtrace.requests] == [32]


@pytest.mark.max_context_switches(0)
def test_request_factory(rf, switchtrace):
    # A view called with a request: no handler, no request recorded.
    assert async_to_sync_view(rf.get("/async-to-sync/")).status_code == 200
    assert switchtrace.requests == []
"""


@pytest.fixture
def django_suite(pytester, monkeypatch):
    """A project's test suite configured by pytest-django (not by this
    suite's DJANGO_SETTINGS_MODULE), its spans in a file of its own."""
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv("SWITCHTRACE_EXAMPLE_TRACES", str(pytester.path / "traces.jsonl"))
    pytester.makeini(PYTEST_DJANGO_INI)
    return pytester


def test_pytest_django_client_async_client_rf_django_db_and_settings(django_suite):
    django_suite.mkpydir("tests")
    django_suite.makepyfile(**{"tests/test_views": README_EXAMPLE})
    result = django_suite.runpytest_subprocess("-p", "django", "-p", "anyio")
    result.assert_outcomes(passed=6, failed=3)
    # README's failure, word for word (the first ASGI request of the process
    # starts asgiref's executor thread: 2 threads).
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    shown = readme.split("`max_context_switches(4)` got `/sync/` with `AsyncClient`")[1]
    shown = shown.split("```\n")[1].splitlines()
    assert shown[0].startswith("1 of 2 requests exceeded")
    result.stdout.fnmatch_lines(["*_ test_sync_view_under_asgi _*", *shown, "*_ test_*"])
    result.stdout.fnmatch_lines(
        [
            "*_ test_async_client_over_budget* _*",
            "1 of 1 request exceeded the budget of 31 context switches per request:",
            "  GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops, 1 thread; "
            "top: CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4, "
            "CommonMiddleware 4, MessageMiddleware 4",
            "tests/test_views.py:32: test_async_client_over_budget*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fixture_over_budget _*",
            ">       switchtrace.assert_max_switches(5)",
            "E       AssertionError: 1 of 1 request exceeded the budget of 5 context switches "
            "per request:",
            "E         GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, "
            "3 loops, 3 threads; top: async_to_sync_view → noop 6",
        ]
    )


WORKERS_SUITE = """
import asyncio
import urllib.request

import pytest


def get(url):
    with urllib.request.urlopen(url) as response:
        return response.read()


@pytest.mark.max_context_switches(0)
def test_live_server_within_budget(live_server):
    assert get(live_server.url + "/sync/") == b"Hello, world\\n"


@pytest.mark.max_context_switches(5)
def test_live_server_over_budget(live_server):
    get(live_server.url + "/async-to-sync/")


def test_fixture(client, switchtrace):
    client.get("/async-to-sync/")
    client.get("/sync/")
    assert [r.context_switches for r in switchtrace.requests] == [6, 0]


def test_fixture_over_budget(client, switchtrace):
    client.get("/async-to-sync/")
    switchtrace.assert_max_switches(5)


@pytest.mark.max_context_switches(4)
def test_marker_over_budget(async_client):
    asyncio.run(async_client.get("/sync/"))
"""


def test_pytest_xdist_workers_with_settings_from_the_ds_option(django_suite):
    """Under ``-n 2`` every test runs in a worker: the budgets hold there,
    their failures reach the controller's report whole, and the workers'
    spans (the example project exports them to one file) are all there."""
    # The live server serves static files from STATIC_URL, which the example
    # project does not set; --ds wins over the ini setting.
    django_suite.makepyfile(
        live_settings="from project.settings import *  # noqa\nSTATIC_URL = '/static/'\n",
        test_workers=WORKERS_SUITE,
    )
    result = django_suite.runpytest_subprocess(
        "-p", "django", "-p", "xdist", "-n", "2", "--ds", "live_settings"
    )
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(["created: 2/2 workers"])
    result.stdout.fnmatch_lines(
        [
            "*_ test_live_server_over_budget _*",
            "[[]gw?[]] linux -- Python *",
            "1 of 1 request exceeded the budget of 5 context switches per request:",
            "  GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, 3 loops, "
            "3 threads; top: async_to_sync_view → noop 6",
            "test_workers.py:17: test_live_server_over_budget",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fixture_over_budget _*",
            "E       AssertionError: 1 of 1 request exceeded the budget of 5 context switches "
            "per request:",
            "E         GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, "
            "3 loops, 3 threads; top: async_to_sync_view → noop 6",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_marker_over_budget _*",
            "1 of 1 request exceeded the budget of 4 context switches per request:",
            "  GET /sync/ 200: 32 switches (30 before headers), 32 hops, 0 loops, * thread*; "
            "top: CsrfViewMiddleware 6, SecurityMiddleware 4, SessionMiddleware 4, "
            "CommonMiddleware 4, MessageMiddleware 4",
            "test_workers.py:33: test_marker_over_budget",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()
    # Both workers appended their requests' spans to the one file, each
    # export a whole line: every request's server span is there.
    lines = (django_suite.path / "traces.jsonl").read_text().splitlines()
    paths = sorted(
        attribute["value"]["stringValue"]
        for line in lines
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
        if not span.get("parentSpanId")
        for attribute in span["attributes"]
        if attribute["key"] == "url.path"
    )
    assert paths == ["/async-to-sync/"] * 3 + ["/sync/"] * 3


def test_the_fixture_records_the_tests_own_requests_whatever_its_place(suite):
    """A request made by a fixture the test lists after ``switchtrace`` was
    one of the test's requests (first in ``requests``), one made by a fixture
    listed before it was not."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from django.test import Client


            @pytest.fixture
            def order():
                Client().get("/async-to-sync/")


            def test_fixture_after(switchtrace, order):
                Client().get("/sync/")
                assert [r.attributes["url.path"] for r in switchtrace.requests] == ["/sync/"]
                switchtrace.assert_max_switches(0)


            def test_fixture_before(order, switchtrace):
                Client().get("/sync/")
                assert [r.attributes["url.path"] for r in switchtrace.requests] == ["/sync/"]
            """
        )
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_the_fixture_leaves_out_what_fixtures_do_after_the_test(suite):
    """Read in a fixture's teardown (an autouse fixture checking a budget),
    the figures had the requests of the teardowns of the fixtures listed
    after ``switchtrace``, torn down first; fetched with
    ``request.getfixturevalue``, they had those of the fixtures set up after
    it (fetched in the test's body, those torn down after the call); around
    a unittest test, those of setUp and tearDown (which the marker left
    out)."""
    suite.makepyfile(
        textwrap.dedent(
            """
            import unittest

            import pytest
            from django.test import Client

            seen = {}


            @pytest.fixture
            def helper():
                Client().get("/async-to-sync/")
                yield
                Client().get("/async-to-sync/")


            @pytest.fixture
            def budget(request, switchtrace):
                yield
                seen[request.node.name] = [r.attributes["url.path"] for r in switchtrace.requests]
                switchtrace.assert_max_switches(0)


            @pytest.fixture
            def fetched(request):
                watch = request.getfixturevalue("switchtrace")
                yield
                seen[request.node.name] = [r.attributes["url.path"] for r in watch.requests]


            def test_helper_after(budget, helper):
                Client().get("/sync/")


            def test_helper_before(helper, budget):
                Client().get("/sync/")


            def test_fetched(fetched, helper):
                Client().get("/sync/")


            later = {}


            @pytest.fixture
            def read_later(request):
                yield
                seen[request.node.name] = [
                    r.attributes["url.path"] for r in later["watch"].requests
                ]


            def test_fetched_in_the_body(read_later, request):
                later["watch"] = request.getfixturevalue("switchtrace")
                Client().get("/sync/")
                request.getfixturevalue("helper")  # set up in the call: counted


            class TestCaseStyle(unittest.TestCase):
                @pytest.fixture(autouse=True)
                def _budget(self, request, switchtrace):
                    yield
                    seen[request.node.name] = [
                        r.attributes["url.path"] for r in switchtrace.requests
                    ]

                def setUp(self):
                    Client().get("/async-to-sync/")

                def tearDown(self):
                    Client().get("/async-to-sync/")

                def test_method(self):
                    Client().get("/sync/")


            def test_zz_what_each_saw():
                assert seen == {
                    "test_helper_after": ["/sync/"],
                    "test_helper_before": ["/sync/"],
                    "test_fetched": ["/sync/"],
                    "test_fetched_in_the_body": ["/sync/", "/async-to-sync/"],
                    "test_method": ["/sync/"],
                }
            """
        )
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=6)
