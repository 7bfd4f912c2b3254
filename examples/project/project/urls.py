from django.urls import path

from . import views

urlpatterns = [
    path("sync/", views.sync_view),
    path("async/", views.async_view),
    path("async-io/", views.async_io_view),
    path("async-to-sync/", views.async_to_sync_view),
    path("asyncio-run/", views.asyncio_run_view),
    path("stream/", views.stream_view),
    path("async-stream/", views.async_stream_view),
    path("slow/", views.slow_view),
    path("db-sync/", views.db_sync_view),
    path("db-async/", views.db_async_view),
]
