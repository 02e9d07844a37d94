"""Two agents' data planes in one asyncio loop: a client side (outbound listeners with
mTLS dials) and a server side (the inbound listener in front of real backends)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.runtime.certs import CertStore
from agents.runtime.config import Inbound, LocalService, Upstream
from agents.runtime.dial import OutboundTls
from agents.runtime.inbound import InboundListener
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.proxy_http import start_http_listener
from agents.runtime.proxy_tcp import start_tcp_listener
from agents.runtime.security import parse_security
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.upstream import UpstreamRuntime
from tests.agents.testca import TestCA, security_doc, store_with


@dataclass
class Side:
    runtime: UpstreamRuntime
    server: asyncio.Server
    port: int


@dataclass
class Pair:
    ca: TestCA
    server_store: CertStore
    client_store: CertStore
    inbound: InboundListener
    inbound_port: int
    app_ports: dict[str, int]
    sides: dict[str, Side] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    doc: dict[str, Any] = field(default_factory=dict)

    def snapshot(self, name: str, protocol: str, mtls: str = "strict",
                 inbound: bool = True) -> dict[str, Any]:
        endpoint: dict[str, Any] = {"id": f"{name}-1", "address": "127.0.0.1",
                                    "port": self.app_ports[name], "status": "passing"}
        if inbound:
            endpoint["inbound"] = {"address": "127.0.0.1", "port": self.inbound_port}
        return {"revision": 1, "security": self.doc, "upstreams": {name: {
            "protocol": protocol, "mtls": mtls,
            "policy": {"connect_timeout_ms": 1000, "request_timeout_ms": 5000},
            "endpoints": [endpoint]}}}

    def publish(self, **changes: Any) -> None:
        """A new security section for both sides (what a snapshot does)."""
        self.doc = {**self.doc, **changes}
        security = parse_security(self.doc)
        self.inbound.apply(security)
        self.inbound.refresh()
        for side in self.sides.values():
            assert side.runtime.pool.tls is not None
            side.runtime.pool.tls.security = security
        if security is not None:
            self.client_store.set_roots(security.roots)
            self.server_store.set_roots(security.roots)

    async def outbound(self, name: str, protocol: str, source: str = "orders", **kw: Any) -> int:
        runtime = UpstreamRuntime(Upstream(name, "127.0.0.1", 0, protocol, source))
        tls = OutboundTls(self.client_store, source)
        tls.security = parse_security(self.doc)
        runtime.pool.tls = tls
        snap = parse_snapshot(self.snapshot(name, protocol, **kw))
        runtime.apply(snap.upstreams[name])
        ctx = ListenerContext(runtime, self.metrics)
        start = start_tcp_listener if protocol == "tcp" else start_http_listener
        server = await start(ctx, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        self.sides[f"{name}:{source}"] = Side(runtime, server, port)
        return port

    async def close(self) -> None:
        for side in self.sides.values():
            side.server.close()
            side.runtime.pool.close_all()
        self.inbound.close()


@contextlib.asynccontextmanager
async def mtls_pair(tmp: Path, http_port: int, tcp_port: int, *, client_ca: TestCA | None = None,
                    client_valid_s: float = 3600, **doc: Any):  # type: ignore[no-untyped-def]
    ca = TestCA()
    server_store = store_with(tmp / "server", ["payments", "ledger"], ca)
    issuer = client_ca or ca
    client_store = store_with(tmp / "client", ["orders", "billing"], issuer, roots=[ca.pem],
                              valid_s=client_valid_s)
    services = [LocalService("payments", "127.0.0.1", http_port, id="payments"),
                LocalService("ledger", "127.0.0.1", tcp_port, protocol="tcp", id="ledger")]
    inbound = InboundListener(Inbound("127.0.0.1", 0, "127.0.0.1", 0), services, server_store)
    pair_doc = security_doc([ca.pem], **doc)
    inbound.apply(parse_security(pair_doc))
    server = await inbound.start()
    port = int(server.sockets[0].getsockname()[1])
    pair = Pair(ca, server_store, client_store, inbound, port,
                {"payments": http_port, "ledger": tcp_port}, doc=pair_doc)
    try:
        yield pair
    finally:
        await pair.close()
