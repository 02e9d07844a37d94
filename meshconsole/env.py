"""Small typed helpers that read settings from the environment.

Every setting of meshconsole comes through one of these, so a bad value fails
at start-up with a message naming the variable instead of somewhere later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path


class EnvError(ValueError):
    """A variable is set to something the setting cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r} is not an integer") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise EnvError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def env_dns_name(name: str, default: str) -> str:
    """A lower-case DNS name (a SPIFFE trust domain)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if not _DNS_NAME.match(value):
        raise EnvError(f"{name}={raw!r} is not a DNS name (lower-case labels separated by dots)")
    return value


def env_duration_ms(name: str, default: str, *, min_ms: int, max_ms: int) -> int:
    """A duration string ("24h", "90m", a bare number = seconds) in milliseconds."""
    from agents.runtime.durations import parse_duration_ms  # the agent's one duration rule

    raw = os.environ.get(name)
    text = default if raw is None or raw.strip() == "" else raw.strip()
    try:
        value = parse_duration_ms(text)
    except ValueError as exc:
        raise EnvError(f"{name}={raw!r} is not a duration: {exc}") from None
    if not min_ms <= value <= max_ms:
        raise EnvError(f"{name}={raw!r} must be between {min_ms} ms and {max_ms} ms")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """The value of NAME, or the content of the file named by NAME_FILE."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise EnvError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return None


def persisted_secret(path: Path, nbytes: int = 48) -> str:
    """A secret generated once per install and kept (mode 0600) at PATH."""
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    try:
        os.link(tmp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        tmp.unlink()
        return path.read_text().strip()
    tmp.unlink()
    return value


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str, default: list[str] | None = None) -> list[IPNetwork]:
    """A comma-separated list of IP addresses and CIDR networks (a bare address
    is a /32 or /128)."""
    networks: list[IPNetwork] = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise EnvError(f"{name}: {item!r} is not an IP address or CIDR network") from None
    return networks
