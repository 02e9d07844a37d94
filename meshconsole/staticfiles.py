"""Static files through WhiteNoise, in a middleware that keeps the chain async.

WhiteNoiseMiddleware is sync-only, and one sync-only middleware makes Django
run the whole chain for every request in a thread of its own, the async long
polls included: each pending poll would occupy a thread for up to 30 s. This
middleware is async-capable: it looks the path up in WhiteNoise's table (a
dict lookup; a file-system search only with WHITENOISE_AUTOREFRESH, done in a
thread) and either answers the static file or awaits the rest of the chain
directly.

Text assets are also served gzip-compressed to clients that accept it
(plotly.min.js: 4.8 MB, about 1.4 MB gzipped). WhiteNoise looks for a `.gz`
next to each file; ours come from finders (the plotly wheel's own directory
among them, which is not ours to write), so the compressed copies are kept in
the data dir (`DATA_DIR/gzip/`), made once per file content (keyed by path,
size and mtime) when the web process starts, written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from wsgiref.headers import Headers

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.responders import StaticFile

GetResponse = Callable[[HttpRequest], Any]

COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".html", ".txt", ".map")
MIN_COMPRESS_BYTES = 1024


def gzip_copy(path: str, cache_dir: Path) -> str | None:
    """The gzip copy of PATH in CACHE_DIR (made if missing), or None when PATH is
    not a text asset worth compressing or cannot be read."""
    if not path.endswith(COMPRESSIBLE):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if stat.st_size < MIN_COMPRESS_BYTES:
        return None
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir / f"{key[:32]}{Path(path).suffix}.gz"
    if target.exists():
        return str(target)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as source:
            data = gzip.compress(source.read(), compresslevel=6, mtime=0)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)  # two workers starting at once write the same bytes
    except OSError:
        return None
    return str(target)


class _WhiteNoise(WhiteNoiseMiddleware):
    """WhiteNoise whose gzip alternative of a text asset is its copy in the data dir."""

    def __init__(self, get_response: GetResponse) -> None:
        self.gzip_dir = Path(settings.DATA_DIR) / "gzip"
        super().__init__(get_response)  # type: ignore[no-untyped-call]

    def get_static_file(self, path: str, url: str, stat_cache: Any = None) -> StaticFile:
        compressed = gzip_copy(path, self.gzip_dir)
        if compressed is None:
            return super().get_static_file(path, url, stat_cache)  # type: ignore[no-any-return]
        headers = Headers([])
        self.add_mime_headers(headers, path, url)  # type: ignore[no-untyped-call]
        self.add_cache_headers(headers, path, url)  # type: ignore[no-untyped-call]
        if self.allow_all_origins:
            headers["Access-Control-Allow-Origin"] = "*"
        if self.add_headers_function is not None:
            self.add_headers_function(headers, path, url)
        return StaticFile(path, headers.items(), encodings={"gzip": compressed})  # type: ignore[no-untyped-call]


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.whitenoise = _WhiteNoise(get_response)
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
