"""explain --measure in-process: what the measured request did, told apart."""

from __future__ import annotations

import io
import logging
import threading

import django
import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

from switchtrace.django_app import explain

SUPPORT = "tests.test_predict_support"


def render(url: str, **settings) -> tuple[str, Exception | None]:
    out = io.StringIO()
    settings.setdefault("MIDDLEWARE", [])
    with override_settings(ROOT_URLCONF=SUPPORT, ALLOWED_HOSTS=["localhost"], **settings):
        try:
            explain.render(url, True, out)
        except explain.ApplicationError as exc:
            return out.getvalue(), exc
    return out.getvalue(), None


def measured_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  measured:")]


def test_a_receiver_connected_for_the_handler_class_is_measured_as_predicted():
    """The measured handler is Django's own class: the request signals,
    sent with it as sender, reach receivers connected for it (a subclass
    of it, measuring, missed them: 32 measured, 34 predicted)."""
    from ..test_predict_support import async_receiver

    if not hasattr(signals.request_finished, "asend"):
        pytest.skip("Django 4.2 has no async receivers")
    signals.request_finished.connect(async_receiver, sender=ASGIHandler)
    try:
        text, error = render("/sync/")
    finally:
        signals.request_finished.disconnect(async_receiver, sender=ASGIHandler)
    assert error is None
    assert measured_lines(text) == [
        "  measured: 8 switches, 8 hops, 0 loops (as predicted)",
        "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
    ]


def test_a_process_view_answering_before_the_view_is_told():
    """The URL resolved, but a process_view answered: not the view's figures."""
    text, error = render("/sync/", MIDDLEWARE=[f"{SUPPORT}.AnswersInProcessView"])
    assert measured_lines(text) == [
        "  measured: 6 switches, 6 hops, 0 loops, of a 302 Found response (a middleware "
        "answered before the view ran: not compared with the prediction)"
    ]
    assert str(error) == (
        "GET /sync/ under ASGI was answered 302 Found by a middleware, before the view ran; "
        "measure a --url that reaches the view"
    )


@pytest.mark.parametrize(
    ("url", "server"),
    [("/endless-async-stream/", "ASGI"), ("/endless-sync-stream/", "WSGI")],
)
def test_an_endless_stream_is_read_for_a_while_then_told(url, server, monkeypatch):
    """Server-sent events, a long poll: the measurement hung reading the body.
    (A stream Django reads whole itself, a synchronous iterator under ASGI
    or an asynchronous one under WSGI, never ends under a server either.)"""
    monkeypatch.setattr(explain, "MEASURE_SECONDS", 0.3)
    text, error = render(url) if server == "ASGI" else _wsgi_only(url)
    assert measured_lines(text)[-1].endswith(
        "of a 200 OK response not ended after 0.3 s (measured until then: not compared "
        "with the prediction)"
    )
    assert str(error) == (
        f"GET {url} under {server} had not ended after 0.3 s; measure a --url whose response ends"
    )


def _wsgi_only(url: str) -> tuple[str, Exception | None]:
    """render() measures ASGI first, where Django reads a sync stream whole
    (see the test below): the WSGI case is measured directly."""
    out = io.StringIO()
    with override_settings(ROOT_URLCONF=SUPPORT, ALLOWED_HOSTS=["localhost"], MIDDLEWARE=[]):
        prediction = explain.predict("wsgi", False, [])
        try:
            explain._render_measured("wsgi", url, "localhost", prediction, out)
        except explain.ApplicationError as exc:
            return out.getvalue(), exc
    return out.getvalue(), None


def test_a_view_that_gives_no_response_in_time_is_told(monkeypatch):
    monkeypatch.setattr(explain, "MEASURE_SECONDS", 0.3)
    text, error = render("/slow/")
    assert measured_lines(text)[-1].endswith(
        "no response within 0.3 s (measured until then: not compared with the prediction)"
    )
    assert str(error) == (
        "GET /slow/ under ASGI gave no response within 0.3 s; measure a --url the view answers"
    )


def test_a_stream_django_reads_whole_is_left_running_and_told(monkeypatch):
    """Under ASGI Django reads a synchronous stream whole, in a thread no
    cancellation stops: the command hung until it ended (never, for an
    endless one). Now told, with left_running set (the commands then end
    the process at once)."""
    monkeypatch.setattr(explain, "MEASURE_SECONDS", 0.2)
    monkeypatch.setattr(explain, "CANCEL_SECONDS", 0.2)
    text, error = render("/long-sync-stream/")
    assert measured_lines(text) == []
    assert isinstance(error, explain.ApplicationError) and error.left_running
    assert str(error).startswith(
        "GET /long-sync-stream/ under ASGI had not ended after 0.4 s, and cannot be stopped"
    )
    # The request ends by itself a little later: its record must not land in
    # another test's.
    for thread in threading.enumerate():
        if thread.name == "switchtrace-measure":
            assert thread.daemon  # not waited for by the interpreter at exit
            thread.join(30)
            assert not thread.is_alive()


ENDLESS_SCRIPT = {
    "switchtrace": """
import sys
from switchtrace.django_app import explain
explain.MEASURE_SECONDS = explain.CANCEL_SECONDS = 0.2
from switchtrace import cli
sys.exit(cli.main(["explain", "--url", "/endless-sync-stream/", "--measure"]))
""",
    "manage.py": """
import django
django.setup()
from switchtrace.django_app import explain
explain.MEASURE_SECONDS = explain.CANCEL_SECONDS = 0.2
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "switchtrace_explain", "--url",
                           "/endless-sync-stream/", "--measure"])
""",
}


@pytest.mark.parametrize("command", ENDLESS_SCRIPT)
def test_an_endless_stream_django_reads_whole_ends_the_command(command, tmp_path):
    """The thread reading it never ends: the interpreter would wait for it at
    exit, and the command hung; it now ends the process after its line."""
    import os
    import subprocess
    import sys

    from ..conftest import EXAMPLE, ROOT

    (tmp_path / "endless_settings.py").write_text(
        "from tests.settings import *\n"
        'ROOT_URLCONF = "tests.test_predict_support"\n'
        "MIDDLEWARE = []\n"
        'ALLOWED_HOSTS = ["localhost"]\n'
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "endless_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), str(EXAMPLE)]),
    }
    out = subprocess.run(
        [sys.executable, "-c", ENDLESS_SCRIPT[command]],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    # (Before it, Django's own warning that it must read the stream whole.)
    prefix = "switchtrace explain: error: " if command == "switchtrace" else "CommandError: "
    [error] = [line for line in out.stderr.splitlines() if line.startswith(prefix)]
    assert error.startswith(
        f"{prefix}GET /endless-sync-stream/ under ASGI had not ended after 0.4 s, and cannot "
        "be stopped"
    )
    assert out.stderr.endswith(error + "\n")


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(" ")]


def test_explain_without_a_url_predicts_each_kind_of_request():
    """No URL: the four kinds of request, after the count of MIDDLEWARE, and
    exit status 0."""
    out = io.StringIO()
    with override_settings(MIDDLEWARE=[f"{SUPPORT}.OldStyle"]):
        assert explain.render(None, False, out) == 0
    assert _headings(out.getvalue()) == [
        "MIDDLEWARE: 1 entry",
        "",
        "ASGI, sync view: 10 switches (8 before the headers), 10 hops, 0 event loops created",
        "",
        "ASGI, async view: 8 switches (6 before the headers), 8 hops, 0 event loops created",
        "",
        "WSGI, sync view: 0 switches (0 before the headers), 0 hops, 0 event loops created",
        "",
        "WSGI, async view: 2 switches (2 before the headers), 2 hops, 1 event loop created",
    ]
    # Django >= 6.0: one conditional cause more in each ASGI case (a large body).
    assert len(out.getvalue().splitlines()) == (37 if django.VERSION >= (6, 0) else 35)


def test_explain_of_a_url_without_measure_measures_nothing():
    """The URL's view and its two kinds of request, predicted; no request made."""
    out = io.StringIO()
    with override_settings(ROOT_URLCONF=SUPPORT, MIDDLEWARE=[]):
        assert explain.render("/one-bridge/", False, out) == 0
    assert _headings(out.getvalue()) == [
        "/one-bridge/ → one_bridge_view (async view)",
        "MIDDLEWARE: 0 entries",
        "",
        "ASGI, async view: 4 switches (2 before the headers), 4 hops, 0 event loops created",
        "",
        "WSGI, async view: 2 switches (2 before the headers), 2 hops, 1 event loop created",
    ]
    assert "measured" not in out.getvalue()


NOT_PREDICTED = (
    "  not in the prediction, bridge calls the code makes itself (a view's, a middleware's or "
    "a package's own): "
)


PREDICTED = "  measured: 6 switches, 6 hops, 0 loops"
WITH_TWO = "(as predicted, with 2 of the conditional switches listed above)"


@pytest.mark.parametrize(
    ("url", "middleware", "lines"),
    [
        # Up to 299 the status is not said; from 300 it is.
        (
            "/status/299/",
            [],
            [
                f"{PREDICTED} (as predicted)",
                "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
            ],
        ),
        (
            "/status/300/",
            [],
            [
                f"{PREDICTED}, of a 300 Multiple Choices response (as predicted)",
                "  measured: 0 switches, 0 hops, 0 loops, of a 300 Multiple Choices response "
                "(as predicted)",
            ],
        ),
        # The conditional causes the response takes, and those alone.
        (
            "/template/",
            [],
            [
                "  measured: 8 switches, 8 hops, 0 loops " + WITH_TWO,
                "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
            ],
        ),
        (
            "/sync-stream/",
            [],
            [
                "  measured: 8 switches, 8 hops, 0 loops " + WITH_TWO,
                "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
            ],
        ),
        (
            "/raise/",
            [f"{SUPPORT}.AnswersException"],
            [
                "  measured: 8 switches, 8 hops, 0 loops " + WITH_TWO,
                "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
            ],
        ),
        # The view's own sync_to_async: no conditional cause of a 200 it makes.
        (
            "/one-bridge/",
            [],
            [
                "  measured: 6 switches, 6 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 4 switches, 4 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        # The URL's view is sync_to_async(a sync view), or a wrapper that
        # calls an async view through async_to_sync: the bridge is the view's
        # code, though the crossing's code is the view unwrapped (it was
        # taken for Django's adaptation of the view: DIFFERS, nothing listed).
        (
            "/bridged-view/",
            [],
            [
                "  measured: 6 switches, 6 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "_bridged_sync_view.<locals>.bridged 2",
                "  measured: 4 switches, 4 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "_bridged_sync_view.<locals>.bridged 2",
            ],
        ),
        (
            "/wrapper-bridging/",
            [],
            [
                "  measured: 8 switches, 8 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "async_view 2",
                # Its loop is the bridge call's too.
                "  measured: 2 switches, 2 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "async_view 2",
            ],
        ),
        # A stream costs by its kind of iterator on the server: an async one
        # under ASGI and a sync one under WSGI take no stream cause, so a
        # middleware's own 2 switches (in a function its code calls, which
        # the prediction does not read) are not taken for one.
        (
            "/async-stream/",
            [f"{SUPPORT}.HelperBridgingMiddleware"],
            [
                "  measured: 6 switches, 6 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 10 switches, 10 hops, 2 loops (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        (
            "/sync-stream/",
            [f"{SUPPORT}.HelperBridgingMiddleware"],
            [
                "  measured: 10 switches, 10 hops, 0 loops (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 6 switches, 6 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        # A middleware's own sync_to_async in its async code: a conditional
        # cause, taken for the crossing that bridged what it names.
        (
            "/sync/",
            [f"{SUPPORT}.BridgingMiddleware"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (as predicted, with 2 of the "
                "conditional switches listed above)",
                "  measured: 6 switches, 6 hops, 1 loop (as predicted, with 2 of the "
                "conditional switches listed above)",
            ],
        ),
        # One in a function its code calls is not read: named "other".
        (
            "/sync/",
            [f"{SUPPORT}.HelperBridgingMiddleware"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 6 switches, 6 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        # The view's own bridge of str is not taken for the middleware's of
        # repr, which this request does not make; with ?bridge it does, and
        # only the view's is listed as not in the prediction.
        (
            "/one-bridge/",
            [f"{SUPPORT}.BranchBridgingMiddleware"],
            [
                "  measured: 6 switches, 6 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 8 switches, 8 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        (
            "/one-bridge/?bridge",
            [f"{SUPPORT}.BranchBridgingMiddleware"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 10 switches, 10 hops, 1 loop (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        # Nor when the names are the same: the view's own bridge of str is
        # not the middleware's of str, which this request does not make;
        # with ?bridge it does, and only the view's is listed.
        (
            "/one-bridge/",
            [f"{SUPPORT}.BranchBridgingStrMiddleware"],
            [
                "  measured: 6 switches, 6 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 8 switches, 8 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        (
            "/one-bridge/?bridge",
            [f"{SUPPORT}.BranchBridgingStrMiddleware"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
                "  measured: 10 switches, 10 hops, 1 loop (DIFFERS from the prediction"
                ": with 2 of the conditional switches listed above, and the bridge calls below)",
                NOT_PREDICTED + "str 2",
            ],
        ),
        # Bridges in a comprehension and a generator expression of its own.
        (
            "/sync/",
            [f"{SUPPORT}.ComprehensionBridgingMiddleware"],
            [
                "  measured: 10 switches, 10 hops, 0 loops (as predicted, with 4 of the "
                "conditional switches listed above)",
                "  measured: 8 switches, 8 hops, 1 loop (as predicted, with 4 of the "
                "conditional switches listed above)",
            ],
        ),
        # Bridges of a decorated def and a lambda its async code defines.
        (
            "/sync/",
            [f"{SUPPORT}.DecoratedBridgeMiddleware"],
            [
                "  measured: 10 switches, 10 hops, 0 loops (as predicted, with 4 of the "
                "conditional switches listed above)",
                "  measured: 8 switches, 8 hops, 1 loop (as predicted, with 4 of the "
                "conditional switches listed above)",
            ],
        ),
        # django-structlog's pattern: two bridges of its own every request.
        (
            "/sync/",
            [f"{SUPPORT}.StructlogLike"],
            [
                "  measured: 10 switches, 10 hops, 0 loops (as predicted, with 4 of the "
                "conditional switches listed above)",
                "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
            ],
        ),
        # A middleware's own bridge of its own hook, named as the hook's.
        (
            "/sync/",
            [f"{SUPPORT}.HookBridgingMiddleware"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (as predicted, with 2 of the "
                "conditional switches listed above)",
                "  measured: 6 switches, 6 hops, 1 loop (as predicted, with 2 of the "
                "conditional switches listed above)",
            ],
        ),
        # A function middleware's async middleware, bridging a function.
        (
            "/sync/",
            [f"{SUPPORT}.bridging_function"],
            [
                "  measured: 8 switches, 8 hops, 0 loops (as predicted, with 2 of the "
                "conditional switches listed above)",
                "  measured: 6 switches, 6 hops, 1 loop (as predicted, with 2 of the "
                "conditional switches listed above)",
            ],
        ),
        # A middleware's own async_to_sync, whose loop Django's adapter below
        # it runs on: the one loop predicted is the bridge call's, not made
        # besides it.
        (
            "/sync/",
            [f"{SUPPORT}.OwnLoopOuter", f"{SUPPORT}.AsyncOnly"],
            [
                "  measured: 14 switches, 14 hops, 0 loops (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "OwnLoopOuter.acall 2, AsyncToSync 2",
                "  measured: 8 switches, 8 hops, 1 loop (DIFFERS from the prediction"
                ": by the bridge calls below)",
                NOT_PREDICTED + "OwnLoopOuter.acall 2, AsyncToSync 2",
            ],
        ),
    ],
)
def test_what_a_measured_response_is_compared_with(url, middleware, lines):
    """The measured line's status, verdict and the bridge calls the model does
    not know, for responses that take a conditional cause or none."""
    text, error = render(url, MIDDLEWARE=middleware)
    assert error is None
    assert [
        line for line in text.splitlines() if line.startswith(("  measured:", NOT_PREDICTED))
    ] == lines


def test_a_view_made_atomic_is_still_djangos_adaptation_of_it(monkeypatch):
    """ATOMIC_REQUESTS: Django bridges transaction.atomic's wrapper around
    the view; that crossing is the modelled adaptation (the view is inside
    the wrapper), not the view's code's own."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    text, error = render("/sync/")
    assert error is None
    assert measured_lines(text) == [
        f"{PREDICTED} (as predicted)",
        "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
    ]


def test_djangos_adaptation_of_a_view_is_the_view_or_its_atomic_wrappers():
    """The view, or the view inside wrappers around it (make_view_atomic's,
    one per database with ATOMIC_REQUESTS); not what the view wraps."""
    import functools

    from django.db import transaction

    from switchtrace.django_app.components import is_adapted_view

    def inner(request):
        return None

    @functools.wraps(inner)
    def view(request):
        return inner(request)

    twice = transaction.atomic(using="other")(transaction.atomic(using="default")(view))
    assert [is_adapted_view(f, view) for f in (view, twice, inner, None)] == [
        True, True, False, False]  # fmt: skip
    assert is_adapted_view(view, None) is False


LOCALE = "django.middleware.locale.LocaleMiddleware"


def explained(url: str, middleware: list[str]) -> str:
    out = io.StringIO()
    with override_settings(
        ROOT_URLCONF="tests.locale_urls", ALLOWED_HOSTS=["localhost"], MIDDLEWARE=middleware,
        LANGUAGE_CODE="en", LANGUAGES=[("en", "English"), ("fr", "French")],
    ):  # fmt: skip
        explain.render(url, True, out)
    return out.getvalue()


@pytest.mark.parametrize("locale", [LOCALE, "tests.test_predict_support.ProjectLocale"])
@pytest.mark.parametrize("url", ["/en/hello/", "/fr/hello/"])
def test_a_url_of_i18n_patterns_resolves_in_the_language_of_its_prefix(url, locale):
    """LocaleMiddleware (or a project's subclass of it) activates the
    path's language before Django resolves it: /fr/hello/ is served as
    /en/hello/ is. It was resolved in the project's LANGUAGE_CODE alone:
    'does not resolve to a view', exit 2."""
    text = explained(url, [locale])
    assert text.splitlines()[0] == f"{url} → hello_view (async view)"
    assert measured_lines(text) == [
        "  measured: 8 switches, 8 hops, 0 loops (as predicted)",
        "  measured: 2 switches, 2 hops, 1 loop (as predicted)",
    ]


def test_without_locale_middleware_only_the_active_languages_prefix_resolves():
    """As Django serves it: no LocaleMiddleware, no language from the path
    (/fr/hello/ is a 404 there)."""
    assert explained("/en/hello/", []).splitlines()[0] == "/en/hello/ → hello_view (async view)"
    with pytest.raises(explain.ExplainError) as refused:
        explained("/fr/hello/", [])
    assert str(refused.value) == (
        "the URL '/fr/hello/' does not resolve to a view; allowed: a URL of ROOT_URLCONF "
        "'tests.locale_urls'"
    )


def test_a_path_converter_raising_is_the_projects_code_raising():
    """Django answers 500: the project's code raised (exit 1), where it did;
    the URLconf was loaded. It said 'ROOT_URLCONF cannot be loaded', exit 2."""
    with pytest.raises(explain.ApplicationError) as raised:
        explained("/item/boom/", [])
    assert str(raised.value).startswith("resolving '/item/boom/' raised KeyError: 'boom' (")
    assert str(raised.value).endswith("locale_urls.py, line 20, in to_python)")
    assert explained("/item/fine/", []).splitlines()[0] == "/item/fine/ → hello_view (async view)"
    # Http404 from a converter: Django answers 404, as for a URL that does not resolve.
    with pytest.raises(explain.ExplainError) as refused:
        explained("/item/gone/", [])
    assert type(refused.value) is explain.ExplainError
    assert str(refused.value).startswith("the URL '/item/gone/' does not resolve to a view")


@pytest.mark.parametrize(
    ("url", "first"),
    [
        ("/object/", "/object/ → CallableView (sync view)"),
        ("/partial/", "/partial/ → hello_view (async view)"),
    ],
)
def test_a_view_that_is_an_object_is_named_without_its_address(url, first):
    """A callable object, a functools.partial: named as their crossings
    are, not by a repr holding an address (<… object at 0x7f…>)."""
    assert explained(url, []).splitlines()[0] == first


def test_a_400_is_an_error_response_not_compared():
    text, error = render("/status/400/")
    assert measured_lines(text) == [
        "  measured: 8 switches, 8 hops, 0 loops, of a 400 Bad Request response (an error "
        "response: not compared with the prediction)"
    ]
    assert str(error) == (
        'GET /status/400/ under ASGI answered 400 Bad Request (Django logged "Bad Request: '
        '/status/400/"), not a response the view makes normally; measure a --url that the view '
        "answers with a status below 400"
    )


def _measure(url: str, server: str = "wsgi", host: str = "localhost", middleware=()):
    with override_settings(
        ROOT_URLCONF=SUPPORT, ALLOWED_HOSTS=["localhost"], MIDDLEWARE=list(middleware)
    ):
        return explain.measure(server, url, host)


def test_a_raising_view_is_told_by_its_exception():
    from ..test_predict_support import raising_view

    text, error = render("/raise/")
    assert measured_lines(text) == []
    line = raising_view.__code__.co_firstlineno + 1
    assert str(error) == (
        "GET /raise/ under ASGI raised ValueError: raised on purpose "
        f"({raising_view.__code__.co_filename}, line {line}, in raising_view)"
    )


def test_what_the_projects_code_names_reaches_the_terminal_without_its_escapes():
    """A view's name and an exception's message are the project's: written
    raw, an escape sequence in them recoloured what followed, retitled the
    window or cleared the screen."""
    from ..test_predict_support import _named_with_escapes as view

    text, error = render("/escapes/")
    assert text.splitlines()[0] == (
        "/escapes/ → view\\x1b[31m\\x1b]0;title\\x07\\x1b[2J (sync view)"
    )
    line = view.__code__.co_firstlineno + 1
    assert str(error) == (
        "GET /escapes/ under ASGI raised ValueError: red\\x1b[31m, retitled\\x1b]0;title\\x07 "
        f"({view.__code__.co_filename}, line {line}, in _named_with_escapes)"
    )
    assert "\x1b" not in text + str(error)


def _receiver_bug(sender, **kwargs):
    raise RuntimeError("receiver bug")


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_the_project_raising_out_of_the_handler_is_told_by_its_exception(server):
    """A request_started receiver raising: out of Django's handler, and out of
    the thread the request runs in."""
    signals.request_started.connect(_receiver_bug)
    try:
        with pytest.raises(explain.ApplicationError) as raised:
            _measure("/sync/", server)
    finally:
        signals.request_started.disconnect(_receiver_bug)
    line = _receiver_bug.__code__.co_firstlineno + 1
    assert str(raised.value) == (
        f"GET /sync/ under {server.upper()} raised RuntimeError: receiver bug "
        f"({__file__}, line {line}, in _receiver_bug)"
    )


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _refuse(record: logging.LogRecord) -> bool:
    return False


def _logger_state(logger: logging.Logger) -> tuple:
    return (
        list(logger.handlers),
        logger.propagate,
        logger.disabled,
        logger.level,
        list(logger.filters),
    )


def _set_logger_state(logger: logging.Logger, state: tuple) -> None:
    logger.handlers, logger.propagate, logger.disabled, level, logger.filters = state
    logger.setLevel(level)


def test_what_django_logs_is_kept_whatever_the_projects_logging_and_put_back():
    """django.request disabled, at ERROR, with a filter refusing everything
    and a handler of the project's: the 404's 'Not Found' is kept, not
    written by the project's handlers (nor its parent's), and every one of
    those is as it was after the request."""
    logger, parent = logging.getLogger("django.request"), logging.getLogger("django")
    saved = _logger_state(logger), _logger_state(parent)
    own, parents = _Kept(), _Kept()
    projects = ([own], True, True, logging.ERROR, [_refuse])
    _set_logger_state(logger, projects)
    parent.addHandler(parents)
    try:
        measured = _measure("/nowhere/")
        after = _logger_state(logger)
    finally:
        _set_logger_state(logger, saved[0])
        _set_logger_state(parent, saved[1])
    assert (measured.status, measured.logged) == (404, "Not Found: /nowhere/")
    assert (own.messages, parents.messages) == ([], [])
    assert after == projects


def test_a_rejected_host_is_told_by_what_django_security_logs():
    """django.security.DisallowedHost configured apart (a handler of its
    own, not propagating): its record is the one told, not the 'Bad
    Request' django.request logs after it."""
    child = logging.getLogger("django.security.DisallowedHost")
    saved = _logger_state(child)
    own = _Kept()
    _set_logger_state(child, ([own], False, False, logging.NOTSET, []))
    try:
        measured = _measure(
            "/sync/", host="evil.example", middleware=["django.middleware.common.CommonMiddleware"]
        )
    finally:
        _set_logger_state(child, saved)
    assert (measured.status, measured.logged) == (
        400,
        "Invalid HTTP_HOST header: 'evil.example'. You may need to add 'evil.example' to "
        "ALLOWED_HOSTS.",
    )
    assert own.messages == []


def test_what_django_logged_first_is_told():
    """Why the response is an error: the first of Django's records."""
    measured = _measure("/raise/", middleware=[f"{SUPPORT}.GoneForServerError"])
    assert (measured.status, measured.logged) == (410, "Internal Server Error: /raise/")


def test_the_projects_own_log_records_are_neither_kept_nor_held_back():
    from ..test_predict_support import shop_log

    own = _Kept()
    shop_log.addHandler(own)
    try:
        measured = _measure("/logs/")
    finally:
        shop_log.removeHandler(own)
    assert (measured.status, measured.logged) == (200, None)
    assert own.messages == ["order 9 looked up"]


REMOTE_USER = """
import sys
sys.path.insert(0, {src!r})
import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path


async def view(request):
    return HttpResponse("ok")


urlpatterns = [path("", view)]
settings.configure(
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "switchtrace.django_app",
    ],
    MIDDLEWARE=[
        "switchtrace.django_app.middleware.SwitchTraceMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.RemoteUserMiddleware",
    ],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}}}},
    ROOT_URLCONF="__main__",
    ALLOWED_HOSTS=["testserver"],
    SECRET_KEY="switchtrace-tests",
    SWITCHTRACE={{"ENABLED": True, "EXPORTER": "none"}},
    AUTHENTICATION_BACKENDS=[
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.RemoteUserBackend",
    ],
)
django.setup()
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.handlers.asgi import ASGIHandler
from django.core.management import call_command

from switchtrace.example import asgi_request, run_in_server_loop

call_command("migrate", verbosity=0)
user = User.objects.create_user("ann")

def saved_session(backend):
    session = SessionStore()
    if backend is None:
        session["seen"] = True
    else:
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = f"django.contrib.auth.backends.{{backend}}"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return (b"cookie", f"sessionid={{session.session_key}}".encode())


handler = ASGIHandler()
host = (b"host", b"testserver")
for cookie in ([], [saved_session(None)], [saved_session("ModelBackend")],
               [saved_session("RemoteUserBackend")]):
    result = run_in_server_loop(asgi_request(handler, "/", [host, *cookie]))
    print(result.status, result.headers["X-Context-Switches"])
from switchtrace.django_app.predict import predict

print("predicted", predict("asgi", True, list(settings.MIDDLEWARE)).before_headers)
"""


def test_remote_user_middleware_reading_a_logged_in_user_under_asgi_costs_what_no_prediction_sees(
    tmp_path,
):
    """From Django 5.2 RemoteUserMiddleware is async: no switch of its own.
    Without its header, though, it reads the request's user to log out a
    remote one (``await request.auser()``), through the async ORM, which the
    prediction (reading the middleware's hooks, not what they call) does not
    count: a saved session loaded, 2; and a logged-in user, 4; a user that
    RemoteUserBackend logged in is logged out, 8 (the session flushed, the
    user_logged_out signal). Before 5.2 it is a sync middleware: 2, whatever
    the session holds. Requests without a session, with an anonymous one,
    with ModelBackend's user, with RemoteUserBackend's."""
    from ..support import run_script

    lines = run_script(REMOTE_USER, tmp_path / "db.sqlite3").splitlines()
    if django.VERSION >= (5, 2):
        assert lines == ["200 8", "200 10", "200 12", "200 16", "predicted 8"]
    else:
        assert lines == ["200 10"] * 4 + ["predicted 10"]


@pytest.mark.parametrize("configured", [{}, {"SWITCHTRACE": {"MAX_EVENTS": 0}}])
def test_a_measured_request_names_its_causes_past_max_events(configured, monkeypatch):
    """The causes were named from the crossings MAX_EVENTS kept in detail:
    1,100 bridge calls measured in full (2,204 switches) were listed as 1,998
    of str (none, DIFFERS with no cause, under MAX_EVENTS 0), and nothing
    said so. A measured request keeps up to MEASURE_MAX_EVENTS; past those,
    a line says how many were left out."""
    text, error = render("/many-bridges/", **configured)
    assert error is None
    lines = [
        line for line in text.splitlines() if line.startswith(("  measured:", "  not in", "  ("))
    ]
    assert lines == [
        "  measured: 2204 switches, 2204 hops, 0 loops (DIFFERS from the prediction: by the "
        "bridge calls below)",
        f"{NOT_PREDICTED}str 2200",
        "  measured: 2202 switches, 2202 hops, 1 loop (DIFFERS from the prediction: by the "
        "bridge calls below)",
        f"{NOT_PREDICTED}str 2200",
    ]
    monkeypatch.setattr(explain, "MEASURE_MAX_EVENTS", 10)
    text, error = render("/many-bridges/", **configured)
    assert error is None
    lines = [line for line in text.splitlines() if line.startswith(("  measured:", "  ("))]
    left_out = (
        "past the 10 a measured request keeps in detail: not named below, nor matched with the "
        "prediction's causes)"
    )
    assert lines == [
        "  measured: 2204 switches, 2204 hops, 0 loops (DIFFERS from the prediction)",
        f"  (1092 events {left_out}",  # (of 1,102 crossings)
        "  measured: 2202 switches, 2202 hops, 1 loop (DIFFERS from the prediction)",
        f"  (1091 events {left_out}",  # (1,101, and a loop and a thread kept)
    ]
