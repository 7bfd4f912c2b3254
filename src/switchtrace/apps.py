"""The app Django finds when ``INSTALLED_APPS`` names ``"switchtrace"``
instead of ``"switchtrace.django_app"``: it records nothing, and says so as a
system check error (``switchtrace.E011``), where without it ``manage.py
check`` found no issue. Django imports this module only for that entry; the
tracer never does."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core import checks


class MisnamedConfig(AppConfig):
    name = "switchtrace"
    label = "switchtrace"
    verbose_name = "switchtrace (misnamed: use switchtrace.django_app)"

    def ready(self) -> None:
        checks.register(check_app_name)


def check_app_name(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    # Registered for good once this app was ready: says something only while
    # it is installed.
    installed = apps.app_configs.get("switchtrace")
    if not isinstance(installed, MisnamedConfig):
        return []
    return [
        checks.Error(
            "INSTALLED_APPS has 'switchtrace', which is not switchtrace's Django app: "
            "nothing is recorded and no header is added.",
            hint="Replace 'switchtrace' with 'switchtrace.django_app' in INSTALLED_APPS.",
            id="switchtrace.E011",
        )
    ]
