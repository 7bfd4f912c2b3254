import asyncio

from asgiref.sync import async_to_sync
from django.http import HttpResponse


async def noop():
    return None


def sync_view(request):
    return HttpResponse("Hello, world\n", content_type="text/plain")


async def async_view(request):
    return HttpResponse("Hello, world\n", content_type="text/plain")


async def async_io_view(request):
    await asyncio.sleep(0.005)
    return HttpResponse("Hello, world\n", content_type="text/plain")


def async_to_sync_view(request):
    """A sync view that calls async code three times (Django ticket #36863)."""
    for _ in range(3):
        async_to_sync(noop)()
    return HttpResponse("Hello, world\n", content_type="text/plain")


def asyncio_run_view(request):
    """A sync view that runs a coroutine with asyncio.run()."""
    asyncio.run(noop())
    return HttpResponse("Hello, world\n", content_type="text/plain")
