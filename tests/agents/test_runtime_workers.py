"""`meshagent run --workers N`: a real parent process, its workers, a fake control plane."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agents.backends import Backend, FakeControlPlane, fetch, free_port, upstream_entry
from tests.agents.test_runtime_agent import eventually
from tests.agents.test_runtime_cli import write_config

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
EDGE = ("orders", "payments")


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@contextlib.asynccontextmanager
async def agent_process(tmp_path: Path, cp: FakeControlPlane, workers: int = 2
                        ) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    admin_port = await free_port()
    path = write_config(tmp_path, control_plane=cp.url, admin=f"127.0.0.1:{admin_port}",
                        upstreams=[{"service": "payments", "listen": "127.0.0.1:0"}])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agents.runtime.cli", "run", "-c", str(path),
        "--workers", str(workers), "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    pids: list[int] = []
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)  # type: ignore[union-attr]
        assert b"admin on 127.0.0.1:" in line
        yield process, admin_port
    finally:
        with contextlib.suppress(Exception):
            pids = [w["pid"] for w in (await stats(admin_port))["workers"] if w["pid"]]
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in pids:  # never leave a worker behind, even when the test failed
            with contextlib.suppress(ProcessLookupError):
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)


async def stats(admin_port: int) -> dict[str, Any]:
    answer = await fetch(admin_port, "GET", "/stats")
    assert answer.status == 200
    data: dict[str, Any] = answer.json()
    return data


async def ready_stats(admin_port: int) -> dict[str, Any]:
    async def ready() -> bool:
        with contextlib.suppress(OSError):
            return (await fetch(admin_port, "GET", "/ready")).status == 200
        return False

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not await ready():
        assert loop.time() < deadline, "the agent never became ready"
        await asyncio.sleep(0.05)
    return await stats(admin_port)


def reported_requests(cp: FakeControlPlane) -> int:
    return sum(m["requests"] for r in cp.reports for m in r.get("metrics", ())
               if (m["source"], m["destination"]) == EDGE)


async def test_two_workers_share_the_listener_apply_snapshots_and_report(tmp_path: Path) -> None:
    cp = FakeControlPlane()
    await cp.start()
    a, b = await Backend("a").start(), await Backend("b").start()
    await cp.publish({"payments": upstream_entry(a)})
    try:
        async with agent_process(tmp_path, cp) as (process, admin_port):
            data = await ready_stats(admin_port)
            pids = {w["pid"] for w in data["workers"]}
            assert len(pids) == 2 and os.getpid() not in pids and process.pid not in pids
            port = int(data["upstreams"][0]["listen"].rsplit(":", 1)[1])
            assert port != 0
            for _ in range(40):  # one connection each: SO_REUSEPORT spreads connections
                assert (await fetch(port, "GET", "/")).json()["backend"] == "a"

            async def both_served() -> list[int] | None:
                counts = [w["requests"] for w in (await stats(admin_port))["workers"]]
                return counts if sum(counts) == 40 else None

            counts = None
            for _ in range(100):
                if counts := await both_served():
                    break
                await asyncio.sleep(0.05)
            assert counts is not None and all(c > 0 for c in counts), counts
            await eventually(lambda: reported_requests(cp) == 40)
            edges = (await stats(admin_port))["edges"]
            assert [e["requests"] for e in edges if e["destination"] == "payments"] == [40]
            endpoint = (await stats(admin_port))["upstreams"][0]["endpoints"][0]
            assert endpoint["port"] == a.port and endpoint["requests"] == 40
            text = (await fetch(admin_port, "GET", "/metrics")).body.decode()
            assert (f'meshagent_upstream_rq_total{{destination="payments",'
                    f'endpoint="127.0.0.1:{a.port}"}} 40') in text

            loop = asyncio.get_running_loop()
            revision = await cp.publish({"payments": upstream_entry(b)})
            published = loop.time()
            while {w["applied_revision"] for w in (await stats(admin_port))["workers"]} != {
                    revision}:
                assert loop.time() - published < 1.0, "a worker missed the new snapshot"
                await asyncio.sleep(0.02)
            for _ in range(10):
                assert (await fetch(port, "GET", "/")).json()["backend"] == "b"

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0
            await eventually(lambda: all(gone(pid) for pid in pids), timeout=5)
    finally:
        for server in (cp, a, b):
            await server.stop()


async def test_a_dead_worker_is_restarted_and_workers_die_with_the_parent(
    tmp_path: Path,
) -> None:
    cp = FakeControlPlane()
    await cp.start()
    a = await Backend("a").start()
    dead = await free_port()
    entry = upstream_entry(a, dead, retries={"attempts": 1, "on": ["connect-failure"]},
                           outlier={"consecutive_gateway": 1, "max_ejection_percent": 50})
    await cp.publish({"payments": entry})
    try:
        async with agent_process(tmp_path, cp) as (process, admin_port):
            data = await ready_stats(admin_port)
            victim = data["workers"][0]["pid"]
            os.kill(victim, signal.SIGKILL)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:  # until the parent noticed, restarted it, and the new one serves
                data = await ready_stats(admin_port)
                if data["workers"][0]["pid"] not in (None, victim) and data["ready"]:
                    break
                assert loop.time() < deadline, data["workers"]
                await asyncio.sleep(0.05)
            assert data["workers"][0]["restarts"] == 1
            port = int(data["upstreams"][0]["listen"].rsplit(":", 1)[1])
            for _ in range(10):
                assert (await fetch(port, "GET", "/")).status == 200
            # a worker's ejection of the dead endpoint reaches the control plane's reports
            await eventually(lambda: any(
                e["event"] == "ejected" and e["port"] == dead
                for r in cp.reports for e in r.get("ejections", ())))
            pids = [w["pid"] for w in data["workers"]]
            process.kill()  # no chance to clean up: the workers must notice on their own
            await process.wait()
            await eventually(lambda: all(gone(pid) for pid in pids), timeout=10)
    finally:
        for server in (cp, a):
            await server.stop()


def test_workers_below_one_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from agents.runtime.cli import main

    assert main(["run", "-c", str(write_config(tmp_path)), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
