"""``explain --measure`` in a project as ``django-admin startproject`` makes
it (DEBUG = True, ALLOWED_HOSTS = [], the seven middleware, switchtrace only
added to INSTALLED_APPS), through both commands, as users run them:
``python -m switchtrace explain`` and ``python -m django switchtrace_explain``
(what manage.py runs) in subprocesses. The measured request must be the
view's: sent with a Host the project accepts, and told apart when it is an
error response."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.dispatch import Signal
from project.settings import STARTPROJECT_MIDDLEWARE

from .conftest import ROOT

SITE = {
    "fresh_settings.py": (
        'SECRET_KEY = "x"\n'
        "DEBUG = True\n"
        "ALLOWED_HOSTS = []\n"
        'ROOT_URLCONF = "fresh_urls"\n'
        "INSTALLED_APPS = [\n"
        '    "django.contrib.auth",\n'
        '    "django.contrib.contenttypes",\n'
        '    "django.contrib.sessions",\n'
        '    "django.contrib.messages",\n'
        '    "switchtrace.django_app",\n'
        "]\n"
        f"MIDDLEWARE = {STARTPROJECT_MIDDLEWARE!r}\n"
    ),
    "example_com_settings.py": (
        'from fresh_settings import *\nDEBUG = False\nALLOWED_HOSTS = ["example.com"]\n'
    ),
    "subdomains_settings.py": (
        'from fresh_settings import *\nDEBUG = False\nALLOWED_HOSTS = [".example.com"]\n'
    ),
    "any_host_settings.py": 'from fresh_settings import *\nALLOWED_HOSTS = ["*"]\n',
    "no_host_settings.py": "from fresh_settings import *\nDEBUG = False\n",
    # A LOGGING as many projects have it: disable_existing_loggers (True by
    # default) turns django.request off.
    "own_logging_settings.py": (
        "from fresh_settings import *\n"
        'LOGGING = {"version": 1, "handlers": {"console": '
        '{"class": "logging.StreamHandler"}}, "root": {"handlers": ["console"]}}\n'
    ),
    "ssl_settings.py": (
        "from fresh_settings import *\n"
        'DEBUG = False\nALLOWED_HOSTS = ["example.com"]\nSECURE_SSL_REDIRECT = True\n'
    ),
    "www_settings.py": "from fresh_settings import *\nPREPEND_WWW = True\n",
    # As startproject writes STATIC_URL (Django makes it /static/); media on
    # another host.
    "static_settings.py": (
        "from fresh_settings import *\n"
        'STATIC_URL = "static/"\nMEDIA_URL = "https://media.example.com/media/"\n'
    ),
    # Mounted at /shop: Django puts it before a relative STATIC_URL and
    # MEDIA_URL (MEDIA_URL unset is then /shop/), not before the URLconf's
    # paths.
    "mounted_static_settings.py": (
        'from fresh_settings import *\nSTATIC_URL = "static/"\nMEDIA_URL = "/uploads/"\n'
        'FORCE_SCRIPT_NAME = "/shop"\n'
    ),
    # Its media written absolute, inside the mount.
    "mounted_media_settings.py": (
        'from fresh_settings import *\nMEDIA_URL = "/shop/uploads/"\nFORCE_SCRIPT_NAME = "/shop"\n'
    ),
    "cdn_static_settings.py": (
        'from fresh_settings import *\nSTATIC_URL = "https://cdn.example.com/static/"\n'
    ),
    "unset_media_settings.py": (
        'from fresh_settings import *\nSTATIC_URL = "static/"\nFORCE_SCRIPT_NAME = "/shop"\n'
    ),
    "raising_urls.py": 'raise RuntimeError("urls bug")\n',
    "raising_urls_settings.py": 'from fresh_settings import *\nROOT_URLCONF = "raising_urls"\n',
    "frameworks_settings.py": 'from fresh_settings import *\nROOT_URLCONF = "tests.frameworks"\n',
    "recovering_settings.py": (
        "from fresh_settings import *\n"
        'MIDDLEWARE = [*MIDDLEWARE, "fresh_urls.RecoveringMiddleware"]\n'
    ),
    "redirecting_settings.py": (
        "from fresh_settings import *\n"
        'MIDDLEWARE = [*MIDDLEWARE, "fresh_urls.LoginRedirectMiddleware"]\n'
    ),
    # A 500 made into a redirect to an error page, and an async error
    # reporter (got_request_exception's receiver, as an error tracker's).
    "reporting_settings.py": (
        "from fresh_settings import *\n"
        'MIDDLEWARE = [*MIDDLEWARE, "reporting.FriendlyErrorsMiddleware"]\n'
        'ROOT_URLCONF = "reporting"\n'
    ),
    "reporting.py": (
        "from django.core.signals import got_request_exception\n"
        "from django.http import HttpResponseRedirect\n"
        "\n"
        "\n"
        "async def report(sender, request, **kwargs):\n"
        "    return None\n"
        "\n"
        "\n"
        "got_request_exception.connect(report)\n"
        "\n"
        "\n"
        "class FriendlyErrorsMiddleware:\n"
        "    def __init__(self, get_response):\n"
        "        self.get_response = get_response\n"
        "\n"
        "    def __call__(self, request):\n"
        "        response = self.get_response(request)\n"
        "        if response.status_code in (404, 500):\n"
        '            return HttpResponseRedirect("/sorry/")\n'
        "        return response\n"
        "\n"
        "\n"
        "def self_reporting(request):\n"
        "    from django.http import HttpResponse\n"
        "\n"
        "    got_request_exception.send(sender=None, request=request)\n"
        '    return HttpResponse("reported")\n'
        "\n"
        "\n"
        "def bridging_missing(request):\n"
        "    import asyncio\n"
        "\n"
        "    from asgiref.sync import async_to_sync\n"
        "    from django.http import Http404\n"
        "\n"
        "    async_to_sync(asyncio.sleep)(0)\n"
        '    raise Http404("no such order")\n'
        "\n"
        "\n"
        "from django.urls import path  # noqa: E402\n"
        "from fresh_urls import urlpatterns as fresh  # noqa: E402\n"
        "\n"
        "urlpatterns = [\n"
        "    *fresh,\n"
        '    path("self-reporting/", self_reporting),\n'
        '    path("bridging-missing/", bridging_missing),\n'
        "]\n"
    ),
    "file_export_settings.py": (
        "import os\nfrom fresh_settings import *\n"
        'SWITCHTRACE = {"ENABLED": True, "FILE_PATH": os.environ["TRACES"]}\n'
    ),
    "fresh_urls.py": (
        "from django.http import Http404, HttpResponse, HttpResponseRedirect\n"
        "from django.urls import path\n"
        "\n"
        "\n"
        "def sync_view(request):\n"
        "    return HttpResponse(request.get_host())\n"
        "\n"
        "\n"
        "def missing(request):\n"
        '    raise Http404("no such order")\n'
        "\n"
        "\n"
        "def moved(request):\n"
        '    return HttpResponseRedirect("/sync/")\n'
        "\n"
        "\n"
        "def raising(request):\n"
        '    raise ValueError("view bug")\n'
        "\n"
        "\n"
        "def denied(request):\n"
        "    from django.core.exceptions import PermissionDenied\n"
        "\n"
        '    raise PermissionDenied("not yours")\n'
        "\n"
        "\n"
        "def bridging_denied(request):\n"
        "    import asyncio\n"
        "\n"
        "    from asgiref.sync import async_to_sync\n"
        "    from django.core.exceptions import PermissionDenied\n"
        "\n"
        "    async_to_sync(asyncio.sleep)(0)\n"
        '    raise PermissionDenied("not yours")\n'
        "\n"
        "\n"
        "def bridges(request):\n"
        "    import asyncio\n"
        "\n"
        "    from asgiref.sync import async_to_sync\n"
        "\n"
        "    async_to_sync(asyncio.sleep)(0)\n"
        "    async_to_sync(asyncio.sleep)(0)\n"
        '    return HttpResponse("ok")\n'
        "\n"
        "\n"
        "async def signalling(request):\n"
        "    from django.contrib.auth.signals import user_logged_out\n"
        "\n"
        "    await user_logged_out.asend(sender=None, request=request, user=None)\n"
        '    return HttpResponse("ok")\n'
        "\n"
        "\n"
        "def on_logged_out(sender, **kwargs):\n"
        "    pass\n"
        "\n"
        "\n"
        "async def one_bridge(request):\n"
        "    from asgiref.sync import sync_to_async\n"
        "\n"
        "    await sync_to_async(str)()\n"
        '    return HttpResponse("ok")\n'
        "\n"
        "\n"
        "class Recovered(Exception):\n"
        "    pass\n"
        "\n"
        "\n"
        "def recovered(request):\n"
        '    raise Recovered("answered by RecoveringMiddleware")\n'
        "\n"
        "\n"
        "def bridging_recovered(request):\n"
        "    import asyncio\n"
        "\n"
        "    from asgiref.sync import async_to_sync\n"
        "\n"
        "    async_to_sync(asyncio.sleep)(0)\n"
        '    raise Recovered("answered by RecoveringMiddleware")\n'
        "\n"
        "\n"
        "class RecoveringMiddleware:\n"
        "    def __init__(self, get_response):\n"
        "        self.get_response = get_response\n"
        "\n"
        "    def __call__(self, request):\n"
        "        return self.get_response(request)\n"
        "\n"
        "    def process_exception(self, request, exception):\n"
        "        if isinstance(exception, Recovered):\n"
        '            return HttpResponse("recovered")\n'
        "        return None\n"
        "\n"
        "\n"
        "class LoginRedirectMiddleware:\n"
        "    def __init__(self, get_response):\n"
        "        self.get_response = get_response\n"
        "\n"
        "    def __call__(self, request):\n"
        "        response = self.get_response(request)\n"
        "        if response.status_code == 403:\n"
        '            return HttpResponseRedirect("/sync/")\n'
        "        return response\n"
        "\n"
        "\n"
        "from django.contrib.auth.signals import user_logged_out  # noqa: E402\n"
        "\n"
        "user_logged_out.connect(on_logged_out)\n"
        "\n"
        "urlpatterns = [\n"
        '    path("sync/", sync_view),\n'
        '    path("signalling/", signalling),\n'
        '    path("one-bridge/", one_bridge),\n'
        '    path("recovered/", recovered),\n'
        '    path("bridging-recovered/", bridging_recovered),\n'
        '    path("orders/9/", missing),\n'
        '    path("moved/", moved),\n'
        '    path("raise/", raising),\n'
        '    path("denied/", denied),\n'
        '    path("bridging-denied/", bridging_denied),\n'
        '    path("bridges/", bridges),\n'
        "]\n"
    ),
}

#: The command line, and what its error lines begin with.
COMMANDS = {
    "switchtrace": (
        [sys.executable, "-m", "switchtrace", "explain"],
        "switchtrace explain: error: ",
    ),
    "manage.py": ([sys.executable, "-m", "django", "switchtrace_explain"], "CommandError: "),
}

MEASURED = [
    "  measured: 32 switches, 32 hops, 0 loops (as predicted)",
    "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
]
#: A measurement that differs names the bridge calls no modelled component made.
NOT_PREDICTED = (
    "  not in the prediction, bridge calls the code makes itself (a view's, a middleware's or "
    "a package's own): "
)
MEASURED_OR_NOT = ("  measured:", "  not in the prediction")


def explain(command: str, args: list[str], settings: str, tmp_path: Path, **environ: str):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name, text in SITE.items():
        (site / name).write_text(text)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **environ,
    }
    return subprocess.run(
        [*COMMANDS[command][0], *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def measured(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stdout.splitlines() if line.startswith("  measured: ")]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "settings",
    ["fresh_settings", "example_com_settings", "subdomains_settings", "any_host_settings"],
)
def test_measure_sends_a_host_the_project_allows(command, settings, tmp_path):
    """The test client's Host, 'testserver', got a 400 (and Django's
    DisallowedHost traceback) in every one of these but '*'."""
    out = explain(command, ["--url", "/sync/", "--measure"], settings, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines()[0] == "/sync/ → sync_view (sync view)"
    assert measured(out) == MEASURED


@pytest.mark.parametrize("command", COMMANDS)
def test_a_urlconf_that_does_not_load_is_a_warning_without_a_url(command, tmp_path):
    """Without --url the URLconf is loaded for the receivers it connects;
    one that does not load leaves them out, and says so (exit status 0):
    the prediction needs no URL."""
    out = explain(command, [], "raising_urls_settings", tmp_path)
    warning = (
        f"ROOT_URLCONF 'raising_urls' cannot be loaded: RuntimeError: urls bug (site{os.sep}"
        "raising_urls.py, line 1); the request signals' receivers it would connect may be "
        "missing from the prediction"
    )
    prefix = "switchtrace explain: warning: " if command == "switchtrace" else "warning: "
    assert (out.returncode, out.stderr) == (0, prefix + warning + "\n")
    assert out.stdout.startswith("MIDDLEWARE: 7 entries\n")
    with_url = explain(command, ["--url", "/sync/"], "raising_urls_settings", tmp_path)
    assert (with_url.returncode, with_url.stdout) == (2, "")
    assert with_url.stderr == f"{COMMANDS[command][1]}{warning.split(';')[0]}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_measure_with_no_host_allowed_is_bad_input(command, tmp_path):
    out = explain(command, ["--url", "/sync/", "--measure"], "no_host_settings", tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == (
        f"{COMMANDS[command][1]}--measure needs a Host the project accepts, and ALLOWED_HOSTS "
        "= [] allows none (DEBUG is False: an empty list allows no host); allowed in "
        "ALLOWED_HOSTS: a host name (e.g. 'localhost'), '.example.com' (a domain and its "
        "subdomains) or '*'\n"
    )


def test_the_host_is_derived_from_allowed_hosts_as_django_checks_it():
    from django.test import override_settings

    from switchtrace.django_app.explain import ExplainError, request_host

    for debug, allowed, host in [
        (True, [], "localhost"),
        (False, ["*"], "localhost"),
        (False, [".Example.com"], "example.com"),
        (False, ["api.example.com:8000", "*.example.com", "", "[::1]"], "[::1]"),
        (False, ("127.0.0.1",), "127.0.0.1"),
        # '' allows no host (it is no name to send): the next pattern's.
        (False, ["", "*"], "localhost"),
    ]:
        with override_settings(DEBUG=debug, ALLOWED_HOSTS=allowed):
            assert request_host() == host, allowed
    for allowed, message in [
        (["api.example.com:8000"], "ALLOWED_HOSTS = ['api.example.com:8000'] allows none;"),
        ("example.com", "ALLOWED_HOSTS must be a list of host names; it is of type str"),
        (["example.com", 7], "ALLOWED_HOSTS entry 7 is of type int; allowed: a host name"),
    ]:
        with override_settings(DEBUG=True, ALLOWED_HOSTS=allowed):
            with pytest.raises(ExplainError) as refused:
                request_host()
        assert message in str(refused.value)
    # Only with DEBUG does an empty list allow localhost.
    with override_settings(DEBUG=False, ALLOWED_HOSTS=[]):
        with pytest.raises(ExplainError) as refused:
            request_host()
    assert "ALLOWED_HOSTS = [] allows none (DEBUG is False: an empty list allows no host)" in str(
        refused.value
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_an_error_response_is_told_and_not_compared(command, tmp_path):
    """A 404 from the view (an order that does not exist): its figures are
    Django's exception path, not the view's; it said 'DIFFERS from the
    prediction' with exit status 0."""
    out = explain(command, ["--url", "/orders/9/", "--measure"], "any_host_settings", tmp_path)
    assert out.returncode == 1
    assert measured(out) == [
        "  measured: 38 switches, 38 hops, 0 loops, of a 404 Not Found response (an error "
        "response: not compared with the prediction)"
    ]
    assert out.stdout.endswith(measured(out)[0] + "\n")  # nothing measured after it
    assert out.stderr == (
        f"{COMMANDS[command][1]}GET /orders/9/ under ASGI answered 404 Not Found (Django "
        'logged "Not Found: /orders/9/"), not a response the view makes normally; measure a '
        "--url that the view answers with a status below 400\n"
    )


def test_a_redirect_is_measured_and_named(tmp_path):
    out = explain("switchtrace", ["--url", "/moved/", "--measure"], "fresh_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert measured(out) == [
        "  measured: 32 switches, 32 hops, 0 loops, of a 302 Found response (as predicted)",
        "  measured: 0 switches, 0 hops, 0 loops, of a 302 Found response (as predicted)",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_raising_view_is_one_line_with_debug_on(command, tmp_path):
    """With DEBUG = True, Django's django.request logger wrote its 'Internal
    Server Error' traceback to stderr before switchtrace's line."""
    out = explain(command, ["--url", "/raise/", "--measure"], "any_host_settings", tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        f"{COMMANDS[command][1]}GET /raise/ under ASGI raised ValueError: view bug "
        f"(site{os.sep}fresh_urls.py, line 18, in raising)\n"
    )
    assert "ASGI, sync view: 32 switches" in out.stdout  # the prediction came first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "sync/"],
         "--url 'sync/' is not a path; allowed: a path of the project beginning with '/', "
         "optionally with a query string, e.g. /sync/ or /search/?q=x"),
        (["--measure"], "--measure needs --url"),
        # urlsplit drops line breaks: it resolved as /sync/.
        (["--url", "/sync/\n"], "--url '/sync/\\n' holds a control character; allowed: a path "
         "of the project, with such characters percent-encoded (e.g. %0A)"),
        # DEL (0x7f) is one too: said so, not "does not resolve to a view".
        (["--url", "/sync/\x7f"], "--url '/sync/\\x7f' holds a control character; allowed: a "
         "path of the project, with such characters percent-encoded (e.g. %0A)"),
        (["--url", "/nowhere/"], "the URL '/nowhere/' does not resolve to a view; allowed: a "
         "URL of ROOT_URLCONF 'fresh_urls'"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", COMMANDS)
def test_both_commands_say_the_same_of_bad_input(command, args, message, tmp_path):
    """manage.py said CommandError with exit status 1, and ran --measure
    without --url, printing 'pass --url' four times, exit status 0."""
    out = explain(command, args, "fresh_settings", tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"{COMMANDS[command][1]}{message}\n"


STATIC_WHY = (
    ": it is under STATIC_URL '{}', whose files are served outside the URLconf (by the "
    "staticfiles app's handler, WhiteNoise or the web server), with no view for switchtrace to "
    "explain"
)


@pytest.mark.parametrize(
    ("settings", "url", "why"),
    [
        ("mounted_static_settings", "/static/app.css", STATIC_WHY.format("/shop/static/")),
        # An absolute MEDIA_URL stays the host's /uploads/: the URLconf's
        # /uploads/a.jpg is /shop/uploads/a.jpg, none of its files.
        ("mounted_static_settings", "/uploads/a.jpg", ""),
        ("mounted_media_settings", "/uploads/a.jpg",
         ": it is under MEDIA_URL '/shop/uploads/', whose files are served outside the URLconf "
         "(by the web server), with no view for switchtrace to explain"),
        # The script name is not the URLconf's: no hint of its own.
        ("mounted_static_settings", "/shop/static/app.css", ""),
        # MEDIA_URL unset: the script prefix alone, which is no media.
        ("unset_media_settings", "/nowhere/", ""),
        # Static files from another host: their path says nothing of this one's.
        ("cdn_static_settings", "/static/app.css", ""),
    ],
)  # fmt: skip
def test_a_static_files_url_of_a_mounted_site_is_told_without_the_mount(
    settings, url, why, tmp_path
):
    """FORCE_SCRIPT_NAME: MEDIA_URL unset was /shop/, and every URL under it
    was told it was media; /static/... went untold; a MEDIA_URL written
    absolute, outside the mount, was taken as under it."""
    out = explain("switchtrace", ["--url", url], settings, tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"switchtrace explain: error: the URL {url!r} does not resolve to a view{why}; allowed: "
        "a URL of ROOT_URLCONF 'fresh_urls'\n"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/static/app.css",
         ": it is under STATIC_URL '/static/', whose files are served outside the URLconf (by "
         "the staticfiles app's handler, WhiteNoise or the web server), with no view for "
         "switchtrace to explain"),
        # MEDIA_URL is another host's: its path says nothing of this one's.
        ("/media/photo.jpg", ""),
        ("/staticfiles/app.css", ""),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", COMMANDS)
def test_a_static_files_url_is_told_why_it_has_no_view(command, url, why, tmp_path):
    """It said only that the URL does not resolve to a view."""
    out = explain(command, ["--url", url], "static_settings", tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"{COMMANDS[command][1]}the URL {url!r} does not resolve to a view{why}; allowed: a URL "
        "of ROOT_URLCONF 'fresh_urls'\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_raising_view_is_told_whatever_the_projects_logging_does(command, tmp_path):
    """The project's LOGGING disabled django.request (disable_existing_loggers):
    Django logged nothing, and the raise was told as a plain 500."""
    out = explain(command, ["--url", "/raise/", "--measure"], "own_logging_settings", tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        f"{COMMANDS[command][1]}GET /raise/ under ASGI raised ValueError: view bug "
        f"(site{os.sep}fresh_urls.py, line 18, in raising)\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_403_from_permission_denied_is_an_error_response_not_a_raise(command, tmp_path):
    out = explain(command, ["--url", "/denied/", "--measure"], "fresh_settings", tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1].endswith(
        "of a 403 Forbidden response (an error response: not compared with the prediction)"
    )
    assert out.stderr == (
        f"{COMMANDS[command][1]}GET /denied/ under ASGI answered 403 Forbidden "
        '(Django logged "Forbidden (Permission denied): /denied/"), not a response the view '
        "makes normally; measure a --url that the view answers with a status below 400\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_switches_the_model_does_not_know_are_not_taken_for_conditional_ones(command, tmp_path):
    """A plain response below 400 can only make the streaming and template
    causes it is: 4 switches of the view's own async_to_sync calls were
    'as predicted, with 4 of the conditional switches' (the exception
    path's, which a 200 never takes)."""
    out = explain(command, ["--url", "/bridges/", "--measure"], "fresh_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    measured = [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)]
    assert measured == [
        "  measured: 36 switches, 36 hops, 0 loops (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}sleep 4",
        "  measured: 4 switches, 4 hops, 2 loops (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}sleep 4",
    ]


def test_a_measurement_beside_bridge_calls_of_the_views_own_takes_the_conditional_ones(tmp_path):
    """adrf's view: its own sync_to_async(self.initial), and its Response's
    render (a conditional cause: a TemplateResponse under ASGI). It said only
    DIFFERS, and named initial's 2 of the 4 switches over the prediction."""
    out = explain("switchtrace", ["--url", "/adrf/", "--measure"], "frameworks_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)] == [
        "  measured: 34 switches, 34 hops, 0 loops (DIFFERS from the prediction: with 2 of the "
        "conditional switches listed above, and the bridge calls below)",
        f"{NOT_PREDICTED}AsyncOrderView.initial 2",
        "  measured: 4 switches, 4 hops, 1 loop (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}AsyncOrderView.initial 2",
    ]


@pytest.mark.parametrize(
    ("url", "unknown"),
    [
        # An async view's own sync_to_async under ASGI (2 switches, as the
        # example's /db-async/ makes) was 'as predicted, with 2 of the
        # conditional switches' (process_exception_by_middleware's, which a
        # view that did not raise never makes).
        ("/one-bridge/", "str"),
        # An async view sending contrib.auth's user_logged_out with asend
        # (its sync receiver in one sync_to_async): the line naming what the
        # model does not know left the signal out, as if a component it
        # models had made it (only the request signals are).
        pytest.param(
            "/signalling/", "user_logged_out",
            marks=pytest.mark.skipif(
                not hasattr(Signal, "asend"), reason="Signal.asend needs Django >= 5.0"
            ),
        ),
    ],
)  # fmt: skip
def test_an_async_views_own_bridge_call_is_named_as_not_predicted(url, unknown, tmp_path):
    out = explain("switchtrace", ["--url", url, "--measure"], "fresh_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    measured = [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)]
    assert measured == [
        "  measured: 32 switches, 32 hops, 0 loops (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}{unknown} 2",
        "  measured: 4 switches, 4 hops, 1 loop (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}{unknown} 2",
    ]


def test_a_view_that_raised_into_process_exception_takes_the_exception_paths_switches(tmp_path):
    """A middleware's process_exception answering 200: Django's exception
    path, under ASGI process_exception_by_middleware in sync_to_async."""
    args = ["--url", "/recovered/", "--measure"]
    out = explain("switchtrace", args, "recovering_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    measured = [line for line in out.stdout.splitlines() if line.startswith("  measured:")]
    assert measured == [
        "  measured: 14 switches, 14 hops, 0 loops (as predicted, with 2 of the conditional "
        "switches listed above)",
        "  measured: 0 switches, 0 hops, 0 loops (as predicted)",
    ]
    # The same with a bridge call of the view's own before it raises: no
    # exception became the response (process_exception answered), so
    # response_for_exception's 2 conditional switches are not taken for the
    # view's 2: that call is named as not in the prediction.
    args = ["--url", "/bridging-recovered/", "--measure"]
    out = explain("switchtrace", args, "recovering_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)] == [
        "  measured: 16 switches, 16 hops, 0 loops (DIFFERS from the prediction: with 2 of the "
        "conditional switches listed above, and the bridge calls below)",
        f"{NOT_PREDICTED}sleep 2",
        "  measured: 2 switches, 2 hops, 1 loop (DIFFERS from the prediction: by the bridge "
        "calls below)",
        f"{NOT_PREDICTED}sleep 2",
    ]


@pytest.mark.skipif(not hasattr(Signal, "asend"), reason="async receivers need Django >= 5.0")
def test_a_500_a_middleware_replaced_takes_got_request_exceptions_async_receivers(tmp_path):
    """The view raises, its 500 becomes a redirect, and an async receiver of
    got_request_exception reports it: Django's Signal.send of it was taken
    for a bridge call of the code's own (the cause listed above it, but
    never taken for a response below 400)."""
    out = explain("switchtrace", ["--url", "/raise/", "--measure"], "reporting_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)] == [
        "  measured: 18 switches, 18 hops, 0 loops, of a 302 Found response (as predicted, with "
        "6 of the conditional switches listed above)",
        "  measured: 2 switches, 2 hops, 1 loop, of a 302 Found response (as predicted, with 2 "
        "of the conditional switches listed above)",
    ]


@pytest.mark.skipif(not hasattr(Signal, "asend"), reason="async receivers need Django >= 5.0")
@pytest.mark.parametrize(
    ("url", "lines"),
    [
        # A 404 made a redirect: no got_request_exception (Django sends it
        # for a 500), so its cause is not taken for the view's own bridge.
        (
            "/bridging-missing/",
            [
                "  measured: 18 switches, 18 hops, 0 loops, of a 302 Found response (DIFFERS "
                "from the prediction: with 4 of the conditional switches listed above, and the "
                "bridge calls below)",
                f"{NOT_PREDICTED}sleep 2",
                "  measured: 2 switches, 2 hops, 1 loop, of a 302 Found response (DIFFERS from "
                "the prediction: by the bridge calls below)",
                f"{NOT_PREDICTED}sleep 2",
            ],
        ),
        # The view's own send of got_request_exception is the code's own.
        (
            "/self-reporting/",
            [
                "  measured: 14 switches, 14 hops, 0 loops (DIFFERS from the prediction: by the "
                "bridge calls below)",
                f"{NOT_PREDICTED}got_request_exception 2",
                "  measured: 2 switches, 2 hops, 1 loop (DIFFERS from the prediction: by the "
                "bridge calls below)",
                f"{NOT_PREDICTED}got_request_exception 2",
            ],
        ),
    ],
)
def test_got_request_exceptions_cause_is_only_djangos_send_of_it(url, lines, tmp_path):
    out = explain("switchtrace", ["--url", url, "--measure"], "reporting_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)] == lines


def test_a_raising_views_error_response_that_a_middleware_replaced_takes_the_exception_paths(
    tmp_path,
):
    """A view raising PermissionDenied, whose 403 a middleware below
    switchtrace's turns into a redirect to a login page: under ASGI
    process_exception_by_middleware and response_for_exception, each in
    sync_to_async, are conditional switches the prediction lists (not the
    logging of a 4xx, as the response is a 302). Nothing is named as the
    code's own: explain's own notes of what Django did keep Django's names."""
    args = ["--url", "/denied/", "--measure"]
    out = explain("switchtrace", args, "redirecting_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert measured(out) == [
        "  measured: 16 switches, 16 hops, 0 loops, of a 302 Found response (as predicted, "
        "with 4 of the conditional switches listed above)",
        "  measured: 0 switches, 0 hops, 0 loops, of a 302 Found response (as predicted)",
    ]
    assert not any(line.startswith(NOT_PREDICTED) for line in out.stdout.splitlines())
    # The same with a bridge call of the view's own before it raises: that
    # call alone is named as not in the prediction.
    args = ["--url", "/bridging-denied/", "--measure"]
    out = explain("switchtrace", args, "redirecting_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith(MEASURED_OR_NOT)] == [
        "  measured: 18 switches, 18 hops, 0 loops, of a 302 Found response (DIFFERS from the "
        "prediction: with 4 of the conditional switches listed above, and the bridge calls "
        "below)",
        f"{NOT_PREDICTED}sleep 2",
        "  measured: 2 switches, 2 hops, 1 loop, of a 302 Found response (DIFFERS from the "
        "prediction: by the bridge calls below)",
        f"{NOT_PREDICTED}sleep 2",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_redirect_by_middleware_is_not_the_views_measurement(command, tmp_path):
    """SECURE_SSL_REDIRECT: the request is sent over https, and reaches the view."""
    out = explain(command, ["--url", "/sync/", "--measure"], "ssl_settings", tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert [line for line in out.stdout.splitlines() if line.startswith("  measured:")] == MEASURED


def test_measuring_exports_no_span(tmp_path):
    traces = tmp_path / "traces.jsonl"
    out = explain(
        "switchtrace", ["--url", "/sync/", "--measure"], "file_export_settings", tmp_path,
        TRACES=str(traces),
    )  # fmt: skip
    assert (out.returncode, out.stderr) == (0, "")
    assert not traces.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_middleware_answering_before_the_view_is_told(command, tmp_path):
    """PREPEND_WWW: CommonMiddleware redirects before the view runs; its 301
    was measured and compared as if it were the view's."""
    out = explain(command, ["--url", "/sync/", "--measure"], "www_settings", tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1].endswith(
        "of a 301 Moved Permanently response (a middleware answered before the view ran: "
        "not compared with the prediction)"
    )
    assert out.stderr == (
        f"{COMMANDS[command][1]}GET /sync/ under ASGI was answered 301 Moved Permanently by "
        "a middleware, before the view ran; measure a --url that reaches the view\n"
    )
