"""install() and uninstall(): idempotent, exact restoration, feature detection."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
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
        tracer.install()  # ours, found under theirs, is taken up again
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


def test_a_patch_put_over_ours_after_install_survives_uninstall_and_install_without_doubling():
    """sentry-sdk initialised after switchtrace was installed (in asgi.py after
    get_asgi_application(), in a later app's ready()) patches Thread.start
    and ThreadPoolExecutor.submit over switchtrace's, each a function closing
    over the attribute it found. uninstall() cannot take switchtrace's out of
    those, and leaves them; install() again takes them up again instead of
    wrapping sentry's (which would count every thread start and crossing
    twice), and meanwhile the one left in Thread.start passes calls through."""
    tracer.uninstall()
    tracer.install()
    ours_start = vars(threading.Thread)["start"]
    ours_submit = vars(ThreadPoolExecutor)["submit"]
    calls = []

    def sentry_style(original):
        def patched(self, *args, **kwargs):
            calls.append(original)
            return original(self, *args, **kwargs)

        return patched

    threading.Thread.start = sentry_style(ours_start)
    ThreadPoolExecutor.submit = sentry_style(ours_submit)
    theirs_start, theirs_submit = (
        vars(threading.Thread)["start"],
        vars(ThreadPoolExecutor)["submit"],
    )

    async def main():
        with tracer.recording() as record:
            await SyncToAsync(threading.current_thread, thread_sensitive=False)()
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        return record

    try:
        tracer.uninstall()
        assert vars(threading.Thread)["start"] is theirs_start
        assert vars(ThreadPoolExecutor)["submit"] is theirs_submit
        with tracer.recording() as record:
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        assert record.threads_started == 0  # uninstalled: ours, left in theirs, passes through
        tracer.install()
        assert vars(threading.Thread)["start"] is theirs_start  # not wrapped a second time
        assert vars(ThreadPoolExecutor)["submit"] is theirs_submit
        with ThreadPoolExecutor(1) as executor:
            loop = asyncio.new_event_loop()
            loop.set_default_executor(executor)
            try:
                record = loop.run_until_complete(main())
            finally:
                loop.close()
        totals = record.totals()
        # The executor's one thread, the thread started: once each.
        assert (totals.context_switches, totals.thread_hops, totals.threads_started) == (2, 2, 2)
        # Their patches are still called, once a call.
        assert calls.count(ours_submit) == 1
        # Taken up, ours is installed again: the next uninstall leaves it
        # under theirs once more, and the next install takes it up again.
        tracer.uninstall()
        tracer.install()
        assert vars(threading.Thread)["start"] is theirs_start
        assert vars(ThreadPoolExecutor)["submit"] is theirs_submit
    finally:
        threading.Thread.start = ours_start.__wrapped__
        ThreadPoolExecutor.submit = ours_submit.__wrapped__
        tracer.uninstall()
        tracer.install()


class _Base:
    def hook(self):
        return "base's"


class _Defines(_Base):
    def hook(self):
        return "its own"


class _Inherits(_Base):
    pass


class _AlsoInherits(_Base):
    pass


def _passing(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs)


def test_a_patch_of_an_inherited_attribute_is_made_and_taken_out_only_where_it_is_said_to():
    """An Added patch over an attribute the owner inherits goes in the
    owner's namespace and comes out again; over one the owner defines it is
    patched and put back as any other. A plain patch of an attribute the
    owner only inherits is reported missing and not made."""
    own = vars(_Defines)["hook"]
    patcher = patches.Patcher(
        lambda: [
            (_Defines, "hook", patches.Added(_passing)),
            (_Inherits, "hook", patches.Added(_passing)),
            (_AlsoInherits, "hook", _passing),
        ],
        "test",
    )
    assert patcher.missing == []
    patcher.install()
    try:
        assert patcher.missing == ["_AlsoInherits.hook"]
        assert vars(_Defines)["hook"].__wrapped__ is own
        assert vars(_Inherits)["hook"].__wrapped__ is _Base.hook
        assert "hook" not in vars(_AlsoInherits)
        assert (_Defines().hook(), _Inherits().hook()) == ("its own", "base's")
    finally:
        patcher.uninstall()
    assert vars(_Defines)["hook"] is own
    assert "hook" not in vars(_Inherits)
    assert "hook" not in vars(_AlsoInherits)


def test_no_hook_is_reported_missing_before_install_or_without_uvloop():
    code = (
        "import sys, switchtrace.tracer as t; print(t.missing_hooks()); t.install(); "
        "print(t.missing_hooks(), 'uvloop' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[] False"]


class _Patched:
    def hook(self):
        return "its own"


class _Raising:
    """A patch whose attributes raise for what Patcher looks at (a proxy's
    that resolves them lazily), and are missing otherwise."""

    def __getattr__(self, name):
        if name in ("__func__", "_self_parent"):
            raise RuntimeError(f"no {name} outside its context")
        raise AttributeError(name)


def _closing_over(original):
    def patched(self, *args, **kwargs):
        return original(self, *args, **kwargs)

    return patched


def _left_said_and_taken_up(patcher, theirs, caplog):
    """uninstall() leaves ``theirs`` (calling ours) in _Patched.hook and says
    so; install() takes ours up again in it rather than wrapping it."""
    with caplog.at_level("WARNING", logger="switchtrace"):
        patcher.uninstall()
    assert [r.getMessage() for r in caplog.records] == [
        f"switchtrace: {_Patched}.hook was patched again by someone else; left as it is (said once)"
    ]
    assert vars(_Patched)["hook"] is theirs
    patcher.install()
    assert vars(_Patched)["hook"] is theirs
    assert _Patched().hook() == "its own"


def test_ours_under_four_patches_put_over_it_is_left_said_and_taken_up_again(caplog):
    """Four patches put over ours, each closing over the one before (the
    depth Patcher looks down to): uninstall leaves them, ours inside, and
    says so; install takes ours up again rather than wrapping theirs."""
    own = vars(_Patched)["hook"]
    patcher = patches.Patcher(lambda: [(_Patched, "hook", _passing)], "test")
    patcher.install()
    theirs = vars(_Patched)["hook"]
    for _ in range(4):
        theirs = _closing_over(theirs)
    _Patched.hook = theirs
    try:
        _left_said_and_taken_up(patcher, theirs, caplog)
        caplog.clear()
        with caplog.at_level("WARNING", logger="switchtrace"):
            patcher.uninstall()  # left again: said once is enough
        assert caplog.records == []
        # Replaced by a patch as deep that no longer calls ours: wrapped.
        replaced = own
        for _ in range(4):
            replaced = _closing_over(replaced)
        _Patched.hook = replaced
        patcher.install()
        assert vars(_Patched)["hook"].__wrapped__ is replaced
        _Patched.hook = _closing_over(vars(_Patched)["hook"])
        patcher.uninstall()
        # That one replaced by an object whose attributes raise (a lazy
        # proxy's): not taken for one calling ours either.
        hostile = _Raising()
        _Patched.hook = hostile
        patcher.install()
        assert vars(_Patched)["hook"].__wrapped__ is hostile
    finally:
        patcher.uninstall()
        _Patched.hook = own


def _unwrap_top(owner, name):
    """OpenTelemetry's ``unwrap``: the wrapper read off the class, if it is a
    wrapt proxy, replaced by its ``__wrapped__``."""
    found = getattr(owner, name)
    proxy = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)  # wrapt 2's base, 1's
    if isinstance(found, proxy) and hasattr(found, "__wrapped__"):
        setattr(owner, name, found.__wrapped__)


def _instrument_threading(calls):
    """Patches as OpenTelemetry's threading instrumentor makes them (wrapt's
    wrap_function_wrapper): ThreadPoolExecutor.submit wrapping the function
    submitted in a closure of its own, Thread.start, and Timer.start, which
    puts a wrapper of the Thread.start it finds in Timer's namespace."""

    def otel_style_submit(wrapped, instance, args, kwargs):
        fn = args[0]

        def wrapped_func(*func_args, **func_kwargs):
            calls.append("func")
            return fn(*func_args, **func_kwargs)

        return wrapped(wrapped_func, *args[1:], **kwargs)

    def otel_style_start(wrapped, instance, args, kwargs):
        calls.append("start")
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(ThreadPoolExecutor, "submit", otel_style_submit)
    wrapt.wrap_function_wrapper(threading.Thread, "start", otel_style_start)
    wrapt.wrap_function_wrapper(threading.Timer, "start", otel_style_start)


def _uninstrument_threading():
    for owner, name in ((ThreadPoolExecutor, "submit"), (threading.Thread, "start")):
        _unwrap_top(owner, name)
    _unwrap_top(threading.Timer, "start")  # what it leaves in Timer's namespace stays


def _threads_and_offload():
    """A thread and a timer started, and a run_in_executor, in a recording:
    (the record, the offload's result)."""

    def work():
        return "worked"

    async def offload():
        return await asyncio.get_running_loop().run_in_executor(None, work)

    with tracer.recording() as record:
        for thread in (threading.Thread(target=str), threading.Timer(0, str)):
            thread.start()
            thread.join()
        result = asyncio.run(offload())
    return record, result


def test_a_wrapt_patch_of_someones_under_ours_is_called_with_its_instance(caplog):
    """OpenTelemetry's threading instrumentor set up before switchtrace
    (``opentelemetry-instrument``, which instruments as the interpreter
    starts): its wrapt wrapper of ThreadPoolExecutor.submit, called by ours
    as it was found in the class's namespace, got no instance and the
    executor as the function, and every submit raised AttributeError (every
    async view under WSGI, every sync_to_async under ASGI: 500s); and Timer's
    starts, through its wrapper in Timer's namespace, never reached ours.
    Each of theirs still runs once a call; uninstalled, theirs are what is
    there; their uninstrument() run while ours is on top (it unwraps ours,
    leaving theirs), ours is gone and nothing is said."""
    tracer.uninstall()
    original = {key: vars(key[0]).get(key[1]) for key in ((ThreadPoolExecutor, "submit"),
                (threading.Thread, "start"), (threading.Timer, "start"))}  # fmt: skip
    calls = []
    _instrument_threading(calls)
    theirs = {key: vars(key[0])[key[1]] for key in original}
    try:
        tracer.install()
        with ThreadPoolExecutor(1) as executor:
            assert executor.submit(lambda: "ran").result() == "ran"
        calls.clear()
        record, result = _threads_and_offload()
        assert result == "worked"
        totals = record.totals()
        # asyncio.run (two switches, no hop) and the offload; the thread, the
        # timer, the default executor's worker and the thread asyncio.run
        # starts to shut that executor down.
        assert (totals.context_switches, totals.thread_hops, totals.threads_started) == (4, 2, 4)
        [_run, offload] = record.crossings
        assert (offload.mechanism, offload.func.__qualname__) == (
            "run_in_executor",
            "_threads_and_offload.<locals>.work",
        )
        # Theirs once a call: their Timer's wraps their Thread's, five calls.
        assert calls.count("start") == 5 and calls.count("func") == 1
        tracer.uninstall()
        assert {key: vars(key[0])[key[1]] for key in original} == theirs
        tracer.install()
        with caplog.at_level("WARNING", logger="switchtrace"):
            _uninstrument_threading()  # takes out ours, on top, leaving theirs
            tracer.uninstall()
        assert caplog.records == []
    finally:
        for (owner, name), value in original.items():
            if value is None:
                vars(owner).get(name) is not None and delattr(owner, name)
            else:
                setattr(owner, name, value)
        tracer.uninstall()
        tracer.install()


def test_ours_put_back_by_someones_unwrap_is_restored_by_uninstall(caplog):
    """switchtrace installed, then OpenTelemetry's threading instrumentor,
    which later unwraps its wrapper read off the class and puts back its
    ``__wrapped__``: ours as read off the class, a bound wrapper. uninstall()
    said ours was patched over and left that in the class; it is ours, and
    the original is put back."""
    tracer.uninstall()
    before = originals()
    tracer.install()
    calls = []
    _instrument_threading(calls)
    try:
        _uninstrument_threading()
        assert vars(threading.Thread)["start"] is not before[(threading.Thread, "start")]
        with caplog.at_level("WARNING", logger="switchtrace"):
            tracer.uninstall()
        assert caplog.records == []
        assert {key: value for key, value in originals().items() if value is not before[key]} == {}
    finally:
        del threading.Timer.start
        tracer.install()


def test_an_offload_through_other_submit_patches_over_ours_is_named_after_its_function():
    """Patches of submit put over ours after install (OpenTelemetry's
    threading instrumentor's, sentry-sdk's: each wraps the function submitted
    in a closure made in its patch) handed ours their wrapper: a
    run_in_executor was named after it (``wrapped_func``), and an
    asyncio.to_thread under two of them was a run_in_executor of the outer
    wrapper, what its function bridged not its own."""
    calls = []

    def carrying_context(wrapped, instance, args, kwargs):  # named for no submit
        fn = args[0]

        def wrapped_fn(*func_args, **func_kwargs):
            calls.append(fn)
            return fn(*func_args, **func_kwargs)

        return wrapped(wrapped_fn, *args[1:], **kwargs)

    def work():
        return "worked"

    def bridging():
        return AsyncToSync(asyncio.sleep)(0)

    class OwnSubmit(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            return super().submit(fn, *args, **kwargs)

    async def offloads():
        loop = asyncio.get_running_loop()
        with OwnSubmit(1) as own:
            # A subclass's own submit over theirs: found on from the base.
            await loop.run_in_executor(own, work)
        return (await loop.run_in_executor(None, work), await asyncio.to_thread(bridging))

    ours = vars(ThreadPoolExecutor)["submit"]
    try:
        for _ in range(2):  # two patches over ours
            wrapt.wrap_function_wrapper(ThreadPoolExecutor, "submit", carrying_context)
        with tracer.recording() as record:
            assert asyncio.run(offloads()) == ("worked", None)
        # Each patch ran once a call (the outer one holds the inner's wrapper).
        assert calls.count(work) == 2 and calls.count(bridging) == 0
        _run, in_own, in_executor, to_thread, bridged = record.crossings
        assert [(c.mechanism, c.func.__qualname__) for c in (in_own, in_executor, to_thread)] == [
            ("run_in_executor", f"{work.__qualname__}"),
            ("run_in_executor", f"{work.__qualname__}"),
            ("asyncio.to_thread", f"{bridging.__qualname__}"),
        ]
        assert (bridged.mechanism, bridged.parent) == ("async_to_sync", to_thread)
    finally:
        ThreadPoolExecutor.submit = ours


def _fast_hook(original):
    def hook(self):
        return original(self)

    return hook


def test_a_fast_patch_whose_code_someone_rewrote_is_left_and_taken_up_again(caplog):
    """ddtrace set up after switchtrace patches the ThreadPoolExecutor.submit
    it finds, ours, by rewriting its code in place: uninstall() put the
    original back and took theirs out with it (their context no longer
    carried into executors, for good). Now it is left as a patch over ours,
    said once, and install() takes it up again rather than wrapping it."""
    own = vars(_Patched)["hook"]
    patcher = patches.Patcher(lambda: [(_Patched, "hook", patches.Fast(_fast_hook))], "test")
    patcher.install()
    ours = vars(_Patched)["hook"]
    ours.__code__ = ours.__code__.replace(co_name="rewritten")  # as ddtrace's wrapping does
    try:
        _left_said_and_taken_up(patcher, ours, caplog)
    finally:
        patcher.uninstall()
        _Patched.hook = own


def test_a_wrapt_patch_over_ours_read_off_the_class_is_taken_up_again():
    """New Relic set up after switchtrace wraps the attribute it reads off
    the class: ours as a wrapt bound wrapper, whose ``__wrapped__`` is past
    ours. Patcher looked for ours through ``__wrapped__``, missed it, and
    the next install() wrapped theirs, another layer for each uninstall()
    and install()."""
    own = vars(_Patched)["hook"]
    patcher = patches.Patcher(lambda: [(_Patched, "hook", _passing)], "test")
    patcher.install()
    theirs = wrapt.FunctionWrapper(_Patched.hook, _passing)
    _Patched.hook = theirs
    try:
        for _ in range(2):
            patcher.uninstall()
            patcher.install()
            assert vars(_Patched)["hook"] is theirs
        assert _Patched().hook() == "its own"
    finally:
        patcher.uninstall()
        _Patched.hook = own


@pytest.mark.parametrize("loop_factory", ["asyncio", "uvloop"])
def test_the_applications_own_closures_submitted_are_named_after_themselves(loop_factory):
    """Only a patch of submit's own wrapper (a closure made by a patch over
    ours, which called ours) is looked through: the application's closures
    holding one callable are named after themselves, made by a function
    named for submit, submitted by asyncio's run_in_executor, by uvloop's
    (compiled: the coroutine that made the closure is the frame that called
    ours), by the coroutine's own executor.submit, or by a function of its
    own named for submit that made it."""
    if loop_factory == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop

    def order_submit(order):
        notify = functools.partial(str, order)

        def save_and_notify():
            return notify()

        return save_and_notify

    async def submit():
        model = dict

        def create():
            return model(n=8)

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as executor:
            return (
                await loop.run_in_executor(None, order_submit(7)),
                await loop.run_in_executor(None, create),
                await asyncio.wrap_future(executor.submit(create)),
                await asyncio.wrap_future(now_submit(executor, 9)),
            )

    def now_submit(executor, order):
        notify = functools.partial(str, order)

        def save_and_notify():
            return notify()

        return executor.submit(save_and_notify)

    loop = new_loop()
    try:
        with tracer.recording() as record:
            assert loop.run_until_complete(submit()) == ("7", {"n": 8}, {"n": 8}, "9")
    finally:
        loop.close()
    assert [c.func.__qualname__ for c in record.crossings[1:]] == [
        f"{order_submit.__qualname__}.<locals>.save_and_notify",
        f"{submit.__qualname__}.<locals>.create",
        f"{submit.__qualname__}.<locals>.create",
        f"{now_submit.__qualname__}.<locals>.save_and_notify",
    ]


class _InstanceOnly:
    """Someone's descriptor that binds to instances alone."""

    def __init__(self, func):
        self.func = func

    def __get__(self, instance, owner):
        if instance is None:
            raise AttributeError("bound to instances alone")
        return functools.partial(self.func, instance)


def test_a_patch_under_ours_that_binds_to_instances_alone_is_bound_on_each_call():
    """Read off the class, such a descriptor raised out of install(), which
    was left half done (its later patches never made, and said to be
    installed); as found, it cannot be called with the instance first."""
    own = vars(_Patched)["hook"]
    _Patched.hook = _InstanceOnly(own)
    patcher = patches.Patcher(lambda: [(_Patched, "hook", patches.Fast(_fast_hook))], "test")
    try:
        patcher.install()
        assert _Patched().hook() == "its own"
    finally:
        patcher.uninstall()
        _Patched.hook = own


def test_a_thread_started_inside_a_start_leaves_the_outer_start_counted_once():
    """Someone's patch of Thread.start over ours that starts a thread of its
    own, with ours also on Timer.start over theirs: the inner start cleared
    what ours on Timer was counting, and ours on Thread counted the timer
    a second time."""
    helpers = []

    def starts_a_helper(wrapped, instance, args, kwargs):
        if isinstance(instance, threading.Timer) and not helpers:
            helpers.append(threading.Thread(target=str))
            helpers[0].start()
            helpers[0].join()
        return wrapped(*args, **kwargs)

    tracer.uninstall()
    before = {c: vars(c).get("start") for c in (threading.Thread, threading.Timer)}
    tracer.install()
    try:
        wrapt.wrap_function_wrapper(threading.Thread, "start", starts_a_helper)
        wrapt.wrap_function_wrapper(threading.Timer, "start", _passing)
        tracer.uninstall()
        tracer.install()  # ours on Timer.start now, over theirs
        with tracer.recording() as record:
            timer = threading.Timer(0, str)
            timer.start()
            timer.join()
        assert record.totals().threads_started == 2  # the helper and the timer
    finally:
        tracer.uninstall()
        threading.Thread.start = before[threading.Thread]
        del threading.Timer.start
        tracer.install()


class _RaisingMro(type):
    """A metaclass of the application's whose classes answer ``__mro__``
    with an error, and note what else they are asked."""

    asked: list[str] = []

    @property
    def __mro__(cls):
        raise RuntimeError("no mro here")

    def __getattr__(cls, name):
        _RaisingMro.asked.append(name)
        raise AttributeError(name)


def test_an_executor_class_whose_metaclass_raises_is_read_not_asked():
    """switchtrace looks for the patches over its submit in the executor's
    class: one whose metaclass raises on ``__mro__`` made every offload an
    internal error (logged, failing this suite) and went unrecorded. A
    subclass's submit calling super() holds its class (``__class__``),
    which was asked for a wrapt wrapper's attributes."""

    class Own(ThreadPoolExecutor, metaclass=_RaisingMro):
        def submit(self, fn, /, *args, **kwargs):
            def wrapped():
                return fn(*args, **kwargs)

            return super().submit(wrapped)

    executor_class = Own

    def work():
        return 1

    async def main():
        with executor_class(1) as executor:
            return await asyncio.get_running_loop().run_in_executor(executor, work)

    with tracer.recording() as record:
        assert asyncio.run(main()) == 1
    [_run, offload] = record.crossings
    assert (offload.mechanism, offload.func.__qualname__) == ("run_in_executor", work.__qualname__)
    assert _RaisingMro.asked == []
