"""The file exporter: OTLP JSON, one ExportTraceServiceRequest per line.

The embedded default when no OTLP endpoint is configured, so a newcomer gets
traces without running anything. Each line is the OTLP/JSON encoding of an
export request (trace and span ids as hex strings, enums as integers), the
format Jaeger's UI loads and switchtrace's reports read.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import re
import stat
import threading
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..tracer.guard import logger, swallow
from .encode import EncodedSpans, checked_key, utf8_text


def _lock_file(descriptor: int) -> None:
    """An exclusive lock on the open file, shared with other processes (none
    where there is no flock: Windows)."""
    if fcntl is not None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)


def _unlock_file(descriptor: int) -> None:
    if fcntl is not None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


#: Opened for reading too, to see whether the file ends with a whole line.
_APPEND = os.O_RDWR | os.O_APPEND | os.O_CREAT
_APPEND_ONLY = os.O_WRONLY | os.O_APPEND | os.O_CREAT
#: How many times an export opens the file (again, after finding it renamed
#: by itself or by another process) before it appends to what it has: a
#: bound where each look finds another file (a file system whose inode
#: numbers change), well past what appenders renaming at once need.
_ROTATIONS = 100
_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def to_otlp_json(spans: Sequence[ReadableSpan]) -> str:
    """One ExportTraceServiceRequest in OTLP/JSON, written directly from the
    spans: the SDK's protobuf encoding followed by protobuf's JSON printer
    costs about 300 µs a span here, this about a tenth of it. A test checks
    that both encode the same message."""
    grouped: dict[Any, dict[Any, list[dict[str, Any]]]] = {}
    for span in spans:
        scopes = grouped.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope, []).append(_span(span))
    resource_spans = []
    for resource, scopes in grouped.items():
        entry: dict[str, Any] = {
            "resource": {"attributes": _attributes(resource.attributes)},
            "scopeSpans": [_scope_spans(scope, encoded) for scope, encoded in scopes.items()],
        }
        if resource.schema_url:
            entry["schemaUrl"] = resource.schema_url
        resource_spans.append(entry)
    return json.dumps({"resourceSpans": resource_spans}, separators=(",", ":"), allow_nan=False)


def _scope_spans(scope: Any, spans: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"spans": spans}
    if scope is not None:
        entry["scope"] = {"name": scope.name}
        if scope.version:
            entry["scope"]["version"] = scope.version
        if scope.attributes and (attributes := _attributes(scope.attributes)):
            entry["scope"]["attributes"] = attributes
        if scope.schema_url:
            entry["schemaUrl"] = scope.schema_url
    return entry


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    parent = span.parent
    out: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
    }
    if context.trace_state:
        out["traceState"] = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    if parent is not None:
        out["parentSpanId"] = f"{parent.span_id:016x}"
    out["flags"] = _REMOTE_KNOWN | (_REMOTE if parent is not None and parent.is_remote else 0)
    out["name"] = span.name
    out["kind"] = span.kind.value + 1  # OTLP's SpanKind starts at UNSPECIFIED = 0
    out["startTimeUnixNano"] = str(span.start_time)
    out["endTimeUnixNano"] = str(span.end_time)
    if span.attributes and (attributes := _attributes(span.attributes)):
        out["attributes"] = attributes
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        out["events"] = [_event(event) for event in span.events]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [_link(link) for link in span.links]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    out["status"] = status
    return out


def _event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": str(event.timestamp), "name": event.name}
    if event.attributes and (attributes := _attributes(event.attributes)):
        out["attributes"] = attributes
    if event.dropped_attributes:
        out["droppedAttributesCount"] = event.dropped_attributes
    return out


def _link(link: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": f"{link.context.trace_id:032x}",
        "spanId": f"{link.context.span_id:016x}",
        "flags": _REMOTE_KNOWN | (_REMOTE if link.context.is_remote else 0),
    }
    if link.attributes and (attributes := _attributes(link.attributes)):
        out["attributes"] = attributes
    return out


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    """An attribute the SDK's encoder leaves out is left out here too (see
    :mod:`.encode`)."""
    out = []
    for key, value in attributes.items():
        try:
            out.append({"key": checked_key(key), "value": _value(value)})
        except Exception:
            swallow("span attribute encoding")
    return out


def _value(value: Any) -> dict[str, Any]:
    """As :func:`.encode.json_value`, as a dict: raises for what the SDK's
    encoder raises for."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"integer out of int64 range: {value}")
        return {"intValue": str(value)}
    if isinstance(value, float):
        # NaN and the infinities as strings, as protobuf's JSON mapping writes them.
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
        }
    if isinstance(value, str):
        return {"stringValue": value if value.isascii() else utf8_text(value)}
    if value is None:
        return {}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Sequence):
        values = [_value(item) for item in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [{"key": checked_key(str(k)), "value": _value(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise TypeError(f"cannot encode a {type(value).__name__} as an attribute value")


def foreign(path: str) -> str | None:
    """Why the file exporter does not append to ``path``, or None: in a
    directory every user may write (/tmp, /dev/shm), what is at the path,
    and at each step of a link of one's own leading on from there, must be
    this process's user's or the directory owner's, and a file must have no
    other name (a hard link). Another user's could have been put there
    first: a file or a named pipe, to receive the spans; a link (symbolic
    or hard), to have a file of this user's appended to and, once full,
    renamed. The kernel's protected_regular, protected_symlinks and
    protected_hardlinks guard only some of these, and only where they are
    set. The process's own output (/dev/stdout, /dev/fd/1) is not looked
    at: the server's output is the server's. The directories on the way
    are trusted (their owners can do as they please in them)."""
    if _PROCESS_STREAM.fullmatch(path):
        return None
    try:
        _final(path)
    except PermissionError as exc:
        return exc.strerror
    except OSError:  # not looked at: the open says why
        pass
    return None


#: The process's own output, named as such: written as it is, whatever it is.
_PROCESS_STREAM = re.compile(r"/dev/(?:stdout|stderr|fd/[0-9]+)|/proc/self/fd/[0-9]+")


def _final(path: str) -> tuple[str, os.stat_result | None, os.stat_result | None]:
    """Where ``path``'s links lead, followed one at a time, each step that
    is in a directory every user may write checked (a PermissionError
    naming what is refused): the last name, what is there (None: nothing
    yet, or what a link into /proc leads to, which the open follows), and
    its directory if every user may write in it."""
    for _ in range(40):  # as many links as Linux follows
        named = os.path.normpath(path)
        if _PROCESS_STREAM.fullmatch(named) or named.startswith("/proc/"):
            # The process's output, its descriptors: no file to walk to (a
            # descriptor's link names a pipe, or a file that may be deleted).
            return path, None, None
        shared = _shared_directory(path)
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            return path, None, shared
        refused = _why_refused(found, shared)
        if refused is not None:
            raise PermissionError(errno.EPERM, refused)
        if not stat.S_ISLNK(found.st_mode):
            return path, found, shared
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _shared_directory(path: str) -> os.stat_result | None:
    """The directory ``path`` is in, if every user may write in it (its
    links and ``..`` resolved as the system resolves them)."""
    if not hasattr(os, "geteuid"):  # (Windows: no such modes)
        return None
    directory = os.stat(os.path.dirname(path) or os.curdir)
    return directory if directory.st_mode & stat.S_IWOTH else None


def _why_refused(found: os.stat_result, directory: os.stat_result | None) -> str | None:
    if directory is None:
        return None
    kind = found.st_mode
    if found.st_uid not in (os.geteuid(), directory.st_uid):
        what = (
            "a symbolic link" if stat.S_ISLNK(kind)
            else "a named pipe" if stat.S_ISFIFO(kind)
            else "a file"
        )  # fmt: skip
        return (
            f"it is {what} of another user (uid {found.st_uid}) in a directory every user may "
            f"write, where only a file, named pipe or link of this process's user (uid "
            f"{os.geteuid()}) or of the directory's owner (uid {directory.st_uid}) is "
            "appended to"
        )
    if stat.S_ISREG(kind) and found.st_nlink > 1:
        return (
            f"it is a file with {found.st_nlink} names (hard links) in a directory every user "
            "may write, where only a file of one name is appended to"
        )
    return None


def _stream(path: str) -> bool:
    """Whether ``path`` names a stream of the process's or a device, not a
    file of its own: a path under /proc, a symbolic link under /dev
    (/dev/stdout, /dev/fd/1), anything under /dev but a regular file
    (/dev/null, a disk), or a symbolic link (of links) to one of these.
    Renaming what such a path resolves to would rename the file the
    server's output goes to, or a device. A regular file under /dev (in
    /dev/shm, kept in memory) is a file like any other."""
    for _ in range(40):  # as many links as Linux follows
        path = os.path.abspath(path)
        if path.startswith("/proc/"):
            return True
        device = path.startswith("/dev/")
        try:
            if not os.path.islink(path):
                return device and not stat.S_ISREG(os.stat(path).st_mode)
            if device:
                return True
            path = os.path.join(os.path.dirname(path), os.readlink(path))
        except FileNotFoundError:  # gone meanwhile, or made by the first export
            return False
        except OSError:  # (under /dev: not to be renamed when in doubt)
            return device
    return False


class FileSpanExporter(SpanExporter):
    """Appends each export as one line of OTLP JSON to ``path``: SDK spans, or
    an export request switchtrace's pipeline encoded itself (see
    :mod:`.encode`).

    Each line goes to the file in one ``write`` on a descriptor opened for
    appending, so that processes appending to the same file (a pre-forking
    server's workers) never mix their lines. An append that fails part way
    (the disk full) leaves part of a line: the next line appended to that
    file, by any of them, then starts on a line of its own (each looks at
    the file's last byte), so that only the lost export's line cannot be
    read. They take turns (a lock on the file, from the look at its size
    and last byte to the end of the line): a line another one is still
    writing is not one cut short, two do not both find room under
    ``max_bytes``, and lines to a pipe (whose writes of more than PIPE_BUF
    bytes are not one piece) are not mixed. A file system that refuses the
    lock gets the line without it.

    With ``max_bytes``, a file that an export would take past it is first
    renamed ``path + ".1"`` (replacing the one before; if ``path`` is a
    symbolic link, the file it links to is renamed beside it; a path under
    /proc, a link or anything but a regular file under /dev, such as
    /dev/stdout, never is), and a new file started:
    the spans on disk stay within about twice ``max_bytes``, the newest
    kept. Processes appending to the same file rotate it together: one
    that finds the file it measured already renamed by another does not
    rename again, but appends to the new one."""

    takes_encoded = True
    encoding = "json"
    #: A failed append is not followed by a pause of the exports, as a failed
    #: export to a collector is (see :mod:`.pipeline`): it costs a system
    #: call, logs nothing of its own, and the next one may succeed (space
    #: freed on the disk).
    pause_after_failure = False

    def __init__(self, path: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.path = os.fspath(path)
        # /dev/stdout and the like name a stream of the process's (whose
        # file, if any, is the server's own log): appended to, never renamed.
        self.max_bytes = None if _stream(self.path) else max_bytes
        #: The file could not be renamed once it was full (say, its
        #: directory is read-only): appended to past max_bytes, and said once.
        self._unrotatable = False
        self._lock = threading.Lock()
        #: Why the last export failed; None after one that succeeded.
        self.error: OSError | None = None
        #: The file ends with part of a line this process appended (what
        #: tells it of a file it cannot read).
        self._torn = False
        #: The descriptor this process appends on while it holds the file's
        #: lock, which a forked child's copy of it would hold too.
        self._locked: int | None = None
        #: Whether appenders take turns on what the path names (see _open).
        self._turns = True

    def export(self, spans: Sequence[ReadableSpan] | EncodedSpans) -> SpanExportResult:
        if isinstance(spans, EncodedSpans):
            line = str(spans.payload)
        else:
            line = to_otlp_json(spans)
        with self._lock:
            data = (line + "\n").encode("utf-8")
            written = 0
            try:
                out, readable = self._turn(len(data))
                try:
                    size = os.fstat(out).st_size
                    if self._ends_in_a_line(out, size, readable):
                        data = b"\n" + data
                    while written < len(data):
                        written += os.write(out, data[written:])
                finally:
                    self._release(out)
            except OSError as exc:
                self.error = exc
                if written:
                    self._torn = data[written - 1 : written] != b"\n"
                return SpanExportResult.FAILURE
            self.error = None
            self._torn = False
        return SpanExportResult.SUCCESS

    def _turn(self, length: int) -> tuple[int, bool]:
        """The file at the path, open for appending (and whether it can be
        read too), with this process's turn to append ``length`` bytes: the
        file's lock, held until :meth:`_release`. Appenders take turns from
        their look at the file (its size, its last byte) to the end of their
        line: a line another process was still writing would look cut short
        (this one then beginning with a newline: an empty line), two of them
        could each find room for their line and together take the file past
        max_bytes, and a write of more than PIPE_BUF bytes to a pipe is not
        one piece (two workers' lines to /dev/stdout piped to a log shipper
        came out mixed). With max_bytes, a file this line would take past it
        is renamed first, under the lock, and the new file taken in turn."""
        for attempt in range(_ROTATIONS):
            out, readable = self._open()
            try:
                self._take(out)
                # (Past _ROTATIONS, the file being renamed each time by
                # others meanwhile: appended to, full or not.)
                if self.max_bytes is None or attempt == _ROTATIONS - 1:
                    return out, readable
                if self._room(out, length):
                    return out, readable
            except BaseException:
                self._release(out)
                raise
            self._release(out)
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self, out: int) -> None:
        if not self._turns:
            return
        # Noted first: a fork while this thread waits for the lock leaves
        # the child a copy of the descriptor, which _at_fork_reinit closes.
        self._locked = out
        try:
            _lock_file(out)
        except OSError:
            # A file system that refuses it (NFS without its lock daemon:
            # ENOLCK): appended unlocked, as before appenders took turns.
            self._locked = None

    def _release(self, out: int) -> None:
        locked, self._locked = self._locked, None
        try:
            if locked is not None:
                _unlock_file(out)
        except OSError:
            pass  # closing the descriptor frees it
        finally:
            os.close(out)

    def _room(self, out: int, length: int) -> bool:
        """Whether to append ``length`` bytes to the file open on ``out``,
        this process's turn taken: it is still the file at the path (not
        renamed by another process meanwhile), and the line keeps it within
        max_bytes or it cannot be renamed. A full file is renamed here, and
        False returned: the file now at the path is to be opened."""
        assert self.max_bytes is not None
        measured = os.fstat(out)
        # A path that is a symbolic link stays one: the file it links to is
        # renamed, beside it (on its own disk).
        target = os.path.realpath(self.path) if os.path.islink(self.path) else self.path
        try:
            current = os.stat(target)
        except FileNotFoundError:  # renamed by another process, no new file yet
            return False
        except OSError:
            return True  # (what cannot be looked at cannot be renamed either)
        if (current.st_ino, current.st_dev) != (measured.st_ino, measured.st_dev):
            return False  # renamed by another process since this one opened it
        if not measured.st_size or measured.st_size + length <= self.max_bytes:
            return True
        try:
            os.replace(target, target + ".1")
        except FileNotFoundError:
            return False  # (renamed meanwhile by a process that took no lock)
        except OSError as exc:
            if not self._unrotatable:
                self._unrotatable = True
                logger.warning(
                    "switchtrace: %s reached SWITCHTRACE['FILE_MAX_BYTES'] (%d bytes) and "
                    "cannot be renamed to %s.1 (%s): spans are appended to it past that size",
                    self.path,
                    self.max_bytes,
                    target,
                    exc.strerror or exc,
                )
            return True
        self._unrotatable = False
        return False

    def _open(self) -> tuple[int, bool]:
        """The file, opened for appending; whether it can be read too."""
        # In a directory every user may write, what is there, and each step
        # of a link of one's own, is checked, then the last name is opened
        # without following a link and checked again, open: another user's
        # may have been put there between the look and the open. A stream
        # of the process's (/dev/stdout) is opened as it is.
        path, found, shared = self.path, None, None
        if not _PROCESS_STREAM.fullmatch(self.path):
            path, found, shared = _final(self.path)
        nofollow = getattr(os, "O_NOFOLLOW", 0) if shared is not None else 0
        try:
            mode = found.st_mode if found is not None else os.stat(path).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG  # (created by the open)
        regular = stat.S_ISREG(mode)
        # Appenders take turns on a file or a pipe; not on a device (a tty,
        # /dev/null: one lock for every process of the machine writing there).
        self._turns = regular or stat.S_ISFIFO(mode)
        try:
            if not regular:
                # A pipe (/dev/stdout piped to a log shipper, a named pipe) or
                # a device: opened for reading too, this process would be a
                # reader of its own lines, and with the real reader gone they
                # would go into the pipe's buffer, reported delivered, until a
                # write that waits for ever. Written alone, a pipe without a
                # reader refuses the open (ENXIO: not waited for) or the write
                # (EPIPE).
                out = os.open(path, _APPEND_ONLY | os.O_NONBLOCK | nofollow)
                readable = False
            else:
                try:
                    out, readable = os.open(path, _APPEND | nofollow, 0o666), True
                except PermissionError:  # may be written, not read
                    out, readable = os.open(path, _APPEND_ONLY | nofollow, 0o666), False
        except OSError as exc:
            if exc.errno != errno.ELOOP or not nofollow:
                raise
            raise PermissionError(errno.EPERM, foreign(path) or exc.strerror) from None
        if shared is not None and (refused := _why_refused(os.fstat(out), shared)):
            os.close(out)
            raise PermissionError(errno.EPERM, refused)
        if not regular:
            os.set_blocking(out, True)  # a slow reader holds up this thread, as a disk does
        return out, readable

    def _ends_in_a_line(self, out: int, size: int, readable: bool) -> bool:
        """Whether the file open on ``out`` ends with part of a line (an
        append cut short by a full disk, of this process or another one
        appending to the file): its last byte, or what this process knows
        of a file it cannot read."""
        if not size:
            return False
        if readable and hasattr(os, "pread"):
            try:
                return os.pread(out, 1, size - 1) != b"\n"
            except OSError:
                pass
        return self._torn

    def failure(self) -> str:
        """Why the last export failed, for the pipeline's warning."""
        error = self.error
        reason = error.strerror if error is not None and error.strerror else error
        return f"cannot append to {self.path}: {reason}"

    def _at_fork_reinit(self) -> None:
        """In a forked child: the lock may have been held by the parent's
        export thread at the fork, which the child does not have. So may the
        file's lock, shared with the parent's descriptor: the child's copy of
        it, which no thread of the child would ever close, would keep every
        appender (the parent included) waiting for as long as the child
        lives."""
        locked, self._locked = self._locked, None
        if locked is not None:
            try:
                os.close(locked)
            except OSError:
                pass
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
