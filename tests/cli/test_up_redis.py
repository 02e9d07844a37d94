"""`meshconsole up` keeps the embedded Redis running: killed, it comes back on
the same socket, and the web server, the Celery worker and beat find it again
(health checks run again, /readyz answers 200, websockets stream). While it
is down, enrollment answers a clear 503.

The outage is held for MESH_E2E_REDIS_OUTAGE seconds (default 5) by pausing
`up` itself (SIGSTOP) right after the kill, so that it cannot restart Redis
sooner; 5 s already spans several failed reconnects of every client. Run with
MESH_E2E_REDIS_OUTAGE=60 for the issue's 60-s outage.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.cli.test_up import login, start_up  # noqa: F401  (the fixture)
from tests.e2e.procs import free_port, wait_until

pytestmark = pytest.mark.e2e

OUTAGE_S = float(os.environ.get("MESH_E2E_REDIS_OUTAGE", "5"))
CHECKS_RESUME_WITHIN_S = 15.0  # the bound, after Redis is back


def last_check_at(database: Path) -> datetime | None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        row = db.execute("SELECT max(last_check_at) FROM registry_instance").fetchone()
    return datetime.fromisoformat(row[0]).replace(tzinfo=UTC) if row[0] else None


def redis_answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def enroll(url: str, token: str, node: str) -> httpx.Response:
    return httpx.post(
        url + "/api/v1/agents/enroll/",
        json={"token": token, "node": node, "zone": "zone-1", "version": "0.1.0", "upstreams": []},
        timeout=10,
    )


def test_killed_redis_is_restarted_and_every_client_recovers(start_up, tmp_path: Path) -> None:  # noqa: F811
    up = start_up(data_dir_first=True)  # `meshconsole --data-dir DIR up`: the option before
    up.wait_ready()
    out = up.output
    assert f"data dir {up.data_dir}" in out
    password = re.search(r"password:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    enroll_token = re.search(r"enrollment token:\s+(mesh-enroll-\S+)", out).group(1)  # type: ignore[union-attr]
    redis_pid = int(re.search(r"redis\s+embedded, \S+ \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    socket_path = up.data_dir / "redis.sock"
    database = up.data_dir / "meshconsole.sqlite3"

    # What `up` created is the owner's only.
    assert stat.S_IMODE(up.data_dir.stat().st_mode) == 0o700
    for path in (database, up.data_dir / "secret_key", *(up.data_dir / "logs").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    token = subprocess.run(
        [sys.executable, "-m", "meshconsole.cli", "apitoken", "admin", "--data-dir", str(up.data_dir)],
        capture_output=True, text=True, timeout=60, env=up.env, check=True,
    ).stdout.strip()
    api = httpx.Client(base_url=up.url, headers={"Authorization": f"Token {token}"}, timeout=10)
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.backend", str(port), "main"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=up.env,
    )
    try:
        check = {"type": "http", "path": "/health", "interval": "1s", "timeout": "500ms",
                 "rise": 1, "fall": 2}
        assert api.post("/api/v1/services/", json={"name": "pay", "check": check}).status_code == 201
        created = api.post("/api/v1/services/pay/instances/",
                           json={"address": "127.0.0.1", "port": port, "zone": "zone-1"})
        assert created.status_code == 201, created.text
        instance = created.json()["id"]
        wait_until(lambda: last_check_at(database) is not None, 30, what="a first health check")
        session = login(up.url, password)
        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        ws_url = up.url.replace("http://", "ws://") + "/ws/live/"
        ws_headers = {"Cookie": cookie, "Origin": up.url}
        with connect(ws_url, additional_headers=ws_headers, open_timeout=10) as before:
            before.send(json.dumps({"type": "subscribe", "topic": "service", "name": "pay"}))
            assert json.loads(before.recv(10))["type"] == "service"

            os.kill(up.proc.pid, signal.SIGSTOP)  # `up` cannot restart Redis while paused
            try:
                os.kill(redis_pid, signal.SIGKILL)
                wait_until(lambda: not redis_answers(socket_path), 10, what="redis down")
                # A socket open across the outage is closed, not left silent: the
                # console's page reconnects (with backoff) and subscribes again.
                with pytest.raises(ConnectionClosed):
                    while True:
                        before.recv(10)
                refused = enroll(up.url, enroll_token, "host-down")
                assert refused.status_code == 503, refused.text
                assert refused.headers["content-type"] == "application/json"
                assert "retry" in refused.json()["detail"]
                assert httpx.get(up.url + "/readyz", timeout=10).status_code == 503
                time.sleep(max(0.0, OUTAGE_S - 2))
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)

        wait_until(lambda: redis_answers(socket_path), 30, interval=0.05, what="redis back")
        back_at = datetime.now(UTC)
        assert "restarting redis" in up.output
        # The supervisor started a second redis-server, on the same socket.
        assert (up.data_dir / "logs" / "redis.log").read_text().count(f"--unixsocket {socket_path}") == 2
        # Checks run again: the worker and beat are back on the broker.
        resumed = wait_until(
            lambda: (t := last_check_at(database)) is not None and t > back_at and t,
            CHECKS_RESUME_WITHIN_S, interval=0.1, what="health checks after the outage",
        )
        print(f"redis outage ~{OUTAGE_S:.0f}s: checks resumed {(resumed - back_at).total_seconds():.2f}s "
              "after redis answered again")
        wait_until(lambda: httpx.get(up.url + "/readyz", timeout=5).status_code == 200, 15,
                   what="/readyz 200")
        assert enroll(up.url, enroll_token, "host-up").status_code == 201

        # A new websocket streams again: a change made through the API reaches it.
        with connect(ws_url, additional_headers=ws_headers, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "subscribe", "topic": "service", "name": "pay"}))
            assert json.loads(ws.recv(10))["type"] == "service"
            patched = api.patch(f"/api/v1/services/pay/instances/{instance}/", json={"weight": 7})
            assert patched.status_code == 200, patched.text
            deadline = time.monotonic() + 10
            while True:
                message = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
                if message["type"] == "service" and any(
                    i["weight"] == 7 for i in message["data"]["instances"]
                ):
                    break
        session.close()
    finally:
        backend.kill()
        backend.wait()
        api.close()
    code, left = up.stop()
    assert code == 0 and left == [], up.output
