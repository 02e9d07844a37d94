"""agent.yaml `gateway:`: validated like the rest of config.py, errors with their path."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agents.runtime.config import SERVICE_NAME_RE, _Reader, join_host_port

ON_REDIS_ERROR = ("open", "closed")
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_REDIS_TIMEOUT_MS = 50
DEFAULT_JWKS_REFRESH_MS = 300_000


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@dataclass(frozen=True)
class GatewayListener:
    host: str
    port: int
    certificates: tuple[Certificate, ...] = ()  # empty: plain HTTP

    @property
    def listen(self) -> str:
        return join_host_port(self.host, self.port)

    @property
    def tls(self) -> bool:
        return bool(self.certificates)


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    listeners: tuple[GatewayListener, ...]
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    redis: str = ""  # "": global limits cannot be served (they follow on_redis_error)
    redis_timeout_ms: int = DEFAULT_REDIS_TIMEOUT_MS
    on_redis_error: str = "open"
    jwks_refresh_ms: int = DEFAULT_JWKS_REFRESH_MS

    def as_report(self) -> dict[str, Any]:
        return {"name": self.name}


def _certificate(r: _Reader, value: object, path: str) -> Certificate:
    data = r.mapping(value, path, {"cert", "key"})
    files = []
    for key in ("cert", "key"):
        name = r.string(data, key, path)
        if not name.strip():
            raise r.fail(f"{path}.{key}", "must not be empty")
        file = Path(name).expanduser()
        if not file.is_file():
            raise r.fail(f"{path}.{key}", f"{name!r} is not a readable file")
        files.append(file)
    return Certificate(files[0], files[1])


def _listener(r: _Reader, value: object, path: str) -> GatewayListener:
    data = r.mapping(value, path, {"listen", "tls"})
    host, port = r.address(data, "listen", path)
    certificates: list[Certificate] = []
    if data.get("tls") is not None:
        tls = r.mapping(data["tls"], f"{path}.tls", {"certificates"})
        raw = tls.get("certificates")
        if not isinstance(raw, list) or not raw:
            raise r.fail(f"{path}.tls.certificates", "expected a non-empty list of {cert, key}")
        certificates = [_certificate(r, item, f"{path}.tls.certificates[{i}]")
                        for i, item in enumerate(raw)]
    return GatewayListener(host, port, tuple(certificates))


def _networks(r: _Reader, value: object, path: str
              ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail(path, "expected a list of CIDR blocks such as 10.0.0.0/8")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise r.fail(f"{path}[{i}]", "expected a CIDR block such as 10.0.0.0/8")
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise r.fail(f"{path}[{i}]", str(exc)) from None
    return tuple(out)


def _redis_url(r: _Reader, data: dict[str, Any]) -> str:
    url = r.string(data, "redis", "gateway", "")
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise r.fail("gateway.redis", f"{exc} in {url!r}") from None
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise r.fail("gateway.redis", f"expected a redis:// URL, got {url!r}")
    if parts.scheme != "unix" and parts.path not in ("", "/") and not re.fullmatch(
            r"/\d{1,2}", parts.path):
        raise r.fail("gateway.redis", f"the path must be a database number, got {parts.path!r}")
    return url


def parse_gateway(r: _Reader, value: object) -> GatewayConfig:
    keys = {"name", "listeners", "trusted_proxies", "max_body_bytes", "redis", "redis_timeout",
            "on_redis_error", "jwks_refresh"}
    data = r.mapping(value, "gateway", keys)
    name = r.string(data, "name", "gateway", None, SERVICE_NAME_RE, "a DNS label ([a-z0-9-], 1-63)")
    raw = data.get("listeners")
    if not isinstance(raw, list) or not raw:
        raise r.fail("gateway.listeners", "expected a non-empty list of {listen, tls}")
    listeners = [_listener(r, item, f"gateway.listeners[{i}]") for i, item in enumerate(raw)]
    seen: dict[tuple[str, int], int] = {}
    for i, listener in enumerate(listeners):
        j = seen.setdefault((listener.host, listener.port), i)
        if j != i and listener.port:
            raise r.fail(f"gateway.listeners[{i}].listen",
                         f"{listener.listen} is already gateway.listeners[{j}]")
    return GatewayConfig(
        name=name,
        listeners=tuple(listeners),
        trusted_proxies=_networks(r, data.get("trusted_proxies"), "gateway.trusted_proxies"),
        max_body_bytes=r.integer(data, "max_body_bytes", "gateway", DEFAULT_MAX_BODY,
                                 0, 1 << 40),
        redis=_redis_url(r, data),
        redis_timeout_ms=r.duration(data, "redis_timeout", "gateway", DEFAULT_REDIS_TIMEOUT_MS,
                                    1, 5000),
        on_redis_error=r.choice(data, "on_redis_error", "gateway", "open", ON_REDIS_ERROR),
        jwks_refresh_ms=r.duration(data, "jwks_refresh", "gateway", DEFAULT_JWKS_REFRESH_MS,
                                   1000, 86_400_000),
    )
