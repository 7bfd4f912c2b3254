"""The compatibility matrix: every supported Python x Django, each Django with
asgiref pinned at its minimum and at 3.13. Each session builds its own virtual
environment from the package index and runs the README's test command.

    nox                     # everything
    nox -s "tests(python='3.12', django='6.0', asgiref='3.9.1')"
    nox -l                  # the list

.ci/run runs four of them: the oldest (3.10, Django 4.2, asgiref 3.8.1, and
wrapt at its floor, as every session with the minimum asgiref here), the
machine's default (3.11, Django 5.2), 3.12 with Django 6.0 at asgiref 3.9.1,
and the newest (3.13, Django 6.1).
"""

import nox

nox.options.default_venv_backend = "venv"

# Django -> (Pythons it supports among ours, the minimum asgiref switchtrace and
# that Django accept).
DJANGO = {
    "4.2": (("3.10", "3.11", "3.12"), "3.8.1"),
    # 5.0 and 5.1 are past their end of support, still allowed by Django>=4.2.
    "5.0": (("3.10", "3.11", "3.12"), "3.8.1"),
    "5.1": (("3.10", "3.11", "3.12", "3.13"), "3.8.1"),
    "5.2": (("3.10", "3.11", "3.12", "3.13"), "3.8.1"),
    "6.0": (("3.12", "3.13"), "3.9.1"),
    "6.1": (("3.12", "3.13"), "3.9.1"),
}
LATEST_ASGIREF = "3.13.0"
#: pyproject.toml's floor for wrapt, pinned with the minimum asgiref, and
#: sentry-sdk 2.x there (the add-on tests read 2.x's and 3.x's alike).
OLDEST_WRAPT = "1.17.0"

MATRIX = [
    (python, django, asgiref)
    for django, (pythons, minimum) in DJANGO.items()
    for python in pythons
    for asgiref in (minimum, LATEST_ASGIREF)
]


@nox.session(python=False)
@nox.parametrize(("python", "django", "asgiref"), MATRIX)
def tests(session: nox.Session, python: str, django: str, asgiref: str) -> None:
    venv = f".nox/py{python}-django{django}-asgiref{asgiref}"
    session.run(f"python{python}", "-m", "venv", "--clear", venv, external=True)
    pip = f"{venv}/bin/pip"
    oldest = [f"wrapt=={OLDEST_WRAPT}", "sentry-sdk<3"] if asgiref != LATEST_ASGIREF else []
    session.run(pip, "install", "-q", "-e", ".[test]", f"Django=={django}.*",
                f"asgiref=={asgiref}", *oldest, external=True)  # fmt: skip
    session.run(f"{venv}/bin/python", "-m", "pytest", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")  # the version .ci/run uses
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
