"""A real console server (uvicorn on loopback, its own data dir) and headless
Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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
                                  errors=errors // 2, buckets=buckets,
                                  subset=("v1" if age == 5 else "v2") if destination == "payments" else "")
print(api_token_create(user=user))
"""


@dataclass
class ConsoleServer:
    url: str
    token: str
    manage: Callable[..., str]

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
        yield ConsoleServer(url=cp.url, token=token, manage=cp.manage)


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


# Chromium logs an answered request with an error status as a console error;
# a test that provokes one on purpose lists the status in page.allowed_statuses.
FAILED_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


def watch_errors(page: Any) -> None:
    """Page errors and console.error messages collect in page.errors; the
    `page` fixture fails a test that leaves any."""
    page.errors = []
    page.allowed_statuses = set()

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        failed = FAILED_LOAD.match(message.text)
        if failed and int(failed.group(1)) in page.allowed_statuses:
            return
        page.errors.append(f"console.error: {message.text}")

    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", on_console)


def new_page(browser: Any, console_server: ConsoleServer) -> tuple[Any, Any]:
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, base_url=console_server.url
    )
    page = context.new_page()
    watch_errors(page)
    return context, page


@pytest.fixture
def page(browser: Any, console_server: ConsoleServer) -> Iterator[Any]:
    context, page = new_page(browser, console_server)
    try:
        yield page
        assert page.errors == [], page.errors
    finally:
        context.close()


@pytest.fixture
def other_page(browser: Any, console_server: ConsoleServer) -> Iterator[Any]:
    """A second console (its own browser context and session)."""
    context, page = new_page(browser, console_server)
    try:
        yield page
        assert page.errors == [], page.errors
    finally:
        context.close()
