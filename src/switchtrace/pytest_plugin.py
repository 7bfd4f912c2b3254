"""The pytest plugin (registered by entry point, so it loads in every test
run of a project that installs switchtrace: it imports nothing heavy until a
test uses it).

- ``switchtrace`` fixture: every request the test makes (Django ``Client``,
  ``AsyncClient``, raw ASGI/WSGI calls) while the test function runs (not
  those of its fixtures), with ``.requests`` and
  ``.assert_max_switches(n)``.
- ``@pytest.mark.max_context_switches(n)``: fail a test any of whose requests
  has more than ``n`` context switches, with a message listing each such
  request and its causes.
"""

from __future__ import annotations

import contextlib
import os
import unittest
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .text import raised, shown

if TYPE_CHECKING:
    from .testing import Recorded
    from .tracer import RequestRecord

MARKER = "max_context_switches"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(n): fail the test if a request it makes has more than n context "
        "switches (switchtrace)",
    )


class SwitchTraceFixture:
    """What the ``switchtrace`` fixture gives a test."""

    def __init__(self, records: Recorded) -> None:
        self._records = records

    @property
    def requests(self) -> list[RequestRecord]:
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


#: The ``switchtrace`` fixtures set up and not yet torn down (the test's,
#: whether it lists the fixture or a fixture of its fetches it with
#: ``request.getfixturevalue``).
_live: list[SwitchTraceFixture] = []


@pytest.fixture
def switchtrace() -> Iterator[SwitchTraceFixture]:
    stack, records = _recording()
    fixture = SwitchTraceFixture(records)
    _live.append(fixture)
    try:
        with stack:
            yield fixture
    finally:
        _live.remove(fixture)


def _runtest_call(item: pytest.Item) -> Iterator[None]:
    """``pytest_runtest_call`` as a new-style hook wrapper (pluggy >= 1.1):
    the test's outcome comes back from the ``yield``."""
    # Around every test of every suite that has the plugin: a failure pytest
    # cannot trace to the test's own code (a decorator's, raised after the
    # test returned) would otherwise show this frame first. Our own failures
    # keep it: hidden, it was the only entry, and pytest said "All traceback
    # entries are hidden. Pass `--full-trace` ..." under the message.
    __tracebackhide__ = _not_ours
    fixtures = _call_begins()
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        with _the_test_call_only(item, fixtures):
            return (yield)
    from .testing import over_budget

    budget, where = _budget_of(item)
    stack, records = _recording(where)
    with stack, _the_test_call_only(item, [*fixtures, records]):
        result = yield
        message = over_budget(records, budget)
    if message is not None:
        raise pytest.fail.Exception(f"{message}{where}", pytrace=False)
    return result


def _runtest_call_old_style(item: pytest.Item) -> Iterator[None]:
    """The same as an old-style hook wrapper, for pluggy < 1.1 (pytest 7's
    older releases), which has no new-style ones: the test's outcome is an
    object, and a failure replaces it."""
    __tracebackhide__ = _not_ours
    fixtures = _call_begins()
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        with _the_test_call_only(item, fixtures):
            yield
        return
    from .testing import over_budget

    budget, where = _budget_of(item)
    stack, records = _recording(where)
    with stack, _the_test_call_only(item, [*fixtures, records]):
        outcome: Any = yield
        message = None if outcome.excinfo is not None else over_budget(records, budget)
    if message is not None:
        failure = pytest.fail.Exception(f"{message}{where}", pytrace=False)
        if hasattr(outcome, "force_exception"):
            outcome.force_exception(failure)
        else:
            # pluggy 1.0: a hook wrapper that raises ends the call without
            # the other wrappers' teardown (pytest's capture and logging then
            # filed the test's output under its teardown, and lost its log).
            # Its outcome holds the exception there, as force_exception sets it.
            outcome._excinfo = (type(failure), failure, failure.__traceback__)


def _call_begins() -> list[Any]:
    """The test function is about to be called: the records of the
    ``switchtrace`` fixtures set up (recording since their setup: they had
    the requests of the fixtures set up after them, and not those of the
    others)."""
    return [fixture._records for fixture in _live]


@contextlib.contextmanager
def _the_test_call_only(item: pytest.Item, recordings: list[Any]) -> Iterator[None]:
    """The requests of the test's call alone in each of ``recordings``: not
    those of fixtures, set up before or torn down after (read in their
    teardown, an autouse fixture's figures had them). For a unittest
    ``TestCase``'s test (Django's ``SimpleTestCase``, ``TestCase``), which
    pytest runs in one call with its ``setUp`` and ``tearDown``: the
    requests of the test method alone, as under the decorator (``setUp`` is
    the test's fixture). Through unittest's ``_callTestMethod``, which every
    version this supports has, and which calls an async test method too
    (``IsolatedAsyncioTestCase``'s, and Django's, made sync by it before)."""
    case = getattr(item, "_testcase", None) or getattr(item, "instance", None)
    call = getattr(case, "_callTestMethod", None)
    if not isinstance(case, unittest.TestCase) or call is None:
        try:
            with _restarted(recordings):
                yield
        finally:
            # A switchtrace fixture the test fetched in its body
            # (request.getfixturevalue) records from there to here: not the
            # teardowns of the fixtures fetched after it, torn down first.
            for fixture in _live:
                fixture._records.close()
        return

    def the_method_only(method: Any) -> Any:
        __tracebackhide__ = True
        with _restarted(recordings):
            return call(method)

    # One of the instance's own (another plugin's) is put back after.
    own = getattr(case, "__dict__", {}).get("_callTestMethod")
    case._callTestMethod = the_method_only  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if own is not None:
            case._callTestMethod = own  # type: ignore[attr-defined]
        else:
            with contextlib.suppress(AttributeError):
                del case._callTestMethod  # type: ignore[attr-defined]


@contextlib.contextmanager
def _restarted(recordings: list[Any]) -> Iterator[None]:
    """Each of ``recordings`` records afresh inside, and is closed after."""
    for records in recordings:
        records.restart()
    try:
        yield
    finally:
        for records in recordings:
            records.close()


def _budget_of(item: pytest.Item) -> tuple[int, str]:
    """The test's budget and where the test is (its first decorator's line,
    which a failure without a traceback points at); a marker given no valid
    budget fails the test with a message naming it."""
    __tracebackhide__ = True
    path, line, _ = item.location
    where = ""
    if line is not None:
        where = f"\n{_from_invocation_dir(item.config, path)}:{line + 1}: {item.name}"
    try:
        return _budget(item), where
    except ValueError as exc:
        raise pytest.fail.Exception(f"{exc}{where}", pytrace=False) from None


def _from_invocation_dir(config: pytest.Config, path: str) -> str:
    """``path`` (an item's location: relative to the rootdir) as pytest's
    tracebacks show it: relative to the directory pytest was run from (in a
    monorepo, ``backend/tests/test_views.py`` run from above ``backend``)."""
    try:
        return os.path.relpath(config.rootpath / path, config.invocation_params.dir)
    except ValueError:  # another drive (Windows)
        return str(config.rootpath / path)


def _recording(where: str = "") -> tuple[contextlib.ExitStack, Any]:
    """:func:`switchtrace.testing.record_requests` entered (leaving the stack
    leaves it) and its records; or, when Django's settings cannot be read (no
    DJANGO_SETTINGS_MODULE), a failure saying so."""
    __tracebackhide__ = True
    from django.core.exceptions import ImproperlyConfigured

    from .testing import _record_requests

    stack = contextlib.ExitStack()
    try:
        # Its end does not wait for a live server's request: the marker's
        # budget and the fixture's figures wait as they are read.
        records = stack.enter_context(_record_requests(settle=False))
    except ImproperlyConfigured as exc:
        raise pytest.fail.Exception(
            f"switchtrace records requests only with Django's settings configured: {exc} "
            "(pytest-django sets DJANGO_SETTINGS_MODULE from its option or ini setting; "
            f"or set it and call django.setup() in a conftest.py){where}",
            pytrace=False,
        ) from None
    except (ModuleNotFoundError, TypeError) as exc:
        # TypeError: a relative name ('.settings'), which import_module refuses.
        module = os.environ.get("DJANGO_SETTINGS_MODULE") or ""
        if isinstance(exc, TypeError):
            if not module.startswith("."):
                raise
        elif not exc.name or not f"{module}.".startswith(f"{exc.name}."):
            raise  # an import of the settings module's own: its error
        raise pytest.fail.Exception(
            "switchtrace records requests only with Django's settings configured: "
            f"DJANGO_SETTINGS_MODULE={shown(module)} cannot be imported ({raised(exc)}); "
            f"allowed: the dotted path of a settings module on the Python path{where}",
            pytrace=False,
        ) from None
    return stack, records


try:
    pytest_runtest_call = pytest.hookimpl(wrapper=True)(_runtest_call)
except TypeError:  # pluggy < 1.1: no new-style hook wrappers
    pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(_runtest_call_old_style)


def _not_ours(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    # A failure without a traceback (ours, or pytest.fail(..., pytrace=False)
    # from the test): pytest shows its message alone.
    value = excinfo.value
    return not (isinstance(value, pytest.fail.Exception) and not value.pytrace)


def _budget(item: pytest.Item) -> int:
    """The closest marker's one argument (positional, or ``n=``) as a
    budget, or a ValueError naming what the marker was given. The closest
    marker wins (a parametrized case's over its function's over its class's
    over its module's); two on one of them are a ValueError too, rather than
    one silently ignored."""
    from .testing import check_budget

    (node, marker), *others = item.iter_markers_with_node(MARKER)
    closest = [marker, *(other for where, other in others if where is node)]
    if isinstance(node, pytest.Class) and isinstance(node.obj, type):
        # pytest gives a class the markers of its bases too, theirs first: a
        # subclass's own marker is the closest, as its attributes are.
        for cls in node.obj.__mro__:
            own = _own_markers(cls)
            if own:
                closest = own
                break
    # A parametrized case's own (``pytest.param(..., marks=...)``), which
    # pytest puts beside its function's: the closest of all.
    cased = [
        mark
        for mark in getattr(getattr(item, "callspec", None), "marks", ())
        if getattr(mark, "name", None) == MARKER
    ]
    if cased:
        # (Written order, as a message names two: the last first, as pytest
        # stores decorators bottom up.)
        node, closest = item, cased[::-1]
    marker, twin = closest[0], next(iter(closest[1:]), None)
    if twin is not None:
        raise ValueError(
            f"{node.nodeid or node.name} has two @pytest.mark.{MARKER} markers "
            f"({_given(twin) or 'none'} and {_given(marker) or 'none'}): give it one budget"
        )

    if len(marker.args) + len(marker.kwargs) != 1 or set(marker.kwargs) - {"n"}:
        given = _given(marker)
        raise ValueError(
            f"@pytest.mark.{MARKER}({given}) takes one argument, the budget: a "
            f"non-negative integer (context switches per request), e.g. "
            f"@pytest.mark.{MARKER}(12); it was given {given or 'none'}"
        )
    raw = marker.args[0] if marker.args else marker.kwargs["n"]
    return check_budget(raw, f"@pytest.mark.{MARKER}({_given(marker)})")


def _own_markers(cls: type) -> list[pytest.Mark]:
    """The budget markers ``cls`` itself has, not its bases (decorated, or
    its own ``pytestmark``), in the order pytest stores them."""
    marks = cls.__dict__.get("pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    unpacked = (getattr(mark, "mark", mark) for mark in marks)  # a MarkDecorator's Mark
    return [mark for mark in unpacked if isinstance(mark, pytest.Mark) and mark.name == MARKER]


def _given(marker: pytest.Mark) -> str:
    """The marker's arguments as written (each as text.shown shows it)."""
    given = [shown(arg) for arg in marker.args]
    given += [f"{name}={shown(value)}" for name, value in marker.kwargs.items()]
    return ", ".join(given)
