"""Routes on a live agent: snapshots from a (fake) control plane, real listener and backends."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.config import AgentConfig, parse_config
from tests.agents.backends import FakeControlPlane, HttpClient, fetch
from tests.agents.test_runtime_agent import eventually, running_agent
from tests.agents.test_runtime_routes_proxy import SUBSETS, backends, ep, split_route, upstream

pytestmark = pytest.mark.timeout(60)


def config(cp: FakeControlPlane, data_dir: Path, *services: str) -> AgentConfig:
    return parse_config({
        "control_plane": cp.url, "token": "enroll-secret", "node": "host-a", "zone": "zone-1",
        "data_dir": str(data_dir), "admin": "127.0.0.1:0", "dns": "off",
        "services": [{"name": "orders", "address": "127.0.0.1", "port": 8081}],
        "upstreams": [{"service": s, "listen": "127.0.0.1:0"} for s in services],
    })


def port_of(bound: str) -> int:
    return int(bound.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def control_plane() -> Any:
    cp = await FakeControlPlane().start()
    try:
        yield cp
    finally:
        await cp.stop()


async def publish_and_wait(cp: FakeControlPlane, agent: Any, upstreams: dict[str, Any]) -> None:
    revision = await cp.publish(upstreams)
    await eventually(lambda: agent.snapshot is not None and agent.snapshot.revision == revision)


async def test_canary_promotion_under_steady_load_fails_no_request(tmp_path: Path) -> None:
    async with control_plane() as cp, backends("v1", "v2") as (v1, v2):
        def weights(old: int, new: int) -> dict[str, Any]:
            return {"payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
                                         routes=[split_route(old, new)])}

        cp.upstreams = weights(100, 0)
        async with running_agent(config(cp, tmp_path, "payments")) as agent:
            await eventually(lambda: agent.snapshot is not None)
            port = port_of(agent.upstreams[0].bound)
            statuses: list[int] = []
            failures: list[str] = []
            stop = asyncio.Event()

            async def steady() -> None:
                async with HttpClient(port) as client:
                    while not stop.is_set():
                        try:
                            answer = await client.request("GET", "/")
                        except Exception as exc:  # a reset or a close counts as a failure
                            failures.append(repr(exc))
                            return
                        statuses.append(answer.status)
                        await asyncio.sleep(0.002)

            clients = [asyncio.create_task(steady()) for _ in range(4)]
            await asyncio.sleep(0.3)
            assert v1.requests and not v2.requests  # 0 % on the canary
            await publish_and_wait(cp, agent, weights(50, 50))
            at_half = len(v2.requests)
            await asyncio.sleep(0.5)
            assert len(v2.requests) > at_half  # 50 %: the canary takes traffic
            await publish_and_wait(cp, agent, weights(0, 100))
            await asyncio.sleep(0.3)  # requests already routed by the old table finish
            v1_after = len(v1.requests)
            await asyncio.sleep(0.4)
            stop.set()
            await asyncio.gather(*clients)
    assert not failures
    assert statuses and all(s == 200 for s in statuses)
    assert len(v1.requests) == v1_after  # 100 %: nothing more on v1
    assert len(statuses) == len(v1.requests) + len(v2.requests)


async def test_an_invalid_route_is_refused_for_its_upstream_and_the_rest_applies(
        tmp_path: Path) -> None:
    async with control_plane() as cp, backends("v1", "v2", "b1", "b2") as (v1, v2, b1, b2):
        cp.upstreams = {
            "payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
                                 routes=[split_route(100, 0)]),
            "billing": upstream(ep(b1)),
        }
        async with running_agent(config(cp, tmp_path, "payments", "billing")) as agent:
            await eventually(lambda: agent.snapshot is not None)
            payments, billing = (port_of(u.bound) for u in agent.upstreams)
            bad = split_route(0, 100)
            bad["split"][1]["subset"] = "v9"  # not in subsets
            await publish_and_wait(cp, agent, {
                "payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
                                     routes=[bad]),
                "billing": upstream(ep(b2)),
            })
            assert agent.nack is not None
            assert set(agent.nack["refused"]) == {"upstreams.payments"}
            assert "routes[0].split[1].subset" in agent.nack["refused"]["upstreams.payments"]
            # payments keeps its last routes (all on v1); billing took the new endpoints
            answers = [await fetch(payments, "GET", "/") for _ in range(6)]
            assert {a.json()["backend"] for a in answers} == {"v1"}
            assert (await fetch(billing, "GET", "/")).json()["backend"] == "b2"
            await eventually(lambda: any((r.get("nack") or {}).get("refused")
                                         for r in cp.reports))


async def test_reports_carry_windows_per_subset_and_route(tmp_path: Path) -> None:
    async with control_plane() as cp, backends("v1", "v2", "next") as (v1, v2, nxt):
        cp.upstreams = {
            "payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, routes=[
                {"name": "api", "match": {"path": {"prefix": "/api"}},
                 "split": [{"subset": "v2", "weight": 1}]},
                {"name": "move", "match": {"path": {"prefix": "/move"}},
                 "split": [{"service": "payments-next", "weight": 1}]}]),
            "payments-next": {**upstream(ep(nxt)), "route_target": True},
        }
        async with running_agent(config(cp, tmp_path, "payments")) as agent:
            await eventually(lambda: agent.snapshot is not None)
            port = port_of(agent.upstreams[0].bound)
            assert len(agent.servers) == 1  # the route target opened no listener
            for path in ("/api/1", "/api/2?status=404", "/move", "/other"):
                await fetch(port, "GET", path)
            stats = agent.stats()

            def windows() -> dict[tuple[str, str, str], dict[str, Any]]:
                return {(w["destination"], w["subset"], w["route"]): w
                        for r in cp.reports for w in r.get("metrics", ())}

            found = await eventually(lambda: len(windows()) >= 3 and windows())
    assert found["payments", "v2", "api"]["statuses"] == {"2xx": 1, "3xx": 0, "4xx": 1,
                                                          "5xx": 0}
    assert found["payments-next", "", "move"]["requests"] == 1
    assert found["payments", "", ""]["requests"] == 1
    assert len(nxt.requests) == 1 and len(v2.requests) == 2
    assert [u["service"] for u in stats["route_targets"]] == ["payments-next"]
    api = stats["upstreams"][0]["routes"][0]
    assert api["name"] == "api" and api["targets"] == [
        {"subset": "v2", "service": "payments", "weight": 1, "healthy": True, "endpoints": 1,
         "active_requests": 0}]
