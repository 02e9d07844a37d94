"""What an endpoint address may be: an IP address or a DNS host name (RFC 1123).

One rule for the three places that take one: the REST API (registry), the
agent's config (`meshagent check`) and the snapshot parser — an address one
of them accepts and another refuses would freeze an agent's config.

And which addresses nothing of the mesh may contact (cloud metadata, and
link-local unless allowed): health checks refuse them, agents' snapshots leave
them out (registry.targets adds the control plane's setting).
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# A last label that is a number (decimal, or 0x hex): never a host name (RFC 3696 §2: no
# top-level domain is all-numeric), and resolvers' inet_aton reads such names as IPv4
# (2852039166 and 0xa9fea9fe are 169.254.169.254, 010.0.0.1 is 8.0.0.1, 1.2.3 is 1.2.0.3).
_NUMERIC_LABEL = re.compile(r"^([0-9]+|0[xX][0-9A-Fa-f]*)$")
MAX_HOSTNAME = 253


def address_error(value: object) -> str | None:
    """Why VALUE is not an endpoint address, or None when it is one."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value:
        return "an address cannot be empty"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if not value.isascii():
        return f"{value[:80]!r} is not ASCII (use the IDNA form of the name)"
    if len(value) > MAX_HOSTNAME:
        return f"a host name is at most {MAX_HOSTNAME} characters (got {len(value)})"
    name = value[:-1] if value.endswith(".") else value
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        return (
            f"{value[:80]!r} is not an IPv4 address (four dotted decimal numbers of 0-255), "
            "and a name ending in a number is not a host name"
        )
    for label in name.split("."):
        if not _LABEL.match(label):
            return (
                f"{value[:80]!r} is not an IP address or a host name (labels of 1-63 letters, "
                "digits and hyphens, not starting or ending with a hyphen)"
            )
    return None


def is_address(value: object) -> bool:
    return address_error(value) is None


# Cloud instance-metadata endpoints hand out credentials: a check must not be a
# way to make the control plane fetch them (SSRF), nor an endpoint a way to make
# agents send them traffic, whatever the setting says about the rest of
# link-local.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, ...
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
        "192.0.0.192",  # Oracle Cloud
    )
)
LINK_LOCAL_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)
# IPv6 forms that carry an IPv4 address in their last 32 bits and reach it:
# IPv4-compatible (deprecated, ::a.b.c.d) and NAT64 (RFC 6052 well-known and
# RFC 8215 local-use prefixes). IPv4-mapped and 6to4 have ipaddress helpers.
_EMBEDDING_NETWORKS = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries and reaches (mapped, compatible,
    NAT64, 6to4), else IP itself without its zone."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    low = int(ip) & 0xFFFFFFFF
    if any(ip in net for net in _EMBEDDING_NETWORKS) and int(ip) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(low)
    return ip


def address_refusal(ip: IPAddress, *, allow_link_local: bool) -> str | None:
    """Why nothing of the mesh may contact IP (a check or routed traffic), or None."""
    for form in dict.fromkeys((ip, embedded_ipv4(ip))):
        if form in METADATA_ADDRESSES:
            return "cloud metadata address"
        if not allow_link_local and any(form in net for net in LINK_LOCAL_NETWORKS):
            return "link-local address"
    return None


def literal_refusal(address: str, *, allow_link_local: bool) -> str | None:
    """address_refusal for an address as stored: an IP literal is judged now; a
    host name is judged when a check resolves it (monitoring.checks.vetted_address)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    return address_refusal(ip, allow_link_local=allow_link_local)
