from django.http import HttpResponse


def own_server_timing(request):
    response = HttpResponse("ok")
    response["Server-Timing"] = 'db;dur=53;desc="Database"'
    return response


class ViewError(Exception):
    pass


def raising_view(request):
    raise ViewError("raised by the view")
