"""Static files through WhiteNoise, in a middleware that keeps the chain async.

WhiteNoiseMiddleware is sync-only, and one sync-only middleware makes Django
run the whole chain for every request in a thread of its own, the async long
polls included: each pending poll would occupy a thread for up to 30 s. This
middleware is async-capable: it looks the path up in WhiteNoise's table (a
dict lookup; a file-system search only with WHITENOISE_AUTOREFRESH, done in a
thread) and either answers the static file or awaits the rest of the chain
directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

GetResponse = Callable[[HttpRequest], Any]


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.whitenoise = WhiteNoiseMiddleware(get_response)  # type: ignore[no-untyped-call]
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        response: HttpResponseBase = self.whitenoise(request)
        return response

    def _find(self, request: HttpRequest) -> Any:
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(request.path_info)  # type: ignore[no-untyped-call]
        return self.whitenoise.files.get(request.path_info)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(self.whitenoise.static_prefix):
            response: HttpResponseBase = await self.get_response(request)
            return response
        if self.whitenoise.autorefresh:
            static_file = await sync_to_async(self._find)(request)
        else:
            static_file = self._find(request)
        if static_file is None:
            response = await self.get_response(request)
            return response
        # Opens the file: a short blocking call, in a thread.
        served: HttpResponseBase = await sync_to_async(self.whitenoise.serve)(
            static_file, request
        )
        return served
