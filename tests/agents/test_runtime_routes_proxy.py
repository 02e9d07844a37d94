"""L7 routes through a real listener to real backends on loopback (splits.py, exchange.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.runtime.config import Upstream
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.proxy_http import start_http_listener
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.splits import apply_upstreams
from agents.runtime.upstream import UpstreamRuntime
from tests.agents.backends import Backend, HttpClient, backends, fetch, load

pytestmark = pytest.mark.timeout(60)


def ep(backend: Backend, *tags: str, status: str = "passing",
       metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": backend.name, "address": "127.0.0.1", "port": backend.port,
            "status": status, "tags": list(tags), "metadata": metadata or {}}


def upstream(*endpoints: dict[str, Any], routes: list[dict[str, Any]] | None = None,
             subsets: dict[str, Any] | None = None, **policy: Any) -> dict[str, Any]:
    return {"protocol": "http",
            "policy": {"load_balancer": "round_robin", "connect_timeout_ms": 1000,
                       "retries": {"attempts": 0}, **policy},
            "endpoints": list(endpoints), "subsets": subsets or {}, "routes": routes or []}


SUBSETS = {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}}


def split_route(v1: int, v2: int, **extra: Any) -> dict[str, Any]:
    return {"name": "canary", "split": [{"subset": "v1", "weight": v1},
                                        {"subset": "v2", "weight": v2}], **extra}


@dataclass
class RoutedProxy:
    port: int
    runtime: UpstreamRuntime
    metrics: Metrics
    extra: dict[str, UpstreamRuntime] = field(default_factory=dict)

    def apply(self, upstreams: dict[str, Any]) -> None:
        snapshot = parse_snapshot({"revision": 1, "upstreams": upstreams})
        self.extra = apply_upstreams(
            [self.runtime], self.extra, snapshot.upstreams,
            lambda service, source: UpstreamRuntime(Upstream(service, "", 0, "http", source)))

    def windows(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(w["destination"], w["subset"], w["route"]): w for w in self.metrics.drain()}


@contextlib.asynccontextmanager
async def routed_proxy(upstreams: dict[str, Any]) -> AsyncIterator[RoutedProxy]:
    runtime = UpstreamRuntime(Upstream("payments", "127.0.0.1", 0, "http", "orders"))
    metrics = Metrics()
    ctx = ListenerContext(runtime, metrics)
    server = await start_http_listener(ctx, "127.0.0.1", 0)
    proxy = RoutedProxy(server.sockets[0].getsockname()[1], runtime, metrics)
    proxy.apply(upstreams)
    try:
        yield proxy
    finally:
        server.close()
        for conn in list(ctx.connections):
            conn.close()
        for r in [runtime, *proxy.extra.values()]:
            r.pool.close_all()
        await asyncio.wait_for(server.wait_closed(), 2)


async def test_a_90_10_split_holds_within_the_binomial_spread_over_10000_requests() -> None:
    n, p = 10_000, 0.10
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
            routes=[split_route(90, 10)])}) as proxy:
        statuses = await load(proxy.port, n)
        windows = proxy.windows()
    assert statuses.count(200) == n
    tolerance = 4.5 * math.sqrt(n * p * (1 - p))  # 4.5 sd: ~135 requests, a 1-in-150,000 miss
    assert abs(len(v2.requests) - n * p) <= tolerance, len(v2.requests)
    assert len(v1.requests) + len(v2.requests) == n
    # Metrics per (destination, subset, route), with status classes.
    assert windows["payments", "v2", "canary"]["requests"] == len(v2.requests)
    assert windows["payments", "v1", "canary"]["statuses"] == {
        "2xx": len(v1.requests), "3xx": 0, "4xx": 0, "5xx": 0}


async def test_a_weight_of_zero_is_never_picked() -> None:
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
            routes=[split_route(100, 0)])}) as proxy:
        await load(proxy.port, 300)
    assert len(v1.requests) == 300 and not v2.requests


async def test_route_precedence_and_a_request_no_route_matches() -> None:
    routes = [
        {"name": "bob", "match": {"headers": [{"name": "x-user", "exact": "bob"}]},
         "split": [{"subset": "v2", "weight": 1}]},
        {"name": "api-exact", "match": {"path": {"exact": "/api/v1"}},
         "split": [{"subset": "v1", "weight": 1}]},
        {"name": "api", "match": {"path": {"prefix": "/api"}, "methods": ["POST"]},
         "split": [{"subset": "v2", "weight": 1}]},
        {"name": "items", "match": {"path": {"regex": "/items/[0-9]+"},
                                    "query": [{"name": "v", "exact": "2"}]},
         "split": [{"subset": "v2", "weight": 1}]},
    ]
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, routes=routes)}) as proxy:
        async def who(method: str, path: str, **kw: Any) -> str:
            answer = await fetch(proxy.port, method, path, **kw)
            assert answer.status == 200
            return str(answer.json()["backend"])

        assert await who("POST", "/api/v1", headers=[("X-User", "bob")]) == "v2"  # first wins
        assert await who("POST", "/api/v1") == "v1"  # exact before the later prefix
        assert await who("POST", "/api/other") == "v2"
        assert await who("GET", "/items/12?v=2") == "v2"
        # no route: the whole service, round robin over both, counted without a subset
        seen = {await who("GET", "/api/other") for _ in range(4)}
        seen |= {await who("GET", "/items/12?v=3") for _ in range(4)}
        windows = proxy.windows()
    assert seen == {"v1", "v2"}
    assert windows["payments", "", ""]["requests"] == 8
    assert windows["payments", "v2", "bob"]["requests"] == 1
    assert windows["payments", "v1", "api-exact"]["requests"] == 1


async def test_sticky_by_header_keeps_each_key_on_its_target() -> None:
    route = split_route(50, 50, sticky={"header": "x-user"})
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, routes=[route])}) as proxy:
        placed: dict[str, set[str]] = {}
        async with HttpClient(proxy.port) as client:
            for user in range(40):
                for _ in range(5):
                    answer = await client.request("GET", "/", headers=[("X-User", f"u{user}")])
                    placed.setdefault(f"u{user}", set()).add(answer.json()["backend"])
    assert all(len(backends_seen) == 1 for backends_seen in placed.values())
    on_v2 = sum(b == {"v2"} for b in placed.values())
    assert 5 <= on_v2 <= 35  # both targets get keys (40 keys at 50 %: sd ~3.2)


async def test_sticky_by_cookie_and_weights_moving_only_move_the_moved_share() -> None:
    users = [f"s{i}" for i in range(200)]
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
            routes=[split_route(90, 10, sticky={"cookie": "session"})])}) as proxy:
        async def placement() -> dict[str, str]:
            found = {}
            async with HttpClient(proxy.port) as client:
                for user in users:
                    answer = await client.request(
                        "GET", "/", headers=[("Cookie", f"theme=dark; session={user}")])
                    found[user] = answer.json()["backend"]
            return found

        before, again = await placement(), await placement()
        proxy.apply({"payments": upstream(ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS,
                                          routes=[split_route(50, 50,
                                                              sticky={"cookie": "session"})])})
        after = await placement()
    assert before == again
    assert 0 < sum(v == "v2" for v in before.values()) < 60
    # 10 % → 50 %: every key on v2 stays there; only keys move from v1 to v2
    assert all(after[u] == "v2" for u, b in before.items() if b == "v2")
    assert sum(v == "v2" for v in after.values()) > sum(v == "v2" for v in before.values())


async def test_fallback_next_goes_to_the_next_target_with_a_healthy_endpoint() -> None:
    outlier = {"consecutive_5xx": 2, "consecutive_gateway": 2, "base_ejection_ms": 5000,
               "max_ejection_percent": 100}
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, outlier=outlier,
            panic_threshold_percent=0, routes=[split_route(0, 100, fallback="next")])}) as proxy:
        # v2 answers 503 twice: ejected; the ejection is the upstream's, so the subset sees it
        for _ in range(2):
            assert (await fetch(proxy.port, "GET", "/?status=503")).status == 503
        answers = [await fetch(proxy.port, "GET", "/") for _ in range(5)]
    assert len(v2.requests) == 2
    assert [a.json()["backend"] for a in answers] == ["v1"] * 5


async def test_fallback_fail_answers_503_no_healthy_subset() -> None:
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2", status="critical"), subsets=SUBSETS,
            routes=[split_route(0, 100, fallback="fail")])}) as proxy:
        answer = await fetch(proxy.port, "GET", "/")
        windows = proxy.windows()
    assert answer.status == 503
    assert answer.header("x-mesh-error") == "no-healthy-subset"
    assert not v1.requests and not v2.requests
    assert windows["payments", "", "canary"]["statuses"]["5xx"] == 1


async def test_rewrite_and_header_changes_are_seen_by_the_backend_and_the_client() -> None:
    routes = [
        {"name": "api", "match": {"path": {"prefix": "/api"}},
         "split": [{"subset": "v2", "weight": 1}],
         "rewrite": {"prefix": "/v2/api"},
         "request_headers": {"set": {"x-canary": "1"}, "remove": ["x-debug"]},
         "response_headers": {"set": {"x-route": "api"}, "remove": ["x-backend"]}},
        {"name": "old", "match": {"path": {"exact": "/old"}},
         "split": [{"subset": "v1", "weight": 1}], "rewrite": {"path": "/new"}},
    ]
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), ep(v2, "v2"), subsets=SUBSETS, routes=routes)}) as proxy:
        answer = await fetch(proxy.port, "GET", "/api/orders?id=7",
                             headers=[("X-Debug", "1"), ("X-Canary", "0"), ("X-Keep", "k")])
        old = await fetch(proxy.port, "GET", "/old?x=1")
    seen = v2.requests[0]
    assert seen.target == "/v2/api/orders?id=7"
    assert seen.header("x-canary") == "1" and seen.header("x-debug") is None
    assert seen.header("x-keep") == "k"
    assert answer.header("x-route") == "api" and answer.header("x-backend") is None
    assert v1.requests[0].target == "/new?x=1" and old.header("x-backend") == "v1"


async def test_a_route_timeout_and_retry_attempts_override_the_policy() -> None:
    routes = [{"name": "quick", "match": {"path": {"prefix": "/slow"}},
               "split": [{"subset": "v1", "weight": 1}], "timeout_ms": 200},
              {"name": "once", "match": {"query": [{"name": "once", "present": True}]},
               "split": [{"subset": "v1", "weight": 1}], "retries": {"attempts": 0}}]
    retries = {"attempts": 2, "on": ["gateway-error"], "backoff_base_ms": 1,
               "backoff_max_ms": 2}
    async with backends("v1", "v2") as (v1, v2), routed_proxy({"payments": upstream(
            ep(v1, "v1"), subsets=SUBSETS, routes=routes, retries=retries,
            request_timeout_ms=15000, outlier={"consecutive_5xx": 0,
                                               "consecutive_gateway": 0})}) as proxy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        timed_out = await fetch(proxy.port, "GET", "/slow?ms=1500")
        elapsed = loop.time() - started
        await fetch(proxy.port, "GET", "/?status=503&once=1")
        once = len(v1.requests) - 1
        await fetch(proxy.port, "GET", "/?status=503")  # no route: the policy's 2 retries
        unrouted = len(v1.requests) - 1 - once
    assert timed_out.status == 504 and timed_out.header("x-mesh-error") == "request-timeout"
    assert elapsed < 1.0
    assert once == 1 and unrouted == 3


async def test_a_split_to_a_route_target_service() -> None:
    async with backends("v1", "next") as (v1, nxt), routed_proxy({
            "payments": upstream(ep(v1, "v1"), subsets=SUBSETS, routes=[{
                "name": "move", "split": [{"subset": "v1", "weight": 50},
                                          {"service": "payments-next", "weight": 50}]}]),
            "payments-next": {**upstream(ep(nxt)), "route_target": True}}) as proxy:
        statuses = await load(proxy.port, 400)
        windows = proxy.windows()
        assert set(proxy.extra) == {"payments-next"}
        proxy.apply({"payments": upstream(ep(v1, "v1"))})  # no route names it any more
        assert proxy.extra == {}
    assert statuses.count(200) == 400
    assert 120 < len(nxt.requests) < 280 and len(v1.requests) + len(nxt.requests) == 400
    assert windows["payments-next", "", "move"]["requests"] == len(nxt.requests)


async def test_an_upstream_without_routes_has_no_route_table() -> None:
    async with backends("v1") as (v1,), routed_proxy({"payments": upstream(ep(v1))}) as proxy:
        assert proxy.runtime.state.routes is None
        assert (await fetch(proxy.port, "GET", "/")).status == 200
        windows = proxy.windows()
    assert windows["payments", "", ""]["statuses"]["2xx"] == 1


async def test_during_failover_a_subset_is_served_by_the_targets_endpoints() -> None:
    async with backends("v1", "dr") as (v1, dr), routed_proxy({"payments": {
            **upstream(ep(dr, "other-tags"), subsets=SUBSETS,
                       routes=[split_route(100, 0, fallback="fail")]),
            "failover": {"active_target": "payments-dr", "reason": "zone down"}}}) as proxy:
        answer = await fetch(proxy.port, "GET", "/")
    assert answer.status == 200 and answer.json()["backend"] == "dr"
