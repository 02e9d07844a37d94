"""What an endpoint address may be: an IP address or a DNS host name (RFC 1123).

One rule for the three places that take one: the REST API (registry), the
agent's config (`meshagent check`) and the snapshot parser — an address one
of them accepts and another refuses would freeze an agent's config.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
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
    for label in name.split("."):
        if not _LABEL.match(label):
            return (
                f"{value[:80]!r} is not an IP address or a host name (labels of 1-63 letters, "
                "digits and hyphens, not starting or ending with a hyphen)"
            )
    return None


def is_address(value: object) -> bool:
    return address_error(value) is None
