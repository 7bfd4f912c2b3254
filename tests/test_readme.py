"""The README says what the code says."""

from __future__ import annotations

from pathlib import Path

from switchtrace.django_app.conf import OPTIONS
from switchtrace.tracer import RequestRecord

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_definitions_are_the_docstrings_word_for_word():
    for name in ("context_switches", "thread_hops", "event_loops_created", "threads_started"):
        docstring = getattr(RequestRecord, name).__doc__
        assert docstring and docstring in README, name


def test_every_setting_is_documented_with_its_default():
    for key, option in OPTIONS.items():
        assert f"| `{key}` | `{option.default}` |" in README, key


def test_every_check_id_is_documented():
    import re

    from switchtrace.django_app import checks

    ids = set(re.findall(r"switchtrace\.[EW]\d{3}", Path(checks.__file__).read_text()))
    assert len(ids) == 14
    for check_id in ids:
        assert f"`{check_id}`" in README, check_id


def test_the_test_command_is_the_one_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python -m pytest\n```" in README
    assert "python -m pytest)" in ci
