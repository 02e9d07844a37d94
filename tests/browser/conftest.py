"""A real console server (uvicorn on loopback, its own data dir) and headless
Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import control_plane

CHROMIUM = Path("/usr/bin/chromium")
USERNAME = "browser-admin"
PASSWORD = "browser-password-1"

# Users, a token, and a little traffic so the topology has edges to draw.
SEED = f"""
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from meshconsole.apitokens import api_token_create
from agents.runtime import histogram
from monitoring.models import EdgeWindow
from registry import services
user = User.objects.create_superuser({USERNAME!r}, "b@example.com", {PASSWORD!r})
for name in ("web", "orders", "payments"):
    service = services.service_create(user=user, data={{"name": name, "check_type": "none"}})
    for port in (8001, 8002):
        services.instance_register(user=user, service=service,
                                   data={{"address": "127.0.0.1", "port": port, "zone": "zone-1"}})
now = timezone.now()
for source, destination, requests, errors in (("web", "orders", 600, 3), ("orders", "payments", 240, 12)):
    buckets = histogram.empty()
    for i, ms in enumerate((2, 4, 8, 30)):
        buckets[histogram.bucket_index(ms)] += requests // (2 ** (i + 1))
    for age in (5, 15):
        EdgeWindow.objects.create(window_end=now - timedelta(seconds=age), seconds=10, node="host-a",
                                  source=source, destination=destination, requests=requests // 2,
                                  errors=errors // 2, buckets=buckets)
print(api_token_create(user=user))
"""


@dataclass
class ConsoleServer:
    url: str
    token: str

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: the browser tests need a system Chromium"
        if os.environ.get("MESH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (MESH_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """A real control plane (web only) with the seeded users, services and traffic."""
    with control_plane(tmp_path_factory.mktemp("console"), workers=False) as cp:
        token = cp.manage("shell", "-c", SEED).splitlines()[-1]
        yield ConsoleServer(url=cp.url, token=token)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    if os.environ.get("MESH_REQUIRE_BROWSER") == "1":
        import playwright.sync_api as sync_api  # required: a missing package fails the run
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, console_server: ConsoleServer) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, base_url=console_server.url
    )
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
