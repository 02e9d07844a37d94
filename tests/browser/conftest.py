"""A real console server (uvicorn on loopback, its own data dir) and headless
Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
USERNAME = "browser-admin"
PASSWORD = "browser-password-1"

# Users, a token, and a little traffic so the topology has edges to draw.
SEED = f"""
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token
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
print(Token.objects.create(user=user).key)
"""


@dataclass
class ConsoleServer:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(server: ConsoleServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy in {timeout}s:\n{server.log.read_text()[-3000:]}")


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
    data_dir = tmp_path_factory.mktemp("console-data")
    env = dict(os.environ)
    env.update(
        MESH_DATA_DIR=str(data_dir),
        MESH_CHANNEL_PREFIX=f"browser{uuid.uuid4().hex[:8]}",
        DJANGO_SETTINGS_MODULE="meshconsole.settings",
        PYTHONUNBUFFERED="1",
    )
    env.pop("MESH_DEBUG", None)
    # Its own SQLite file in the temp data dir: a shared DATABASE_URL would keep
    # this server's users and services from one run to the next.
    env.pop("DATABASE_URL", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    token = manage("shell", "-c", SEED).strip().splitlines()[-1]
    port = _free_port()
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "meshconsole.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ConsoleServer(url=f"http://127.0.0.1:{port}", token=token, process=process, log=log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
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
