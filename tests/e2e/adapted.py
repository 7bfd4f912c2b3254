"""The example project's WSGI application served by an ASGI server through
asgiref's WsgiToAsgi, beside an ASGI application of another framework's
(``/other/``, which runs a call in a thread of its own: asyncio.to_thread)."""

from __future__ import annotations

import asyncio

from asgiref.wsgi import WsgiToAsgi
from django.core.wsgi import get_wsgi_application

django = WsgiToAsgi(get_wsgi_application())


async def other(scope, receive, send):
    await asyncio.to_thread(int)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"other\n"})


async def application(scope, receive, send):
    if scope["path"].startswith("/other/"):
        return await other(scope, receive, send)
    return await django(scope, receive, send)
