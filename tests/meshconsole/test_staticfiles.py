"""Static files are served through a middleware that keeps Django's chain async
(a single sync-only middleware would run every request, the long polls
included, in a thread of its own)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.test import AsyncClient, Client
from django.utils.module_loading import import_string

from meshconsole.staticfiles import gzip_copy

PLOTLY = "/static/plotly/plotly.min.js"


def test_every_middleware_is_async_capable() -> None:
    sync_only = [
        path for path in settings.MIDDLEWARE
        if not getattr(import_string(path), "async_capable", False)  # Django's default
    ]
    assert sync_only == []


def test_the_static_middleware_is_async_in_an_async_chain() -> None:
    from meshconsole.staticfiles import StaticFilesMiddleware

    async def view(request: object) -> None:
        return None

    assert iscoroutinefunction(StaticFilesMiddleware(view))
    assert not iscoroutinefunction(StaticFilesMiddleware(lambda request: None))


@pytest.mark.django_db
def test_static_files_are_served_on_the_sync_path() -> None:
    response = Client().get(PLOTLY)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


@pytest.mark.django_db
@pytest.mark.asyncio
async def test_static_files_are_served_on_the_async_path() -> None:
    client = AsyncClient(headers={"host": "127.0.0.1"})
    response = await client.get(PLOTLY)
    assert response.status_code == 200
    assert "max-age" in response["Cache-Control"]
    missing = await client.get("/static/no-such-file.js")
    assert missing.status_code == 404


@pytest.mark.django_db
def test_text_assets_are_served_gzipped_to_clients_that_accept_it(
    settings: Any, tmp_path: Path
) -> None:
    settings.DATA_DIR = tmp_path
    plain = Client().get(PLOTLY)
    body = b"".join(plain.streaming_content)
    assert "Content-Encoding" not in plain
    assert "Accept-Encoding" in plain["Vary"]

    zipped = Client().get(PLOTLY, headers={"accept-encoding": "gzip, deflate, br"})
    assert zipped["Content-Encoding"] == "gzip"
    raw = b"".join(zipped.streaming_content)
    assert int(zipped["Content-Length"]) == len(raw) < len(body) // 2
    assert gzip.decompress(raw) == body
    # The copy is kept in the data dir, once per file content.
    assert len(list((tmp_path / "gzip").glob("*.js.gz"))) >= 1


def test_a_gzip_copy_is_made_once_and_not_for_small_or_binary_files(tmp_path: Path) -> None:
    asset = tmp_path / "app.js"
    asset.write_text("console.log('mesh');\n" * 200)
    cache = tmp_path / "cache"
    first = gzip_copy(str(asset), cache)
    assert first is not None and gzip.decompress(Path(first).read_bytes()) == asset.read_bytes()
    made = Path(first).stat().st_mtime_ns
    assert gzip_copy(str(asset), cache) == first and Path(first).stat().st_mtime_ns == made
    asset.write_text("console.log('changed');\n" * 200)  # new content: a new copy
    second = gzip_copy(str(asset), cache)
    assert second != first and gzip.decompress(Path(second or "").read_bytes()).startswith(
        b"console.log('changed')")
    small = tmp_path / "small.js"
    small.write_text("x")
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG" + b"\0" * 4096)
    assert gzip_copy(str(small), cache) is None
    assert gzip_copy(str(image), cache) is None
    assert gzip_copy(str(tmp_path / "missing.js"), cache) is None
