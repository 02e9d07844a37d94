"""Pending long polls cost neither a database connection nor a thread: 200
agents' config polls wait on a real control plane (web process on loopback)
while we count the web process's threads and its database connections."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from meshconsole.longpoll import DB_STEPS
from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import http

pytestmark = pytest.mark.e2e

POLLS = 200


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def database_connections(cp: ControlPlane, pid: int) -> int:
    url = cp.env["DATABASE_URL"]
    if url.startswith("sqlite"):
        # Each SQLite connection holds the database file open.
        db_file = os.path.realpath(urlsplit(url).path)
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                count += os.readlink(fd) == db_file
            except OSError:
                continue
        return count
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


async def poll(port: int, path: str, token: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Agent {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 60)
    finally:
        writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return status, raw


# On PostgreSQL the web process has a pool of two connections: were a pending
# poll to hold one, the third poll (and the PATCH that wakes them all) would
# wait out the pool's timeout and fail. (The pool keeps connections it has
# opened for minutes, so counting them is only a bound, not the proof.)
# On SQLite (no pool) the web process keeps two closed connections open for the
# next request, and at most DB_STEPS long-poll steps are at the database at
# once, so a handful of descriptors is the most it may hold; 200 was the count
# when a burst of polls opened one each.
POOL = {"MESH_DB_POOL_MAX": "2", "MESH_DB_POOL_TIMEOUT": "10", "MESH_SQLITE_IDLE_MAX": "2"}
CONNECTIONS = DB_STEPS + 2


def test_pending_long_polls_hold_no_database_connection_and_no_thread(tmp_path: Path) -> None:
    with control_plane(tmp_path, workers=False, env=POOL) as cp:
        status, body = http("POST", f"{cp.url}/api/v1/agents/enroll/", {
            "token": cp.enroll_token, "node": "poller", "zone": "zone-1", "version": "0",
            "upstreams": [{"service": "lp-target", "protocol": "http"}],
        })
        assert status == 201, body
        agent_id, token, revision = body["agent_id"], body["agent_token"], body["revision"]
        ids = cp.register({"name": "lp-target"}, [9001])
        status, body = http("GET", f"{cp.url}/api/v1/agents/{agent_id}/config/", None,
                            {"Authorization": f"Agent {token}"})
        assert status == 200, body
        revision = body["revision"]
        pid = cp.procs.procs["web"].pid
        idle_threads = threads(pid)
        path = f"/api/v1/agents/{agent_id}/config/?revision={revision}&wait=30s"

        async def scenario() -> tuple[int, int, list[tuple[int, bytes]]]:
            polls = [asyncio.create_task(poll(cp.port, path, token)) for _ in range(POLLS)]
            # First the web process takes them in (a thread each while Django
            # starts the request) and settles with every poll pending, well
            # inside their 30 s ...
            busy = settled = False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not settled:
                await asyncio.sleep(0.05)
                busy = busy or threads(pid) > idle_threads + 10
                settled = busy and threads(pid) <= idle_threads + 10
            await asyncio.sleep(1)
            # ... then, for two seconds of their wait, the most it holds. Each
            # poll re-reads its index every ~2 s meanwhile, so some connections
            # come and go. Before the fix, each pending poll kept a thread and a
            # connection for its whole wait; a burst of them opened one each.
            high_threads = high_connections = 0
            for _ in range(8):
                await asyncio.sleep(0.25)
                high_threads = max(high_threads, threads(pid))
                high_connections = max(
                    high_connections, await asyncio.to_thread(database_connections, cp, pid)
                )
            assert not any(p.done() for p in polls), "a poll returned before any change"
            status, body = await asyncio.to_thread(
                cp.api, "PATCH", f"/api/v1/services/lp-target/instances/{ids[9001]}/",
                {"weight": 7},
            )
            assert status == 200, body
            return high_threads, high_connections, await asyncio.gather(*polls)

        high_threads, high_connections, answers = asyncio.run(scenario())
        assert [a for a in answers if a[0] != 200] == []
        # Every one of them was still waiting, and the change woke it.
        assert all(json.loads(raw.split(b"\r\n\r\n", 1)[1])["revision"] > revision
                   for _, raw in answers)
        assert high_threads <= idle_threads + 10, (idle_threads, high_threads)
        print("high water: threads", high_threads, "of idle", idle_threads,
              "database connections", high_connections)
        assert high_connections <= CONNECTIONS, high_connections
