"""The gateway's connections and exchanges (the Gateway itself: listener.py).

A GatewayConnection is the proxy's ClientConnection (the same strict llhttp
parser and framing checks, so smuggling is refused the same way) with the
gateway's header reader; each request is a GatewayExchange, an Exchange that
first routes (host, path, method), answers CORS preflights, checks the body
size, authenticates the consumer and takes its rate-limit tokens, then hands
itself to its route's destination (Gateway.target): the same balancers, retries,
outlier detection and breakers as the mesh, and the service's mesh routes when
the gateway route names no subset.
"""


from __future__ import annotations

import asyncio
import logging
import math
from time import monotonic
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes

from agents.runtime import response
from agents.runtime.exchange import Exchange
from agents.runtime.gateway.auth import PENDING, AuthFailure
from agents.runtime.gateway.heads import GatewayHeaders, gateway_headers, is_trusted
from agents.runtime.gateway.limits import Verdict, local_take
from agents.runtime.gateway.table import (
    RateLimit,
    Route,
)
from agents.runtime.heads import RequestHeaders
from agents.runtime.httpwire import new_request_id, reason_phrase, render_headers
from agents.runtime.listener import ListenerContext
from agents.runtime.proxy_http import ClientConnection
from agents.runtime.retrying import DONE

if TYPE_CHECKING:
    from agents.runtime.exchange import ClientSide
    from agents.runtime.gateway.listener import Gateway

log = logging.getLogger("meshagent.gateway")

KEY_REALM = (b"www-authenticate", b'Key realm="meshconsole"')
BEARER_MISSING = (b"www-authenticate", b'Bearer realm="meshconsole"')
BEARER_INVALID = (b"www-authenticate", b'Bearer error="invalid_token"')


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
