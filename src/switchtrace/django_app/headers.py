"""The per-request figures as response headers.

| header | figure |
|---|---|
| ``X-Context-Switches`` | context switches |
| ``X-Thread-Hops`` | thread hops |
| ``X-Event-Loops`` | event loops created |
| ``X-Threads-Started`` | OS threads started |

and one ``Server-Timing`` metric per figure (``switchtrace-switches``,
``switchtrace-hops``, ``switchtrace-loops``, ``switchtrace-threads``), added
after any metrics the application set itself, so browser devtools show them.
A response served again from Django's cache may carry switchtrace's headers
of the request that stored it: they are replaced, not repeated, and taken
off for a request not shown the figures.

The figures are written on the response object (:func:`stamp`), where the
middleware above switchtrace's sees them. Under a server, what is sent is the
list Django builds from the object (WSGI: the one it hands to
``start_response``; ASGI: the one in the response start message), and several
requests may return one object at once (a view's module-level response), in
threads or tasks: there the integration rewrites that list for each request
(:func:`rewritten`), and adds or removes headers on the object only while no
other request is reading it, nor ever did (``grow``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.conf import settings

from ..tracer import Figures
from ..tracer.weak import WeakIdentityMap

HEADERS = (
    ("X-Context-Switches", "context_switches", "switchtrace-switches", "Context switches"),
    ("X-Thread-Hops", "thread_hops", "switchtrace-hops", "Thread hops"),
    ("X-Event-Loops", "event_loops_created", "switchtrace-loops", "Event loops created"),
    ("X-Threads-Started", "threads_started", "switchtrace-threads", "Threads started"),
)

#: Responses that carry our headers -> the figures written.
_stamped: WeakIdentityMap[Figures] = WeakIdentityMap()


def internal_ips(request: Any) -> bool:
    """A ``SHOW_HEADERS`` callable: the figures for clients whose address is
    in Django's ``INTERNAL_IPS`` (``REMOTE_ADDR``, as django-debug-toolbar
    decides; behind a proxy, the proxy's address, or the client's where the
    server takes it from the proxy's X-Forwarded-For: uvicorn's default for a
    proxy on 127.0.0.1). It reads the request only,
    so it works on the async path too, where ``request.user`` would query the
    database synchronously."""
    return request.META.get("REMOTE_ADDR") in settings.INTERNAL_IPS


def stamp(response: Any, figures: Figures, *, grow: bool = True) -> None:
    """Put the figures on ``response`` (a Django HttpResponseBase). Unless
    ``grow``, only if it carries every header written already: nothing is
    added to its headers (another thread may be iterating them)."""
    if not grow and not all(header in response for header in _WRITTEN):
        return
    _write(response, figures)
    _stamped[response] = figures


def stamped(response: Any) -> bool:
    """Whether ``response`` carries figures that :func:`stamp` wrote: on it,
    or on the response it is a copy of (one served again from Django's
    cache, stored with them by a cache above switchtrace's middleware)."""
    return _stamped.get(response) is not None or "X-Context-Switches" in response


def unstamp(response: Any) -> None:
    """Take switchtrace's headers off ``response`` if it carries them: a
    response served from Django's cache to a request not shown the figures
    must not show those of the request that stored it (nor get them again
    when the headers are sent)."""
    _stamped.pop(response, None)
    if "X-Context-Switches" not in response:
        return
    for header, _field, _metric, _label in HEADERS:
        if header in response:
            del response[header]
    own = _with_ours(response.get("Server-Timing"), None)
    if own is not None:
        response["Server-Timing"] = own
    elif "Server-Timing" in response:
        del response["Server-Timing"]


def restamp(response: Any, figures: Figures) -> None:
    """Write the figures again if ``response`` was stamped with others (or
    is a copy of one that was: see :func:`stamped`); else do nothing."""
    written = _stamped.get(response)
    if written is None and "X-Context-Switches" not in response:
        return
    if figures != written:
        _write(response, figures)
        _stamped[response] = figures


_OURS = frozenset(metric for _header, _field, metric, _label in HEADERS)
_WRITTEN = (*(header for header, _field, _metric, _label in HEADERS), "Server-Timing")
_HEADER_NAMES = frozenset(header.lower() for header, _field, _metric, _label in HEADERS)


def carries(headers: list[tuple[Any, Any]], figures: Figures, encoded: bool = False) -> bool:
    """Whether ``headers`` (``(name, value)`` pairs; bytes if ``encoded``, as
    in an ASGI message) carry ``figures`` exactly as :func:`rewritten` would
    write them: once each, and switchtrace's metrics last in one
    ``Server-Timing``. The common case (no other request wrote on the
    response object), told without parsing ``Server-Timing``: :func:`rewritten`
    does that, at about twenty times the cost."""
    rendered = _rendered(figures)
    expected: dict[Any, Any]
    metrics: Any
    timing: Any
    marker: Any
    separator: Any
    if encoded:
        expected, metrics = rendered.expected_bytes, rendered.metrics_bytes
        timing, marker, separator = b"server-timing", b"switchtrace-", b", "
    else:
        expected, metrics = rendered.expected, rendered.metrics
        timing, marker, separator = "server-timing", "switchtrace-", ", "
    seen: set[Any] = set()
    timings = 0
    for name, value in headers:
        key = name.lower()
        want = expected.get(key)
        if want is not None:
            if value != want or key in seen:  # another value, or twice
                return False
            seen.add(key)
        elif key == timing:
            timings += 1
            if not (value == metrics or value.endswith(separator + metrics)):
                return False
            if value.count(marker) != len(HEADERS):  # another of ours in it
                return False
    return len(seen) == len(HEADERS) and timings == 1


def rewritten(headers: list[tuple[str, str]], figures: Figures | None) -> list[tuple[str, str]]:
    """``headers``, the list of ``(name, value)`` that Django built from a
    response for the server (an ASGI one's decoded as Latin-1), with switchtrace's headers carrying
    ``figures`` (where they are, else after the others) and its metrics
    merged into ``Server-Timing`` as :func:`_write` does; with them taken
    out, as :func:`unstamp` does, if ``figures`` is None."""
    names = {name.lower() for name, _value in headers}
    if figures is None and "x-context-switches" not in names:
        return headers
    rendered = _rendered(figures) if figures is not None else None
    ours = rendered.values if rendered is not None else []
    values = rendered.expected if rendered is not None else {}
    metrics = rendered.metrics if rendered is not None else None
    sent: list[tuple[str, str]] = []
    done: set[str] = set()
    for name, value in headers:
        key = name.lower()
        if key in _HEADER_NAMES:
            if key in values and key not in done:
                sent.append((name, values[key]))
            done.add(key)
        elif key == "server-timing":
            merged = _with_ours(value, None if key in done else metrics)
            if merged is not None:
                sent.append((name, merged))
            done.add(key)
        else:
            sent.append((name, value))
    for header, value in ours:
        if header.lower() not in done:
            sent.append((header, value))
    if metrics is not None and "server-timing" not in done:
        sent.append(("Server-Timing", metrics))
    return sent


def _with_ours(server_timing: str | None, ours: str | None) -> str | None:
    """``server_timing`` with switchtrace's metrics replaced by ``ours``: in
    their place if it holds some already (written for this response before,
    or for another one stored in Django's cache), else after the others;
    taken out if ``ours`` is None. Every other metric stays. None if
    nothing is left."""
    if not server_timing:
        return ours
    if "switchtrace-" not in server_timing:
        return f"{server_timing}, {ours}" if ours else server_timing
    kept: list[str] = []
    at: int | None = None
    for metric in _metrics(server_timing):
        if metric.split(";", 1)[0].strip() in _OURS:
            at = len(kept) if at is None else at
        else:
            kept.append(metric)
    if ours:
        kept.insert(len(kept) if at is None else at, ours)
    return ", ".join(kept) or None


def _metrics(server_timing: str) -> list[str]:
    """Split a ``Server-Timing`` value into its metrics, minding the commas
    inside quoted ``desc`` strings (RFC 9110 quoted-string, backslash
    escapes). A quote never closed (a malformed value) quotes nothing: it
    took in every comma after it, switchtrace's metrics written after it
    too, which were then not found and written a second time."""
    metrics, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(server_timing):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            metrics.append(server_timing[start:i].strip())
            start = i + 1
    metrics.append(server_timing[start:].strip())
    if quoted:
        metrics = server_timing.split(",")
    return [m.strip() for m in metrics if m.strip()]


class _Rendered(NamedTuple):
    """The figures as headers: what :func:`_write` writes, and what
    :func:`carries` compares, as text and as an ASGI message's bytes."""

    values: list[tuple[str, str]]
    metrics: str
    expected: dict[str, str]
    expected_bytes: dict[bytes, bytes]
    metrics_bytes: bytes


#: Figures -> their rendering. Most requests of a route have the figures of
#: the one before (rendering them is about a twentieth of what switchtrace
#: does for a request); emptied when it holds more than _RENDERED_KEPT.
_rendered_by_figures: dict[Figures, _Rendered] = {}
_RENDERED_KEPT = 256


def _rendered(figures: Figures) -> _Rendered:
    rendered = _rendered_by_figures.get(figures)
    if rendered is None:
        values = [
            (header, str(getattr(figures, field))) for header, field, _metric, _label in HEADERS
        ]
        metrics = ", ".join(
            f'{metric};desc="{label}: {getattr(figures, field)}"'
            for _header, field, metric, label in HEADERS
        )
        expected = {header.lower(): value for header, value in values}
        rendered = _Rendered(
            values,
            metrics,
            expected,
            {name.encode(): value.encode() for name, value in expected.items()},
            metrics.encode(),
        )
        if len(_rendered_by_figures) >= _RENDERED_KEPT:
            _rendered_by_figures.clear()
        _rendered_by_figures[figures] = rendered
    return rendered


def _write(response: Any, figures: Figures) -> None:
    """Our headers, and our metrics in ``Server-Timing`` (see
    :func:`_with_ours`): those middleware above ours added after we first
    wrote ours stay too."""
    rendered = _rendered(figures)
    for header, value in rendered.values:
        response[header] = value
    response["Server-Timing"] = _with_ours(response.get("Server-Timing"), rendered.metrics)
