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

from .conftest import ROOT

STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    "fresh_urls.py": (
        "from django.http import Http404, HttpResponse\n"
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
        "def raising(request):\n"
        '    raise ValueError("view bug")\n'
        "\n"
        "\n"
        "urlpatterns = [\n"
        '    path("sync/", sync_view),\n'
        '    path("orders/9/", missing),\n'
        '    path("raise/", raising),\n'
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


def explain(command: str, args: list[str], settings: str, tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name, text in SITE.items():
        (site / name).write_text(text)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [*COMMANDS[command][0], *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "sync/"],
         "--url 'sync/' is not a path; allowed: a path of the project beginning with '/', "
         "optionally with a query string, e.g. /sync/ or /search/?q=x"),
        (["--measure"], "--measure needs --url"),
        (["--url", "/nowhere/"], "the URL '/nowhere/' does not resolve to a view"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", COMMANDS)
def test_both_commands_say_the_same_of_bad_input(command, args, message, tmp_path):
    """manage.py said CommandError with exit status 1, and ran --measure
    without --url, printing 'pass --url' four times, exit status 0."""
    out = explain(command, args, "fresh_settings", tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"{COMMANDS[command][1]}{message}\n"
