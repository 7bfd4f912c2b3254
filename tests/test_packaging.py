"""switchtrace as a wheel, installed without ``-e``: what it carries, and its
commands working from it, outside any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import EXAMPLE
from .support import ASGI_THREADS
from .test_cli import demo_sync_section, spans_in

ROOT = Path(__file__).resolve().parents[1]
#: What the example project holds that a wheel leaves out: what it writes.
WRITTEN = {"db.sqlite3", "switchtrace-traces.jsonl"}


def _sources(top: Path) -> set[str]:
    return {
        path.relative_to(top).as_posix()
        for path in top.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and path.name not in WRITTEN
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a copy of the checkout (the copy keeps the
    build's by-products out of the checkout), with the setuptools the test
    extra installs: no package index."""
    work = tmp_path_factory.mktemp("wheel")
    return _build_wheel(_copy_checkout(work / "source"), work / "dist")


def _copy_checkout(source: Path) -> Path:
    """What pip builds from: the checkout's sources, without what running it wrote."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", *WRITTEN)
    for name in ("src", "examples"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    return source


def _build_wheel(source: Path, dist: Path) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("switchtrace-*.whl")
    return found


def _contents(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def test_the_wheel_carries_the_package_and_the_example_project(wheel):
    names = _contents(wheel)
    expected = {f"switchtrace/{name}" for name in _sources(ROOT / "src" / "switchtrace")}
    expected |= {f"switchtrace/example_project/{name}" for name in _sources(EXAMPLE)}
    assert names == expected


def test_the_license_is_an_spdx_expression(wheel):
    """A TOML table (``{ text = ... }``) was deprecated by setuptools, whose
    builds of it stop on 2027-02-18 (a warning at every build until then)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    assert [line for line in metadata.splitlines() if line.startswith("License")] == [
        "License-Expression: BSD-3-Clause"
    ]


def test_a_wheel_built_from_the_sdist_carries_the_same(wheel, tmp_path):
    """The sdist (what a release uploads beside the wheel, and what pip builds
    from where no wheel fits) holds what its wheel needs: examples/project
    too, which pyproject.toml maps into the package."""
    source = _copy_checkout(tmp_path / "source")
    built = subprocess.run(
        [sys.executable, "-c",
         "import sys; from setuptools import build_meta; "
         "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "sdist")],
        cwd=source, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    sdist = tmp_path / "sdist" / built.stdout.splitlines()[-1]
    assert _contents(_build_wheel(sdist, tmp_path / "dist")) == _contents(wheel)


def test_demo_from_the_installed_wheel_outside_a_checkout(wheel, tmp_path):
    """``pip install switchtrace`` then ``switchtrace demo``, in a directory of
    one's own: the example project comes from the package, its spans go to
    the current directory, and nothing is written into the installation."""
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    cwd = tmp_path / "mine"
    cwd.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SWITCHTRACE_", "OTEL_")) and name != "DJANGO_SETTINGS_MODULE"
    }
    # Ahead of this checkout's editable install (a finder after sys.path).
    env["PYTHONPATH"] = str(target)
    # Where the example's database goes, for the run alone.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env["TMPDIR"] = str(temporary)

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )

    where = python("-c", "import switchtrace; print(switchtrace.__file__)")
    assert where.stdout == f"{target / 'switchtrace' / '__init__.py'}\n", where.stderr
    before = _sources(target)

    # (Python 3.13 warned of each in-memory database connection left open.)
    out = python("-W", "always::ResourceWarning", "-m", "switchtrace", "demo")

    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    _, rows = demo_sync_section(out.stdout)
    assert rows[0] == ["ASGI", "shipped", "32", "(30)", "32", "0", str(ASGI_THREADS)]
    assert rows[3] == ["WSGI", "shipped", "0", "(0)", "0", "0", "0"]
    traces = cwd / "switchtrace-traces.jsonl"
    assert out.stdout.endswith(
        f"\n{spans_in(traces)} spans went to {traces} (OTLP JSON, one export per line).\n"
    )
    assert sorted(path.name for path in cwd.iterdir()) == ["switchtrace-traces.jsonl"]
    assert list(temporary.iterdir()) == []  # the database's directory removed at exit
    assert _sources(target) == before

    # explain, run in a project of one's own, does not explain the carried
    # example instead: it asks for the project's settings.
    # It looked in the current directory only: an installed switchtrace has
    # no checkout around it (it named site-packages' grandparent's
    # examples/project, lib/python3.X/examples/project in a virtualenv).
    out = python("-m", "switchtrace", "explain")
    assert out.returncode == 2
    assert out.stderr.startswith(
        "switchtrace explain: error: DJANGO_SETTINGS_MODULE is not set, and there is no "
        f"example project to explain instead (looked in: {cwd / 'examples' / 'project'}); "
    ), out.stderr
