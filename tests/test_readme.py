"""The README says what the code says."""

from __future__ import annotations

import asyncio
import threading
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

    import switchtrace.apps
    from switchtrace.django_app import apps, checks

    ids = {
        found
        for module in (checks, apps, switchtrace.apps)
        for found in re.findall(r"switchtrace\.[EW]\d{3}", Path(module.__file__).read_text())
    }
    assert len(ids) == 19
    for check_id in ids:
        assert f"`{check_id}`" in README, check_id


def test_the_test_command_is_the_one_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python -m pytest\n```" in README
    assert "python -m pytest)" in ci


def _spans_table() -> set[str]:
    """The attribute names of the Spans section's table (its first column)."""
    table = README.split("| attribute | on | meaning |\n|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    import re

    return {
        name for row in table.splitlines() for name in re.findall(r"`([^`]+)`", row.split(" | ")[0])
    }


def test_the_spans_table_lists_every_attribute_the_spans_have_and_no_other(records):
    """Spans of requests that between them set every attribute: ASGI with a
    query, a client and a raising view (error.type, switchtrace.exception),
    WSGI with an async view (a loop and a thread: events), and a method sent
    in lower case (http.request.method_original)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from switchtrace.django_app import components
    from switchtrace.example import asgi_request, run_in_server_loop
    from switchtrace.exporters.spans import plan_spans, readable_spans

    from .django_app.test_middleware import project
    from .support import wsgi_request

    client = [(b"host", b"testserver"), (b"user-agent", b"curl/8.5.0")]
    with project() as (asgi, wsgi):
        run_in_server_loop(asgi_request(asgi, "/sync/?q=1", headers=client))
        run_in_server_loop(asgi_request(asgi, "/raise/", headers=client))
        wsgi_request(wsgi, "/async/")
    records[0].attributes["http.request.method"] = "get"
    asyncio.run(_left_running())  # switchtrace.unfinished
    spans = [
        span
        for record in records
        for span in readable_spans(
            plan_spans(
                record, sampler=ALWAYS_ON, ids=RandomIdGenerator(), resolve=components.resolve
            ),
            resource=Resource.create(),
            scope=None,
        )
    ]
    assert {name for span in spans for name in span.attributes} == _spans_table()
    events = README.split("\nSpan events: ", 1)[1].split("\n\n", 1)[0]
    for span in spans:
        for event in span.events:
            assert f"`{event.name}`" in events, event.name
            for name in event.attributes or ():
                assert f"`{name}`" in events, (event.name, name)


async def _left_running() -> None:
    """A record whose sync_to_async was still running as it ended."""
    from asgiref.sync import sync_to_async

    from switchtrace import tracer

    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(10)

    with tracer.recording():
        task = asyncio.ensure_future(sync_to_async(slow, thread_sensitive=False)())
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    release.set()
    await task


def test_otel_sdk_disabled_turns_the_console_lines_off_and_sample_rate_is_not_theirs():
    """README, Settings: OTEL_SDK_DISABLED=true turns the console exporter's
    lines off too; the console exporter makes no spans, so SAMPLE_RATE (and
    the OTEL_TRACES_SAMPLER check) is not its concern."""
    from switchtrace.django_app.conf import build_config

    console = {"ENABLED": True, "EXPORTER": "console"}
    assert build_config(console, {"OTEL_SDK_DISABLED": "true"}).export is None
    config = build_config({**console, "SAMPLE_RATE": 0.0}, {"OTEL_TRACES_SAMPLER": "bogus"})
    assert (config.problems, config.export.exporter) == ((), "console")


def test_the_patches_named_plain_functions_are_those_that_are():
    """How it works: the six patches crossings pass through are plain
    functions (the others wrapt wrappers), and the README names each."""
    from switchtrace.tracer.patches import Fast, _targets

    sentence = README.split("The six patches crossings pass through", 1)[1]
    plain = sentence.split("not wrapt proxies", 1)[0]
    fast = [(owner, name) for owner, name, how in _targets() if isinstance(how, Fast)]
    assert len(fast) == 6
    for owner, name in fast:
        assert f"`{owner.__name__}.{name}`" in plain or (
            name == "submit" and "the two executors' `submit`" in plain
        ), (owner, name)


def test_the_gunicorn_hook_is_the_example_projects():
    """The post_worker_init hook of the Servers section is the one the e2e
    tests run (examples/project/gunicorn.conf.py, less its comments)."""
    conf = (
        Path(__file__).resolve().parent.parent / "examples/project/gunicorn.conf.py"
    ).read_text()
    code = "\n".join(
        line for line in conf.splitlines()[1:] if not line.lstrip().startswith("#")
    ).strip()
    assert f"```python\n{code}\n```" in README
