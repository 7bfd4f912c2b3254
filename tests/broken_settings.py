"""The example project's settings with a MIDDLEWARE entry that does not import."""

from project.settings import *  # noqa: F403

MIDDLEWARE = [*MIDDLEWARE, "shop.middleware.Missing"]  # noqa: F405
