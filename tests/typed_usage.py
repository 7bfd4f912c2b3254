"""What a strictly typed project's tests see of switchtrace's testing API:
type-checked by CI (``mypy --strict --warn-unused-ignores``), never run
(pytest collects test_*.py only). An ``ignore`` below marks an error a type
checker must find: were the decorator to lose the signature, it would be
unused, and so an error itself. (A decorated class is not here: mypy
keeps a class's type whatever its decorator returns.)"""

from __future__ import annotations

from typing import assert_type

from switchtrace.pytest_plugin import SwitchTraceFixture
from switchtrace.testing import Recorded, assert_max_switches, record_requests
from switchtrace.tracer import Crossing, Description, Figures, RequestRecord


def test_the_fixture(switchtrace: SwitchTraceFixture) -> None:
    assert_type(switchtrace.requests, list[RequestRecord])
    record = switchtrace.requests[0]
    assert_type(record.context_switches, int)
    assert_type(record.figures(), Figures)
    assert_type(record.crossings, list[Crossing])
    assert_type(record.crossings[0].description, Description | None)
    switchtrace.assert_max_switches(6)


def test_the_blocks() -> None:
    with record_requests() as requests:
        assert_type(requests, Recorded)
        assert_type(requests[0], RequestRecord)
    with assert_max_switches(6) as budgeted:
        assert_type(budgeted, Recorded)


async def test_the_async_blocks() -> None:
    async with record_requests() as requests:
        assert_type(requests, Recorded)
    async with assert_max_switches(6) as budgeted:
        assert_type(budgeted, Recorded)


@assert_max_switches(6)
def fetch(path: str, *, extra: bool = False) -> int:
    return len(path)


@assert_max_switches(6)
async def fetch_async(path: str) -> int:
    return len(path)


def test_the_decorated_keep_their_types() -> None:
    assert_type(fetch("/orders/"), int)
    fetch(path=123)  # type: ignore[arg-type]


async def test_the_decorated_coroutine_function_keeps_its_type() -> None:
    assert_type(await fetch_async("/orders/"), int)
    await fetch_async(1)  # type: ignore[arg-type]
