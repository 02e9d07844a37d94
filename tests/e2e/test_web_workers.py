"""`meshconsole web --workers 2`: one port, two worker processes, and a change
written through one worker reaches a console whose websocket another worker
serves (channels_redis carries the group message between them).

Which process serves a connection is read from /proc — the kernel's own table
of who holds the server end of each TCP connection — not from anything the
application says about itself."""

from __future__ import annotations

import asyncio
import http.client
import http.cookiejar
import json
import os
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import control_plane

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/proc/net/tcp").exists(),
                                                  reason="needs Linux /proc")]


def serving_pid(server_port: int, client_port: int) -> int | None:
    """The pid holding the server end of the loopback connection from client_port."""
    inode = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (int(local.rsplit(":", 1)[1], 16) == server_port
                        and int(remote.rsplit(":", 1)[1], 16) == client_port):
                    inode = fields[9]
    if not inode:
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                continue
    return None


def login(base_url: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/login/", timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert csrf, page[:500]
    form = urllib.parse.urlencode({"username": "e2e", "password": "e2e-password-1",
                                   "csrfmiddlewaretoken": csrf.group(1)}).encode()
    opener.open(urllib.request.Request(f"{base_url}/login/", data=form,
                                       headers={"Referer": f"{base_url}/login/"}), timeout=10)
    return next(c.value for c in jar if c.name == "sessionid")


async def first_service_message(ws: Any, weight: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no service message with weight {weight}"
        message = json.loads(await asyncio.wait_for(ws.recv(), left))
        if message.get("type") == "service" and any(
            i["weight"] == weight for i in message["data"]["instances"]
        ):
            return message  # type: ignore[no-any-return]


async def fan_out(url: str, port: int, token: str, sessionid: str, instance: str) -> None:
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/ws/live/"
    consoles: dict[int, Any] = {}  # serving pid -> one websocket it serves
    opened = []
    try:
        for _ in range(60):  # the kernel hands each accept to one worker; collect both
            ws = await connect(ws_url, additional_headers={"Cookie": f"sessionid={sessionid}",
                                                           "Origin": url}, open_timeout=20)
            opened.append(ws)
            pid = serving_pid(port, ws.local_address[1])
            assert pid is not None
            if pid not in consoles:
                consoles[pid] = ws
                await ws.send(json.dumps({"type": "subscribe", "topic": "service",
                                          "name": "pay"}))
                await first_service_message(ws, 100, 20)  # subscribed: the first picture
            if len(consoles) == 2:
                break
        assert len(consoles) == 2, f"every websocket was served by {list(consoles)}"

        # The write goes through one worker, on a connection whose server end we know.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.connect()
        writer = None
        for _ in range(100):  # until a worker has accepted it (it sits in the backlog before)
            writer = serving_pid(port, conn.sock.getsockname()[1])
            if writer is not None:
                break
            await asyncio.sleep(0.05)
        assert writer in consoles
        conn.request("PATCH", f"/api/v1/services/pay/instances/{instance}/",
                     body=json.dumps({"weight": 7}),
                     headers={"Authorization": f"Token {token}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        conn.close()
        other = next(ws for pid, ws in consoles.items() if pid != writer)
        message = await first_service_message(other, 7, 20)
        assert message["data"]["name"] == "pay"
    finally:
        for ws in opened:
            await ws.close()


def test_a_change_through_one_worker_reaches_a_console_on_another(tmp_path: Path) -> None:
    with control_plane(tmp_path, workers=False, web_workers=2) as cp:
        ids = cp.register({"name": "pay", "check": {"type": "none"}}, [9])
        sessionid = login(cp.url)
        asyncio.run(fan_out(cp.url, cp.port, cp.token, sessionid, ids[9]))
