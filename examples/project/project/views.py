import asyncio

from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse


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


def stream_view(request):
    """A streaming response from a sync generator."""
    return StreamingHttpResponse(f"chunk {n}\n" for n in range(3))


async def async_stream_view(request):
    """A streaming response from an async generator."""

    async def chunks():
        for n in range(3):
            await asyncio.sleep(0)
            yield f"chunk {n}\n"

    return StreamingHttpResponse(chunks())


async def slow_view(request):
    """Sleeps long enough for a client to disconnect (ASGI cancels the view)."""
    await asyncio.sleep(5)
    return HttpResponse("too late\n", content_type="text/plain")


def _select_one():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def db_sync_view(request):
    """A sync view that queries the database (SQLite)."""
    return HttpResponse(f"{_select_one()}\n", content_type="text/plain")


async def db_async_view(request):
    """An async view that queries the database: Django's ORM is synchronous,
    so the query goes through sync_to_async."""
    value = await sync_to_async(_select_one)()
    return HttpResponse(f"{value}\n", content_type="text/plain")
