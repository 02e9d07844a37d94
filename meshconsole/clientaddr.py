"""The one rule for a request's client address (throttles, login lockout, audit).

`X-Forwarded-For` is anyone's to write, so it is read only when the direct peer
is a proxy the operator trusts (`MESH_TRUSTED_PROXIES`, empty by default), and
then from the right: each trusted proxy appends the address it saw, so the
rightmost hop that is not a trusted proxy is the first address nobody on the
client's side could forge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from meshconsole.env import IPNetwork

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(raw: str) -> IP | None:
    raw = raw.strip()
    if raw.startswith("[") and "]" in raw:  # "[::1]:1234" or "[::1]"
        raw = raw[1 : raw.index("]")]
    elif raw.count(":") == 1:  # "1.2.3.4:1234"
        raw = raw.split(":", 1)[0]
    try:
        return ipaddress.ip_address(raw.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(ip: IP, proxies: Sequence[IPNetwork]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address_from(
    peer: str, forwarded_for: str, trusted_proxies: Sequence[IPNetwork]
) -> str:
    """The client's address given the direct PEER and the X-Forwarded-For value."""
    peer_ip = _ip(peer)
    if peer_ip is None:
        return peer
    if not forwarded_for or not _trusted(peer_ip, trusted_proxies):
        return str(peer_ip)
    address = peer_ip
    for hop in reversed(forwarded_for.split(",")):
        hop_ip = _ip(hop)
        if hop_ip is None:
            # Garbage where an address should be: the hop after it (already
            # in ADDRESS) is the last one a trusted proxy vouched for.
            break
        address = hop_ip
        if not _trusted(hop_ip, trusted_proxies):
            break
    return str(address)


def client_address_meta(meta: Mapping[str, Any]) -> str:
    """client_address for a WSGI/ASGI-style META mapping."""
    return client_address_from(
        str(meta.get("REMOTE_ADDR") or ""),
        str(meta.get("HTTP_X_FORWARDED_FOR") or ""),
        settings.MESH_TRUSTED_PROXIES,
    )


def client_address(request: HttpRequest | Any) -> str:
    """The client address of a Django or DRF request (a DRF Request proxies META)."""
    return client_address_meta(request.META)
