from django.urls import path
from project.urls import urlpatterns as project_urls

from . import views

urlpatterns = [
    *project_urls,
    path("server-timing/", views.own_server_timing),
    path("quoted-server-timing/", views.quoted_server_timing),
    path("shared/", views.shared_response),
    path("paused-shared/", views.paused_shared_response),
    path("closing-shared/", views.closing_shared_view),
    path("raise/", views.raising_view),
    path("async-bridging/", views.async_bridging_view),
    path("robust-signal/", views.robust_signal_view),
    path("async-signal/", views.async_signal_view),
    path("project-signal/", views.project_signal_view),
    path("members/", views.members_view),
    path("other-members/", views.other_members_view),
    path("staff/", views.staff_view),
    path("enqueue/", views.enqueue_view),
    path("aenqueue/", views.aenqueue_view),
    path("listed-then-streamed/", views.listed_then_streamed_view),
    path("to-thread/", views.to_thread_view),
    path("sub-request/", views.sub_request_view),
    path("async-sub-request/", views.async_sub_request_view),
    path("streamed-sub-request/", views.streamed_sub_request_view),
    path("shared-sub-request/", views.shared_sub_request_view),
    path("sub-request-headers/", views.sub_request_headers_view),
    path("content-types-export/", views.content_types_export_view),
    path("file/", views.file_view),
    path("thread-insensitive/", views.thread_insensitive_view),
    path("listing-stream/", views.listing_stream_view),
    path("made/", views.made_view),
    path("cached-staff/", views.cached_staff_view),
    path("class-view/", views.ClassView.as_view()),
    path("other-class-view/", views.OtherClassView.as_view()),
]
