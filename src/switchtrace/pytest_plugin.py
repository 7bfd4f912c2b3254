"""The pytest plugin (registered by entry point, so it loads in every test
run of a project that installs switchtrace: it imports nothing heavy until a
test uses it).

- ``switchtrace`` fixture: every request the test makes (Django ``Client``,
  ``AsyncClient``, raw ASGI/WSGI calls), with ``.requests`` and
  ``.assert_max_switches(n)``.
- ``@pytest.mark.max_context_switches(n)``: fail a test any of whose requests
  has more than ``n`` context switches, with a message listing each such
  request and its causes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "max_context_switches"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(n): fail the test if a request it makes has more than n context "
        "switches (switchtrace)",
    )


class SwitchTraceFixture:
    """What the ``switchtrace`` fixture gives a test."""

    def __init__(self, records: Any) -> None:
        self._records = records

    @property
    def requests(self) -> list[Any]:
        """The records of the requests the test has made so far, in the
        order they finished (a request a live server still serves is waited
        for: see :meth:`switchtrace.testing.Recorded.settle`)."""
        self._records.settle()
        return list(self._records)

    def assert_max_switches(self, budget: int) -> None:
        __tracebackhide__ = True  # the failure points at the test's line
        from .testing import check_budget, over_budget

        message = over_budget(self._records, check_budget(budget))
        if message is not None:
            raise AssertionError(message)


@pytest.fixture
def switchtrace() -> Iterator[SwitchTraceFixture]:
    from .testing import record_requests

    with record_requests() as records:
        yield SwitchTraceFixture(records)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # Around every test of every suite that has the plugin: a failure pytest
    # cannot trace to the test's own code (a decorator's, raised after the
    # test returned) would otherwise show this frame first. Our own failures
    # keep it: hidden, it was the only entry, and pytest said "All traceback
    # entries are hidden. Pass `--full-trace` ..." under the message.
    __tracebackhide__ = _not_ours
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return (yield)
    from .testing import over_budget, record_requests

    # Where the test is (its first decorator's line): a failure without a
    # traceback points there.
    path, line, _ = item.location
    where = f"\n{path}:{line + 1}: {item.name}" if line is not None else ""
    try:
        budget = _budget(item)
    except ValueError as exc:
        raise pytest.fail.Exception(f"{exc}{where}", pytrace=False) from None
    with record_requests() as records:
        result = yield
        message = over_budget(records, budget)
    if message is not None:
        raise pytest.fail.Exception(f"{message}{where}", pytrace=False)
    return result


def _not_ours(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    # A failure without a traceback (ours, or pytest.fail(..., pytrace=False)
    # from the test): pytest shows its message alone.
    value = excinfo.value
    return not (isinstance(value, pytest.fail.Exception) and not value.pytrace)


def _budget(item: pytest.Item) -> int:
    """The closest marker's one argument (positional, or ``n=``) as a
    budget, or a ValueError naming what the marker was given. The closest
    marker wins (the function's over its class's over its module's); two on
    one of them are a ValueError too, rather than one silently ignored."""
    from .testing import check_budget

    (node, marker), *others = item.iter_markers_with_node(MARKER)
    twin = next((other for where, other in others if where is node), None)
    if twin is not None:
        raise ValueError(
            f"{node.nodeid or node.name} has two @pytest.mark.{MARKER} markers "
            f"({_given(twin)} and {_given(marker)}): give it one budget"
        )

    if len(marker.args) + len(marker.kwargs) != 1 or set(marker.kwargs) - {"n"}:
        given = _given(marker)
        raise ValueError(
            f"@pytest.mark.{MARKER}({given}) takes one argument, the budget: a "
            f"non-negative integer (context switches per request), e.g. "
            f"@pytest.mark.{MARKER}(12); it was given {given or 'none'}"
        )
    raw = marker.args[0] if marker.args else marker.kwargs["n"]
    return check_budget(raw, f"@pytest.mark.{MARKER}(...)")


def _given(marker: pytest.Mark) -> str:
    """The marker's arguments as written."""
    given = [repr(arg) for arg in marker.args]
    given += [f"{name}={value!r}" for name, value in marker.kwargs.items()]
    return ", ".join(given)
