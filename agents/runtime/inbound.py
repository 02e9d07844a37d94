"""The inbound listener: mTLS from other agents, intentions, then the local app.

One TLS listener per host (agent.yaml `inbound:`). A peer must present a client
certificate chained to the trust bundle, not revoked, whose URI SAN is an identity
of the trust domain; the server certificate is that of the service named in SNI
(`<port>.<service>.inbound.mesh`), which also says which `services` entry gets the
traffic. After the handshake the connection is handed to the ordinary proxy
protocols (proxy_http / proxy_tcp) with one endpoint, the local application:
HTTP requests are checked against the intentions one by one (a denied one is
answered 403 and never reaches the app), a TCP connection once (closed if denied).
The edge is recorded from the verified identity, never from a header.

A snapshot that revokes a serial or denies a TCP edge closes the connections it
concerns at once (`apply`), so a cut-off host loses its open connections too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from agents.runtime.certs import CertStore, peer_uri, server_base_context
from agents.runtime.config import Inbound, LocalService, Upstream
from agents.runtime.dial import inbound_sni
from agents.runtime.exchange import Exchange
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.policy import Policy
from agents.runtime.proxy_http import ClientConnection
from agents.runtime.proxy_tcp import TcpConnection
from agents.runtime.security import Security, source_of
from agents.runtime.snapshot import EndpointSpec, UpstreamSnapshot
from agents.runtime.upstream import UpstreamRuntime

log = logging.getLogger("meshagent.inbound")

PRUNE_EVERY = 256  # connections accepted between sweeps of the closed ones


@dataclass(eq=False)
class Target:
    """A local application reachable through the inbound listener."""

    service: LocalService
    ctx: ListenerContext

    @property
    def name(self) -> str:
        return self.service.name


@dataclass(eq=False)
class Peer:
    transport: asyncio.Transport
    serial: int
    source: str
    destination: str
    tcp: bool


def _target(service: LocalService, metrics: Metrics) -> Target:
    runtime = UpstreamRuntime(Upstream(service.name, "", 0, service.protocol, service.name))
    runtime.apply(UpstreamSnapshot(service.protocol, Policy(), (
        EndpointSpec(id=f"local:{service.id or service.name}", address=service.address,
                     port=service.port),)))
    return Target(service, ListenerContext(runtime, metrics))


class InboundListener:
    def __init__(self, config: Inbound, services: Sequence[LocalService], store: CertStore,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics or Metrics()
        self.security: Security | None = None
        self.targets = {inbound_sni(s.port, s.name): _target(s, self.metrics) for s in services}
        self.peers: dict[asyncio.Transport, Peer] = {}
        self.server: asyncio.Server | None = None
        self.refused: dict[str, int] = {}  # why handshakes or connections were refused
        self._accepted = 0
        self.context = server_base_context()
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.sni_callback = self._sni

    @property
    def contexts(self) -> list[ListenerContext]:
        return [t.ctx for t in self.targets.values()]

    async def start(self, sock: Any = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"ssl": self.context, "backlog": 1024,
                                  "ssl_handshake_timeout": 10.0}
        if sock is not None:
            self.server = await loop.create_server(self._accept, sock=sock, **kwargs)
        else:
            self.server = await loop.create_server(self._accept, self.config.host,
                                                   self.config.port, reuse_address=True, **kwargs)
        return self.server

    def refresh(self) -> None:
        """New roots: the base context trusts them too (it verifies when no SNI switch
        happens; the per-service contexts are rebuilt by the store)."""
        if self.store.roots:
            self.context.load_verify_locations(cadata="".join(self.store.roots))

    def apply(self, security: Security | None) -> None:
        """A new snapshot's security: close connections of revoked serials, and TCP
        connections an intention now denies (HTTP is checked per request anyway)."""
        self.security = security
        self._prune()
        for transport, peer in list(self.peers.items()):
            if security is None or peer.serial in security.revoked:
                self._cut(transport, "revoked")
            elif peer.tcp and security.decide(peer.source, peer.destination)[0] != "allow":
                self._cut(transport, "denied")

    def _cut(self, transport: asyncio.Transport, why: str) -> None:
        self.peers.pop(transport, None)
        self.refused[why] = self.refused.get(why, 0) + 1
        transport.abort()

    def _prune(self) -> None:
        for transport in [t for t in self.peers if t.is_closing()]:
            del self.peers[transport]

    def _sni(self, sslobj: ssl.SSLObject, name: str | None,
             _base: ssl.SSLContext) -> int | None:
        target = self.targets.get(name or "")
        if target is None:
            self.refused["unknown-sni"] = self.refused.get("unknown-sni", 0) + 1
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ctx = self.store.server_context(target.name)
        if ctx is None:
            self.refused["no-certificate"] = self.refused.get("no-certificate", 0) + 1
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        sslobj.context = ctx
        sslobj.mesh_target = target  # type: ignore[attr-defined]  # read in connection_made
        return None

    def _accept(self) -> asyncio.Protocol:
        self._accepted += 1
        if self._accepted % PRUNE_EVERY == 0:
            self._prune()
        return _Handshaken(self)

    def admit(self, transport: asyncio.Transport) -> None:
        """A TLS connection whose handshake succeeded: check it, then hand it on."""
        sslobj = transport.get_extra_info("ssl_object")
        target: Target | None = getattr(sslobj, "mesh_target", None)
        peer = peer_uri(sslobj)
        security = self.security
        if security is None or target is None or peer is None:
            self._cut(transport, "no-security" if security is None else "no-identity")
            return
        uri, serial = peer
        source = source_of(security.trust_domain, uri)
        if source is None:
            self._cut(transport, "foreign-identity")
            return
        if serial in security.revoked:
            self._cut(transport, "revoked")
            return
        edge = (source, target.name)
        tcp = target.service.protocol == "tcp"
        if tcp:
            rule = _denied(security.decide(source, target.name))
            if rule is not None:
                self.metrics.record_edge(edge, 0.0, False)
                self.metrics.deny(edge)
                log.info("denied tcp %s -> %s by %s", source, target.name, rule)
                self._cut(transport, "denied")
                return
            tcp_conn = TcpConnection(target.ctx)
            tcp_conn.edge = edge
            inner: asyncio.Protocol = tcp_conn
        else:
            http_conn = ClientConnection(target.ctx)
            http_conn.edge = edge
            http_conn.authorize = self._authorizer(source, target.name)
            inner = http_conn
        self.peers[transport] = Peer(transport, serial, source, target.name, tcp)
        transport.set_protocol(inner)
        inner.connection_made(transport)

    def _authorizer(self, source: str, destination: str) -> Callable[[Exchange], str | None]:
        def authorize(exchange: Exchange) -> str | None:
            security = self.security
            if security is None:
                return "default"
            path = exchange.url.split(b"?", 1)[0]
            return _denied(security.decide(source, destination,
                                           (exchange.method, path, exchange.headers)))
        return authorize

    def close_server(self) -> None:
        """Stop accepting (the agent is stopping; open connections drain)."""
        if self.server is not None:
            self.server.close()

    def close(self) -> None:
        self.close_server()
        for transport in list(self.peers):
            with contextlib.suppress(Exception):
                transport.close()
        self.peers.clear()

    def stats(self) -> dict[str, Any]:
        return {"listen": f"{self.config.host}:{self.config.port}",
                "advertise": self.config.as_report(),
                "services": sorted(self.targets), "open_connections": len(self.peers),
                "refused": dict(self.refused)}


def _denied(decision: tuple[str, str]) -> str | None:
    action, rule = decision
    return None if action == "allow" else rule


class _Handshaken(asyncio.Protocol):
    """Lives only until the handshake is done (connection_made), then hands over."""

    def __init__(self, listener: InboundListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.listener.admit(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced at once
        pass
