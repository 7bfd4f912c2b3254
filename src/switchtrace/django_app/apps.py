from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

logger = logging.getLogger("switchtrace")


class SwitchTraceConfig(AppConfig):
    name = "switchtrace.django_app"
    label = "switchtrace"
    verbose_name = "switchtrace"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        setting_changed.connect(_setting_changed, dispatch_uid="switchtrace.setting_changed")
        apply_config()


def apply_config() -> None:
    """Install or uninstall the patches to match the ``SWITCHTRACE`` setting.

    A wrong setting is reported by the system checks; here it is logged once
    and keeps switchtrace disabled, so that a server that does not run the
    checks still serves every request untouched."""
    from . import integration, telemetry
    from .conf import get_config

    config = get_config()
    for problem in config.problems:
        logger.error("switchtrace disabled: %s (%s) %s", problem.msg, problem.id, problem.hint)
    if config.enabled:
        integration.install()
        telemetry.configure(config.export)
    else:
        telemetry.shutdown()
        integration.uninstall()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "SWITCHTRACE":
        from .conf import reset_config

        reset_config()
        apply_config()
