"""switchtrace.testing in this process: recordings as the pytest plugin
nests them (the ``switchtrace`` fixture, a marker, ``assert_max_switches``
inside a test)."""

from __future__ import annotations

from django.test import Client, override_settings

from switchtrace.testing import client_patcher, record_requests


def paths(records) -> list[str]:
    return [record.attributes["url.path"] for record in records]


def test_a_recording_inside_another_leaves_the_outer_one_recording():
    """The inner recording's end leaves the test client's patches on while
    the outer one records (taken off, a request made after the block would
    escape the outer one: a marker's budget, around a test whose block has
    a budget of its own); the last recording's end takes them off."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as outer:
            with record_requests() as inner:
                Client().get("/async-to-sync/")
            assert client_patcher.installed
            Client().get("/sync/")
        assert not client_patcher.installed
    assert paths(inner) == ["/async-to-sync/"]
    assert paths(outer) == ["/async-to-sync/", "/sync/"]
