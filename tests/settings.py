"""The example project's settings, with the test URLs added."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

SWITCHTRACE = {"ENABLED": True, "EXPORTER": "memory"}
