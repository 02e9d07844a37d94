"""The gateway: its listeners, route table, consumers, limits and destinations
(its connections and exchanges, which route, authenticate and limit each request:
exchange.py).

Each service a route names has one UpstreamRuntime (one pool, one outlier
detector, dialled with mTLS as the mesh dials it, with the gateway's identity); a
route to a subset goes to a Target view of it, as a mesh route's split does
(splits.py), so an ejection seen through one route holds for all. A route naming
no subset goes to the service's runtime, which carries the service's mesh routes
(splits.build_routes, the table a mesh client agent builds): the proxy draws the
subset on the request as the gateway forwards it, as a mesh agent's outbound
listener does; a route naming a subset pins it (its view has no routes).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from agents.runtime.config import Upstream
from agents.runtime.gateway.auth import Consumers, JwtVerifier
from agents.runtime.gateway.config import GatewayConfig
from agents.runtime.gateway.exchange import GatewayConnection
from agents.runtime.gateway.limits import GlobalLimiter
from agents.runtime.gateway.metrics import GatewayMetrics
from agents.runtime.gateway.routes import RouteIndex
from agents.runtime.gateway.table import (
    GatewayError,
    GatewayTable,
    RateLimit,
    Route,
    parse_gateway_section,
)
from agents.runtime.gateway.tls import tls_context
from agents.runtime.handover import listener_key
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.ratelimit import TokenBucket
from agents.runtime.snapshot import Snapshot
from agents.runtime.splits import apply_upstreams, subset_endpoints
from agents.runtime.upstream import Destination, Target, UpstreamRuntime

log = logging.getLogger("meshagent.gateway")

MAX_LOCAL_BUCKETS = 100_000


class Gateway:
    """The gateway's live state: the route table of the last snapshot, the consumers,
    the JWT providers, the rate-limit buckets, one UpstreamRuntime per service its
    routes name (RUNTIME(service, source) makes one: the agent's dials with mTLS;
    RETIRE is told when one is dropped) and the destination of each (service, subset)."""

    def __init__(self, config: GatewayConfig, *, zone: str = "",
                 contexts: list[ListenerContext] | None = None,
                 runtime: Callable[[str, str], UpstreamRuntime] | None = None,
                 retire: Callable[[UpstreamRuntime], None] = lambda runtime: None) -> None:
        self.config = config
        self.zone = zone
        self.name = config.name
        self.trusted = config.trusted_proxies
        self.metrics = GatewayMetrics(config.name)
        self.table = GatewayTable()
        self.index = RouteIndex(())
        # Digests of the keys used since the last report (they outlive a table change).
        self.keys_used: set[bytes] = set()
        self.consumers = Consumers((), self.keys_used)
        self.verifiers: dict[str, JwtVerifier] = {}
        self.buckets: dict[tuple[str, int, str], TokenBucket] = {}
        self.limiter = GlobalLimiter(config.redis, config.redis_timeout_ms,
                                     config.on_redis_error, f"meshgw:{config.name}:")
        self.contexts = contexts if contexts is not None else []
        self._runtime = runtime or (lambda service, source: UpstreamRuntime(
            Upstream(service, "", 0, "http", source), zone))
        self._retire = retire
        self.services: dict[str, UpstreamRuntime] = {}
        # Services only a mesh route's split sends to (`route_target`), by service.
        self.split_targets: dict[str, UpstreamRuntime] = {}
        # (service, subset) -> the service's runtime ("") or a Target view of it.
        self.targets: dict[tuple[str, str], Destination] = {}
        self.listener_ctx = ListenerContext(
            UpstreamRuntime(Upstream(config.name, "127.0.0.1", 0, "http", config.name), zone),
            Metrics())
        self.contexts.append(self.listener_ctx)
        self.servers: list[asyncio.Server] = []
        self.bound: list[str] = []
        self.error = ""
        self._snapshot: Snapshot | None = None
        self._running = False

    # snapshots
    def offer(self, snapshot: Snapshot) -> str | None:
        """Apply SNAPSHOT's gateway section and its targets' endpoints; the reason if the
        section is refused (the previous table stays, so does its raw copy in SNAPSHOT)."""
        raw = snapshot.raw.get("gateway")
        error = None
        try:
            table = parse_gateway_section(raw)
        except GatewayError as exc:
            error = str(exc)[:500]
            table = self.table
            if self.table.raw is not None:
                snapshot.raw["gateway"] = self.table.raw
            else:
                snapshot.raw.pop("gateway", None)
        if table is not self.table:
            self._install(table)
        self._snapshot = snapshot
        self._apply_targets(snapshot)
        self.error = error or ""
        return error

    def _install(self, table: GatewayTable) -> None:
        old = self.verifiers
        verifiers: dict[str, JwtVerifier] = {}
        for name, provider in table.providers.items():
            kept = old.get(name)
            if kept is not None and kept.provider == provider:
                verifiers[name] = kept
            else:
                verifiers[name] = JwtVerifier(provider, self.config.jwks_refresh_ms / 1000)
        for name, verifier in old.items():
            if verifiers.get(name) is not verifier:
                verifier.stop()
        self.verifiers = verifiers
        if self._running:
            for verifier in verifiers.values():
                verifier.start()
        wanted = {r.service for r in table.routes}
        for service in sorted(wanted - self.services.keys()):
            split = self.split_targets  # a split target becoming a route's: kept
            self.services[service] = (split.pop(service) if service in split
                                      else self._runtime(service, self.name))
        for service in sorted(self.services.keys() - wanted):
            runtime = self.services.pop(service)
            runtime.apply(None)
            runtime.pool.close_all()
            self._retire(runtime)
        # A bucket carries on while its limit is unchanged; any other one starts afresh.
        was = {(r.name, i): li for r in self.table.routes for i, li in enumerate(r.rate_limits)}
        now = {(r.name, i): li for r in table.routes for i, li in enumerate(r.rate_limits)}
        self.buckets = {k: b for k, b in self.buckets.items()
                        if k[:2] in now and was.get(k[:2]) == now[k[:2]]}
        self.consumers = Consumers(table.consumers, self.keys_used)
        self.index = RouteIndex(table.routes)
        self.table = table

    def _apply_targets(self, snapshot: Snapshot) -> None:
        """Each service's endpoints and mesh routes, with the runtimes of the services
        their splits name, as a mesh agent applies its upstreams (splits.apply_upstreams);
        then each pinned subset's view (splits.py's rule). The views are made again, so
        each is replanned when its service's endpoints change."""
        kept = apply_upstreams(list(self.services.values()), self.split_targets,
                               snapshot.upstreams, self._runtime)
        for service, runtime in self.split_targets.items():
            if kept.get(service) is not runtime:
                self._retire(runtime)
        self.split_targets = kept
        targets: dict[tuple[str, str], Destination] = {}
        for route in self.table.routes:
            key = (route.service, route.subset)
            if key in targets:
                continue
            runtime = self.services[route.service]
            if not route.subset:
                targets[key] = runtime
                continue
            endpoints = subset_endpoints(runtime, snapshot.upstreams.get(route.service),
                                         route.subset)
            view = Target(runtime, endpoints, subset=route.subset,
                          edge=(self.name, route.service, route.subset, ""))
            runtime.views.append(view)
            targets[key] = view
        self.targets = targets

    def target(self, route: Route) -> Destination:
        return self.targets[(route.service, route.subset)]

    def runtimes(self) -> list[UpstreamRuntime]:
        """Every service runtime: those the routes name, then the split targets."""
        return [*self.services.values(), *self.split_targets.values()]

    def drain_keys_used(self) -> set[str]:
        """The keys (as their stored `sha256:` digests) that authenticated a request
        since the last call: the report's `gateway.keys_used`."""
        used = {"sha256:" + raw.hex() for raw in self.keys_used}
        self.keys_used.clear()
        return used

    # rate limits
    def local_bucket(self, route: Route, index: int, limit: RateLimit, who: str) -> TokenBucket:
        key = (route.name, index, who)
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_LOCAL_BUCKETS:
                self.buckets.clear()  # a flood of new consumers/IPs: start over, bounded
            bucket = self.buckets[key] = TokenBucket(limit.rate, limit.capacity)
        return bucket

    # listeners
    async def start(self, take: Callable[[str], socket.socket | None] = lambda key: None,
                    offer: Callable[[str, asyncio.Server], None] = lambda key, s: None) -> None:
        """Listen. TAKE gives the listening socket a predecessor (a restart) or systemd
        handed over for a key, OFFER hands ours on to a successor (agents.runtime.handover)."""
        self._running = True
        for verifier in self.verifiers.values():
            verifier.start()
        await self.limiter.warm()
        loop = asyncio.get_running_loop()
        for listener in self.config.listeners:
            context = tls_context(listener) if listener.tls else None
            scheme = b"https" if context is not None else b"http"
            key = listener_key("gateway-https" if context else "gateway", listener.listen)
            sock = take(key)

            def factory(s: bytes = scheme) -> GatewayConnection:
                return GatewayConnection(self.listener_ctx, self, s)

            if sock is not None:
                server = await loop.create_server(factory, sock=sock, ssl=context, backlog=1024)
            else:
                server = await loop.create_server(factory, listener.host, listener.port,
                                                  ssl=context, backlog=1024, reuse_address=True)
            offer(key, server)
            self.servers.append(server)
            port = server.sockets[0].getsockname()[1] if server.sockets else listener.port
            self.bound.append(f"{listener.host}:{port}")
            log.info("gateway %s listening on %s:%s (%s)", self.name, listener.host, port,
                     scheme.decode())

    def close_servers(self) -> None:
        for server in self.servers:
            server.close()

    async def close(self) -> None:
        self._running = False
        self.close_servers()
        for verifier in self.verifiers.values():
            verifier.stop()
        for runtime in self.runtimes():
            runtime.pool.close_all()
        await self.limiter.close()

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name, "listen": self.bound, "routes": len(self.table.routes),
            "consumers": len(self.table.consumers), "refused": self.error,
            "no_route_total": self.metrics.no_route_total,
            "redis_errors_total": self.limiter.errors_total,
            "jwt_providers": {n: {"keys": len(v.keys), "error": v.error}
                              for n, v in self.verifiers.items()},
            "traffic": self.metrics.stats(),
            "targets": [runtime.stats() for runtime in self.runtimes()],
        }
