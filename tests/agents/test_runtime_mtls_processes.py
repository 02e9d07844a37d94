"""Two real `meshagent run` processes with mTLS between them, each with a fake control
plane that signs CSRs with a test CA (runtime tests only; the real control plane is
the end-to-end test's). Steady load through leaf renewal and root rotation: 0 failures."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agents.backends import Backend, HttpClient, free_port
from tests.agents.fake_ca import FakeCAControlPlane
from tests.agents.test_runtime_cli import write_config
from tests.agents.test_runtime_workers import ready_stats, stats
from tests.agents.testca import TestCA

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def agent(tmp_path: Path, name: str, cp: FakeCAControlPlane,
                **config: Any) -> AsyncIterator[int]:
    admin = await free_port()
    (tmp_path / name).mkdir()
    path = write_config(tmp_path / name, control_plane=cp.url, node=name,
                        admin=f"127.0.0.1:{admin}", dns="off", **config)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agents.runtime.cli", "run", "-c", str(path),
        "--log-level", "WARNING", stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    try:
        yield admin
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def until(check: Any, timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def serials(admin: int) -> set[str]:
    with contextlib.suppress(OSError, AssertionError):
        return {c["serial"] for c in (await stats(admin))["certificates"]}
    return set()


class Load:
    """Steady keep-alive and new-connection traffic through the client agent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failed: list[str] = []
        self.stop = asyncio.Event()

    async def run(self, fresh: bool) -> None:
        while not self.stop.is_set():
            try:
                async with HttpClient(self.port) as client:
                    for _ in range(1 if fresh else 50):
                        response = await client.request("GET", "/x")
                        if response.status == 200:
                            self.ok += 1
                        else:
                            self.failed.append(f"{response.status} {response.header('x-mesh-error')}")
                        await asyncio.sleep(0.005)
            except (OSError, ConnectionError) as exc:
                self.failed.append(repr(exc))


async def test_two_agents_mtls_deny_renewal_and_root_rotation(tmp_path: Path) -> None:
    ca = TestCA("root-1")
    backend = await Backend("payments").start()
    inbound_port = await free_port()
    server_cp = FakeCAControlPlane(ca, "host-b", ttl_s=6)
    client_cp = FakeCAControlPlane(ca, "host-a", ttl_s=6)
    await server_cp.start()
    await client_cp.start()
    server_cp.security["inbound"] = {"payments": {"mtls": "strict"}}
    listen = await free_port()
    await client_cp.publish({"payments": {
        "protocol": "http", "mtls": "strict",
        "policy": {"connect_timeout_ms": 1000, "request_timeout_ms": 5000},
        "endpoints": [{"id": "p1", "address": "127.0.0.1", "port": backend.port,
                       "status": "passing",
                       "inbound": {"address": "127.0.0.1", "port": inbound_port}}]}})
    try:
        async with agent(tmp_path, "host-b", server_cp,
                         services=[{"name": "payments", "address": "127.0.0.1",
                                    "port": backend.port}],
                         upstreams=[], inbound={"listen": f"127.0.0.1:{inbound_port}"}
                         ) as server_admin, \
                agent(tmp_path, "host-a", client_cp,
                      upstreams=[{"service": "payments", "listen": f"127.0.0.1:{listen}"}]
                      ) as client_admin:
            await ready_stats(server_admin)
            await ready_stats(client_admin)
            await until(lambda: serials(server_admin))
            await until(lambda: serials(client_admin))
            assert (await stats(server_admin))["inbound"]["advertise"] == {
                "address": "127.0.0.1", "port": inbound_port}
            # The server agent reports where it can be reached (the contract's `inbound`).
            assert server_cp.enrollments[0]["inbound"] == {"address": "127.0.0.1",
                                                           "port": inbound_port}

            load = Load(listen)
            tasks = [asyncio.create_task(load.run(fresh=i % 2 == 0)) for i in range(4)]
            await until(lambda: _true(load.ok > 20))
            # Leaf renewal (6 s lifetime: renewed at about 3 s) under the load.
            first = await serials(server_admin) | await serials(client_admin)
            await until(lambda: _renewed(server_admin, client_admin, first), timeout=20)
            # Root rotation: the bundle gains root-2, leaves come from it, root-1 retires.
            ca2 = TestCA("root-2")
            for cp in (server_cp, client_cp):
                cp.ca = ca2
                await cp.set_security(roots=[ca.pem, ca2.pem])
            before = len(server_cp.issued) + len(client_cp.issued)
            await until(lambda: _true(len(server_cp.issued) + len(client_cp.issued)
                                      >= before + 2), timeout=10)
            await asyncio.sleep(1.0)
            for cp in (server_cp, client_cp):
                await cp.set_security(roots=[ca2.pem])
            ok_at_retire = load.ok
            await until(lambda: _true(load.ok > ok_at_retire + 50), timeout=10)
            load.stop.set()
            await asyncio.gather(*tasks)
            assert load.failed == []
            assert load.ok > 100
            # The destination recorded the edge from the verified identity, marked inbound.
            inbound = [w for r in server_cp.reports for w in r["metrics"] if w.get("inbound")]
            assert {(w["source"], w["destination"]) for w in inbound} == {("orders", "payments")}
            # Deny on the destination: 403, and the backend never sees it.
            revision = await server_cp.set_security(intentions=[
                {"id": "no-orders", "source": "*", "destination": "payments",
                 "action": "deny", "http": None}])
            await until(lambda: _applied(server_admin, revision), timeout=3)
            seen = len(backend.requests)
            async with HttpClient(listen) as client:
                response = await client.request("GET", "/after-deny")
            assert response.status == 403
            assert response.header("x-mesh-error") == "denied-by-policy (no-orders)"
            await asyncio.sleep(0.1)
            assert [r.path for r in backend.requests[seen:]] == []
    finally:
        await backend.stop()
        await server_cp.stop()
        await client_cp.stop()


async def _true(value: bool) -> bool:
    return value


async def _renewed(a: int, b: int, first: set[str]) -> bool:
    now = await serials(a) | await serials(b)
    return bool(now) and not (now & first)


async def _applied(admin: int, revision: int) -> bool:
    return bool((await stats(admin))["applied_revision"] == revision)
