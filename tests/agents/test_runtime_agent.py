"""The Agent orchestrator against an in-test fake control plane (unit level only;
the real control plane is exercised by the end-to-end tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.agent import Agent
from agents.runtime.client import Backoff, ControlPlaneClient, ControlPlaneError
from agents.runtime.config import AgentConfig, parse_config
from tests.agents.backends import Backend, FakeControlPlane, fetch, free_port, upstream_entry

pytestmark = pytest.mark.timeout(60)


def make_config(control_plane: str, data_dir: Path) -> AgentConfig:
    return parse_config({
        "control_plane": control_plane,
        "token": "enroll-secret",
        "node": "host-a",
        "zone": "zone-1",
        "data_dir": str(data_dir),
        "admin": "127.0.0.1:0",
        "services": [{"name": "orders", "address": "127.0.0.1", "port": 8081, "tags": ["v1"],
                      "check": {"type": "http", "path": "/health", "interval": "2s",
                                "timeout": "1s"}}],
        "upstreams": [{"service": "payments", "listen": "127.0.0.1:0"}],
    })


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig) -> AsyncIterator[Agent]:
    agent = Agent(config, backoff=Backoff(0.05, 0.2))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop(grace_s=1.0)


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def proxy_port(agent: Agent) -> int:
    return int(agent.upstreams[0].bound.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[tuple[FakeControlPlane, Backend, Backend]]:
    cp = await FakeControlPlane().start()
    a, b = await Backend("a").start(), await Backend("b").start()
    try:
        yield cp, a, b
    finally:
        for server in (cp, a, b):
            await server.stop()


async def test_enroll_config_report_then_changes_apply_within_a_second(tmp_path: Path) -> None:
    async with world() as (cp, a, b):
        await cp.publish({"payments": upstream_entry(a)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(agent.ready)
            assert (await fetch(proxy_port(agent), "GET", "/")).json()["backend"] == "a"
            report = await eventually(
                lambda: next((r for r in cp.reports if r["applied_revision"] == cp.revision), None))
            assert report["nack"] is None
            assert report["services"][0]["name"] == "orders"
            assert report["services"][0]["check"]["interval"] == "2s"
            assert report["upstreams"] == [{"service": "payments", "protocol": "http",
                                            "listen": agent.upstreams[0].bound,
                                            "source": "orders"}]
            enrolled = cp.enrollments[0]
            assert (enrolled["node"], enrolled["zone"]) == ("host-a", "zone-1")
            # The agent proposes its own token, kept on disk before it asks.
            assert len(enrolled["agent_token"]) >= 32

            loop = asyncio.get_running_loop()
            changed_at = loop.time()
            revision = await cp.publish({"payments": upstream_entry(b)})
            await eventually(lambda: agent.snapshot and agent.snapshot.revision == revision)
            assert loop.time() - changed_at < 1.0
            assert (await fetch(proxy_port(agent), "GET", "/")).json()["backend"] == "b"

            edge = await eventually(lambda: next(
                (m for r in cp.reports for m in r["metrics"] if m["destination"] == "payments"),
                None))
            assert edge["source"] == "orders" and edge["requests"] >= 1

            stats = (await fetch(int(agent.admin_address.rsplit(":", 1)[1]), "GET",
                                 "/stats")).json()
            assert stats["applied_revision"] == revision
            assert stats["control_plane"]["state"] == "connected"
        mode = stat.S_IMODE(os.stat(tmp_path / "agent.json").st_mode)
        assert mode == 0o600 and (tmp_path / "snapshot.json").exists()


async def test_restarted_agent_serves_from_its_snapshot_while_control_plane_is_down(
    tmp_path: Path,
) -> None:
    async with world() as (cp, a, _):
        await cp.publish({"payments": upstream_entry(a)})
        url = cp.url
        async with running_agent(make_config(url, tmp_path)) as agent:
            await eventually(lambda: agent.snapshot and agent.snapshot.revision == cp.revision)
        await cp.stop()
        async with running_agent(make_config(url, tmp_path)) as agent:
            assert agent.ready()  # before any control plane answer
            assert (await fetch(proxy_port(agent), "GET", "/")).json()["backend"] == "a"
            await eventually(lambda: agent.cp_state == "disconnected")
            assert agent.stats()["ready"] is True


async def test_invalid_snapshot_is_nacked_and_the_previous_keeps_serving(tmp_path: Path) -> None:
    async with world() as (cp, a, b):
        good = await cp.publish({"payments": upstream_entry(a)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(lambda: agent.snapshot and agent.snapshot.revision == good)
            bad_snapshot = cp.snapshot()
            bad_snapshot["upstreams"] = {"payments": upstream_entry(b)}
            bad_snapshot["upstreams"]["payments"]["endpoints"][0]["port"] = "eighty"
            bad = await cp.publish(override=bad_snapshot)
            report = await eventually(lambda: next(
                (r for r in cp.reports if r["nack"] and r["nack"]["revision"] == bad), None))
            assert "port" in report["nack"]["reason"]
            # Refused alone: the rest of revision `bad` applied (nothing else here),
            # payments keeps what it had (agents.runtime.admission).
            assert list(report["nack"]["refused"]) == ["upstreams.payments"]
            assert report["applied_revision"] == bad
            assert (await fetch(proxy_port(agent), "GET", "/")).json()["backend"] == "a"
            assert agent.stats()["nack"]["revision"] == bad

            fixed = await cp.publish({"payments": upstream_entry(b)})
            await eventually(lambda: any(r["applied_revision"] == fixed and r["nack"] is None
                                         for r in cp.reports))


async def test_rejected_agent_token_leads_to_enrolling_again(tmp_path: Path) -> None:
    async with world() as (cp, a, _):
        await cp.publish({"payments": upstream_entry(a)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(lambda: cp.reports)
            cp.agent_tokens.clear()  # e.g. the token was revoked in the console
            await eventually(lambda: len(cp.enrollments) == 2)
            # A refused token is forgotten: the next enrollment proposes a new one.
            assert cp.enrollments[0]["agent_token"] != cp.enrollments[1]["agent_token"]
            reports = len(cp.reports)
            await eventually(lambda: len(cp.reports) > reports)
            assert agent.identity is not None and agent.identity.agent_token in cp.agent_tokens


class FailingClient(ControlPlaneClient):
    async def report(self, agent_id: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.last = payload
        raise ControlPlaneError("down")


async def test_metrics_survive_a_failed_report(tmp_path: Path) -> None:
    config = make_config(f"http://127.0.0.1:{await free_port()}", tmp_path)
    client = FailingClient(config.control_plane)
    agent = Agent(config, client=client)
    agent.metrics.record("orders", "payments", 2.0, False)
    identity = agent.identity = type("I", (), {"agent_id": "x", "agent_token": "t"})()
    for _ in range(2):
        with pytest.raises(ControlPlaneError):
            await agent._report(identity)  # type: ignore[arg-type]
    agent.metrics.record("orders", "payments", 2.0, True)
    with pytest.raises(ControlPlaneError):
        await agent._report(identity)  # type: ignore[arg-type]
    windows = client.last["metrics"]
    assert [(w["requests"], w["errors"]) for w in windows] == [(1, 0), (1, 1)]


async def test_the_report_interval_follows_the_report_answer(tmp_path: Path) -> None:
    """The snapshot says 200 ms; once a report's answer says 1,000 ms (the control
    plane stretches it as the fleet grows), the agent reports about once a second;
    an unusable answer keeps what it had."""
    async with world() as (cp, a, _):
        await cp.publish({"payments": upstream_entry(a)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(lambda: len(cp.reports) >= 3)
            assert agent.report_interval_ms() == 200
            cp.report_interval_answer = 1000
            await eventually(lambda: agent.report_interval_ms() == 1000)
            seen = len(cp.reports)
            await asyncio.sleep(2.0)
            # 200 ms would have made about ten; 1 s ± 10 % jitter makes two or three.
            assert 1 <= len(cp.reports) - seen <= 3
            cp.report_interval_answer = 5  # below the bounds: ignored, the snapshot's again
            await eventually(lambda: agent.report_interval_ms() == 200, timeout=5)


async def test_a_busy_control_plane_refusing_reports_does_not_stop_the_config_watch(
        tmp_path: Path) -> None:
    """503 + Retry-After to reports (admission control at fleet scale) is back-pressure:
    the agent keeps its long poll (a change still arrives at once), keeps its session
    (no enrollment again, no fresh config fetch), and reports again after Retry-After."""
    async with world() as (cp, a, b):
        await cp.publish({"payments": upstream_entry(a)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(lambda: len(cp.reports) >= 2)
            enrollments = len(cp.enrollments)
            cp.reports_busy = 1000
            await eventually(lambda: cp.refused_reports >= 2, timeout=10)
            revision = await cp.publish({"payments": upstream_entry(b)})
            await eventually(lambda: agent.snapshot is not None
                             and agent.snapshot.revision == revision, timeout=2)
            assert agent.cp_state == "connected"
            refused = cp.refused_reports
            await asyncio.sleep(2.5)
            # Retry-After: 1 and a growing backoff, not the 200 ms interval: a few tries.
            assert 1 <= cp.refused_reports - refused <= 4
            cp.reports_busy = 0
            accepted = len(cp.reports)
            await eventually(lambda: len(cp.reports) > accepted, timeout=15)
            assert len(cp.enrollments) == enrollments
