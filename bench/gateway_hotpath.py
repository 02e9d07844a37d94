"""The gateway's own Python cost per request against the plain listener's, without sockets.

    python bench/gateway_hotpath.py [--requests 100000] [--rounds 3] [--profile]

As bench/proxy_hotpath.py: a client connection and a pooled upstream connection on
in-memory transports; a wrk-like GET with an API key goes in, an nginx-like answer
comes back. Cases: the plain mesh listener, the gateway with key auth + a local
limit never hit + metrics (1 route), the same among 20 routes, and the 1-route case
whose service has a 90/10 mesh split (the edge drawing the subset, one endpoint in
both subsets so every request goes to the pooled connection). Interleaved rounds,
the best of each, in CPU time (time.process_time); steady on a shared machine where
wrk figures are not.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.runtime.config import Upstream  # noqa: E402
from agents.runtime.gateway.auth import key_digest  # noqa: E402
from agents.runtime.gateway.config import GatewayConfig, GatewayListener  # noqa: E402
from agents.runtime.gateway.listener import Gateway, GatewayConnection  # noqa: E402
from agents.runtime.listener import ListenerContext  # noqa: E402
from agents.runtime.metrics import Metrics  # noqa: E402
from agents.runtime.pool import UpstreamConnection  # noqa: E402
from agents.runtime.proxy_http import ClientConnection  # noqa: E402
from agents.runtime.snapshot import parse_snapshot  # noqa: E402
from agents.runtime.upstream import UpstreamRuntime  # noqa: E402
from bench.benchlib import policy  # noqa: E402
from bench.gateway_bench import API_KEY, routes  # noqa: E402
from bench.proxy_hotpath import RESPONSE, MemoryTransport  # noqa: E402

REQUEST = (b"GET /orders/1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\napikey: "
           + API_KEY.encode() + b"\r\n\r\n")


def _pooled(runtime: UpstreamRuntime) -> tuple[UpstreamConnection, MemoryTransport]:
    endpoint = runtime.state.endpoints[0]
    upstream = UpstreamConnection(endpoint, runtime.pool)
    transport = MemoryTransport(("127.0.0.1", 8080))
    upstream.connection_made(transport)  # type: ignore[arg-type]
    upstream.idle_since = time.monotonic()
    runtime.pool._idle[endpoint.key] = [upstream]
    return upstream, transport


def setup(case: str) -> tuple[Any, UpstreamConnection, MemoryTransport, MemoryTransport, Any]:
    upstream_raw = {"protocol": "http", "policy": policy(resilience=None),
                    "endpoints": [{"id": "i-1", "address": "127.0.0.1", "port": 8080,
                                   "status": "passing"}]}
    if case == "plain":
        runtime = UpstreamRuntime(Upstream("orders", "127.0.0.1", 0, "http", "bench"))
        runtime.apply(parse_snapshot({"revision": 1, "upstreams": {"orders": upstream_raw}})
                      .upstreams["orders"])
        client: ClientConnection = ClientConnection(ListenerContext(runtime, Metrics()))
        keep: Any = runtime
    else:
        count = 20 if case == "gateway, 20 routes" else 1
        gateway = Gateway(GatewayConfig("edge", (GatewayListener("127.0.0.1", 0),)))
        orders: dict[str, Any] = {**upstream_raw, "route_target": True}
        if case == "gateway, mesh split":
            orders["endpoints"] = [{**orders["endpoints"][0], "tags": ["v1", "v2"]}]
            orders["subsets"] = {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}}
            orders["routes"] = [{"name": "canary", "split": [{"subset": "v1", "weight": 90},
                                                             {"subset": "v2", "weight": 10}]}]
        raw = {"revision": 1, "upstreams": {"orders": orders},
               "gateway": {"name": "edge", "routes": routes(count),
                           "consumers": [{"name": "alice", "key_hashes": [key_digest(API_KEY)],
                                          "jwt_subjects": []}]}}
        assert gateway.offer(parse_snapshot(raw)) is None
        runtime = gateway.services["orders"]
        client = GatewayConnection(gateway.listener_ctx, gateway, b"http")
        keep = gateway
    upstream, up_transport = _pooled(runtime)
    client_transport = MemoryTransport(("127.0.0.1", 50000))
    client.connection_made(client_transport)  # type: ignore[arg-type]
    return client, upstream, up_transport, client_transport, keep


async def measure(case: str, requests: int, profile: bool) -> float:
    client, upstream, up_transport, client_transport, _ = setup(case)

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    one()
    assert up_transport.last.startswith(b"GET /orders/1 HTTP/1.1\r\n"), up_transport.last
    assert client_transport.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_transport.last
    for _ in range(2000):
        one()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    # CPU time of this process: on a shared machine, wall time also counts the others.
    started = time.process_time()
    for _ in range(requests):
        one()
    elapsed = time.process_time() - started
    # Every request went up and its answer came back (a connection given back to the wrong
    # pool once left the measured loop feeding a closed one).
    writes = up_transport.writes
    one()
    assert up_transport.writes == writes + 1 and not up_transport.closed, "upstream lost"
    assert client_transport.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_transport.last
    if profiler:
        profiler.disable()
        print(f"--- {case}")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    client.connection_lost(None)
    return elapsed / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    import uvloop

    cases = ("plain", "gateway, 1 route", "gateway, 20 routes", "gateway, mesh split")
    best: dict[str, float] = {}
    for i in range(max(1, args.rounds)):
        for case in cases:
            us = uvloop.run(measure(case, args.requests, args.profile and i == 0))
            best[case] = min(best.get(case, us), us)
    for case in cases:
        print(f"{case:20s} {best[case]:6.2f} us CPU/request (Python alone, best of {args.rounds})")
    cost = best["gateway, 1 route"] / best["plain"] - 1
    table = best["gateway, 20 routes"] / best["gateway, 1 route"] - 1
    print(f"gateway (key auth + local limit + metrics) vs plain listener: {cost:+.1%}")
    print(f"20-route table vs 1 route: {table:+.1%}")
    split = best["gateway, mesh split"] / best["gateway, 1 route"] - 1
    print(f"the service's 90/10 mesh split drawn at the edge vs 1 route: {split:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
