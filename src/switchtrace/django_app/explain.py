"""``switchtrace explain`` / ``manage.py switchtrace_explain``: the predicted
switches of each kind of request, their causes and fixes, and, with
``--measure``, what one real request of each kind measures through Django's
test client."""

from __future__ import annotations

import asyncio
from typing import Any, TextIO
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.utils.encoding import repercent_broken_unicode
from django.utils.module_loading import import_string

from ..example import describe_error
from .predict import Prediction, predict

CASES = (("asgi", False), ("asgi", True), ("wsgi", False), ("wsgi", True))


class ExplainError(Exception):
    """Bad input: a message naming what is wrong."""


class ApplicationError(ExplainError):
    """The project's own code raised (a view, while measured): a message naming
    the exception and where it was raised."""


def check_middleware(paths: Any) -> list[str]:
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise ExplainError(
            f"MIDDLEWARE must be a list of dotted paths; it is a {type(paths).__name__}"
        )
    for path in paths:
        if not isinstance(path, str):
            raise ExplainError(
                f"MIDDLEWARE entry {path!r} is a {type(path).__name__}; allowed: the dotted "
                "path of a middleware, as a string"
            )
        try:
            import_string(path)
        except ImportError as exc:
            raise ExplainError(f"MIDDLEWARE entry {path!r} cannot be imported: {exc}") from None
        except Exception as exc:  # its module raised something else on import
            raise ExplainError(
                f"MIDDLEWARE entry {path!r} cannot be imported: {describe_error(exc)}"
            ) from None
    return list(paths)


def split_url(url: str) -> tuple[str, str]:
    """(the path to resolve, percent-decoded as Django decodes it; the URL to
    request: that path with its query string) of ``url``, or an ExplainError
    if it is not a path."""
    if not url.startswith("/") or url.startswith("//"):
        raise ExplainError(
            f"--url {url!r} is not a path; allowed: a path of the project beginning with "
            "'/', optionally with a query string, e.g. /sync/ or /search/?q=x"
        )
    parts = urlsplit(url)
    try:
        # As Django's handlers and test client: bytes that are not UTF-8 stay
        # percent-encoded (/%FF/ resolves as "/%FF/", not as a replacement char).
        path = repercent_broken_unicode(unquote_to_bytes(parts.path)).decode()
    except UnicodeEncodeError:  # undecodable bytes on the command line
        raise ExplainError(
            f"--url {url!r} holds bytes that are not UTF-8; allowed: a path in UTF-8, "
            "with other bytes percent-encoded (e.g. /%FF/)"
        ) from None
    return path, parts.path + (f"?{parts.query}" if parts.query else "")


def view_kind(url: str) -> tuple[bool, str]:
    """(is the view async, its name) for ``url``, or an ExplainError."""
    from asgiref.sync import iscoroutinefunction
    from django.urls import Resolver404, resolve

    path, _target = split_url(url)
    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if not urlconf:
        raise ExplainError("--url needs the settings' ROOT_URLCONF, which is not set")
    try:
        match = resolve(path)
    except Resolver404:
        raise ExplainError(f"the URL {url!r} does not resolve to a view") from None
    except Exception as exc:  # the URLconf (or a module it imports) does not import
        raise ExplainError(
            f"ROOT_URLCONF {urlconf!r} cannot be loaded: {describe_error(exc)}"
        ) from None
    func = match.func
    view_class = getattr(func, "view_class", None)
    is_async = bool(getattr(view_class, "view_is_async", False)) or iscoroutinefunction(func)
    return is_async, getattr(func, "__qualname__", repr(func))


def measure(server: str, url: str) -> Any:
    """One request through Django's test client (AsyncClient for ASGI); what
    the project raises while serving it, an ApplicationError."""
    from django.test import AsyncClient, Client

    from ..testing import record_requests

    with record_requests() as records:
        try:
            if server == "asgi":
                asyncio.run(AsyncClient().get(url))
            else:
                Client().get(url)
        except Exception as exc:
            raise ApplicationError(
                f"GET {url} under {server.upper()} raised {describe_error(exc)}"
            ) from None
    if not records:
        raise ApplicationError(f"GET {url} under {server.upper()} was not recorded")
    return records[-1]


def render(url: str | None, do_measure: bool, out: TextIO) -> int:
    if do_measure and url is None:
        raise ExplainError("--measure needs --url")
    paths = check_middleware(settings.MIDDLEWARE)
    cases: list[tuple[str, bool]] = list(CASES)
    target = None
    if url is not None:
        _path, target = split_url(url)
        is_async, name = view_kind(url)
        cases = [("asgi", is_async), ("wsgi", is_async)]
        out.write(f"{url} → {name} ({'async' if is_async else 'sync'} view)\n")
    out.write(f"MIDDLEWARE: {len(paths)} entries\n")
    for server, is_async in cases:
        prediction = predict(server, is_async, paths)
        _render_case(prediction, out)
        if target is not None and do_measure:
            record = measure(server, target)
            same = (record.context_switches, record.event_loops_created) == (
                prediction.switches,
                prediction.loops,
            )
            out.write(
                f"  measured: {record.context_switches} switches, {record.thread_hops} "
                f"hops, {record.event_loops_created} loops "
                f"({'as predicted' if same else 'DIFFERS from the prediction'})\n"
            )
    return 0


def _render_case(prediction: Prediction, out: TextIO) -> None:
    out.write(
        f"\n{prediction.server.upper()}, {prediction.view} view: {prediction.switches} "
        f"switches ({prediction.before_headers} before the headers), {prediction.hops} hops, "
        f"{prediction.loops} event loops created\n"
    )
    width = max((len(str(c.switches)) for c in prediction.causes), default=1)
    for cause in prediction.causes:
        out.write(f"  {cause.switches:>{width}}  {cause.what}\n")
        if cause.fix:
            out.write(f"  {'':>{width}}  → {cause.fix}{_saving(cause.switches, cause.saves)}\n")
    for cause in prediction.conditional:
        out.write(f"  +{cause.switches}  {cause.what}\n")


def _saving(own: int, saves: int) -> str:
    if not saves:
        return ""
    if saves > own:
        return (
            f" (saves {saves}: Django then runs every sync-capable middleware above it "
            "synchronously too)"
        )
    return f" (saves {saves})"
