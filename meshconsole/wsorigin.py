"""Websocket handshakes: the whole Origin (scheme, host, port) must be allowed.

A page on another port or scheme of the same host is another origin and must
not ride the console's session cookie. Allowed: the request's own origin (its
scheme and a Host header that ALLOWED_HOSTS accepts) and each entry of
CSRF_TRUSTED_ORIGINS (`MESH_CSRF_TRUSTED_ORIGINS`, Django's syntax, including
`https://*.example.com`). A handshake without Origin is refused: browsers always
send one, and tooling can send the console's URL (docs/deployment.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Origin = tuple[str, str, int]  # scheme, host (lowercase, IPv6 in brackets), port
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str) -> Origin | None:
    """An Origin header or a configured origin as a tuple; None if not http(s)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return scheme, host, port or DEFAULT_PORTS[scheme]


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _scheme(scope: dict[str, Any], headers: dict[str, str]) -> str:
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name, secure_value = proxy_header
        meta_name = name.lower().removeprefix("http_").replace("_", "-")
        forwarded = headers.get(meta_name, "").split(",")[0].strip()
        if forwarded:
            return "https" if forwarded == secure_value else "http"
    return "https" if scope.get("scheme") == "wss" else "http"


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin the handshake was made to, when its Host is an allowed host."""
    headers = _headers(scope)
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return parse_origin(f"{_scheme(scope, headers)}://{host}")


def _trusted(origin: Origin, pattern: str) -> bool:
    trusted = parse_origin(pattern.replace("://*.", "://wildcard.", 1))
    if trusted is None:
        return False
    scheme, host, port = trusted
    if "://*." in pattern:
        suffix = host.removeprefix("wildcard")  # ".example.com"
        return origin[0] == scheme and origin[2] == port and origin[1].endswith(suffix)
    return origin == trusted


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = parse_origin(_headers(scope).get("origin", ""))
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    return any(_trusted(origin, pattern) for pattern in settings.CSRF_TRUSTED_ORIGINS)


class OriginValidator:
    """ASGI middleware: refuse a websocket handshake from a foreign origin."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
