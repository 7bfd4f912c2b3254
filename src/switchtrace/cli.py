"""The ``switchtrace`` command (also ``python -m switchtrace``).

Bad input (arguments, the files they name, DJANGO_SETTINGS_MODULE and the
settings) gets one line naming what is wrong and what is allowed, and exit
status 2; an error of the project's own code (a view raising under
``explain --measure``, answering with a status of 400 or more, a middleware
answering before the view, a response still streaming after 30 s) one line
naming the exception and where, or what was answered, and exit status 1;
Ctrl-C one line and exit status 130, at once (SIGTERM, while ``bench
--driver server`` has its servers running, 143), the servers ended first;
never a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import logging
import os
import select
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .text import argument, without_escapes

if TYPE_CHECKING:
    import subprocess


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from .example import PROJECT_HELP, project_argument

    parser = _Parser(
        prog="switchtrace",
        description="Count the sync/async context switches of Django requests.",
    )
    parser.add_argument("--version", action="version", version=f"switchtrace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = commands.add_parser(
        "demo",
        help="serve the example project in-process and show each endpoint's switches",
        description="Serve the example project in-process under WSGI and ASGI, for each "
        "endpoint and middleware variant, and print its switches, hops, loops and threads.",
    )
    demo.add_argument("--project", type=project_argument, help=PROJECT_HELP)
    explain = commands.add_parser(
        "explain",
        help="predict each kind of request's switches from MIDDLEWARE, with causes and fixes",
        description="Predict the context switches of each kind of request from the project's "
        "MIDDLEWARE (DJANGO_SETTINGS_MODULE; a checkout's example project if unset), with "
        "their causes and fixes.",
        epilog="Exit status: 0; 2 for bad input (an argument, DJANGO_SETTINGS_MODULE, "
        "MIDDLEWARE, ROOT_URLCONF, or an ALLOWED_HOSTS that no request can pass); 1 when the "
        "project's code raises, or answers a measured request with a status of 400 or more "
        "(a 404, a 403), from a middleware before the view, or with a stream still going "
        "after 30 s: figures that are then not the view's.",
    )
    explain.add_argument("--url", help="a URL of the project: predict for its view")
    explain.add_argument(
        "--measure", action="store_true", help="also serve one request of each kind (needs --url)"
    )
    explain.add_argument(
        "--project", type=project_argument, help="a directory to put on sys.path first"
    )
    from .bench import add_arguments

    add_arguments(
        commands.add_parser(
            "bench",
            help="benchmark sync vs async hello-world under WSGI and ASGI",
            description="Benchmark the example project's endpoints under WSGI and ASGI for "
            "each middleware variant and concurrency (Django ticket #37177, and the forum "
            "thread 'Async Performance' of ticket #31224).",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the process's own command, not a call from Python code
        _watch_for_ctrl_c()
    try:
        parser = _parser()
        args, unrecognized = parser.parse_known_args(argv)
    except KeyboardInterrupt:  # while the modules are imported
        _interrupted(None)
    except OSError as exc:
        # Unbuffered (python -u), argparse writes --help and --version at
        # once, and Python 3.10's argparse lets a write's error out.
        _discard_stdout()
        if isinstance(exc, BrokenPipeError):
            return 0
        print(f"switchtrace: error: cannot write standard output: {exc.strerror or exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    except SystemExit:
        # --help, --version: what they printed is flushed here, not at exit,
        # where a reader gone away (| true) or a full disk was a traceback.
        if sys.stdout is not None:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _discard_stdout()
            except OSError as exc:
                _discard_stdout()
                print(
                    f"switchtrace: error: cannot write standard output: {exc.strerror or exc}",
                    file=sys.stderr,
                )
                raise SystemExit(1) from None
        raise
    if unrecognized:
        _unrecognized(parser, args.command, unrecognized, sys.argv[1:] if argv is None else argv)
    if args.command is None:
        try:
            parser.print_help()
            sys.stdout.flush()  # here, not at exit: see below
        except OSError:  # a reader gone away, a full disk
            _discard_stdout()
        return 2
    global _command
    _command = args.command
    if sys.stdout is None:  # started with its standard output closed (>&-)
        if sys.stderr is not None:
            print(
                f"switchtrace {args.command}: error: standard output is closed; allowed: a "
                "terminal, a file or a pipe (>/dev/null to discard what it prints)",
                file=sys.stderr,
            )
        return 2
    for stream in (sys.stdout, sys.stderr):
        _plain_where_needed(stream)
    status = _guarded(args)
    try:
        sys.stdout.flush()  # here, not at exit, where a reader gone away is a traceback
    except BrokenPipeError:
        _reader_gone()
    except OSError as exc:  # a full disk (> out.json), a file system gone
        _discard_stdout()
        print(
            f"switchtrace {args.command}: error: cannot write standard output: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return status


#: What the commands print beyond ASCII, and its ASCII stand-in.
_PLAIN = {"→": "->", "—": "-", "µ": "u", "…": "..."}


def _plain_text(error: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    out = bytearray()
    for character in error.object[error.start : error.end]:
        if "\udc80" <= character <= "\udcff":  # a byte surrogateescape read: written back
            out.append(ord(character) - 0xDC00)
        else:
            # Else as standard error writes it: 'caf\\xe9' names what 'caf?' hid.
            stand_in = _PLAIN.get(character)
            out += stand_in.encode() if stand_in else character.encode("ascii", "backslashreplace")
    return bytes(out), error.end


codecs.register_error("switchtrace.plain", _plain_text)


def _plain_where_needed(stream: Any) -> None:
    """A stream whose encoding cannot write what the commands print (ASCII,
    as LC_ALL=C gives with UTF-8 mode off, or PYTHONIOENCODING=ascii) writes
    it in ASCII ('->' for '→', 'caf\\xe9' for 'café'); it raised UnicodeEncodeError, and the
    command ended with it (exit status 1, its output cut short)."""
    try:
        if stream.errors not in ("strict", "surrogateescape"):
            return  # (standard error's backslashreplace loses nothing)
        "".join(_PLAIN).encode(stream.encoding)
    except UnicodeEncodeError:
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="switchtrace.plain")
    except (AttributeError, LookupError, TypeError):  # no encoding to go by
        pass


def _discard_stdout() -> None:
    """What is still buffered for standard output goes nowhere: the
    interpreter's last flush would fail again, as a traceback."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _unrecognized(
    parser: argparse.ArgumentParser,
    command: str | None,
    unrecognized: list[str],
    argv: Sequence[str],
) -> NoReturn:
    """Exit status 2 naming the arguments not understood and the options of
    the parser they were given to: the command's, or the top level's when
    they come before the command."""
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    argv = list(argv)
    target: argparse.ArgumentParser = parser
    tail = f", and a command: {', '.join(commands.choices)}"
    if command is not None:
        # Before the command stand only options (the top level takes no other
        # positional): an argument found there was given to the top level; one
        # found only after it (the command's own name repeated: "demo demo"),
        # to the command.
        before = argv[: argv.index(command)] if command in argv else []
        if unrecognized[0] not in before:
            target = commands.choices[command]
            tail = ""
    options = [
        max(action.option_strings, key=len) for action in target._actions if action.option_strings
    ]
    given = " ".join(map(argument, unrecognized))
    target.error(f"unrecognized arguments: {given}; allowed: {', '.join(options)}{tail}")


def _guarded(args: argparse.Namespace) -> int:
    """The command's exit status; what goes wrong is one line on stderr."""
    from .example import ProjectNotFound, SetupError

    def error(said: object) -> None:
        # (What the project's settings or code raised: its words, escapes and all.)
        print(f"switchtrace {args.command}: error: {without_escapes(str(said))}", file=sys.stderr)

    try:
        return _run(args)
    except ProjectNotFound as exc:
        error(exc)
        return 2
    except SetupError as exc:
        error(exc)
        return exc.status
    except KeyboardInterrupt:
        _interrupted(args.command)
    except Exception as exc:  # the project's code raised while served, or ours
        if isinstance(exc, BrokenPipeError) and _reader_gone():
            return 0  # | head had what it wanted: nothing to say
        from .example import describe_error

        error(describe_error(exc))
        return 1


def _run(args: argparse.Namespace) -> int:
    from .example import close_server_loop

    try:
        if args.command == "demo":
            from .demo import run

            return run(args.project, sys.stdout)
        if args.command == "explain":
            return _explain(args)
        from .bench import run as bench

        return bench(args)
    finally:
        close_server_loop()


#: The command running, for the Ctrl-C watcher's line.
_command: str | None = None
#: The Ctrl-C watcher's thread (see _watch_for_ctrl_c), when there is one.
_watcher: threading.Thread | None = None
#: Taken by the first of the main thread and the watcher to end the process.
_ending = threading.Lock()


def own_threads() -> int:
    """Threads of this process that are the command line's, not the served
    project's (``switchtrace bench`` leaves them out of its peak threads)."""
    return 1 if _watcher is not None and _watcher.is_alive() else 0


def _watch_for_ctrl_c() -> None:
    """The kernel hands a signal sent to the process to any of its threads
    that does not block it. Taken by another thread than the main one (the
    per-request thread of a view, an executor's), Python's handler only
    marks it for the main thread, which may be asleep in the event loop's
    wait with nothing due (or in a lock, in a view served in it) and never
    see it: the command went on for ever. Every signal with a Python handler
    writes its number to the wakeup file descriptor, whichever thread took
    it; a thread of ours reads it and ends the process at a SIGINT."""
    global _watcher
    if _watcher is not None or threading.current_thread() is not threading.main_thread():
        return
    try:
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (OSError, ValueError):  # not possible here: the main thread's Ctrl-C as before
        return

    def watch() -> None:
        while True:
            try:
                taken = os.read(read, 64)
            except OSError:
                return
            if not taken:
                return
            if signal.SIGINT in taken:
                _interrupted(_command)
            for signum in _ENDING:  # only while a handler is set: see adopt()
                # Not one the project handles itself (a SIGHUP that reopens
                # its logs): its handler is the main thread's to run.
                if signum in taken and not _projects_own(signal.getsignal(signum)):
                    _interrupted(_command, signum)

    _watcher = threading.Thread(target=watch, name="switchtrace Ctrl-C", daemon=True)
    _watcher.start()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _keyboard_interrupt)
    global _unraisablehook_before
    _unraisablehook_before = sys.unraisablehook
    sys.unraisablehook = _unraisable


def _keyboard_interrupt(signum: int, frame: Any) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt in the main thread), under
    another name: asyncio.run (Python 3.11+) puts its handler in place of
    Python's, and only of Python's. Its handler cancels the main task from
    wherever the main thread is, and a task cancelled between
    ``_set_result_unless_cancelled``'s test and its ``set_result`` (an
    ``asyncio.sleep`` ending) logged "Exception in callback ...
    InvalidStateError" with a traceback before the command's line (``bench
    --driver server``, whose load runs in asyncio.run, seen under load).

    A coroutine made and not yet awaited where it lands (asyncio's
    open_connection calling loop.create_connection) is dropped as the
    interrupt unwinds, and would say "coroutine ... was never awaited" with
    its source line before the command's own line: the command is ending,
    and that warning is no longer said (a fresh-clone CI run, Python 3.12).
    Nor is asyncio's log of a task it leaves pending ("Task was destroyed
    but it is pending!": Ctrl-C while asyncio.run closed its loop)."""
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    logging.getLogger("asyncio").disabled = True
    raise KeyboardInterrupt


#: The hook :func:`_unraisable` passes on what is not Ctrl-C to.
_unraisablehook_before: Any = sys.__unraisablehook__


def _unraisable(unraisable: Any) -> None:
    """Ctrl-C taken while the main thread runs a weakref callback or a
    ``__del__`` (asyncio's WeakSet of tasks dropping one that has ended):
    Python reports the KeyboardInterrupt raised there as "Exception ignored
    in ..." with a traceback, and drops it. It ends the command here, as it
    would have where it was dropped."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _interrupted(_command)
    _unraisablehook_before(unraisable)


def _interrupted(command: str | None, signum: int = signal.SIGINT) -> NoReturn:
    """Ctrl-C (or SIGTERM, SIGHUP or SIGQUIT, see :func:`adopt`): one line,
    exit status 128 + the signal's number, at once. A request interrupted in
    the middle leaves its threads behind (the per-request thread of Django's
    ThreadSensitiveContext, still running the view; an executor's worker
    started but not yet known to the exit hook that stops it), which the
    interpreter's exit would wait for, and its coroutines, which it would
    close in another context, each with a traceback. The processes the
    command started are ended first, since the command's own clean-up does
    not run; what the command printed goes out first. A signal arriving
    meanwhile (a second Ctrl-C, SIGTERM again) is ignored: taken by the main
    thread, which may be the one ending, it would wait for that ending for
    ever (SIGTERM) or break out of it (KeyboardInterrupt)."""
    if threading.current_thread() is threading.main_thread():
        for ignored in (signal.SIGINT, *_ENDING):
            try:
                signal.signal(ignored, signal.SIG_IGN)
            except (OSError, ValueError):
                pass
    if threading.current_thread() is not threading.main_thread():
        with _started:  # a process the main thread is starting is ended too: see start()
            _started.wait_for(lambda: not _starting, 5)
    _ending.acquire()  # the other one, main thread or watcher, waits for the exit
    _end_children()
    import shutil

    for path in list(_scratch):  # what the children wrote there is theirs no more
        shutil.rmtree(path, ignore_errors=True)
    example = sys.modules.get("switchtrace.example")  # (not imported: made nothing)
    if example is not None:
        example.remove_temporary()  # the installed example's database
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # (None: closed as Python started)
                stream.flush()
        except (OSError, ValueError):  # a reader gone away, a closed stream
            pass
    try:
        prog = f"switchtrace {command}" if command else "switchtrace"
        said = _SAID.get(signum, "interrupted")
        print(f"{prog}: {said}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


#: Processes the command started that would outlive it (the servers of
#: ``bench --driver server``), see :func:`adopt`.
_children: set[subprocess.Popen[bytes]] = set()
#: The temporary directories of :func:`scratch_directory` in use.
_scratch: set[str] = set()


@contextlib.contextmanager
def scratch_directory(prefix: str) -> Iterator[str]:
    """A temporary directory, removed when the block ends, and also when an
    interruption ends the command without its clean-up (:func:`_interrupted`:
    ``bench --overhead``'s span files grew there, for ever); SIGTERM, SIGHUP
    and SIGQUIT end the command through it meanwhile."""
    import tempfile

    directory = tempfile.TemporaryDirectory(prefix=prefix)
    _scratch.add(directory.name)
    _catch_ending()  # their default action skipped the clean-up too
    try:
        yield directory.name
    finally:
        directory.cleanup()
        _scratch.discard(directory.name)
        _release_ending()


#: The signals besides Ctrl-C that end the command, its processes first,
#: while it has some (see :func:`adopt`): ``timeout``'s or systemd's SIGTERM,
#: and the terminal's SIGHUP (closed) and SIGQUIT (Ctrl-\), which no longer
#: reach the processes themselves (see :func:`start`): at their default
#: action, they killed the command alone and left its servers running.
_ENDING: tuple[int, ...] = (
    signal.SIGTERM,
    *(getattr(signal, name) for name in ("SIGHUP", "SIGQUIT") if hasattr(signal, name)),
)
#: What the line says of each.
_SAID: dict[int, str] = {
    signal.SIGTERM: "terminated",
    getattr(signal, "SIGHUP", -1): "hung up",
    getattr(signal, "SIGQUIT", -1): "quit",
}
#: The handlers :func:`adopt` put ours in place of, while ours are set.
_before: dict[int, Any] = {}


#: Whether the main thread is starting a process with :func:`start` (until
#: the process is adopted).
_starting = False
_started = threading.Condition()
#: The first Ctrl-C or SIGTERM the main thread took while it started one.
_deferred: int | None = None


#: What :func:`start` runs a process through on Linux, in front of it until
#: it execs it (same pid, same descriptors, same environment): it asks the
#: kernel for SIGTERM when the thread that started it ends
#: (``PR_SET_PDEATHSIG``, kept across the exec; not passed on to what the
#: process starts), so that a command killed by SIGKILL, which it cannot act
#: on, still ends its servers, in a session of their own. A command that
#: ended before the request was made is seen as a new parent: the process
#: is then not run at all. ``-I -S``: only the standard library, and quickly.
#: SIGPIPE and SIGXFSZ, which this interpreter ignores, are put back to
#: their default, as Popen's ``restore_signals`` does. The environment is
#: the one it was given (``/proc/self/environ``): in the C locale (no LANG:
#: cron, systemd, a bare container) the interpreter's coercion (PEP 538,
#: not turned off by ``-I``) set LC_CTYPE=C.UTF-8 in its own, and a Python
#: server that got it had no UTF-8 mode; kept as exec'd unless an entry
#: cannot be passed back (no name, or a name twice).
_GUARD = """\
import os, signal, sys
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
except Exception:  # no ctypes, or refused: run it as before
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:  # as given, before this interpreter coerced a C locale (LC_CTYPE=C.UTF-8)
    with open("/proc/self/environ", "rb") as given:
        entries = given.read().split(b"\\0")[:-1]
    env = dict(entry.split(b"=", 1) for entry in entries if entry.find(b"=") > 0)
except OSError:
    entries = env = None
try:
    if entries is not None and len(env) == len(entries):
        os.execve(sys.argv[2], sys.argv[2:], env)
    os.execv(sys.argv[2], sys.argv[2:])
except OSError as exc:  # a script whose interpreter is missing: as a shell says it
    try:
        os.write(2, f"{sys.argv[2]}: {exc.strerror}\\n".encode(errors="replace"))
    except OSError:
        pass
    os._exit(127)
"""


def _with_the_guard(command: Sequence[str], options: dict[str, Any]) -> list[str]:
    """``command`` run through :data:`_GUARD`, where it can be: on Linux,
    from the main thread (another thread may end before the process), a
    program given by its absolute path and allowed to run (a missing program
    is still Popen's OSError; one the kernel then refuses to run, a script
    whose interpreter is missing, ends with one line naming it and status
    127, as in a shell), with no option that changes how it is run."""
    command = list(command)
    if (
        not sys.platform.startswith("linux")
        or not sys.executable
        or threading.current_thread() is not threading.main_thread()
        or not command
        or not os.path.isabs(command[0])
        or not os.path.isfile(command[0])
        or not os.access(command[0], os.X_OK)
        or options.keys() & {"executable", "shell", "preexec_fn", "restore_signals"}
    ):
        return command
    return [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), *command]


def start(command: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **options)``, adopted (see :func:`adopt`)
    with no moment at which Ctrl-C, SIGTERM, SIGHUP or SIGQUIT ending the
    command leaves it running.

    The process is started in a session of its own (``start_new_session``),
    so that what the terminal sends its foreground process group (Ctrl-C,
    Ctrl-\\'s SIGQUIT, SIGHUP when it closes) reaches the command alone,
    which then ends its processes one signal each, as it does when it is
    sent the signal alone. What cannot be caught does not reach them either:
    SIGKILL sent to the command's group (``timeout --kill-after``); on
    Linux the kernel then sends each SIGTERM (see :data:`_GUARD`), elsewhere
    they are left running.
    In the command's group, a gunicorn worker took Ctrl-C twice, from the
    terminal and from its arbiter, and hung at times in the second handler
    (gthread's thread pool shutdown, taking a lock the first held): the
    command waited 10 s, killed the arbiter alone and left the worker running;
    uvicorn and gunicorn wrote their own lines ("Aborted!", "Worker was sent
    SIGINT!") before the command's one. Its group is its own too, so that
    what it started (gunicorn's workers) is killed with it if it does not
    stop in time (see :func:`kill`).

    Started with Popen, then adopted, a process was left running by
    a signal taken between its fork and Popen's return (the handler ended
    the processes adopted until then, or, before the first, SIGTERM's
    default action killed the command without its line). Here the main
    thread's handlers wait until the process is adopted (the first signal
    is then acted on), and so does the watcher (in :func:`_interrupted`, for
    up to 5 s). From another thread, as :func:`adopt` is called there: its
    signals are the main thread's, so it has that moment."""
    import subprocess

    options.setdefault("start_new_session", True)
    if threading.current_thread() is not threading.main_thread():
        process = subprocess.Popen(command, **options)
        adopt(process)
        return process
    global _starting, _deferred
    command = _with_the_guard(command, options)
    acted_on: dict[int, tuple[Any, Any]] = {
        # SIGTERM, SIGHUP and SIGQUIT first: restored first, before a Ctrl-C's handler
        # can raise. An ignored one stays ignored.
        **{signum: (_on_signal, signal.SIG_DFL) for signum in _ENDING},
        signal.SIGINT: (_keyboard_interrupt, signal.default_int_handler),
    }
    handlers: dict[int, Any] = {}
    try:
        with _started:
            _starting = True
        for signum, ours in acted_on.items():
            if signal.getsignal(signum) in ours:
                handlers[signum] = signal.signal(signum, _defer)
        process = subprocess.Popen(command, **options)
        adopt(process)  # sets no handler of its own while ours is _defer
    finally:
        with _started:
            _starting = False
            _started.notify_all()
        # A signal from here on is the handler's, or, until it is back, _defer's.
        for signum, before in handlers.items():
            if signum in _ENDING and (_children or _scratch) and signum not in _before:
                _before[signum], before = before, _on_signal  # as adopt() does
            signal.signal(signum, before)
        deferred, _deferred = _deferred, None
        if deferred is not None:
            _interrupted(_command, deferred)
    return process


def _defer(signum: int, frame: Any) -> None:
    """The main thread's Ctrl-C, SIGTERM, SIGHUP and SIGQUIT while it starts a process."""
    global _deferred
    if _deferred is None:
        _deferred = signum


def adopt(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` with the command if Ctrl-C, SIGTERM, SIGHUP or
    SIGQUIT ends it: they exit at once (:func:`_interrupted`), without the
    command's own clean-up, and a server started by the command ran on after
    it, orphaned (``kill -INT``, the SIGTERM of ``timeout``, which killed the
    command without a word, a terminal closed, Ctrl-\\). SIGTERM, SIGHUP and
    SIGQUIT get a handler of the command's while it has processes running,
    if they had the default action (an ignored one stays ignored). Called from the main thread;
    :func:`disown` once the command has ended the process itself."""
    _children.add(process)
    _catch_ending()


def _catch_ending() -> None:
    """SIGTERM, SIGHUP and SIGQUIT end the command through
    :func:`_interrupted` (if they had the default action), from the main
    thread, until :func:`_release_ending`."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _ENDING:
        if signum not in _before and signal.getsignal(signum) == signal.SIG_DFL:
            # The main thread runs this handler when it can; the watcher (see
            # _watch_for_ctrl_c) sees the signal on the wakeup descriptor
            # when the main thread is blocked.
            _before[signum] = signal.signal(signum, _on_signal)


def _release_ending() -> None:
    """Their actions back, once the command has no process running and no
    scratch directory (see :func:`adopt`, :func:`scratch_directory`)."""
    if _children or _scratch or threading.current_thread() is not threading.main_thread():
        return
    for signum, before in _before.items():
        signal.signal(signum, before)
    _before.clear()


def disown(process: subprocess.Popen[bytes]) -> None:
    """``process`` was ended by the command: see :func:`adopt`."""
    _children.discard(process)
    _release_ending()


def _on_signal(signum: int, frame: Any) -> None:
    _interrupted(_command, signum)


def _projects_own(handler: Any) -> bool:
    """Whether ``handler`` is a Python handler that is not the command's."""
    return callable(handler) and handler not in (_on_signal, _defer)


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` and, if it leads a process group of its own (see
    :func:`start`), what it started there (gunicorn's workers, which its
    arbiter waits for), then wait for it. Not one waited for already: its
    pid may be another process's by now."""
    if process.returncode is not None:
        return
    try:
        if hasattr(os, "killpg") and os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:  # gone already (and not yet waited for)
        pass
    try:
        process.wait()
    except OSError:
        pass


def _end_children(seconds: float = 10) -> None:
    """Terminate the adopted processes, and kill those that have not exited
    within ``seconds`` (gunicorn stops its workers before it exits), with
    their groups (:func:`kill`)."""
    import subprocess
    import time

    processes = list(_children)
    for process in processes:
        try:
            process.terminate()
        except OSError:  # gone already
            pass
    deadline = time.monotonic() + seconds
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill(process)


def _current_directory() -> str | None:
    """The current directory, None if it was removed meanwhile."""
    try:
        return os.getcwd()
    except OSError:
        return None


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reader went away (a
    BrokenPipeError raised elsewhere, by the project's code, is an error of
    its own). If so, what is still buffered for it goes nowhere, so that the
    interpreter's last flush does not fail too."""
    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        gone = any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no file behind it, or no poll()
        return False
    if gone:
        _discard_stdout()
    return gone


def _explain(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from .example import ProjectNotFound, find_project, not_a_project, setup, setup_django

    if args.measure and args.url is None:  # (an empty one is not a path: said below)
        print("switchtrace explain: error: --measure needs --url", file=sys.stderr)
        return 2
    note = ""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        if args.project:
            if not os.path.isdir(args.project):  # (Path's raises for a name too long)
                print(
                    f"switchtrace explain: error: --project {argument(args.project)} is not a "
                    "directory; allowed: a directory to put on sys.path, holding the package of "
                    "DJANGO_SETTINGS_MODULE",
                    file=sys.stderr,
                )
                return 2
            sys.path.insert(0, args.project)
        elif (here := _current_directory()) is not None and not {"", here} & set(sys.path):
            # The console script's path starts at its own bin directory, where
            # ``python -m switchtrace`` (and manage.py) start at the project's:
            # find DJANGO_SETTINGS_MODULE from the directory it is run in too,
            # after what is installed.
            sys.path.append(here)
        setup_django()
    else:
        try:
            # Not the copy an installed switchtrace carries: run in a project
            # of one's own, explaining the example instead would mislead.
            project = find_project(args.project, packaged=False)
        except ProjectNotFound as exc:
            if args.project is None:
                # Most often run in a project of one's own, from an installed
                # switchtrace (no checkout, so no example project).
                variable = os.environ.get("SWITCHTRACE_EXAMPLE_PROJECT")
                if variable:  # the one place looked in: said why
                    looked = (
                        f"SWITCHTRACE_EXAMPLE_PROJECT={argument(variable)}: "
                        f"{not_a_project(Path(variable))}"
                    )
                elif exc.looked_in:
                    looked = f"looked in: {', '.join(str(path) for path in exc.looked_in)}"
                else:
                    looked = "the current directory no longer exists"
                print(
                    "switchtrace explain: error: DJANGO_SETTINGS_MODULE is not set, and there "
                    f"is no example project to explain instead ({looked}); allowed: "
                    "DJANGO_SETTINGS_MODULE naming your "
                    "project's settings, e.g. from its directory: "
                    "DJANGO_SETTINGS_MODULE=mysite.settings switchtrace explain (or python "
                    "manage.py switchtrace_explain)",
                    file=sys.stderr,
                )
                return 2
            print(
                f"switchtrace explain: error: --project {argument(args.project)} is not the "
                f"example project ({not_a_project(Path(args.project))}), and "
                "DJANGO_SETTINGS_MODULE is not set; for a project of your own, set it too, e.g. "
                f"DJANGO_SETTINGS_MODULE=mysite.settings switchtrace explain --project "
                f"{argument(args.project)}",
                file=sys.stderr,
            )
            return 2
        if args.project is None:
            # Run in a project of one's own with switchtrace installed from a
            # checkout, the figures would pass for the project's. Said once
            # the input is found good (an error is one line, without it).
            note = (
                "switchtrace explain: DJANGO_SETTINGS_MODULE is not set: explaining "
                f"switchtrace's example project, {argument(project)} (for a project of your own, "
                "set it, e.g. DJANGO_SETTINGS_MODULE=mysite.settings switchtrace explain)"
            )
        setup(project)
    from .django_app.explain import ApplicationError, ExplainError, render

    try:
        status = render(args.url, args.measure, sys.stdout, note)
    except ApplicationError as exc:
        try:
            sys.stdout.flush()  # the report first, then the error after it
        except BrokenPipeError:
            pass  # the reader went away: the error still goes to stderr
        print(f"switchtrace explain: error: {exc}", file=sys.stderr)
        if exc.left_running:  # a thread the interpreter would wait for at exit
            if sys.stderr is not None:  # (closed: None)
                sys.stderr.flush()
            from .example import remove_temporary

            remove_temporary()  # (os._exit runs no exit hook)
            os._exit(1)
        return 1
    except ExplainError as exc:
        print(f"switchtrace explain: error: {exc}", file=sys.stderr)
        return 2
    return status
