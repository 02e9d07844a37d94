"""Per-instance report windows (agents.runtime.instances): the golden figures of each
upstream endpoint, drained per report window from the endpoint's own counters."""

from __future__ import annotations

from typing import Any

import pytest

from agents.runtime.endpoint import Endpoint
from agents.runtime.histogram import NBUCKETS, bucket_index
from agents.runtime.instances import InstanceWindows
from tests.agents.backends import fetch, upstream_entry
from tests.agents.test_runtime_agent import (
    eventually,
    make_config,
    proxy_port,
    running_agent,
    world,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def by_instance(windows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {w["instance"]: w for w in windows}


def test_each_window_holds_only_the_tries_since_the_last_drain() -> None:
    clock = Clock()
    windows = InstanceWindows(clock=clock, wall=lambda: 1764086400.5)
    a, b = Endpoint("ia", "127.0.0.1", 8081), Endpoint("ib", "127.0.0.1", 8082)
    upstreams = [("payments", (a, b))]
    for ms in (3.0, 3.0, 40.0):
        a.observe(ms, ms > 10)
    b.observe(7.0, False)
    clock.now += 2.0
    first = by_instance(windows.drain(upstreams))
    assert set(first) == {"ia", "ib"}
    wa = first["ia"]
    assert set(wa) == {"service", "instance", "window_end", "seconds", "requests", "errors",
                       "latency_sum_ms", "buckets"}
    assert (wa["service"], wa["window_end"], wa["seconds"]) == ("payments", 1764086400.5, 2.0)
    assert (wa["requests"], wa["errors"], wa["latency_sum_ms"]) == (3, 1, 46.0)
    assert len(wa["buckets"]) == NBUCKETS and sum(wa["buckets"]) == 3
    assert wa["buckets"][bucket_index(3.0)] == 2 and wa["buckets"][bucket_index(40.0)] == 1
    assert first["ib"]["requests"] == 1

    b.observe(5.0, True)
    b.observe(5.0, False)
    clock.now += 1.5
    second = windows.drain(upstreams)
    assert [(w["instance"], w["requests"], w["errors"], w["latency_sum_ms"]) for w in second] == [
        ("ib", 2, 1, 10.0)]  # a served nothing new: not reported
    assert second[0]["seconds"] == 1.5
    assert second[0]["buckets"][bucket_index(5.0)] == 2 and sum(second[0]["buckets"]) == 2
    assert windows.drain(upstreams) == []
    assert a.requests == 3 and b.requests == 3  # the endpoint's own counters stay cumulative


def test_an_endpoint_a_snapshot_dropped_is_reported_once_more_then_forgotten() -> None:
    windows = InstanceWindows()
    a = Endpoint("ia", "127.0.0.1", 8081)
    a.observe(1.0, False)
    assert windows.drain([("payments", (a,))])[0]["requests"] == 1
    a.observe(1.0, False)  # an in-flight try finishes after the snapshot dropped it
    a.removed = True
    assert [w["requests"] for w in windows.drain([("payments", ())])] == [1]
    a.observe(1.0, False)
    assert windows.drain([("payments", ())]) == []


def test_counters_that_start_again_count_as_new_and_two_upstreams_are_summed() -> None:
    windows = InstanceWindows()
    a = Endpoint("ia", "127.0.0.1", 8081)
    other = Endpoint("ia", "127.0.0.1", 8081)  # the same instance through a second upstream
    for _ in range(5):
        a.observe(1.0, False)
    other.observe(1.0, True)
    first = windows.drain([("payments", (a,)), ("payments", (other,))])
    assert [(w["instance"], w["requests"], w["errors"]) for w in first] == [("ia", 6, 1)]
    a.requests, a.errors, a.latency_sum_ms, a.buckets = 0, 0, 0.0, [0] * NBUCKETS  # a restart
    a.observe(2.0, False)
    a.observe(2.0, False)
    again = windows.drain([("payments", (a,)), ("payments", (other,))])
    assert [(w["requests"], w["latency_sum_ms"]) for w in again] == [(2, 4.0)]


@pytest.mark.timeout(60)
async def test_the_report_carries_what_each_backend_served(tmp_path: Any) -> None:
    async with world() as (cp, a, b):
        await cp.publish({"payments": upstream_entry(a, b)})
        async with running_agent(make_config(cp.url, tmp_path)) as agent:
            await eventually(agent.ready)
            for _ in range(10):
                assert (await fetch(proxy_port(agent), "GET", "/")).status == 200

            def reported() -> dict[str, int]:
                counts: dict[str, int] = {}
                for report in cp.reports:
                    for w in report.get("instances", ()):
                        assert w["service"] == "payments"
                        counts[w["instance"]] = counts.get(w["instance"], 0) + w["requests"]
                return counts

            served = {f"ep{backend.port}": len(backend.requests) for backend in (a, b)}
            counts = await eventually(lambda: reported() if reported() == served else None,
                                      timeout=15.0)
            assert sum(counts.values()) == 10 and all(counts.values())
