"""Name bridged callables the way a person would look for them in their code.

Decorators built with :func:`functools.wraps` (Django's
``convert_exception_to_response.<locals>.inner`` among them) are followed
through ``__wrapped__`` to what they wrap, partials to their function, bound
methods to the function's own qualified name, and callable instances to their
class. Runs after the response, never on the hot path.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import types
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

from ..text import utf8_text
from .weak import WeakIdentityMap

MAX_DEPTH = 32
#: Bound on the cached descriptions and code locations (cleared when full).
MAX_CACHED = 4096


def attribute(obj: object, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)`` that lets nothing out: the objects named
    here are the application's, whose ``__getattr__`` (a lazy proxy's, for
    one) may raise anything, and naming them must never fail."""
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def closure_values(func: object) -> list[Any]:
    """What the filled cells of ``func``'s closure hold, if it is a plain
    function (read from its C structures: nothing of the application's
    runs), else nothing."""
    values = []
    if type(func) is types.FunctionType:
        for cell in func.__closure__ or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:  # a cell not filled yet
                continue
    return values


def is_of_type(obj: object, cls: type | tuple[type, ...]) -> bool:
    """isinstance by the object's type alone: isinstance also asks the object
    for its ``__class__`` when the type does not match, which a lazy object
    (Django's SimpleLazyObject: ``request.user``) answers by evaluating itself,
    and a proxy by anything at all."""
    return issubclass(type(obj), cls)


#: Set on switchtrace's plain-function patches (the tracer's Fast ones):
#: a method of theirs read off an object is followed to the method it
#: replaced, bound to the same object, as a wrapt proxy's bound one is.
PATCH_MARK = "__switchtrace_patch__"


def unwrap(obj: Any) -> Any:
    """Follow ``__wrapped__`` and partials to the innermost callable."""
    for _ in range(MAX_DEPTH):
        if is_of_type(obj, functools.partial):
            obj = obj.func
            continue
        if is_of_type(obj, types.MethodType) and attribute(obj.__func__, PATCH_MARK) is True:
            # (response.close, given to sync_to_async by Django)
            replaced = attribute(obj.__func__, "__wrapped__")
            if callable(replaced):
                obj = types.MethodType(replaced, obj.__self__)
                continue
        inner = attribute(obj, "__wrapped__") if not is_of_type(obj, type) else None
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def qualified_name(obj: object) -> str:
    """``Class.method`` or ``function`` for what ``obj`` finally calls."""
    target = unwrap(obj)
    if target is None:
        return "None"
    if is_of_type(target, types.CoroutineType):
        return _coroutine_qualname(target)
    if is_of_type(target, types.MethodType):
        return _qualname_of(target.__func__)
    if is_of_type(target, (types.FunctionType, types.BuiltinFunctionType, type)):
        return _qualname_of(target)
    qualname = attribute(target, "__qualname__")
    if isinstance(qualname, str):
        return qualname
    # A callable instance (a middleware object, a handler): name its class.
    return type(target).__qualname__


def _coroutine_qualname(coroutine: types.CoroutineType) -> str:
    """The qualified name of a coroutine's code (``OrderView.fetch``)."""
    code = coroutine.cr_code
    qualname = getattr(code, "co_qualname", None)
    if isinstance(qualname, str):
        return qualname
    # Python 3.10: code has no qualified name; the coroutine's own is its
    # function's, which functools.wraps may have given another function's.
    own = coroutine.__qualname__
    return own if own.rpartition(".")[2] == code.co_name else code.co_name


#: The modules' names by the files they were loaded from (see :func:`_module_of`).
_modules_by_file: dict[str, str] = {}
#: What :data:`_modules_by_file` was read from (see :func:`_modules_now`).
_modules_seen: tuple[int, object, Any] = (0, None, None)
#: The files not found since the modules last changed: each had the
#: modules read again once (see :func:`_module_of`).
_files_missed: set[str] = set()
#: The modules' names by the relative paths sourceless code was compiled
#: from, found in :data:`_modules_by_file` (emptied with it).
_modules_by_relative_file: dict[str, str] = {}


def _modules_now() -> tuple[int, object, Any]:
    """``sys.modules`` as told apart from what it was, without reading it
    whole: its size, its newest entry (dicts keep their order) and that
    module (a weak reference: another one at its address once it is freed
    is not taken for it, and it is not kept alive). A module removed and
    another of the same name imported in its place (a test's) leaves the
    size as it was."""
    modules = sys.modules
    try:
        newest = next(reversed(modules))
        module = modules.get(newest)
    except Exception:  # (empty; changed meanwhile; a key whose hash raises)
        return len(modules), None, None
    try:
        return len(modules), newest, weakref.ref(module)
    except TypeError:  # (an object that takes no weak reference: itself)
        return len(modules), newest, functools.partial(_itself, module)


def _itself(value: object) -> object:
    return value


def _modules_changed(now: tuple[int, object, Any]) -> bool:
    """Whether ``now`` (:func:`_modules_now`) is not what the map was read from."""
    size, newest, module = now
    seen_size, seen_newest, seen_module = _modules_seen
    return (
        size != seen_size
        or newest is not seen_newest
        or module is None
        or seen_module is None
        or module() is not seen_module()
    )


def _module_names_by_file() -> dict[str, str]:
    """The modules' names by their files (see :func:`_module_of`)."""
    by_file: dict[str, str] = {}
    for module_name, module in list(sys.modules.items()):
        if type(module_name) is not str or not is_of_type(module, types.ModuleType):
            continue
        try:
            path = module.__dict__.get("__file__")
            if isinstance(path, str):
                path = str.__str__(path)  # (a subclass's own methods not asked)
                by_file.setdefault(path, module_name)
                if path.endswith(".pyc"):
                    # Sourceless (compileall -b): its code's file is the
                    # source it was compiled from, beside it.
                    by_file.setdefault(path[:-1], module_name)
        except Exception:  # (a module object of the project's making, whose __dict__ raises)
            continue
    return by_file


def _module_of(code: types.CodeType) -> str:
    """The name of the module defined in the file ``code`` is from ("" if
    none): a coroutine object does not say its module, and after it has run
    (when spans are made) its frame and globals are gone. Looked up in the
    modules loaded, by their ``__file__`` read from their ``__dict__`` alone
    (a lazy module's ``__getattr__`` is not asked; a sourceless one's, its
    ``.pyc``, by the source beside it, or the path relative to the current
    directory it was compiled in); read again when a file is not found,
    once for each such file (a module put in place of another, not the
    newest: ``monkeypatch.setitem(sys.modules, ...)``) until the modules
    change (see :func:`_modules_now`)."""
    try:
        return _looked_up(code.co_filename)
    except Exception:  # (a module or key of the project's making whose methods raise)
        return ""


def _looked_up(filename: str) -> str:
    global _modules_by_file, _modules_seen, _modules_by_relative_file, _files_missed
    name = _modules_by_file.get(filename)
    if name is None:
        now = _modules_now()
        changed = _modules_changed(now)
        if changed or filename not in _files_missed:
            by_file = _module_names_by_file()
            name = by_file.get(filename)
            missed = set() if changed else {f for f in _files_missed if f not in by_file}
            if name is None and len(missed) < MAX_CACHED:  # (past it, each one read again)
                missed.add(filename)
            # Replaced whole: another thread naming a crossing reads either.
            _modules_by_file, _modules_seen, _files_missed = by_file, now, missed
            _modules_by_relative_file = {}
    if (
        name is None
        and filename.endswith(".py")
        and os.sep in filename
        and not os.path.isabs(filename)
    ):
        # Compiled from a relative path (``compileall -b .`` in a
        # Dockerfile: './shop/views.py'), which a sourceless module's code
        # keeps: the one module whose file ends with it.
        name = _modules_by_relative_file.get(filename)
        if name is None:
            tail = os.sep + os.path.normpath(filename)
            found = {module for path, module in _modules_by_file.items() if path.endswith(tail)}
            name = _modules_by_relative_file[filename] = found.pop() if len(found) == 1 else ""
    return name or ""


def _qualname_of(func: object) -> str:
    name = attribute(func, "__qualname__") or attribute(func, "__name__")
    if isinstance(name, str):
        return name
    return type(func).__qualname__


@dataclass(frozen=True)
class CodeLocation:
    """Where a bridged callable is defined (OpenTelemetry's ``code.*`` attributes)."""

    function: str
    namespace: str
    filepath: str | None
    lineno: int | None


_locations: dict[tuple[types.CodeType, str, str], CodeLocation] = {}


def code_location(obj: object) -> CodeLocation:
    """Where ``obj`` (through its wrappers) is defined; cached per code object,
    name and module (the functions a factory makes share their code, and it
    may name each its own: ``view.__qualname__ = f"{model}_list"``)."""
    target = unwrap(obj)
    func = target.__func__ if is_of_type(target, types.MethodType) else target
    code = attribute(func, "__code__")
    if type(code) is types.CodeType:
        module = attribute(func, "__module__")
        key = (code, _qualname_of(func), module if type(module) is str else "")
        location = _locations.get(key)
        if location is None:
            if len(_locations) >= MAX_CACHED:
                _locations.clear()
            location = _locations[key] = _code_location(target)
        return location
    return _code_location(target)


class Generator:
    """What :func:`code_location` needs of a generator, synchronous or
    asynchronous, without the generator (its frame holds what it was made
    with, the request's objects): its code and qualified name."""

    __slots__ = ("code", "qualname")

    def __init__(self, code: types.CodeType, qualname: str) -> None:
        self.code = code
        self.qualname = qualname

    @classmethod
    def of(cls, iterator: object) -> Generator | None:
        """For a generator or an asynchronous generator (read from their C
        structures: nothing of the application's runs), else None."""
        kind = type(iterator)
        if kind is types.GeneratorType:
            generator = cast("types.GeneratorType[Any, Any, Any]", iterator)
            return cls(generator.gi_code, generator.__qualname__)
        if kind is types.AsyncGeneratorType:
            agenerator = cast("types.AsyncGeneratorType[Any, Any]", iterator)
            return cls(agenerator.ag_code, agenerator.__qualname__)
        return None


def _code_location(target: Any) -> CodeLocation:
    if is_of_type(target, types.CoroutineType):
        return _location_in(target.cr_code, _coroutine_qualname(target))
    if type(target) is Generator:
        return _location_in(target.code, target.qualname)
    func = target.__func__ if is_of_type(target, types.MethodType) else target
    if not is_of_type(func, types.FunctionType):
        call = getattr(type(func), "__call__", None)  # noqa: B004
        func = call if isinstance(call, types.FunctionType) else func
    func_code = attribute(func, "__code__")
    if type(func_code) is not types.CodeType:
        func_code = None
    qualname = _qualname_of(func)
    namespace, _, function = qualname.rpartition(".")
    module = attribute(func, "__module__")
    if not isinstance(module, str):  # a C type's method ({}.get) says none
        module = ""
    return CodeLocation(
        function=function,
        namespace=f"{module}.{namespace}" if module and namespace else module or namespace,
        filepath=utf8_text(func_code.co_filename) if func_code is not None else None,
        lineno=func_code.co_firstlineno if func_code is not None else None,
    )


def _location_in(code: types.CodeType, qualname: str) -> CodeLocation:
    """The location of ``code``, which has run (its frame, and the globals
    that say its module, may be gone), named ``qualname``."""
    namespace, _, function = qualname.rpartition(".")
    module = _module_of(code)
    return CodeLocation(
        function=function,
        namespace=f"{module}.{namespace}" if module and namespace else module or namespace,
        filepath=utf8_text(code.co_filename),
        lineno=code.co_firstlineno,
    )


class Description:
    """What a crossing bridged, named once per call site: the qualified name,
    the component that caused it and where the callable is defined.

    Shared by every crossing of the same site (compared by identity), so that
    renderers can cache what they derive from it."""

    __slots__ = ("component", "location", "qualname", "shared")

    def __init__(self, qualname: str, component: Any, location: CodeLocation | None) -> None:
        self.qualname = qualname
        self.component = component
        self.location = location
        #: Whether this description is cached for its site (and shared by the
        #: crossings made there), rather than made for one crossing.
        self.shared = False


#: A serial number per object that is part of a site's key, for as long as
#: the object lives (see :func:`identity`).
_identities: WeakIdentityMap[int] = WeakIdentityMap()
_serials = itertools.count()


def identity(obj: object) -> int | None:
    """A number that stands for ``obj`` in a cache key, by identity, without
    keeping it alive: a key that held the application's objects (a function
    made per request, whose defaults hold the request) would keep them for
    as long as the cache does. Never reused, so a key made with it never
    matches another object's after this one dies; asks the object nothing
    (no ``__hash__``, no ``__eq__``). None for what has no weak references."""
    serial = _identities.get(obj)
    if serial is None:
        serial = next(_serials)
        try:
            _identities[obj] = serial
        except TypeError:
            return None
    return serial


_descriptions: dict[Hashable, Description] = {}


def describe_crossing(crossing: Any, record: Any, resolve: Any = None) -> Description:
    """The description of ``crossing``; cached per site when ``resolve`` has a
    ``key(crossing, record)`` method that names the site (None: not cacheable)."""
    key_of = getattr(resolve, "key", None)
    site = key_of(crossing, record) if key_of is not None else None
    key = None if site is None else (resolve, site)
    description = None
    if key is not None:
        try:
            description = _descriptions.get(key)
        except Exception:  # a part that cannot be hashed (a module that is no str)
            key = None
    if description is None:
        # A resolver may name the crossing after other code than the callable
        # bridged: a framework's dispatcher after the application's code it
        # runs (``subject(crossing, record) -> (name, callable) | None``).
        subject_of = getattr(resolve, "subject", None)
        subject = subject_of(crossing, record) if subject_of is not None else None
        func = crossing.func if subject is None else subject[1]
        try:
            location: CodeLocation | None = code_location(func)
        except Exception:  # an exotic callable: described without code.*
            location = None
        description = Description(
            qualified_name(func) if subject is None else subject[0],
            resolve(crossing, record) if resolve else None,
            location,
        )
        if key is not None:
            if len(_descriptions) >= MAX_CACHED:
                _descriptions.clear()
            _descriptions[key] = description
            description.shared = True
    return description
