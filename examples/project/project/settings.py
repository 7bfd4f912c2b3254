"""A hello-world project with switchtrace enabled.

``SWITCHTRACE_EXAMPLE_MIDDLEWARE`` chooses the middleware:

- ``shipped`` (default): the seven middleware of ``startproject``, as Django ships them;
- ``sync-only``: the same seven, made sync-only (``MiddlewareMixin.async_capable = False``,
  the change measured in Django ticket #37177);
- ``none``: no middleware but switchtrace's.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "switchtrace-example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "switchtrace.django_app",
]

STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

MIDDLEWARE_VARIANTS = ("shipped", "sync-only", "none")
MIDDLEWARE_VARIANT = os.environ.get("SWITCHTRACE_EXAMPLE_MIDDLEWARE", "shipped")
if MIDDLEWARE_VARIANT not in MIDDLEWARE_VARIANTS:
    raise SystemExit(
        f"SWITCHTRACE_EXAMPLE_MIDDLEWARE={MIDDLEWARE_VARIANT!r}: "
        f"allowed are {', '.join(MIDDLEWARE_VARIANTS)}"
    )
if MIDDLEWARE_VARIANT == "sync-only":
    from django.utils.deprecation import MiddlewareMixin

    MiddlewareMixin.async_capable = False

MIDDLEWARE = ["switchtrace.django_app.middleware.SwitchTraceMiddleware"]
if MIDDLEWARE_VARIANT != "none":
    MIDDLEWARE += STARTPROJECT_MIDDLEWARE

SWITCHTRACE = {
    "ENABLED": True,
    # Spans go to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set
    # (docker-compose.yml points it at Jaeger), else to this file.
    "FILE_PATH": os.environ.get(
        "SWITCHTRACE_EXAMPLE_TRACES", str(BASE_DIR / "switchtrace-traces.jsonl")
    ),
}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SWITCHTRACE_EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"switchtrace": {"handlers": ["console"], "level": "WARNING"}},
}
