"""Static files are served through a middleware that keeps Django's chain async
(a single sync-only middleware would run every request, the long polls
included, in a thread of its own)."""

from __future__ import annotations

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.test import AsyncClient, Client
from django.utils.module_loading import import_string

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
