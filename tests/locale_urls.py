"""A URLconf with i18n_patterns, a path converter that raises, and views
that are objects, for explain's tests."""

import functools

from django.conf.urls.i18n import i18n_patterns
from django.http import Http404, HttpResponse
from django.urls import path, register_converter


async def hello_view(request, **kwargs):
    return HttpResponse("hello")


class RaisingConverter:
    regex = "[a-z]+"

    def to_python(self, value):
        if value == "boom":
            raise KeyError(value)
        if value == "gone":
            raise Http404(value)  # Django answers 404
        return value

    def to_url(self, value):
        return value


register_converter(RaisingConverter, "raising")


class CallableView:
    def __call__(self, request):
        return HttpResponse("called")


urlpatterns = [
    path("item/<raising:name>/", hello_view),
    path("object/", CallableView()),
    path("partial/", functools.partial(hello_view, extra=1)),
]
urlpatterns += i18n_patterns(path("hello/", hello_view))
