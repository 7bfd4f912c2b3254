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
"""

from __future__ import annotations

import weakref
from typing import Any

from ..tracer import Figures

HEADERS = (
    ("X-Context-Switches", "context_switches", "switchtrace-switches", "Context switches"),
    ("X-Thread-Hops", "thread_hops", "switchtrace-hops", "Thread hops"),
    ("X-Event-Loops", "event_loops_created", "switchtrace-loops", "Event loops created"),
    ("X-Threads-Started", "threads_started", "switchtrace-threads", "Threads started"),
)

#: Responses that carry our headers -> the figures written.
_stamped: weakref.WeakKeyDictionary[Any, Figures] = weakref.WeakKeyDictionary()


def stamp(response: Any, figures: Figures) -> None:
    """Put the figures on ``response`` (a Django HttpResponseBase)."""
    _write(response, figures)
    _stamped[response] = figures


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
    own = _without_ours(response.get("Server-Timing"))
    if own is None:
        if "Server-Timing" in response:
            del response["Server-Timing"]
    else:
        response["Server-Timing"] = own


def restamp(response: Any, figures: Figures) -> None:
    """Write the figures again if ``response`` was stamped with others; else
    do nothing."""
    try:
        written = _stamped[response]
    except (KeyError, TypeError):
        return
    if figures != written:
        _write(response, figures)
        _stamped[response] = figures


_OURS = frozenset(metric for _header, _field, metric, _label in HEADERS)


def _without_ours(server_timing: str | None) -> str | None:
    """The application's own metrics in a ``Server-Timing`` value: without
    the ones switchtrace wrote for another request (a response served again
    from Django's cache, stored by an ``UpdateCacheMiddleware`` placed before
    switchtrace's), or None if nothing is left."""
    if not server_timing or "switchtrace-" not in server_timing:
        return server_timing
    kept = [m for m in _metrics(server_timing) if m.split(";", 1)[0].strip() not in _OURS]
    return ", ".join(kept) or None


def _metrics(server_timing: str) -> list[str]:
    """Split a ``Server-Timing`` value into its metrics, minding the commas
    inside quoted ``desc`` strings (RFC 9110 quoted-string, backslash
    escapes)."""
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
    return [m for m in metrics if m]


def _write(response: Any, figures: Figures) -> None:
    """Our headers, and our metrics in ``Server-Timing``: in place of ours if
    it holds them already (written for this response before, or for
    another one stored in a cache), else after the application's. Every
    other metric stays, including those middleware above ours added after
    we first wrote ours."""
    ours = []
    for header, field, metric, label in HEADERS:
        value = getattr(figures, field)
        response[header] = str(value)
        ours.append(f'{metric};desc="{label}: {value}"')
    timing = ", ".join(ours)
    current = response.get("Server-Timing")
    if not current:
        response["Server-Timing"] = timing
    elif "switchtrace-" not in current:
        response["Server-Timing"] = f"{current}, {timing}"
    else:
        metrics: list[str] = []
        at: int | None = None
        for m in _metrics(current):
            if m.split(";", 1)[0].strip() in _OURS:
                at = len(metrics) if at is None else at
            else:
                metrics.append(m)
        metrics.insert(len(metrics) if at is None else at, timing)
        response["Server-Timing"] = ", ".join(metrics)
