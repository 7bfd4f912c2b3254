"""A natively async-only middleware, for the prediction tests."""

from asgiref.sync import markcoroutinefunction


class AsyncOnly:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        return await self.get_response(request)
