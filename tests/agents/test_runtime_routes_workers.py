"""Routes with `meshagent run --workers 2`: a real parent process and its workers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.agents.backends import FakeControlPlane, fetch
from tests.agents.test_runtime_agent import eventually
from tests.agents.test_runtime_routes_proxy import SUBSETS, backends, ep, upstream
from tests.agents.test_runtime_workers import agent_process, ready_stats, stats

pytestmark = pytest.mark.timeout(60)


def mesh(v1: Any, v2: Any, nxt: Any, api_subset: str = "v2") -> dict[str, Any]:
    return {
        "payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, routes=[
            {"name": "api", "match": {"path": {"prefix": "/api"}},
             "split": [{"subset": api_subset, "weight": 1}]},
            {"name": "move", "match": {"path": {"prefix": "/move"}},
             "split": [{"service": "payments-next", "weight": 1}]}]),
        "payments-next": {**upstream(ep(nxt)), "route_target": True},
    }


async def test_workers_route_keep_a_refused_upstream_and_report_per_route(
        tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    try:
        async with backends("v1", "v2", "next") as (v1, v2, nxt):
            await cp.publish(mesh(v1, v2, nxt))
            async with agent_process(tmp_path, cp) as (_process, admin_port):
                data = await ready_stats(admin_port)
                port = int(data["upstreams"][0]["listen"].rsplit(":", 1)[1])
                for _ in range(20):  # a connection each: both workers serve
                    assert (await fetch(port, "GET", "/api/x")).json()["backend"] == "v2"
                    assert (await fetch(port, "GET", "/move")).json()["backend"] == "next"
                # a broken route (unknown subset): refused, every worker keeps the last one
                bad = mesh(v1, v2, nxt, api_subset="v9")
                revision = await cp.publish(bad)

                async def applied() -> bool:
                    workers = (await stats(admin_port))["workers"]
                    return {w["applied_revision"] for w in workers} == {revision}

                loop = asyncio.get_running_loop()
                deadline = loop.time() + 5
                while not await applied():
                    assert loop.time() < deadline, "a worker did not apply the snapshot"
                    await asyncio.sleep(0.05)
                nack = (await stats(admin_port))["nack"]
                assert set(nack["refused"]) == {"upstreams.payments"}
                for _ in range(10):
                    assert (await fetch(port, "GET", "/api/y")).json()["backend"] == "v2"

                def routed() -> dict[tuple[str, str, str], int]:
                    found: dict[tuple[str, str, str], int] = {}
                    for report in cp.reports:
                        for w in report.get("metrics", ()):
                            key = (w["destination"], w["subset"], w["route"])
                            found[key] = found.get(key, 0) + w["requests"]
                    return found

                await eventually(lambda: routed().get(("payments", "v2", "api")) == 30
                                 and routed().get(("payments-next", "", "move")) == 20)
    finally:
        await cp.stop()
    assert len(v2.requests) == 30 and len(nxt.requests) == 20 and not v1.requests
