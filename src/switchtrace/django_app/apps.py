from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.signals import request_started, setting_changed


class SwitchTraceConfig(AppConfig):
    name = "switchtrace.django_app"
    label = "switchtrace"
    verbose_name = "switchtrace"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        global _holding
        # The entries INSTALLED_APPS may list it by: the app, its config class.
        readied.update((self.name, f"{type(self).__module__}.{type(self).__qualname__}"))
        setting_changed.connect(_setting_changed, dispatch_uid="switchtrace.setting_changed")
        _holding = True
        try:
            apply_config()
        finally:
            _holding = False
        if _held:
            request_started.connect(_release_on_request, dispatch_uid="switchtrace.release")


@checks.register
def check_ready_ran(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """switchtrace.E014: the app is installed through a project's config
    class whose ready() does not call ``SwitchTraceConfig.ready()``, which
    patches and registers the other checks. Registered as Django imports
    this module to find the app's config (or a subclass's module imports
    it), so that ``manage.py check`` says it, where it found no issue; only
    while the middleware would log it too (enabled, or settings with
    problems that do not say ``"ENABLED": False``)."""
    from .conf import get_config
    from .middleware import _not_turned_off

    installed = next((c for c in apps.get_app_configs() if c.name == SwitchTraceConfig.name), None)
    if readied or installed is None:
        return []
    config = get_config()
    if not config.enabled and not (config.problems and _not_turned_off()):
        return []
    name = f"{type(installed).__module__}.{type(installed).__qualname__}"
    own = type(installed).__qualname__
    hint = (
        f"Call super().ready() in {own}.ready()."
        if isinstance(installed, SwitchTraceConfig)
        else f"Make {own} a subclass of switchtrace.django_app.apps.SwitchTraceConfig, and "
        "call super().ready() in its ready()."
    )
    return [
        checks.Error(
            f"INSTALLED_APPS has {name}, whose ready() does not call SwitchTraceConfig.ready(): "
            "nothing is recorded, no response carries the headers, and switchtrace's other "
            "checks are not run.",
            hint=hint,
            id="switchtrace.E014",
        )
    ]


#: The INSTALLED_APPS entries this app's ready() ran for (the app was
#: installed as Django was set up), empty before: ``apps.is_installed()``
#: tells only of the apps that a TransactionTestCase's ``available_apps``
#: leaves, meanwhile.
readied: set[str] = set()

#: What start-up (``ready()``) has to say about the settings, held until
#: Django's handler is built (the middleware's ``__init__``) or, without the
#: middleware, a request starts: a server, which runs no system checks, then
#: logs it, while a command that runs them (``check``, ``migrate``,
#: ``runserver`` before it builds its handler) says it once, as their message.
#: Each with the id of the system check that says it too.
_held: list[tuple[str, str]] = []
_holding = False


def startup_error(message: str, check_id: str) -> None:
    """Log ``message`` on the ``switchtrace`` logger, at level ERROR; at
    start-up, once the project is served (see ``_held``)."""
    if _holding:
        _held.append((check_id, message))
    else:
        logging.getLogger("switchtrace").error("%s", message)


def release_startup_errors() -> None:
    """Log what start-up held: the project is being served."""
    held = _held[:]
    _held.clear()
    request_started.disconnect(dispatch_uid="switchtrace.release")
    for _check_id, message in held:
        logging.getLogger("switchtrace").error("%s", message)


def discard_startup_errors(silenced: Collection[str] = ()) -> None:
    """The system checks said it: nothing held is logged, but what they
    were told not to show (``silenced``, SILENCED_SYSTEM_CHECKS' ids), which
    is still logged once the project is served, as a server logs it."""
    _held[:] = [(check_id, message) for check_id, message in _held if check_id in silenced]
    if not _held:
        request_started.disconnect(dispatch_uid="switchtrace.release")


def _release_on_request(**kwargs: Any) -> None:
    release_startup_errors()


#: The SWITCHTRACE values whose problems were logged, with those problems,
#: the latest :data:`_TOLD_OF` (the objects: an equal one a test gives is
#: told of; so is the same one with other problems, changed in place or by
#: the environment).
_told_of: list[tuple[object, tuple[Any, ...]]] = []
_TOLD_OF = 32


def apply_config() -> None:
    """Install or uninstall the patches to match the ``SWITCHTRACE`` setting.

    A wrong setting is reported by the system checks; here it is logged once
    and keeps switchtrace disabled, so that a server that does not run the
    checks still serves every request untouched."""
    from django.conf import settings

    from . import integration, telemetry
    from .conf import SETTING, get_config

    config = get_config()
    if config.problems:
        raw = getattr(settings, SETTING, None)
        # A value told of already, back with the same problems (the
        # project's own, as each test's override_settings is undone), is not
        # told of again.
        if not any(raw is value and config.problems == told for value, told in _told_of):
            del _told_of[: -(_TOLD_OF - 1)]
            _told_of.append((raw, config.problems))
            for problem in config.problems:
                startup_error(
                    f"switchtrace disabled: {problem.msg} ({problem.id}) {problem.hint}",
                    problem.id,
                )
    if config.enabled:
        integration.apply(True)
        telemetry.configure(config.export)
    else:
        telemetry.shutdown()
        integration.apply(False)


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "SWITCHTRACE":
        from .conf import reset_config

        reset_config()
        apply_config()
