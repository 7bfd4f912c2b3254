from django.http import HttpResponse, HttpResponseNotFound


def own_server_timing(request):
    response = HttpResponse("ok")
    response["Server-Timing"] = 'db;dur=53;desc="Database"'
    return response


def quoted_server_timing(request):
    response = HttpResponse("ok")
    # A comma and escaped quotes inside a quoted desc (RFC 9110 quoted-string).
    response["Server-Timing"] = 'cache;desc="stored, \\"fresh\\"", db;dur=53'
    return response


class ViewError(Exception):
    pass


def raising_view(request):
    raise ViewError("raised by the view")


class SyncOnlyMiddleware:
    """A plain sync-only middleware: no switch of its own under WSGI."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class TimingMiddleware:
    """Adds a Server-Timing metric of its own on the way out."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        timing = response.get("Server-Timing")
        response["Server-Timing"] = f"{timing}, app;dur=12" if timing else "app;dur=12"
        return response


#: One response object for every request (a view may keep one around); a
#: 404, which Django logs after the middleware chain under ASGI, so the
#: figures are written a second time when the headers are sent.
_shared_response = HttpResponseNotFound("shared")


def shared_response(request):
    return _shared_response


def robust_signal_view(request):
    """Sends contrib.auth's user_logged_out with send_robust: its async
    receivers run in one async_to_sync (Django >= 5.0)."""
    from django.contrib.auth.signals import user_logged_out

    user_logged_out.send_robust(sender=None, request=request, user=None)
    return HttpResponse("ok")


async def async_signal_view(request):
    """Sends contrib.auth's user_logged_out with asend: its sync receivers run
    in one sync_to_async (Django >= 5.0)."""
    from django.contrib.auth.signals import user_logged_out

    await user_logged_out.asend(sender=None, request=request, user=None)
    return HttpResponse("ok")


async def listed_then_streamed_view(request):
    """Request code's own sync_to_async(list), then a body from a sync iterator
    (which Django reads in a sync_to_async(list) of its own under ASGI)."""
    from asgiref.sync import sync_to_async
    from django.http import StreamingHttpResponse

    parts = await sync_to_async(list)(iter([b"a", b"b"]))
    return StreamingHttpResponse(iter(parts))
