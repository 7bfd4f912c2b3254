from django.http import HttpResponse


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
