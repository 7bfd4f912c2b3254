"""A URLconf of views written with Django REST framework, adrf, django-ninja
and Channels' database_sync_to_async (imported only by the tests that find
those packages installed)."""

import adrf.decorators
import adrf.views
import adrf.viewsets
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import HttpResponse
from django.urls import path
from ninja import NinjaAPI
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView


class OrderView(APIView):
    def get(self, request):
        return Response({"ok": True})


class OrderViewSet(viewsets.ViewSet):
    def list(self, request):
        return Response([])

    def retrieve(self, request, pk=None):
        return Response({"pk": pk})


class AsyncOrderView(adrf.views.APIView):
    async def get(self, request):
        return Response({"ok": True})


class AsyncOrderViewSet(adrf.viewsets.ViewSet):
    async def list(self, request):
        return Response([])


@api_view(["GET"])
def order_function(request):
    return Response({"ok": True})


@api_view(["GET"])
def other_order_function(request):
    return Response({"ok": True})


@adrf.decorators.api_view(["GET"])
async def async_order_function(request):
    return Response({"ok": True})


api = NinjaAPI(urls_namespace="switchtrace-tests")


@api.get("/sync")
def list_orders(request):
    return {"ok": True}


@api.get("/async")
async def async_list_orders(request):
    return {"ok": True}


# An async operation on the path makes ninja's view for it async: the sync
# one runs in sync_to_async(operation.run).
@api.get("/mixed")
def mixed_get(request):
    return {"ok": True}


@api.post("/mixed")
async def mixed_post(request):
    return {"ok": True}


def count_orders():
    return 0


async def channels_db_view(request):
    await database_sync_to_async(count_orders)()
    return HttpResponse("ok")


async def sync_to_async_view(request):
    await sync_to_async(count_orders)()
    return HttpResponse("ok")


router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("async-orders", AsyncOrderViewSet, basename="async-order")

urlpatterns = [
    path("drf/", OrderView.as_view()),
    path("adrf/", AsyncOrderView.as_view()),
    path("drf-function/", order_function),
    path("drf-other-function/", other_order_function),
    path("adrf-function/", async_order_function),
    path("ninja/", api.urls),
    path("channels-db/", channels_db_view),
    path("sync-to-async/", sync_to_async_view),
    *router.urls,
]
