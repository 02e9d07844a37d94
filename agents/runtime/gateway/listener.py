"""The gateway's listeners, connections and exchanges.

A GatewayConnection is the proxy's ClientConnection (the same strict llhttp
parser and framing checks, so smuggling is refused the same way) with the
gateway's header reader; each request is a GatewayExchange, an Exchange that
first routes (host, path, method), answers CORS preflights, checks the body
size, authenticates the consumer and takes its rate-limit tokens, then hands
itself to its route's destination: the same balancers, retries, outlier detection
and breakers as the mesh. Each service a route names has one UpstreamRuntime (one
pool, one outlier detector, dialled with mTLS as the mesh dials it, with the
gateway's identity); a route to a subset goes to a Target view of it, as a mesh
route's split does (splits.py), so an ejection seen through one route holds for all.
A route naming no subset goes to the service's runtime, which carries the service's
mesh routes (splits.build_routes, the table a mesh client agent builds): the proxy
draws the subset on the request as the gateway forwards it, as a mesh agent's
outbound listener does; a route naming a subset pins it (its view has no routes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes

from agents.runtime import response
from agents.runtime.config import Upstream
from agents.runtime.exchange import Exchange
from agents.runtime.gateway.auth import PENDING, AuthFailure, Consumers, JwtVerifier
from agents.runtime.gateway.config import GatewayConfig
from agents.runtime.gateway.heads import GatewayHeaders, gateway_headers, is_trusted
from agents.runtime.gateway.limits import GlobalLimiter, Verdict, local_take
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
from agents.runtime.heads import RequestHeaders
from agents.runtime.httpwire import new_request_id, reason_phrase, render_headers
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.proxy_http import ClientConnection
from agents.runtime.ratelimit import TokenBucket
from agents.runtime.retrying import DONE
from agents.runtime.snapshot import Snapshot
from agents.runtime.splits import apply_upstreams, subset_endpoints
from agents.runtime.upstream import Destination, Target, UpstreamRuntime

if TYPE_CHECKING:
    from agents.runtime.exchange import ClientSide

log = logging.getLogger("meshagent.gateway")

MAX_LOCAL_BUCKETS = 100_000
KEY_REALM = (b"www-authenticate", b'Key realm="meshconsole"')
BEARER_MISSING = (b"www-authenticate", b'Bearer realm="meshconsole"')
BEARER_INVALID = (b"www-authenticate", b'Bearer error="invalid_token"')


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


class GatewayConnection(ClientConnection):
    __slots__ = ("gateway", "scheme", "peer_trusted")

    def __init__(self, ctx: ListenerContext, gateway: Gateway, scheme: bytes) -> None:
        super().__init__(ctx)
        self.gateway = gateway
        self.scheme = scheme
        self.peer_trusted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer_trusted = is_trusted(self.peer.decode("latin-1"), self.gateway.trusted)

    def read_headers(self, headers: list[tuple[bytes, bytes]]) -> RequestHeaders:
        return gateway_headers(headers, self.peer, self.peer_trusted, self.gateway.trusted,
                               self.scheme)


def _query_value(url: bytes, name: str) -> bytes:
    q = url.find(b"?")
    if q < 0 or not name:
        return b""
    wanted = name.encode() + b"="
    for part in url[q + 1:].split(b"&"):
        if part.startswith(wanted):
            return unquote_to_bytes(part[len(wanted):].replace(b"+", b" "))
    return b""


def _dot_segments(path: str) -> bool:
    return any(s in (".", "..") for s in unquote(path).split("/"))


class GatewayExchange(Exchange):
    __slots__ = ("gw", "gw_route", "consumer", "resp_extra", "body_limit", "body_seen",
                 "route_timeout", "timeout_set", "cors_origin")

    def __init__(self, client: ClientSide, method: bytes, url: bytes,
                 headers: list[tuple[bytes, bytes]], forwarded: RequestHeaders, http11: bool,
                 keep_alive: bool, content_length: int | None, upgrade: bool = False) -> None:
        super().__init__(client, method, url, headers, forwarded, http11, keep_alive,
                         content_length, upgrade)
        gw: Gateway = client.gateway  # type: ignore[attr-defined]
        self.gw = gw
        self.gw_route: Route | None = None
        self.consumer = ""
        self.resp_extra: list[tuple[bytes, bytes]] | None = None
        self.body_limit = gw.config.max_body_bytes
        self.body_seen = 0
        self.route_timeout = 0.0
        self.timeout_set = False
        self.cors_origin = b""

    # admission
    def start(self) -> None:
        try:
            self._admit()
        except Exception:  # a bug must cost this request (502), never the connection's parser
            log.exception("gateway error")
            if not self.finished:
                self._refuse(502, "gateway-error")

    def _admit(self) -> None:
        self.started = monotonic()
        gw = self.gw
        forwarded: GatewayHeaders = self.forwarded  # type: ignore[assignment]
        request_id = forwarded.request_id or new_request_id()
        forwarded.request_id = request_id
        self.extra = [(b"x-request-id", request_id)]
        url = self.url
        q = url.find(b"?")
        raw_path = url if q < 0 else url[:q]
        path = raw_path.decode("latin-1")
        if (b"." in raw_path or b"%" in raw_path) and _dot_segments(path):
            self._refuse(400, "bad-path")
            return
        route = gw.index.match(forwarded.host, path, self.method)
        if route is None:
            gw.metrics.no_route_total += 1
            self._refuse(404, "no-route")
            return
        self.gw_route = route
        cors = route.cors
        if cors is not None and forwarded.origin:
            origin = forwarded.origin.decode("latin-1")
            if origin in cors.origins or "*" in cors.origins:
                self.cors_origin = forwarded.origin
            if self.method == b"OPTIONS" and forwarded.preflight:
                self._preflight()
                return
            if self.cors_origin:
                self.extra += self._cors_headers()
        limit = route.max_body_bytes if route.max_body_bytes is not None else self.body_limit
        self.body_limit = limit
        if ((self.content_length is not None and self.content_length > limit)
                or self.body_seen > limit):
            self._refuse(413, "body-too-large")
            return
        verdict = self._authenticate(route, forwarded)
        if verdict is False:
            return
        if verdict is PENDING or route.has_global:
            self.task = self.loop.create_task(self._admit_slow(verdict is PENDING))
            return
        if self._local_limits(route, forwarded):
            self._forward(route, forwarded)

    async def _admit_slow(self, pending: bool) -> None:
        route = self.gw_route
        forwarded: GatewayHeaders = self.forwarded  # type: ignore[assignment]
        assert route is not None
        try:
            if pending:
                verifier = self.gw.verifiers[route.auth.provider]
                await verifier.wait_loaded()
                if self.finished:
                    return
                verdict = self._authenticate(route, forwarded)
                if verdict is False:
                    return
                if verdict is PENDING:
                    self._refuse(401, "jwks-unavailable", [BEARER_INVALID])
                    return
            if not self._local_limits(route, forwarded):
                return
            verdicts = []
            for i, limit in enumerate(route.rate_limits):
                if limit.mode == "global":
                    who = self._who(limit, forwarded)
                    verdicts.append(await self.gw.limiter.take(f"{route.name}:{i}:{who}", limit))
            if self.finished:
                return
            if not self._limited(verdicts):
                self._forward(route, forwarded)
        except Exception:
            log.exception("gateway error")
            if not self.finished:
                self._refuse(502, "gateway-error")

    def _authenticate(self, route: Route, forwarded: GatewayHeaders) -> bool | str:
        auth = route.auth
        if auth.type == "none":
            return True
        consumer: str | None
        if auth.type == "key":
            key = b""
            if auth.key_header:
                name = auth.key_header
                for n, v in self.headers:
                    if n.lower() == name:
                        key = v
                        break
            if not key and auth.key_query:
                key = _query_value(self.url, auth.key_query)
            if not key:
                self._refuse(401, "missing-credentials", [KEY_REALM])
                return False
            consumer = self.gw.consumers.by_key(key)
            if consumer is None:
                self._refuse(401, "invalid-credentials", [KEY_REALM])
                return False
        else:
            header = forwarded.authorization
            if header[:7].lower() != b"bearer " or not header[7:].strip():
                self._refuse(401, "missing-credentials", [BEARER_MISSING])
                return False
            verifier = self.gw.verifiers[auth.provider]
            try:
                claims = verifier.verify(header[7:].strip().decode("latin-1"))
            except AuthFailure as exc:
                self._refuse(exc.status, exc.reason, [BEARER_INVALID])
                return False
            if claims is PENDING or isinstance(claims, str):
                return PENDING
            subject = claims.get(verifier.provider.consumer_claim)
            consumer = self.gw.consumers.by_subject.get(subject) if isinstance(
                subject, str) else None
            if consumer is None:
                self._refuse(403, "unknown-consumer")
                return False
        if auth.consumers and consumer not in auth.consumers:
            self.consumer = consumer
            self._refuse(403, "consumer-not-allowed")
            return False
        self.consumer = consumer
        return True

    def _who(self, limit: RateLimit, forwarded: GatewayHeaders) -> str:
        if limit.scope == "route":
            return ""
        return self.consumer or "ip:" + forwarded.client_ip  # no consumer: per client IP

    def _local_limits(self, route: Route, forwarded: GatewayHeaders) -> bool:
        limits = route.rate_limits
        if not limits:
            return True
        if len(limits) == 1 and limits[0].mode == "local":  # the common case, without Verdicts
            limit = limits[0]
            who = "" if limit.scope == "route" else self._who(limit, forwarded)
            bucket = self.gw.buckets.get((route.name, 0, who))
            if bucket is None:
                bucket = self.gw.local_bucket(route, 0, limit, who)
            if bucket.take() == 0.0:
                tokens = bucket.tokens
                extra = self.extra if self.extra is not None else self.resp_extra_headers()
                extra += ((b"ratelimit-limit", b"%d" % limit.requests),
                          (b"ratelimit-remaining", b"%d" % tokens),
                          (b"ratelimit-reset", b"%d" % math.ceil(
                              (bucket.burst - tokens) / bucket.rate)))
                return True
        verdicts = []
        for i, limit in enumerate(route.rate_limits):
            if limit.mode == "local":
                bucket = self.gw.local_bucket(route, i, limit, self._who(limit, forwarded))
                verdicts.append(local_take(bucket, limit))
        return not self._limited(verdicts)

    def _limited(self, verdicts: list[Verdict]) -> bool:
        """Refuse (429) if one verdict does; else add the tightest one's headers."""
        if not verdicts:
            return False
        refused = [v for v in verdicts if not v.allowed]
        if refused:
            worst = max(refused, key=lambda v: v.wait_s)
            self.ctx.upstream.rate_limited_total += 1
            self._refuse(429, "rate-limited", worst.headers())
            return True
        tightest = min(verdicts, key=lambda v: v.remaining)
        headers = self.resp_extra_headers()
        headers += tightest.headers()
        return False

    def resp_extra_headers(self) -> list[tuple[bytes, bytes]]:
        if self.extra is None:
            self.extra = []
        return self.extra

    def _cors_headers(self) -> list[tuple[bytes, bytes]]:
        cors = self.gw_route.cors if self.gw_route is not None else None
        assert cors is not None
        wildcard = "*" in cors.origins and not cors.credentials
        out = [(b"access-control-allow-origin", b"*" if wildcard else self.cors_origin)]
        if not wildcard:
            out.append((b"vary", b"Origin"))
        if cors.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def _preflight(self) -> None:
        headers = list(self.extra or ())
        cors = self.gw_route.cors if self.gw_route is not None else None
        if cors is not None and self.cors_origin:
            headers += self._cors_headers()
            if cors.methods:
                headers.append((b"access-control-allow-methods", ", ".join(cors.methods).encode()))
            if cors.headers:
                headers.append((b"access-control-allow-headers",
                                ", ".join(cors.headers).encode()))
            headers.append((b"access-control-max-age", b"%d" % cors.max_age_s))
        self._answer(204, headers)

    def _answer(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """A bodiless local answer (the CORS preflight)."""
        if not self.has_body:
            self.request_complete = True
        keep = self.keep_alive and self.request_complete and not self.ctx.draining
        self.status = status
        if not keep:
            headers = [*headers, (b"connection", b"close")]
        self.out.append(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason_phrase(status),
                                                     render_headers(headers)))
        self._complete(False, keep=keep)

    def _refuse(self, status: int, reason: str,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
        if not self.has_body:
            self.request_complete = True  # nothing more to read: the connection stays usable
        if extra:
            self.extra = [*(self.extra or ()), *extra]
        self.fail(status, reason)

    def reread_headers(self) -> RequestHeaders:
        """After a mesh route's header changes: the gateway's rules again (X-Forwarded-*,
        a client's X-Mesh-Consumer dropped), the request id and consumer kept."""
        old: GatewayHeaders = self.forwarded  # type: ignore[assignment]
        new: GatewayHeaders = self.client.read_headers(self.headers)  # type: ignore[attr-defined]
        new.request_id = old.request_id
        if self.consumer:
            new.block += b"x-mesh-consumer: %s\r\n" % self.consumer.encode()
        return new

    def refuse(self, status: int, reason: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """The proxy's local answers (503 no-healthy-subset, 429, circuit-open) keep the
        gateway's own headers (X-Request-Id, CORS, rate-limit)."""
        Exchange.refuse(self, status, reason, [*(self.extra or ()), *(extra or ())])

    def _forward(self, route: Route, forwarded: GatewayHeaders) -> None:
        if route.strip_prefix:
            rest = self.url[len(route.path):]
            self.url = rest if rest[:1] == b"/" else b"/" + rest
        if self.consumer:
            forwarded.block += b"x-mesh-consumer: %s\r\n" % self.consumer.encode()
        self.resp_extra = self.extra
        if route.timeout_ms:
            self.route_timeout = route.timeout_ms / 1000
            self.__class__ = TimedGatewayExchange  # the same slots: only _begin_try differs
        # The route's view of its service (Exchange.start starts from self.target); the
        # connection's context stays (in-flight counts, draining).
        self.target = self.gw.targets[(route.service, route.subset)]
        Exchange.start(self)

    # the Exchange parts the gateway changes

    def request_body(self, data: bytes) -> None:
        self.body_seen += len(data)
        if self.body_seen > self.body_limit:
            if self.started and not self.finished:
                self.abort_request(413, "body-too-large")
            return
        Exchange.request_body(self, data)

    def response_head(self, status: int, reason: bytes,
                      headers: list[tuple[bytes, bytes]]) -> None:
        extra = self.resp_extra
        if not extra or status < 200:
            response.response_head(self, status, reason, headers)
            return
        if self.cors_origin or self.is_head:
            if self.cors_origin:
                headers = [h for h in headers if not h[0].lower().startswith(b"access-control-")]
            response.response_head(self, status, reason, [*headers, *extra])
            return
        # The common case: the gateway's own lines (lower-case, valid) go into the head the
        # proxy built, instead of through its header pass once more.
        out = self.out
        n = len(out)
        response.response_head(self, status, reason, headers)
        if len(out) > n and self.response_started:
            head = out[n]
            out[n] = b"".join([head[:-2], *[b"%s: %s\r\n" % h for h in extra], b"\r\n"])

    def _complete(self, error: bool, *, keep: bool) -> None:
        self.flush()
        self.finished = True
        self._cancel_timer()
        now = monotonic()
        route = self.gw_route
        if route is not None:
            # Counted on where it went: a mesh route's drawn subset (or service) once
            # forwarded; the gateway route's own before (refused by the gateway).
            target = self.target
            if target is self.ctx.upstream:
                key = (route.service, route.subset, route.name, self.consumer)
            else:
                key = (target.service, target.subset, route.name, self.consumer)
            self.gw.metrics.record(key, (now - self.started) * 1000.0, self.status, error)
        self._observe(error, now)
        self._resolve(DONE)
        self.client.exchange_finished(self, keep)


GatewayConnection.exchange_type = GatewayExchange


class TimedGatewayExchange(GatewayExchange):
    """A GatewayExchange whose route sets timeout_ms: that replaces the policy's request
    timeout, from the first try on (GatewayExchange._forward switches the class)."""

    __slots__ = ()

    def _begin_try(self, conn: Any, endpoint: Any, state: Any, started: float = 0.0) -> None:
        if not self.timeout_set:
            self.timeout_set = True
            self.deadline = self.loop.time() + self.route_timeout
        Exchange._begin_try(self, conn, endpoint, state, started)
