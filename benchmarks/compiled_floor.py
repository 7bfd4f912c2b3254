"""Build and apply compiled_floor.c: switchtrace's hot path written in C, to
measure what a compiled core would cost per switch (see the C file's
comment for what it records and leaves out). Not part of switchtrace.

Used by ``switch_cost.py --compiled``; needs a C compiler and the
interpreter's headers (built with setuptools, once per run, in a temporary
folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import AsyncToSync, SyncToAsync

from switchtrace import tracer

SOURCE = Path(__file__).with_name("compiled_floor.c")

#: The designs of compiled_floor.c's sync_to_async side, by variant name.
DESIGNS = {"compiled recording": 0, "compiled, copied context": 1}

#: The floor's context variable, as switchtrace's: (record, crossing or None).
here: contextvars.ContextVar[Any] = contextvars.ContextVar("compiled-floor", default=None)

_SETUP = """
from setuptools import Extension, setup
setup(
    name="compiled_floor",
    ext_modules=[Extension("compiled_floor", ["compiled_floor.c"], extra_compile_args=["-O2"])],
    script_args=["build_ext", "--inplace", "--quiet"],
)
"""


class Unavailable(Exception):
    """The extension cannot be built here: the message says why."""


def build(work: Path) -> Path:
    """Compile the extension in the folder ``work`` and return its file;
    :class:`Unavailable` if there is no compiler, no headers or no
    setuptools."""
    if importlib.util.find_spec("setuptools") is None:
        raise Unavailable("--compiled needs setuptools (python -m pip install setuptools)")
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        raise Unavailable(f"--compiled needs the interpreter's C headers; {include} is missing")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        raise Unavailable(f"--compiled needs a C compiler; {compiler!r} is not on PATH")
    shutil.copy(SOURCE, work / SOURCE.name)
    done = subprocess.run([sys.executable, "-c", _SETUP], cwd=work, capture_output=True, text=True)
    built = sorted(work.glob("compiled_floor*.so")) + sorted(work.glob("compiled_floor*.pyd"))
    if done.returncode != 0 or not built:
        raise Unavailable(f"building compiled_floor.c failed:\n{done.stderr[-2000:]}")
    return built[0]


def load(path: Path) -> Any:
    """Import the extension built at ``path``."""
    spec = importlib.util.spec_from_file_location("compiled_floor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_and_load() -> Any:
    """:func:`build` in a temporary folder, removed once imported."""
    with tempfile.TemporaryDirectory(prefix="compiled-floor-") as work:
        return load(build(Path(work)))


class Floor:
    """The built extension and the five replacements it made, once per process."""

    def __init__(self, module: Any) -> None:
        self.module = module
        # asgiref's and the executors' own methods, never switchtrace's
        # patches of them: the replacements call these.
        was_installed = tracer.installed()
        tracer.uninstall()
        self.originals = {
            (SyncToAsync, "__call__"): vars(SyncToAsync)["__call__"],
            (AsyncToSync, "__call__"): vars(AsyncToSync)["__call__"],
            (AsyncToSync, "main_wrap"): vars(AsyncToSync)["main_wrap"],
            (ThreadPoolExecutor, "submit"): vars(ThreadPoolExecutor)["submit"],
            (CurrentThreadExecutor, "submit"): vars(CurrentThreadExecutor)["submit"],
        }
        replacements = module.setup(
            here,
            asyncio.events._get_running_loop,
            threading._active,  # type: ignore[attr-defined]
            *self.originals.values(),
        )
        self.replacements = dict(zip(self.originals, replacements, strict=True))
        if was_installed:
            tracer.install()

    @contextlib.contextmanager
    def recording(self, variant: str, max_events: int = 0) -> Iterator[Any]:
        """The compiled patches applied (switchtrace must be uninstalled) and
        a request's record current, in the design ``variant`` names; yields
        the record."""
        if tracer.installed():
            raise RuntimeError("switchtrace is installed: its patches would be replaced")
        self.module.set_design(DESIGNS[variant])
        for (owner, name), replacement in self.replacements.items():
            setattr(owner, name, replacement)
        record = self.module.Record(max_events=max_events)
        token = here.set((record, None))
        try:
            yield record
        finally:
            here.reset(token)
            for (owner, name), original in self.originals.items():
                setattr(owner, name, original)
