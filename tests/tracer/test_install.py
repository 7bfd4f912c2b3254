"""install() and uninstall(): idempotent, exact restoration, feature detection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import wrapt
from asgiref.sync import AsyncToSync, SyncToAsync

from switchtrace import tracer
from switchtrace.tracer import patches

TARGETS = [(owner, name) for owner, name, _wrapper in patches._targets()]


def originals():
    return {(owner, name): vars(owner)[name] for owner, name in TARGETS}


def test_every_documented_hook_is_patched():
    names = {f"{getattr(o, '__qualname__', getattr(o, '__name__', o))}.{n}" for o, n in TARGETS}
    assert {
        "SyncToAsync.__call__",
        "AsyncToSync.__call__",
        "AsyncToSync.main_wrap",
        "ThreadPoolExecutor.submit",
        "CurrentThreadExecutor.submit",
        "BaseEventLoop.__init__",
        "Thread.start",
    } <= names
    assert tracer.installed()
    assert tracer.missing_hooks() == []


def test_install_twice_wraps_once_and_uninstall_restores_exactly():
    tracer.uninstall()
    try:
        before = originals()
        assert not any(isinstance(v, wrapt.FunctionWrapper) for v in before.values())
        tracer.install()
        tracer.install()
        for key, original in before.items():
            current = vars(key[0])[key[1]]
            assert current is not original
            assert current.__wrapped__ is original  # wrapped once, around the original
        tracer.uninstall()
        tracer.uninstall()
        assert originals() == before
        assert all(originals()[key] is before[key] for key in before)
    finally:
        tracer.install()


def test_uninstall_leaves_a_wrapper_someone_added_over_ours():
    tracer.uninstall()
    tracer.install()
    ours = vars(SyncToAsync)["__call__"]
    theirs = wrapt.FunctionWrapper(ours, lambda w, i, a, k: w(*a, **k))
    SyncToAsync.__call__ = theirs
    try:
        tracer.uninstall()
        assert vars(SyncToAsync)["__call__"] is theirs
    finally:
        SyncToAsync.__call__ = ours.__wrapped__
        tracer.uninstall()
        tracer.install()


def test_a_missing_hook_is_reported_once_and_the_rest_still_works(caplog):
    tracer.uninstall()
    main_wrap = vars(AsyncToSync)["main_wrap"]
    del AsyncToSync.main_wrap
    try:
        with caplog.at_level("WARNING", logger="switchtrace"):
            tracer.install()
        assert tracer.missing_hooks() == ["AsyncToSync.main_wrap"]
        assert [r.getMessage() for r in caplog.records] == [
            "switchtrace: the installed asgiref/Python lacks AsyncToSync.main_wrap; what "
            "passes there is not recorded, everything else is"
        ]

        async def main():
            with tracer.recording() as record:
                await SyncToAsync(threading.current_thread)()
            return record

        assert asyncio.run(main()).totals().context_switches == 2
    finally:
        tracer.uninstall()
        AsyncToSync.main_wrap = main_wrap
        tracer.install()


def test_importing_the_tracer_imports_neither_django_nor_the_otel_sdk():
    code = (
        "import sys, switchtrace.tracer as t; t.install(); "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', "
        "'opentelemetry.sdk'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nothing_is_patched_while_switchtrace_is_disabled():
    code = (
        "import os, django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['switchtrace.django_app'], "
        "SWITCHTRACE={'ENABLED': False}); django.setup(); "
        "import wrapt, asyncio, threading; from asgiref.sync import SyncToAsync, AsyncToSync; "
        "from django.core.handlers.base import BaseHandler; "
        "print(any(isinstance(v, wrapt.FunctionWrapper) for c in (SyncToAsync, AsyncToSync, "
        "asyncio.base_events.BaseEventLoop, threading.Thread, BaseHandler) "
        "for v in vars(c).values()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
