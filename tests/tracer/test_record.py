"""The request record as a data structure: what a crossing holds before
anything has happened to it."""

from __future__ import annotations

import asyncio
import functools
import importlib
import itertools
import os
import sys
import threading
import types

import pytest
import wrapt

from switchtrace import tracer
from switchtrace.tracer import describe
from switchtrace.tracer.describe import (
    MAX_DEPTH,
    CodeLocation,
    Description,
    code_location,
    describe_crossing,
    identity,
    qualified_name,
)
from switchtrace.tracer.record import ASYNCIO_RUN, SYNC_TO_ASYNC, Component


def test_a_crossing_just_made_holds_only_what_it_was_given():
    """Renderers read every field of the crossings they are handed (and of
    their parents, which may never have started): a crossing just made has
    each one, empty, and names itself."""
    thread = threading.current_thread()
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, thread, None, 7)
    assert (crossing.mechanism, crossing.bridge, crossing.func) == (SYNC_TO_ASYNC, None, len)
    assert (crossing.source_thread, crossing.parent, crossing.call_ns) == (thread, None, 7)
    assert (crossing.source_ident, crossing.claims, crossing.executor_object) == (None, None, None)
    assert (crossing.start_ns, crossing.end_ns, crossing.return_ns) == (None, None, None)
    assert (crossing.target_thread, crossing.loop_id, crossing.exception) == (None, None, None)
    assert (crossing.loop_created, crossing.threads_started) == (False, 0)
    assert (crossing.before_headers, crossing.description) == (True, None)
    assert crossing.returned_late is False
    assert (crossing.hop, crossing.queue_wait_ns, crossing.executor) == (False, None, None)
    assert repr(crossing) == "<Crossing sync_to_async len hop=False loop_created=False>"


def test_a_crossing_is_named_by_its_description_else_its_function():
    thread = threading.current_thread()
    partial = functools.partial(len)
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, partial, thread, None, 0)
    assert repr(crossing) == "<Crossing sync_to_async partial hop=False loop_created=False>"
    crossing.description = Description("views.index", None, None)
    assert repr(crossing) == "<Crossing sync_to_async views.index hop=False loop_created=False>"
    crossing.target_thread = threading.Thread()
    crossing.loop_created = True
    assert repr(crossing) == "<Crossing sync_to_async views.index hop=True loop_created=True>"


def test_a_record_just_made_holds_nothing_until_it_is_finished():
    ticks = iter([5, 9])
    record = tracer.RequestRecord("asgi", lambda: next(ticks))
    assert (record.kind, record.begin_ns) == ("asgi", 5)
    assert (record.end_ns, record.finished) == (None, False)
    assert (record.crossings, record.thread_starts, record.loop_creations) == ([], [], [])
    assert (record.attributes, record.extra, record.at_headers) == ({}, {}, None)
    assert (record.max_events, record.dropped) == (1000, 0)
    assert record.totals() == record.figures() == tracer.Figures(0, 0, 0, 0)
    # Its clock's times as nanoseconds since the epoch: begin_ns is wall_ns.
    assert record.wall_time(15) == record.wall_ns + 10
    record.attributes["url.path"] = "/sync/"
    assert repr(record) == "<RequestRecord asgi /sync/ switches=0 hops=0 loops=0 threads=0>"
    record.finish()
    assert (record.end_ns, record.finished) == (9, True)


def test_a_loop_creation_makes_the_loop_its_causes_only_where_the_cause_runs_in_it():
    record = tracer.RequestRecord("wsgi", itertools.count(10).__next__)
    thread = threading.current_thread()
    cause = tracer.Crossing(ASYNCIO_RUN, None, None, thread, None, 0)
    ahead = record.loop_created(1, thread, cause)
    assert (cause.loop_created, cause.loop_id) == (False, None)
    assert (ahead.at_ns, ahead.loop_id, ahead.thread, ahead.crossing) == (11, 1, thread, cause)
    outside = record.loop_created(2, thread, None, runs_in_it=True)
    runs = record.loop_created(3, thread, cause, runs_in_it=True, at_ns=4)
    assert (cause.loop_created, cause.loop_id) == (True, 3)
    assert [(c.at_ns, c.crossing) for c in (outside, runs)] == [(12, None), (4, cause)]
    assert record.loop_creations == [ahead, outside, runs]
    assert record.totals() == tracer.Figures(0, 0, 3, 0)


def test_the_figures_at_the_headers_are_those_of_the_first_mark():
    """The headers went out once: a later mark (a second response start, a
    wrapper marking again) returns the same figures, whatever came since."""
    record = tracer.RequestRecord("wsgi", itertools.count(10).__next__)
    thread = threading.current_thread()
    record.thread_started(thread, None)
    first = record.mark_headers()
    record.loop_created(1, thread, None)
    assert first == tracer.Figures(0, 0, 0, 1)
    assert record.mark_headers() is first is record.at_headers
    assert record.figures() == tracer.Figures(0, 0, 1, 1)


def test_describe_names_each_crossing_once_and_asks_until_a_component_is_found():
    """describe() names a crossing once; given a resolver, it asks it again
    for a crossing whose component is not known yet, and no more once it is."""
    record = tracer.RequestRecord("asgi", itertools.count().__next__)
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, threading.current_thread(), None, 0)
    record.crossings.append(crossing)
    view = Component("view", "views.index")
    asked = []

    def resolve(crossing, record):
        asked.append(crossing)
        return None if len(asked) == 1 else view

    record.describe()
    named = crossing.description
    assert (crossing.qualname, crossing.component) == ("len", None)
    record.describe()
    assert crossing.description is named
    for _ in range(3):
        record.describe(resolve)
    assert asked == [crossing, crossing]
    assert (crossing.qualname, crossing.component) == ("len", view)


def test_a_builtin_method_is_located_in_its_class_alone():
    """A method of a C type (``{}.get``, a socket's ``recv``) says no module:
    its namespace is its class, not the class after a dot."""
    assert code_location({}.get) == CodeLocation("get", "dict", None, None)
    assert code_location((1).__add__) == CodeLocation("__add__", "int", None, None)
    assert code_location(len) == CodeLocation("len", "builtins", None, None)


async def module_coroutine():
    pass


class CallableInstance:
    def __call__(self):
        pass


class OtherCallable:
    def __call__(self):
        pass


class CalledByC:
    """Called through a C function, and with a __code__ that is no code object
    (what a proxy answers)."""

    __call__ = staticmethod(len)
    __code__ = "no code"


class Nameless:
    """Neither __qualname__ nor __name__: named by its class."""

    def __call__(self, owner):
        pass


class Named(Nameless):
    def __init__(self):
        self.__name__ = "named"


def _wrapper_chain(layers):
    """Functions layer0 .. layer<layers>, each wrapping the one before."""
    inner = None
    for n in range(layers + 1):

        def layer():
            pass

        layer.__qualname__ = f"layer{n}"
        if inner is not None:
            layer.__wrapped__ = inner
        inner = layer
    return inner


def test_qualified_name_names_what_is_finally_called():
    assert qualified_name(functools.partial(functools.partial(len), "ab")) == "len"
    assert qualified_name(None) == "None"
    coroutine = module_coroutine()
    assert qualified_name(coroutine) == "module_coroutine"
    coroutine.close()
    assert qualified_name((1).__add__) == "int.__add__"  # a method-wrapper
    # A callable instance is named by its class, whatever its __name__ says.
    named = Named()
    assert (qualified_name(named), qualified_name(Nameless())) == ("Named", "Nameless")
    # A method is named by its function: its __qualname__, else __name__, else its class.
    owner = object()
    bound = (types.MethodType(named, owner), types.MethodType(Nameless(), owner))
    assert [qualified_name(method) for method in bound] == ["named", "Nameless"]
    # __wrapped__ is followed MAX_DEPTH layers deep, no further.
    assert qualified_name(_wrapper_chain(MAX_DEPTH + 8)) == "layer8"
    # A class is named as it is: a class-level __wrapped__ (a wrapt proxy's
    # property) is not what calling it calls: it was 'ObjectProxy.__wrapped__'.
    proxy_class = type("Settings", (wrapt.ObjectProxy,), {})
    assert qualified_name(proxy_class) == "Settings"
    assert code_location(proxy_class).function == "Settings"


def test_a_file_path_that_is_not_utf8_is_located_as_text():
    """A project in a directory named in Latin-1 ('café'): Python reads the
    byte as a lone surrogate, which the SDK's encoder refuses: code.filepath
    was left out of the span, logged as switchtrace's internal error. Its
    bytes are \\x escapes now; a coroutine's code too."""
    namespace: dict = {}
    exec(compile("def f():\n    pass\nasync def c():\n    pass\n", "/srv/caf\udce9/m.py", "exec"),
         namespace)  # fmt: skip
    coroutine = namespace["c"]()
    try:
        located = [code_location(namespace["f"]).filepath, code_location(coroutine).filepath]
    finally:
        coroutine.close()
    assert located == ["/srv/caf\\xe9/m.py"] * 2
    assert code_location(test_a_file_path_that_is_not_utf8_is_located_as_text).filepath == __file__


def test_code_location_of_what_is_no_function():
    coroutine = module_coroutine()
    line = module_coroutine.__code__.co_firstlineno
    # A coroutine object says no module: it is found by the code's file.
    assert code_location(coroutine) == CodeLocation("module_coroutine", __name__, __file__, line)
    coroutine.close()
    # A callable instance is located at its class's __call__; two classes' at their own.
    for cls in (CallableInstance, OtherCallable):
        line = cls.__call__.__code__.co_firstlineno
        assert code_location(cls()) == CodeLocation(
            "__call__", f"{__name__}.{cls.__name__}", __file__, line
        )
    assert code_location(CalledByC()) == CodeLocation("CalledByC", __name__, None, None)


@pytest.mark.parametrize("compiled_as", [None, "./sourceless_views.py"])
def test_a_coroutine_of_a_sourceless_module_is_located_in_its_module(
    compiled_as, tmp_path, monkeypatch
):
    """A module compiled beside its source (compileall -b) and the source
    removed: its ``__file__`` is the .pyc, its code's file the .py (as
    given to the compiler: relative, compiled in its directory); the
    coroutine (asyncio.run's, sourceless) lost its module."""
    import importlib
    import py_compile

    source = tmp_path / "sourceless_views.py"
    source.write_text("async def work():\n    pass\n")
    py_compile.compile(str(source), cfile=f"{source}c", dfile=compiled_as, doraise=True)
    source.unlink()
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("sourceless_views")
    try:
        assert module.__file__ == f"{source}c"
        coroutine = module.work()
        try:
            location = code_location(coroutine)
        finally:
            coroutine.close()
    finally:
        del sys.modules["sourceless_views"]
    assert location == CodeLocation("work", "sourceless_views", compiled_as or str(source), 1)


def test_a_coroutine_of_a_module_imported_in_place_of_another_is_located(tmp_path, monkeypatch):
    """A module removed from sys.modules and another of the same name
    imported from elsewhere (as tests do): the modules read again, though
    their count is as it was (the new module's coroutine had no module),
    and the first module freed (the second, at its address, was taken for
    it). And a module put in place of another that is not the newest
    entry (monkeypatch.setitem)."""
    import gc
    import importlib

    def locate(module):
        coroutine = module.work()
        try:
            return code_location(coroutine)
        finally:
            coroutine.close()

    located = []
    for folder in ("first", "second", "third"):
        (tmp_path / folder).mkdir()
        source = tmp_path / folder / "replaced_views.py"
        source.write_text("async def work():\n    pass\n")
        monkeypatch.syspath_prepend(str(tmp_path / folder))
        try:
            located.append(locate(importlib.import_module("replaced_views")))
        finally:
            del sys.modules["replaced_views"]
        gc.collect()
    assert located == [
        CodeLocation("work", "replaced_views", str(tmp_path / folder / "replaced_views.py"), 1)
        for folder in ("first", "second", "third")
    ]
    # In place of one that is not the newest entry.
    source = tmp_path / "in_place_views.py"
    source.write_text("async def work():\n    pass\n")
    spec = importlib.util.spec_from_file_location("in_place_views", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from switchtrace.tracer import describe

    assert describe._module_of(compile("", "<nothing>", "exec")) == ""  # (the modules read now)
    monkeypatch.setitem(sys.modules, "email", module)  # (imported long before)
    assert locate(module).namespace == "email"


def test_files_of_no_module_read_the_modules_once_each_until_they_change(monkeypatch):
    """Code of files no module is from (exec'd, relative compile paths):
    the modules are read once for each, not again at every lookup (two
    such files in turn read them every time: 0.9 ms a crossing with 2,000
    modules); once more when the modules change. A module object whose
    ``__dict__`` raises, and a name that is not a str, are passed over; a
    ``__file__`` of a str subclass is read as its text (its methods raised
    out of code_location)."""
    from switchtrace.tracer import describe

    class Odd(types.ModuleType):
        def __getattribute__(self, name):
            if name == "__dict__":
                raise RuntimeError("no dict")
            return super().__getattribute__(name)

    class OddText(str):
        def endswith(self, *args):
            raise RuntimeError("no endswith")

        def __eq__(self, other):
            raise RuntimeError("no eq")

        __hash__ = str.__hash__

    odd_file = types.ModuleType("odd_file")
    odd_file.__file__ = OddText(os.path.join(os.sep, "odd", "shop", "views.py"))
    monkeypatch.setitem(sys.modules, "odd_module", Odd("odd_module"))
    monkeypatch.setitem(sys.modules, "odd_file", odd_file)
    monkeypatch.setitem(sys.modules, 7, types.ModuleType("seven"))  # type: ignore[index]
    reads = []
    read = describe._module_names_by_file
    monkeypatch.setattr(describe, "_module_names_by_file", lambda: reads.append(1) or read())
    first, second = (compile("", f"<{n}>", "exec") for n in ("first", "second"))
    names = [describe._module_of(code) for code in (first, second) * 5]
    assert (names, len(reads)) == ([""] * 10, 2)
    monkeypatch.setitem(sys.modules, "newer_module", types.ModuleType("newer_module"))
    names = [describe._module_of(code) for code in (first, second) * 5]
    assert (names, len(reads)) == ([""] * 10, 4)
    assert (
        describe._module_of(
            test_functions_of_one_code_named_each_their_own_are_located_by_their_names.__code__
        )
        == __name__
    )
    relative = compile("", os.path.join(".", "shop", "views.py"), "exec")  # (compileall -b .)
    assert describe._module_of(relative) == "odd_file"  # its file read as the text it is


def test_functions_of_one_code_named_each_their_own_are_located_by_their_names():
    """A view factory's views share one code object and may each be named
    after what they list: each is located under its own name (the location
    is cached per code and name, not per code alone)."""

    def make_list_view(model):
        def view(request):
            pass

        view.__name__ = view.__qualname__ = f"{model}_list"
        return view

    line = make_list_view("order").__code__.co_firstlineno
    located = [code_location(make_list_view(model)) for model in ("order", "invoice", "order")]
    assert located == [
        CodeLocation("order_list", __name__, __file__, line),
        CodeLocation("invoice_list", __name__, __file__, line),
        CodeLocation("order_list", __name__, __file__, line),
    ]


class Fetcher:
    async def fetch(self):
        pass

    @staticmethod
    def decorated():
        @functools.wraps(module_coroutine)
        async def inner():
            pass

        return inner


def test_a_coroutine_is_named_and_located_by_its_code_after_it_ran():
    """What ``asyncio.run(view.fetch())`` bridges: the method's class is in
    its name and namespace on every Python version (3.10's code objects have
    no qualified name), and its module is found once the coroutine has run
    (when spans are made), its frame gone; a coroutine of a function that
    ``functools.wraps`` renamed is named by its own code, where it is located."""
    line = Fetcher.fetch.__code__.co_firstlineno
    coroutine = Fetcher().fetch()
    asyncio.run(coroutine)
    assert coroutine.cr_frame is None
    assert qualified_name(coroutine) == "Fetcher.fetch"
    assert code_location(coroutine) == CodeLocation("fetch", f"{__name__}.Fetcher", __file__, line)
    coroutine = Fetcher.decorated()()
    assert coroutine.__qualname__ == "module_coroutine"
    line = coroutine.cr_code.co_firstlineno
    if sys.version_info >= (3, 11):
        name = "Fetcher.decorated.<locals>.inner"
        namespace = f"{__name__}.Fetcher.decorated.<locals>"
    else:  # the code's own name alone
        name, namespace = "inner", __name__
    assert qualified_name(coroutine) == name
    assert code_location(coroutine) == CodeLocation("inner", namespace, __file__, line)
    coroutine.close()


def test_a_coroutine_of_code_from_no_module_file_has_no_module():
    namespace: dict = {}
    exec(compile("async def made():\n    pass\n", "<made>", "exec"), namespace)
    coroutine = namespace["made"]()
    assert code_location(coroutine) == CodeLocation("made", "", "<made>", 1)
    coroutine.close()


def test_a_coroutine_of_a_module_imported_later_is_located_in_it(tmp_path, monkeypatch):
    """The modules are looked up by file once, and again when a file is not
    found among them and modules were imported since."""
    coroutine = module_coroutine()
    assert code_location(coroutine).namespace == __name__
    coroutine.close()
    (tmp_path / "imported_later.py").write_text("async def later():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("imported_later")
    try:
        coroutine = module.later()
        location = code_location(coroutine)
        coroutine.close()
    finally:
        del sys.modules["imported_later"]
    assert location == CodeLocation("later", "imported_later", module.__file__, 1)


def test_code_locations_are_kept_per_code_object_and_bounded(monkeypatch):
    monkeypatch.setattr(describe, "MAX_CACHED", 2)
    monkeypatch.setattr(describe, "_locations", {})
    functions = [lambda: 0, lambda: 1, lambda: 2]  # three code objects
    first = code_location(functions[0])
    assert code_location(functions[0]) is first
    code_location(functions[1])
    assert len(describe._locations) == 2
    code_location(functions[2])  # full: cleared first
    assert list(describe._locations.values()) == [code_location(functions[2])]


class SiteResolver:
    """A resolver naming each crossing's site by what it bridged (the key
    None: not cacheable), its component by its qualified name."""

    def __init__(self, key):
        self.site = key

    def __call__(self, crossing, record):
        return Component("other", qualified_name(crossing.func))

    def key(self, crossing, record):
        return self.site(crossing)


def _crossing(func):
    return tracer.Crossing(SYNC_TO_ASYNC, None, func, threading.current_thread(), None, 0)


def test_a_site_is_described_once_and_its_description_shared():
    record = tracer.RequestRecord("asgi", itertools.count().__next__)
    alone = describe_crossing(_crossing(len), record)
    line = _wrapper_chain.__code__.co_firstlineno
    assert (alone.qualname, alone.component, alone.shared) == ("len", None, False)
    assert alone.location == CodeLocation("len", "builtins", None, None)
    assert describe_crossing(_crossing(len), record) is not alone
    by_func = SiteResolver(lambda crossing: crossing.func)
    shared = describe_crossing(_crossing(_wrapper_chain), record, by_func)
    assert (shared.qualname, shared.component, shared.shared) == (
        "_wrapper_chain",
        Component("other", "_wrapper_chain"),
        True,
    )
    assert shared.location == CodeLocation("_wrapper_chain", __name__, __file__, line)
    assert describe_crossing(_crossing(_wrapper_chain), record, by_func) is shared
    # A key that cannot be hashed, or None, makes a description per crossing.
    for unhashable in (SiteResolver(lambda crossing: ([],)), SiteResolver(lambda crossing: None)):
        made = [describe_crossing(_crossing(len), record, unhashable) for _ in range(2)]
        assert [(d.qualname, d.shared) for d in made] == [("len", False)] * 2
        assert made[0] is not made[1]


def test_the_descriptions_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(describe, "MAX_CACHED", 2)
    monkeypatch.setattr(describe, "_descriptions", {})
    record = tracer.RequestRecord("asgi", itertools.count().__next__)
    by_func = SiteResolver(lambda crossing: crossing.func)
    made = [describe_crossing(_crossing(func), record, by_func) for func in (len, abs)]
    assert list(describe._descriptions.values()) == made
    last = describe_crossing(_crossing(min), record, by_func)  # full: cleared first
    assert list(describe._descriptions.values()) == [last]


def test_identity_is_a_number_per_live_object_and_none_without_weak_references():
    first, second = CallableInstance(), CallableInstance()
    assert identity(first) == identity(first) != identity(second)
    assert (identity(1), identity("text"), identity(None)) == (None, None, None)


def _racing_record(trigger):
    """A record whose clock runs ``trigger(record)`` inside the read that
    returns ``at``, as another thread would between two steps."""
    times = itertools.count(1)
    armed = {}

    def clock():
        t = next(times)
        if armed.pop("at", None) == t:
            trigger(record)
        return t

    record = tracer.RequestRecord("block", clock)
    return record, armed


def _close(crossing, record):
    record.close(crossing)


def test_a_return_racing_the_requests_end_is_counted_as_switches_of_says():
    """A call the request left running returns as the request ends, on
    another thread: whichever way the two interleave, the figures and
    switches_of (which the spans, the console line and explain read) agree
    on whether its return is the request's. (The end's time was read, then
    the return counted before the record was marked finished: the figures
    counted a return that switches_of, by the times, put after the end.)"""
    other = threading.Thread()
    for interleaving in ("return inside the end", "end inside the return"):
        crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, threading.current_thread(), None, 0)
        if interleaving == "return inside the end":
            record, armed = _racing_record(functools.partial(_close, crossing))
            record.start(crossing, other)
            armed["at"] = 3  # finish()'s reading of the clock
            record.finish()
        else:
            record, armed = _racing_record(lambda r: r.finish())
            record.start(crossing, other)
            armed["at"] = 3  # close()'s reading of the clock
            record.close(crossing)
        assert record.finished and crossing.return_ns is not None
        assert record.switches_of(crossing) == record.context_switches == 1, interleaving
        assert record.thread_hops == 1, interleaving
        assert crossing.returned_late, interleaving


def test_a_return_before_the_end_is_counted_and_not_late():
    record = tracer.RequestRecord("block", itertools.count(1).__next__)
    crossing = tracer.Crossing(SYNC_TO_ASYNC, None, len, threading.current_thread(), None, 0)
    record.start(crossing, threading.Thread())
    record.close(crossing)
    record.finish()
    assert record.switches_of(crossing) == record.context_switches == 2
    assert not crossing.returned_late


class Outer:
    class Declined(Exception):
        pass


class Unplaced(Exception):
    __module__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("exception", "named"),
    [
        (ValueError(), "ValueError"),
        (asyncio.CancelledError(), "asyncio.exceptions.CancelledError"),
        (Outer.Declined(), "tests.tracer.test_record.Outer.Declined"),
        # A class that names no module (a C type's may not): its name alone.
        (Unplaced(), "Unplaced"),
    ],
)
def test_an_exception_is_named_fully_qualified_as_opentelemetry_names_it(exception, named):
    """error.type's SHOULD: the exception's fully-qualified class name, as the
    SDK's exception.type (a built-in's alone). It said Declined: which of a
    project's Declined did not show."""
    assert tracer.exception_type(exception) == named
