"""Dialling an endpoint: plaintext to its address, or mTLS to its node agent's inbound.

The zero-trust contract: an upstream whose destination's mode is not `off`, and an
endpoint whose node has an agent with an inbound listener, is dialled at that
listener with TLS (client certificate: the upstream source's), SNI
`<port>.<service>.inbound.mesh`, the server's certificate verified against the
trust bundle and its URI SAN against the destination's identity. Everything else
is dialled directly, as before. Endpoint keys carry the TLS route, so a pool never
hands a plaintext connection to an mTLS request or the other way round.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from agents.runtime.certs import NODE, CertStore, peer_uri
from agents.runtime.security import Security

P = TypeVar("P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True)
class TlsRoute:
    host: str
    port: int
    sni: str
    identities: frozenset[str]  # URI SANs the server may present


def inbound_sni(port: int, service: str) -> str:
    return f"{port}.{service}.inbound.mesh"


class OutboundTls:
    """What one upstream's mTLS dials share: its source's certificate and the bundle."""

    def __init__(self, store: CertStore, source: str) -> None:
        self.store = store
        self.name = source if source in store.names else (NODE if NODE in store.names else None)
        self.security: Security | None = None

    def context(self) -> ssl.SSLContext | None:
        return None if self.name is None else self.store.client_context(self.name)


class MtlsRefused(OSError):
    """The peer's certificate is not the destination's identity, or is revoked."""


async def dial(factory: Callable[[], P], address: str, port: int, route: TlsRoute | None,
               tls: OutboundTls | None) -> tuple[asyncio.BaseTransport, P]:
    loop = asyncio.get_running_loop()
    if route is None:
        return await loop.create_connection(factory, address, port)
    ctx = tls.context() if tls is not None else None
    if ctx is None:
        raise MtlsRefused("no certificate for mTLS yet")
    transport, protocol = await loop.create_connection(factory, route.host, route.port, ssl=ctx,
                                                       server_hostname=route.sni)
    peer = peer_uri(transport.get_extra_info("ssl_object"))
    security = tls.security if tls is not None else None
    if peer is None or peer[0] not in route.identities or (
            security is not None and peer[1] in security.revoked):
        transport.abort()
        raise MtlsRefused(f"{route.host}:{route.port}: server identity "
                          f"{peer[0] if peer else 'none'} is not {sorted(route.identities)}")
    return transport, protocol
