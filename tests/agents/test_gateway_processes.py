"""Real `meshagent gateway` processes: a fake control plane serves the snapshot, the
global rate limit is shared through the real Redis (db 13) by two gateway processes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.runtime.cli import main
from tests.agents.backends import Backend, FakeControlPlane, HttpClient, fetch, free_port
from tests.agents.gateway_helpers import entry, request_bytes, route

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def gateway_config(tmp_path: Path, name: str, cp: str, admin: int, listen: int,
                   **gateway: Any) -> Path:
    data = {"control_plane": cp, "token": "enroll-secret", "node": f"edge-{name}",
            "data_dir": str(tmp_path / f"data-{name}"), "admin": f"127.0.0.1:{admin}",
            "dns": "off",
            "gateway": {"name": "edge", "listeners": [{"listen": f"127.0.0.1:{listen}"}],
                        **gateway}}
    path = tmp_path / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def gateway_process(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agents.runtime.cli", "gateway", "-c", str(config),
        "--log-level", "WARNING", stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        assert b"admin on" in line, line
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_routed(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ConnectionError):
            async with HttpClient(port) as client:
                await client.send(request_bytes("GET", "/probe"))
                if (await client.read_response()).status == 200:
                    return
        assert time.monotonic() < deadline, "the gateway never routed /probe"
        await asyncio.sleep(0.05)


def gateway_snapshot(backend: Backend, limited: str, requests: int, burst: int) -> dict[str, Any]:
    limit = {"scope": "route", "mode": "global", "requests": requests, "per": "second",
             "burst": burst}
    return {"agent_id": "x", "node": "edge", "report_interval_ms": 200,
            "upstreams": {"orders": entry(backend)},
            "gateway": {"name": "edge", "routes": [
                route("probe", "orders", path={"exact": "/probe"}),
                route(limited, "orders", path={"prefix": "/limited"}, rate_limits=[limit]),
            ]}}


async def _hammer(port: int, until: float, counts: dict[int, int]) -> None:
    async with HttpClient(port) as client:
        while time.monotonic() < until:
            await client.send(request_bytes("GET", "/limited"))
            answer = await client.read_response()
            counts[answer.status] = counts.get(answer.status, 0) + 1
            if answer.status == 429:
                await asyncio.sleep(0.002)


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379 (db 13)")
async def test_global_limit_is_shared_by_two_gateway_processes(tmp_path: Path) -> None:
    backend = await Backend("orders").start()
    cps = [FakeControlPlane(), FakeControlPlane()]
    limited = "lim-" + uuid.uuid4().hex[:10]  # a fresh bucket in db 13
    rate, burst = 50, 25  # a bucket that fills in 0.5s: a stalled client (shared machine) loses none
    for cp in cps:
        await cp.start()
        await cp.publish(override=gateway_snapshot(backend, limited, rate, burst))
    ports = [await free_port() for _ in range(4)]
    configs = [gateway_config(tmp_path, str(i), cps[i].url, ports[2 * i], ports[2 * i + 1],
                              redis=REDIS_URL, redis_timeout="200ms") for i in range(2)]
    try:
        async with gateway_process(configs[0]), gateway_process(configs[1]):
            listen = [ports[1], ports[3]]
            for port in listen:
                await wait_routed(port)
            counts: list[dict[int, int]] = [{}, {}]
            started = time.monotonic()
            until = started + 3.0
            await asyncio.gather(*(_hammer(listen[i % 2], until, counts[i % 2])
                                   for i in range(8)))
            elapsed = time.monotonic() - started
            for admin in (ports[0], ports[2]):
                stats = (await fetch(admin, "GET", "/stats")).json()["gateway"]
                print("redis errors", stats["redis_errors_total"])
            accepted = [c.get(200, 0) for c in counts]
            expected = rate * elapsed + burst
            total = sum(accepted)
            print(f"accepted {accepted} (sum {total}), expected {expected:.1f}, 429s "
                  f"{[c.get(429, 0) for c in counts]}")
            assert abs(total - expected) <= 0.10 * expected, (accepted, expected, counts)
            assert min(accepted) > 0.2 * total  # both processes really took part
            assert all(set(c) <= {200, 429} for c in counts), counts
            assert sum(c.get(429, 0) for c in counts) > total  # the limit was really hit
            # the gateway says so at enroll and in reports, and reports its windows
            await asyncio.sleep(0.6)
            for cp in cps:
                assert cp.enrollments[0]["gateway"] == {"name": "edge"}
                assert cp.reports[-1]["gateway"] == {"name": "edge"}
                windows = [w for r in cp.reports for w in r["metrics"] if w.get("gateway")]
                routed = {w["route"] for w in windows}
                assert limited in routed and "probe" in routed
                assert sum(w["statuses"]["4xx"] for w in windows if w["route"] == limited) > 0
    finally:
        for cp in cps:
            await cp.stop()
        await backend.stop()


def test_gateway_command_needs_a_gateway_section(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"control_plane": "http://127.0.0.1:1", "token": "t",
                                    "node": "n", "data_dir": str(tmp_path / "d"),
                                    "admin": "127.0.0.1:0", "dns": "off"}))
    assert main(["gateway", "-c", str(path)]) == 2
    assert "gateway: required" in capsys.readouterr().err


def test_check_summarises_the_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = gateway_config(tmp_path, "a", "http://127.0.0.1:1", 0, 0)
    assert main(["check", "-c", str(path)]) == 0
    assert "gateway edge on http://127.0.0.1:0" in capsys.readouterr().out


async def test_gateway_listener_is_handed_over_on_restart(tmp_path: Path) -> None:
    backend = await Backend("orders").start()
    cp = FakeControlPlane()
    await cp.start()
    await cp.publish(override=gateway_snapshot(backend, "lim", 1000, 1000))
    admin, listen = await free_port(), await free_port()
    config = gateway_config(tmp_path, "a", cp.url, admin, listen)
    try:
        async with gateway_process(config) as old:
            await wait_routed(listen)
            # The successor binds nothing itself: it takes the old one's listening socket.
            async with gateway_process(config) as new:
                old.terminate()
                assert await asyncio.wait_for(old.wait(), 30) == 0
                for _ in range(5):
                    async with HttpClient(listen) as client:
                        await client.send(request_bytes("GET", "/probe"))
                        assert (await client.read_response()).status == 200
                assert new.returncode is None
    finally:
        await cp.stop()
        await backend.stop()
