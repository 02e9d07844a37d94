"""The HTTP proxy's own cost per request, without sockets or an event loop's I/O.

    python bench/proxy_hotpath.py [--requests 200000] [--profile] [--routes]

Drives a ClientConnection and a pooled UpstreamConnection with in-memory
transports: a wrk-like GET goes in, the upstream's head is checked, an
nginx-like response goes back, the client's bytes are checked. What it prints
is the Python time per proxied request (the part `proxy_bench.py` cannot
separate from the kernel's); --profile adds cProfile's top functions.
--routes adds the same request through an L7 route table of 1 and of 20 routes
(19 prefixes it does not have, then a catch-all split to a subset).
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
from agents.runtime.listener import ListenerContext  # noqa: E402
from agents.runtime.metrics import Metrics  # noqa: E402
from agents.runtime.pool import UpstreamConnection  # noqa: E402
from agents.runtime.proxy_http import ClientConnection  # noqa: E402
from agents.runtime.snapshot import parse_snapshot  # noqa: E402
from agents.runtime.splits import apply_upstreams  # noqa: E402
from agents.runtime.upstream import UpstreamRuntime  # noqa: E402
from bench.benchlib import policy  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 19:00:00 GMT\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 2\r\n"
            b"Connection: keep-alive\r\n\r\nok")


class MemoryTransport:
    """The few transport methods the proxy calls; keeps the last write."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.last = b""
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def route_table(count: int) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [
        {"name": f"r{i}", "match": {"path": {"prefix": f"/svc{i}/"}, "methods": ["GET"]},
         "split": [{"subset": "v1", "weight": 1}]} for i in range(count - 1)]
    routes.append({"name": "all", "match": {"path": {"prefix": "/"}},
                   "split": [{"subset": "v1", "weight": 9}, {"subset": "v1b", "weight": 1}]})
    return {"subsets": {"v1": {"tags": ["v1"]}, "v1b": {"tags": ["v1"]}}, "routes": routes}


async def run(requests: int, resilience: bool, profile: bool, routes: int = 0) -> None:
    runtime = UpstreamRuntime(Upstream("web", "127.0.0.1", 0, "http", "bench"))
    raw = {"revision": 1, "upstreams": {"web": {
        "protocol": "http", "policy": policy(resilience=resilience or None),
        "endpoints": [{"id": "i-1", "address": "127.0.0.1", "port": 8080, "status": "passing",
                       "tags": ["v1"]}],
        **(route_table(routes) if routes else {}),
    }}}
    apply_upstreams([runtime], {}, parse_snapshot(raw).upstreams, lambda s, src: runtime)
    ctx = ListenerContext(runtime, Metrics())
    endpoint = runtime.state.endpoints[0]
    upstream = UpstreamConnection(endpoint, runtime.pool)
    up_transport = MemoryTransport(("127.0.0.1", 8080))
    upstream.connection_made(up_transport)  # type: ignore[arg-type]
    # A fresh parser has seen no keep-alive message yet, so give() would refuse it.
    upstream.idle_since = time.monotonic()
    runtime.pool._idle[endpoint.key] = [upstream]
    client = ClientConnection(ctx)
    client_transport = MemoryTransport(("127.0.0.1", 50000))
    client.connection_made(client_transport)  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    one()
    assert up_transport.last.startswith(b"GET / HTTP/1.1\r\n"), up_transport.last
    assert client_transport.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_transport.last
    assert client_transport.last.endswith(b"\r\n\r\nok"), client_transport.last
    for _ in range(2000):
        one()
    profiler = cProfile.Profile() if profile else None
    writes = client_transport.writes + up_transport.writes
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    for _ in range(requests):
        one()
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.disable()
    writes = client_transport.writes + up_transport.writes - writes
    label = "resilience on" if resilience else "defaults"
    if routes:
        label = f"{routes} route{'s' if routes > 1 else ''}"
    print(f"{label:14s} {elapsed / requests * 1e6:6.2f} us/request "
          f"({requests / elapsed:,.0f} requests/s of Python alone; "
          f"{writes / requests:.1f} writes/request)")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    client.connection_lost(None)
    runtime.pool.close_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--routes", action="store_true")
    args = parser.parse_args()
    import uvloop

    for resilience in (False, True):
        uvloop.run(run(args.requests, resilience, args.profile and not resilience))
    if args.routes:
        for count in (1, 20):
            uvloop.run(run(args.requests, False, False, count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
