"""The example project as served in the e2e tests, plus the record writer."""

from project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.e2e"]  # noqa: F405
