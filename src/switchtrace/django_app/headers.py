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

#: Responses that carry our headers -> (the application's own Server-Timing,
#: the figures written).
_stamped: weakref.WeakKeyDictionary[Any, tuple[str | None, Figures]] = weakref.WeakKeyDictionary()


def stamp(response: Any, figures: Figures) -> None:
    """Put the figures on ``response`` (a Django HttpResponseBase)."""
    own = _stamped[response][0] if response in _stamped else response.get("Server-Timing")
    _write(response, figures, own)
    _stamped[response] = (own, figures)


def restamp(response: Any, figures: Figures) -> None:
    """Write the figures again if ``response`` was stamped with others; else
    do nothing."""
    try:
        own, written = _stamped[response]
    except (KeyError, TypeError):
        return
    if figures != written:
        _write(response, figures, own)
        _stamped[response] = (own, figures)


def _write(response: Any, figures: Figures, own_server_timing: str | None) -> None:
    metrics = []
    for header, field, metric, label in HEADERS:
        value = getattr(figures, field)
        response[header] = str(value)
        metrics.append(f'{metric};desc="{label}: {value}"')
    timing = ", ".join(metrics)
    response["Server-Timing"] = f"{own_server_timing}, {timing}" if own_server_timing else timing
