"""The request head as the gateway forwards it (one pass over the client's headers).

Unlike the mesh listener, the gateway faces clients it does not trust:
X-Forwarded-For/-Proto/-Host are set from the real peer, and a client's own
X-Forwarded-* values are kept only when the peer is in `trusted_proxies` (the
client IP is then the rightmost hop that is not a trusted proxy). A client's
X-Mesh-Consumer is always dropped (the gateway sets it after auth); an
X-Request-Id is kept only if it looks like one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from agents.runtime.heads import BadRequest, RequestHeaders
from agents.runtime.httpwire import HOP_BY_HOP

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PLAIN_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%~_-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_GOOD_HOSTS: set[bytes] = set()  # Host values found valid (bounded), as heads.py keeps them
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_SPECIAL = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                         b"x-request-id", b"x-mesh-consumer", b"host", b"expect",
                         b"authorization", b"origin", b"access-control-request-method"}


class GatewayHeaders(RequestHeaders):
    __slots__ = ("host", "client_ip", "authorization", "origin", "preflight")

    def __init__(self, block: bytes, request_id: bytes | None, expect: bool, has_host: bool,
                 lengths: list[bytes] | None, encodings: list[bytes] | None, host: str,
                 client_ip: str, authorization: bytes, origin: bytes, preflight: bytes) -> None:
        self.block = block  # (RequestHeaders' fields, set here: one call less per request)
        self.request_id = request_id
        self.expect = expect
        self.has_host = has_host
        self.lengths = lengths
        self.encodings = encodings
        self.host = host  # lower case, without the port
        self.client_ip = client_ip
        self.authorization = authorization
        self.origin = origin
        self.preflight = preflight  # Access-Control-Request-Method


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    if not trusted or not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(forwarded_for: bytes, peer: str, trusted: Sequence[Network]) -> str:
    """The rightmost hop of X-Forwarded-For (peer appended) that is not a trusted proxy."""
    hops = [h.strip().decode("latin-1") for h in forwarded_for.split(b",") if h.strip()]
    hops.append(peer)
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                return peer  # garbage in the header: the peer is all we really know
    return hops[0]


_HOST_NAMES: dict[bytes, str] = {}  # Host values seen -> the name routed on (bounded)


def _host_name(value: bytes) -> str:
    name = _HOST_NAMES.get(value)
    if name is not None:
        return name
    host = value.decode("latin-1").lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    if len(_HOST_NAMES) < 1024:
        _HOST_NAMES[value] = name
    return name


def gateway_headers(headers: list[tuple[bytes, bytes]], peer: bytes, peer_trusted: bool,
                    trusted: Sequence[Network], scheme: bytes) -> GatewayHeaders:
    lines: list[bytes] = []
    forwarded_for = b""
    forwarded_proto = forwarded_host = b""
    request_id: bytes | None = None
    expect = False
    host: bytes | None = None
    authorization = origin = preflight = b""
    named: set[bytes] | None = None
    lengths: list[bytes] | None = None
    encodings: list[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in _SPECIAL:
            if lname in HOP_BY_HOP:
                if lname == b"content-length":
                    lengths = [value] if lengths is None else [*lengths, value]
                elif lname == b"transfer-encoding":
                    encodings = [value] if encodings is None else [*encodings, value]
                elif lname == b"connection" and value.lower() not in _PLAIN_TOKENS:
                    listed = {t.strip().lower() for t in value.split(b",")} - _PLAIN_TOKENS
                    named = listed if named is None else named | listed
                continue
            if lname == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
            if lname == b"x-forwarded-proto":
                forwarded_proto = value
                continue
            if lname == b"x-forwarded-host":
                forwarded_host = value
                continue
            if lname == b"x-mesh-consumer":
                continue  # only the gateway says who the consumer is
            if lname == b"x-request-id":
                if _REQUEST_ID.fullmatch(value):
                    request_id = value
                continue
            if lname == b"host":
                if host is not None:
                    raise BadRequest("duplicate-host")
                if value not in _GOOD_HOSTS:
                    if _HOST.fullmatch(value) is None:
                        raise BadRequest("bad-host")
                    if len(_GOOD_HOSTS) < 1024:
                        _GOOD_HOSTS.add(value)
                host = value
            elif lname == b"expect":
                expect = value.lower() == b"100-continue"
            elif lname == b"authorization":
                authorization = value
            elif lname == b"origin":
                origin = value
            else:
                preflight = value
        lines += (name, b": ", value, b"\r\n")
    if named:
        lines = [b"".join(lines[i:i + 4]) for i in range(0, len(lines), 4)
                 if lines[i].lower() not in named]
    peer_text = peer.decode("latin-1")
    if peer_trusted and forwarded_for:
        client_ip = client_address(forwarded_for, peer_text, trusted)
        chain = forwarded_for + b", " + peer
    else:
        client_ip, chain = peer_text, peer
    if not (peer_trusted and forwarded_proto):
        forwarded_proto = scheme
    if not (peer_trusted and forwarded_host):
        forwarded_host = host or b""
    lines += (b"x-forwarded-for: ", chain, b"\r\nx-forwarded-proto: ", forwarded_proto, b"\r\n")
    if forwarded_host:
        lines += (b"x-forwarded-host: ", forwarded_host, b"\r\n")
    return GatewayHeaders(b"".join(lines), request_id, expect, host is not None, lengths,
                          encodings, _host_name(host) if host else "", client_ip, authorization,
                          origin, preflight)
