"""A gateway route naming a service and no subset applies the service's mesh routes, as a
mesh client agent does (splits.py): the weighted or sticky draw, fallback, rewrites,
header changes, timeout; a route naming a subset pins it. Real gateway listener, real
backends on loopback (issue 12)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from agents.runtime.snapshot import parse_snapshot
from tests.agents.backends import Backend, HttpClient, backends, load
from tests.agents.gateway_helpers import call, consumer, route, running_gateway, snapshot

pytestmark = pytest.mark.timeout(90)

SUBSETS = {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}}
ALL = route("shop", "orders", path={"prefix": "/"})


def ep(backend: Backend, *tags: str, status: str = "passing") -> dict[str, Any]:
    return {"id": backend.name, "address": "127.0.0.1", "port": backend.port,
            "status": status, "tags": list(tags), "metadata": {}}


def orders(*endpoints: dict[str, Any], routes: list[dict[str, Any]] | None = None,
           **policy: Any) -> dict[str, Any]:
    return {"protocol": "http", "route_target": True,
            "policy": {"load_balancer": "round_robin", "connect_timeout_ms": 1000,
                       "request_timeout_ms": 15000, "retries": {"attempts": 0}, **policy},
            "endpoints": list(endpoints), "subsets": SUBSETS, "routes": routes or []}


def canary(v1: int, v2: int, **extra: Any) -> dict[str, Any]:
    return {"name": "canary", "split": [{"subset": "v1", "weight": v1},
                                        {"subset": "v2", "weight": v2}], **extra}


def windows(gateway: Any) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(w["destination"], w["subset"], w["route"], w["consumer"]): w
            for w in gateway.metrics.drain()}


async def test_a_route_to_a_service_takes_its_weighted_split_and_counts_the_drawn_subset(
        ) -> None:
    n, p = 4000, 0.20
    async with backends("v1", "v2") as (v1, v2), running_gateway(
            {"routes": [ALL]}, {"orders": orders(ep(v1, "v1"), ep(v2, "v2"),
                                                 routes=[canary(80, 20)])}) as (gateway, port):
        statuses = await load(port, n)
        counted = windows(gateway)
    assert statuses.count(200) == n
    tolerance = 4.5 * math.sqrt(n * p * (1 - p))  # 4.5 sd: ~114 requests (2.8 points)
    assert abs(len(v2.requests) - n * p) <= tolerance, len(v2.requests)
    assert len(v1.requests) + len(v2.requests) == n
    # The gateway's windows name the subset drawn: one topology edge per subset.
    assert counted["orders", "v2", "shop", ""]["requests"] == len(v2.requests)
    assert counted["orders", "v1", "shop", ""]["requests"] == len(v1.requests)
    assert set(counted) == {("orders", "v1", "shop", ""), ("orders", "v2", "shop", "")}


async def test_sticky_by_header_keeps_each_key_on_one_subset() -> None:
    async with backends("v1", "v2") as (v1, v2), running_gateway(
            {"routes": [ALL]}, {"orders": orders(ep(v1, "v1"), ep(v2, "v2"), routes=[
                canary(50, 50, sticky={"header": "x-user"})])}) as (_, port):
        placed: dict[str, set[str]] = {}
        async with HttpClient(port) as client:
            for user in range(40):
                for _ in range(5):
                    answer = await client.request("GET", "/", headers=[("X-User", f"u{user}")])
                    assert answer.status == 200
                    placed.setdefault(f"u{user}", set()).add(answer.json()["backend"])
    assert all(len(seen) == 1 for seen in placed.values())
    on_v2 = sum(seen == {"v2"} for seen in placed.values())
    assert 5 <= on_v2 <= 35  # both subsets get keys (40 keys at 50 %: sd ~3.2)


async def test_fallback_next_when_the_drawn_subset_has_no_healthy_endpoint() -> None:
    async with backends("v1", "v2") as (v1, v2), running_gateway(
            {"routes": [ALL]}, {"orders": orders(
                ep(v1, "v1"), ep(v2, "v2", status="critical"),
                routes=[canary(0, 100, fallback="next")])}) as (gateway, port):
        answers = [await call(port, "GET", "/") for _ in range(6)]
        counted = windows(gateway)
    assert [(a.status, a.json()["backend"]) for a in answers] == [(200, "v1")] * 6
    assert not v2.requests
    assert counted["orders", "v1", "shop", ""]["requests"] == 6


async def test_fallback_fail_is_a_503_no_healthy_subset_with_the_gateways_headers() -> None:
    async with backends("v1", "v2") as (v1, v2), running_gateway(
            {"routes": [ALL]}, {"orders": orders(
                ep(v1, "v1"), ep(v2, "v2", status="critical"),
                routes=[canary(0, 100, fallback="fail")])}) as (gateway, port):
        answer = await call(port, "GET", "/", headers=[("X-Request-Id", "req-42")])
        counted = windows(gateway)
    assert answer.status == 503 and answer.header("x-mesh-error") == "no-healthy-subset"
    assert answer.header("x-request-id") == "req-42"  # the gateway's own headers kept
    assert not v1.requests and not v2.requests
    assert counted["orders", "", "shop", ""]["statuses"]["5xx"] == 1


async def test_a_route_naming_a_subset_pins_it_whatever_the_split() -> None:
    section = {"routes": [route("beta", "orders", path={"prefix": "/beta"}, subset="v2"),
                          ALL]}
    async with backends("v1", "v2") as (v1, v2), running_gateway(section, {"orders": orders(
            ep(v1, "v1"), ep(v2, "v2"), routes=[canary(100, 0)])}) as (gateway, port):
        pinned = [await call(port, "GET", "/beta/x") for _ in range(5)]
        split = [await call(port, "GET", "/x") for _ in range(5)]
        counted = windows(gateway)
        assert gateway.targets[("orders", "v2")].state.routes is None
    assert {a.json()["backend"] for a in pinned} == {"v2"}
    assert {a.json()["backend"] for a in split} == {"v1"}
    assert counted["orders", "v2", "beta", ""]["requests"] == 5
    assert counted["orders", "v1", "shop", ""]["requests"] == 5


async def test_mesh_routes_match_after_strip_prefix_with_rewrites_and_header_changes() -> None:
    """The mesh route sees the request as the gateway forwards it (/shop stripped); its
    header changes go through the gateway's head rules again: the consumer the gateway
    authenticated stays, a client's X-Mesh-Consumer does not come back."""
    routes = [{"name": "api", "match": {"path": {"prefix": "/api"}},
               "split": [{"subset": "v2", "weight": 1}], "rewrite": {"prefix": "/v2/api"},
               "request_headers": {"set": {"x-canary": "1"}, "remove": ["x-debug"]},
               "response_headers": {"set": {"x-route": "api"}, "remove": []}},
              canary(100, 0)]
    section = {"routes": [route("shop", "orders", path={"prefix": "/shop"}, strip_prefix=True,
                                auth={"type": "key"})],
               "consumers": [consumer("alice", key="k-alice")]}
    async with backends("v1", "v2") as (v1, v2), running_gateway(section, {"orders": orders(
            ep(v1, "v1"), ep(v2, "v2"), routes=routes)}) as (gateway, port):
        answer = await call(port, "GET", "/shop/api/items?id=7", headers=[
            ("apikey", "k-alice"), ("X-Debug", "1"), ("X-Mesh-Consumer", "mallory"),
            ("X-Request-Id", "req-7")])
        other = await call(port, "GET", "/shop/other", headers=[("apikey", "k-alice")])
        counted = windows(gateway)
    assert answer.status == 200 and answer.header("x-route") == "api"
    assert answer.header("x-request-id") == "req-7"
    seen = v2.requests[0]
    assert seen.target == "/v2/api/items?id=7"
    assert seen.header("x-canary") == "1" and seen.header("x-debug") is None
    assert seen.header("x-mesh-consumer") == "alice"
    assert seen.header("x-request-id") == "req-7"
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert other.status == 200 and v1.requests[0].target == "/other"
    assert counted["orders", "v2", "shop", "alice"]["requests"] == 1
    assert counted["orders", "v1", "shop", "alice"]["requests"] == 1


async def test_a_request_no_mesh_route_matches_goes_to_the_whole_service() -> None:
    routes = [canary(0, 1, match={"headers": [{"name": "x-beta", "present": True}]})]
    async with backends("v1", "v2") as (v1, v2), running_gateway(
            {"routes": [ALL]}, {"orders": orders(ep(v1, "v1"), ep(v2, "v2"),
                                                 routes=routes)}) as (gateway, port):
        beta = await call(port, "GET", "/", headers=[("X-Beta", "1")])
        whole = {(await call(port, "GET", "/")).json()["backend"] for _ in range(4)}
        counted = windows(gateway)
    assert beta.json()["backend"] == "v2"
    assert whole == {"v1", "v2"}  # round robin over both
    assert counted["orders", "", "shop", ""]["requests"] == 4


async def test_a_mesh_routes_timeout_and_attempts_apply_and_a_gateway_routes_timeout_wins(
        ) -> None:
    routes = [{"name": "quick", "match": {"path": {"prefix": "/slow"}},
               "split": [{"subset": "v1", "weight": 1}], "timeout_ms": 200},
              {"name": "once", "match": {"query": [{"name": "once", "present": True}]},
               "split": [{"subset": "v1", "weight": 1}], "retries": {"attempts": 0}}]
    section = {"routes": [route("edge-timeout", "orders", path={"prefix": "/gw"},
                                strip_prefix=True, timeout_ms=3000), ALL]}
    retries = {"attempts": 2, "on": ["5xx"], "backoff_base_ms": 1, "backoff_max_ms": 2}
    async with backends("v1") as (v1,), running_gateway(section, {"orders": orders(
            ep(v1, "v1"), routes=routes, retries=retries,
            outlier={"consecutive_5xx": 0, "consecutive_gateway": 0})}) as (_, port):
        loop = asyncio.get_running_loop()
        started = loop.time()
        timed_out = await call(port, "GET", "/slow?ms=2000")
        quick = loop.time() - started
        slower = await call(port, "GET", "/gw/slow?ms=600")  # the gateway route's 3 s
        seen = len(v1.requests)
        assert (await call(port, "GET", "/x?status=503&once=1")).status == 503
        once = len(v1.requests) - seen
        assert (await call(port, "GET", "/x?status=503")).status == 503  # the policy's 2
        unrouted = len(v1.requests) - seen - once
    assert timed_out.status == 504 and timed_out.header("x-mesh-error") == "request-timeout"
    assert quick < 1.5
    assert slower.status == 200 and slower.json()["backend"] == "v1"
    assert once == 1 and unrouted == 3


async def test_a_split_to_another_service_reaches_the_gateway_and_leaves_with_it() -> None:
    async with backends("v1", "next") as (v1, nxt):
        move = {"name": "move", "split": [{"subset": "v1", "weight": 50},
                                          {"service": "orders-next", "weight": 50}]}
        upstreams = {"orders": orders(ep(v1, "v1"), routes=[move]),
                     "orders-next": {**orders(ep(nxt)), "routes": [], "subsets": {}}}
        async with running_gateway({"routes": [ALL]}, upstreams) as (gateway, port):
            assert set(gateway.split_targets) == {"orders-next"}
            assert set(gateway.services) == {"orders"}
            statuses = await load(port, 400)
            counted = windows(gateway)
            stats = {t["service"] for t in gateway.stats()["targets"]}
            # A split target that a gateway route comes to name keeps its runtime.
            kept = gateway.split_targets["orders-next"]
            both = {"routes": [route("next", "orders-next", path={"prefix": "/next"}), ALL],
                    "version": 2}
            assert gateway.offer(parse_snapshot(snapshot(both, upstreams, 2))) is None
            assert gateway.services["orders-next"] is kept and gateway.split_targets == {}
            later = snapshot({"routes": [ALL]}, {"orders": orders(ep(v1, "v1"))}, 3)
            assert gateway.offer(parse_snapshot(later)) is None
            assert gateway.split_targets == {} and set(gateway.services) == {"orders"}
    assert statuses.count(200) == 400
    assert 120 < len(nxt.requests) < 280 and len(v1.requests) + len(nxt.requests) == 400
    assert counted["orders-next", "", "shop", ""]["requests"] == len(nxt.requests)
    assert counted["orders", "v1", "shop", ""]["requests"] == len(v1.requests)
    assert stats == {"orders", "orders-next"}


async def test_a_service_without_mesh_routes_has_no_route_table() -> None:
    async with backends("v1") as (v1,), running_gateway(
            {"routes": [ALL]}, {"orders": orders(ep(v1, "v1"))}) as (gateway, port):
        assert gateway.services["orders"].state.routes is None  # one attribute check
        assert (await call(port, "GET", "/")).status == 200
        assert set(windows(gateway)) == {("orders", "", "shop", "")}
