"""Values, arguments and exceptions in switchtrace's messages. Each
function here never raises, whatever the project's objects do (an int too
long to convert, a ``__repr__`` or an exception's ``__str__`` that raises):
a message about bad input must not become a traceback of its own; and
text as UTF-8 can write it (:func:`utf8_text`). Imports
the standard library only, so that the command line, the pytest plugin and
``switchtrace.testing`` can use it without Django or OpenTelemetry."""

from __future__ import annotations

import os
import re
from typing import Any


def shown(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for a message, never longer than ``limit``."""
    try:
        text = str.__str__(repr(value))  # (a __repr__ may return a str subclass)
    except Exception:
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def without_credentials(value: Any) -> Any:
    """An endpoint as a message shows it: a user and password in it
    replaced by ``REDACTED:REDACTED``, as OpenTelemetry's util-http shows
    URLs (the headers' values are not shown either). The scheme is kept as
    written (the endpoints shown are those refused: a scheme mistyped,
    ``http//``, or one after a space, among them). A password may hold
    ``/``, ``?``, ``#`` or ``@`` (a base64 token, written unencoded): in
    doubt, more is hidden rather than a password shown. Everything up to
    the last ``@`` before the query (``?``) goes; an ``@`` in the query alone
    (``?tenant=ops@acme``) is the query's where what comes before it is a
    host (``collector:4318/v1/traces``), and everything up to it goes
    otherwise (``apikey:Zm9v/Ym?Fy@collector``)."""
    if isinstance(value, (bytes, bytearray)):
        return type(value)(without_credentials(value.decode("latin-1")).encode("latin-1"))
    if type(value).__name__ == "__proxy__":  # a lazy translation (Django's Promise)
        try:
            text = str.__str__(str(value))
        except Exception:
            return value
        return without_credentials(text)
    if not isinstance(value, str):
        return value
    scheme = _SCHEME.match(value)
    start = scheme.end() if scheme else 0
    rest = value[start:]
    head = _QUERY.split(rest, maxsplit=1)[0]
    user, at, _host = head.rpartition("@")
    if not at:
        if "@" not in rest or _HOST.fullmatch(_AUTHORITY_END.split(rest, maxsplit=1)[0]):
            return value
        user = rest.rpartition("@")[0]
    return f"{value[:start]}REDACTED:REDACTED{value[start + len(user) :]}"


#: Space, a scheme (or none) and its slashes, as written (``http://``;
#: mistyped, ``http//``; ``//``): matches every value, if only as "". A
#: scheme without its colon is http's or https's alone (``tok/en@host``
#: is a token).
_SCHEME = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.-]*:/+|[Hh][Tt][Tt][Pp][Ss]?/+|/+)?")
#: Where the query starts (OTLP endpoints have no fragment: a # is a password's).
_QUERY = re.compile(r"\?")
_AUTHORITY_END = re.compile(r"[/?#]")
#: A host, and a port of digits (``collector:4318``, ``[::1]:4317``).
_HOST = re.compile(r"(\[[^\]]*\]|[^:@\[\]]*)(:[0-9]*)?")


def argument(value: str | os.PathLike[str]) -> str:
    """An argument or a path given to a command, for its one-line message:
    as it is, but empty, or with a line break or another character that is
    not printable (a CRLF script's '\\r', which wrote the rest of the line
    over its beginning), as Python writes it."""
    value = os.fspath(value)
    return value if value and value.isprintable() else repr(value)


def message(exc: BaseException) -> str:
    """``str(exc)`` for a message."""
    try:
        return str(exc)
    except Exception:
        return "(its message cannot be shown: str() raises)"


def raised(exc: BaseException) -> str:
    """``ClassName: message`` of ``exc`` for a message."""
    return f"{type(exc).__name__}: {message(exc)}"


def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can write it: the lone surrogates that stand for
    bytes that are not UTF-8 (a thread or a module named after a directory
    named in Latin-1, read by Python with surrogateescape) as ``\\x``
    escapes, any other lone surrogate as ``\\u``. The SDK's encoder raises
    for them: the attribute was left out, logged as switchtrace's error.
    Text that is UTF-8 already (ASCII first, the usual case) is returned
    as it is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def printable(text: str, limit: int) -> str:
    """``text`` with each character that is not printable (a control or
    format character, a separator but the space) written as Python writes it
    in a string, ``\\n``, ``\\u2028``, and a backslash as ``\\\\``: a
    request's method and path are the client's (a server decodes %0A in a
    path into a newline), and must not start a line that reads as another
    request's, nor move the terminal's cursor or reorder what it shows; a
    path holding a backslash and an ``n`` must not read as one holding a
    newline. At most ``limit`` characters of it, what is left out counted."""
    if len(text) <= limit and text.isprintable() and "\\" not in text:
        return text
    shown: list[str] = []
    width = 0
    for at, char in enumerate(text):
        piece = _escaped(char)
        if width + len(piece) > limit:
            rest = len(text) - at
            cut = f"... ({rest:,} character{'' if rest == 1 else 's'} more)"
            # Cut only where that shortens it: a name 3 characters too
            # long is shown whole, not made 20 characters longer.
            tail = "" if rest > len(cut) else "".join(map(_escaped, text[at:]))
            return "".join(shown) + (tail if tail and len(tail) <= len(cut) else cut)
        shown.append(piece)
        width += len(piece)
    return "".join(shown)


#: What a terminal obeys or reorders a line by: the control characters but
#: the line break, the line and paragraph separators, the bidirectional
#: marks, embeddings, overrides and isolates.
_OBEYED = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def without_escapes(text: str) -> str:
    """``text``, its lines kept, with each character a terminal obeys or
    reorders a line by written as Python writes it in a string
    (``\\x1b``): what a project's code names (a view's qualified name, an
    exception's message) must not move the terminal's cursor, recolour what
    follows, retitle the window or reorder the line. The rest is kept as it
    is: a translation's no-break space, zero-width joiner or soft hyphen."""
    return _OBEYED.sub(lambda found: ascii(found.group())[1:-1], text)


def _escaped(char: str) -> str:
    if char == "\\":
        return "\\\\"
    return char if char.isprintable() else ascii(char)[1:-1]
