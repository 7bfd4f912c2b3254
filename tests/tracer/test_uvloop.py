"""uvloop's event loop, where the application uses it (its policy,
``uvloop.run``, ``uvloop.new_event_loop``): a C type under a Python class,
out of reach of the patches on asyncio's ``BaseEventLoop``. Its loops are
counted as created, and the figures are those of asyncio's own loop."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import types

import pytest
import uvloop  # in the test extra, for CPython off Windows
import wrapt
from asgiref.sync import async_to_sync, sync_to_async

from switchtrace import tracer
from switchtrace.tracer import patches

from ..support import collect_garbage


async def anoop() -> None:
    return None


@pytest.fixture
def uvloop_policy():
    """uvloop's policy, as ``uvloop.install()`` sets it: every new loop is uvloop's."""
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(before)


def test_an_async_to_sync_without_a_loop_creates_a_uvloop_loop(uvloop_policy):
    """An async view under WSGI, with uvloop installed: the loop asgiref makes
    for it is uvloop's, and is counted."""
    loops = []

    async def which():
        loops.append(asyncio.get_running_loop())

    with tracer.recording() as record:
        async_to_sync(which)()
    assert type(loops[0]) is uvloop.Loop
    assert record.totals() == tracer.Figures(2, 2, 1, 1)
    [crossing] = record.crossings
    assert crossing.loop_created is True
    assert crossing.loop_id == id(loops[0])
    assert record.loop_creations[0].crossing is crossing


def test_asyncio_run_under_uvloops_policy_counts_its_loop(uvloop_policy):
    with tracer.recording() as record:
        asyncio.run(anoop())
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    [crossing] = record.crossings
    assert (crossing.mechanism, crossing.loop_created) == ("asyncio.run", True)
    [creation] = record.loop_creations
    assert (creation.crossing, creation.at_ns >= crossing.call_ns) == (crossing, True)


def test_uvloop_run_counts_its_loop():
    main = anoop()
    with tracer.recording() as record:
        assert uvloop.run(main) is None
    # Python 3.10's uvloop.run copies asyncio.run's body: its three
    # run_until_complete calls (the coroutine, then the shutdowns) are one
    # crossing, as asyncio.run's are.
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    [crossing] = record.crossings
    assert (crossing.mechanism, crossing.loop_created) == ("asyncio.run", True)
    # Named after the coroutine given, not after uvloop's wrapper of it.
    assert crossing.func is main
    # Its loop made as it set its Runner up (Python 3.11+), part of the call.
    [creation] = record.loop_creations
    assert (creation.crossing, creation.at_ns >= crossing.call_ns) == (crossing, True)


def test_run_until_complete_on_a_uvloop_loop_is_two_switches_without_a_hop():
    # asgiref's single-thread executor starts its thread on first use.
    asyncio.run(sync_to_async(threading.get_ident)())
    with tracer.recording() as record:
        loop = uvloop.new_event_loop()
        try:
            result = loop.run_until_complete(sync_to_async(threading.get_ident)())
        finally:
            loop.close()
    assert result != threading.get_ident()
    # The loop, then the bridge call made in it.
    assert record.totals() == tracer.Figures(4, 2, 1, 0)
    run, s2a = sorted(record.crossings, key=lambda c: c.call_ns)
    assert (run.mechanism, run.loop_created, run.loop_id) == (
        "loop.run_until_complete",
        True,
        id(loop),
    )
    assert s2a.parent is run
    # Made by the code before the call: an event where it happened.
    [creation] = record.loop_creations
    assert (creation.crossing, creation.at_ns < run.call_ns) == (None, True)


def test_a_uvloop_loop_kept_after_its_request_keeps_nothing_of_it():
    """uvloop's C type makes handles of its own as it is allocated, each
    with a copy of the context: a loop a request makes and keeps (a module
    global) keeps nothing of the request. Reused in a later request, it
    counts that request's crossings."""
    import weakref

    class Payload:
        pass

    with tracer.recording() as record:
        record.extra["payload"] = Payload()
        loop = uvloop.new_event_loop()
        assert loop.run_until_complete(anoop()) is None
    assert record.totals() == tracer.Figures(2, 0, 1, 0)
    alive = weakref.ref(record.extra["payload"])
    del record
    collect_garbage()
    assert alive() is None
    try:
        with tracer.recording() as later:
            assert loop.run_until_complete(anoop()) is None
        assert later.totals() == tracer.Figures(2, 0, 0, 0)
    finally:
        loop.close()


def test_a_uvloop_loops_errors_are_its_own():
    """What uvloop raises, it still raises, and raising before anything runs
    is no switch."""

    async def fails():
        raise KeyError("inside")

    loop = uvloop.new_event_loop()
    try:
        with tracer.recording() as record:
            with pytest.raises(KeyError, match="inside"):
                loop.run_until_complete(fails())
            with pytest.raises(TypeError):
                loop.run_until_complete(42)
    finally:
        loop.close()
    with tracer.recording() as closed:
        coro = anoop()
        with pytest.raises(RuntimeError, match="closed"):
            loop.run_until_complete(coro)
        coro.close()
    assert record.totals() == tracer.Figures(2, 0, 0, 0)
    assert record.crossings[0].exception == "KeyError"
    assert closed.totals() == tracer.Figures(0, 0, 0, 0)


def test_uninstall_takes_the_patches_out_of_uvloops_class():
    """uvloop.Loop inherits both methods from its C base: the patches are
    put in its own namespace, and taken out again, whatever the number of
    installs."""
    assert tracer.installed()  # the test session's
    assert {"__new__", "__init__", "run_until_complete"} <= set(vars(uvloop.Loop))
    tracer.install()
    inner = vars(uvloop.Loop)["run_until_complete"]
    assert inner.__wrapped__ is uvloop.loop.Loop.run_until_complete
    try:
        tracer.uninstall()
        assert "__new__" not in vars(uvloop.Loop)
        assert "__init__" not in vars(uvloop.Loop)
        assert "run_until_complete" not in vars(uvloop.Loop)
        with tracer.recording() as record:
            uvloop.run(anoop())
        assert record.totals() == tracer.Figures(0, 0, 0, 0)
    finally:
        tracer.install()
    assert vars(uvloop.Loop)["run_until_complete"].__wrapped__ is (
        uvloop.loop.Loop.run_until_complete
    )
    assert tracer.missing_hooks() == []


@pytest.mark.parametrize("finder", ["", "raising"])
def test_uvloop_imported_after_install_is_patched_then(finder):
    """switchtrace never imports uvloop: an application that imports it
    after Django has started gets its loops counted from then on. Where a
    finder raised as switchtrace looked for uvloop, uvloop is watched for as
    if it were installed."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        from asgiref.sync import async_to_sync
        from switchtrace import tracer

        class Raising:
            def find_spec(self, name, path=None, target=None):
                if name == "uvloop":
                    raise RuntimeError("a finder that raises")
                return None

        raising = Raising()
        if FINDER == "raising":
            sys.meta_path.insert(0, raising)
        tracer.install()
        if FINDER == "raising":
            sys.meta_path.remove(raising)
        assert "uvloop" not in sys.modules
        import uvloop

        async def anoop():
            return None

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        with tracer.recording() as record:
            async_to_sync(anoop)()
        print(record.totals())
        """
    ).replace("FINDER", repr(finder))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(tracer.Figures(2, 2, 1, 1))


def _ours() -> str:
    """Where switchtrace is imported from (an editable install finds it
    through a finder that site sets up)."""
    return str(pathlib.Path(tracer.__file__).resolve().parent.parent.parent)


def _run_without_site(code: str, path: list[str]) -> str:
    """``code`` in a fresh interpreter whose imports are those of ``path``
    only (no site-packages of its own)."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_uvloop_installed_the_import_system_is_left_as_it_was(tmp_path):
    """An environment without uvloop (this one's packages but uvloop's):
    installing switchtrace puts no post-import hook's finder in
    sys.meta_path, where no uninstall could take it out again."""
    site_packages = pathlib.Path(wrapt.__file__).resolve().parent.parent
    for entry in site_packages.iterdir():
        if not entry.name.startswith("uvloop"):
            (tmp_path / entry.name).symlink_to(entry)
    out = _run_without_site(
        """
        import sys
        before = list(sys.meta_path)
        from switchtrace import tracer

        tracer.install()
        installed = list(sys.meta_path)
        tracer.uninstall()
        try:
            import uvloop
        except ImportError:
            print("no uvloop", installed == before, sys.meta_path == before)
        """,
        [_ours(), str(tmp_path)],
    )
    assert out == "no uvloop True True"


def test_uvloop_imported_before_install_is_patched_at_once_and_not_watched_for():
    out = _run_without_site(
        """
        import sys
        import uvloop
        before = list(sys.meta_path)
        from switchtrace import tracer

        tracer.install()
        patched = "run_until_complete" in vars(uvloop.Loop)
        installed = list(sys.meta_path)
        tracer.uninstall()
        print(patched, installed == before, "run_until_complete" in vars(uvloop.Loop))
        """,
        [_ours(), *sys.path],
    )
    assert out == "True True False"


def test_an_error_in_the_import_hook_does_not_fail_the_applications_import(swallowed, monkeypatch):
    """The hook runs inside the application's `import uvloop`: what goes
    wrong in it is switchtrace's, swallowed, and the import goes on."""

    def broken():
        raise ZeroDivisionError("switchtrace bug")

    monkeypatch.setattr(tracer.patches.uvloop_patcher, "install", broken)
    tracer.patches._uvloop_imported(uvloop)
    assert [(where, type(exc)) for where, exc in swallowed] == [
        ("uvloop import hook", ZeroDivisionError)
    ]
    swallowed.clear()


def test_a_uvloop_module_without_its_loop_class_is_patched_nowhere(monkeypatch):
    """A module named uvloop without the Loop class (a stub, or another
    package of that name): nothing to patch, nothing missing, no error."""
    monkeypatch.setitem(sys.modules, "uvloop", types.ModuleType("uvloop"))
    patcher = patches.Patcher(patches._uvloop_targets, "uvloop")
    patcher.install()
    assert (patcher.installed, patcher.missing) == (False, [])
