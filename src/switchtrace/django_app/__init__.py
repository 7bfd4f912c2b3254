"""The Django side of switchtrace: settings, middleware, handler integration
and system checks. Enable it with::

    INSTALLED_APPS += ["switchtrace.django_app"]
    MIDDLEWARE = ["switchtrace.django_app.middleware.SwitchTraceMiddleware", *MIDDLEWARE]
    SWITCHTRACE = {"ENABLED": True}
"""
