"""The snapshot's `gateway` section (docs/agent-protocol.md), validated whole.

A section that does not validate is refused (the NACK names it) and the gateway
keeps serving the table it had; nothing is half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_HEADER_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]{1,100}$")
_METHOD_RE = re.compile(r"^[A-Z]{1,20}$")
HS_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")
PER_SECONDS = {"second": 1.0, "minute": 60.0}


class GatewayError(ValueError):
    """Why a gateway section was refused; the text goes into the NACK."""


@dataclass(frozen=True)
class RateLimit:
    scope: str  # route | consumer
    mode: str  # local | global
    requests: int
    per: str
    burst: int

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.requests / PER_SECONDS[self.per]

    @property
    def capacity(self) -> int:
        """The bucket's size: `burst`, at least one request."""
        return max(self.burst, 1)


@dataclass(frozen=True)
class Cors:
    origins: frozenset[str]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    credentials: bool
    max_age_s: int


@dataclass(frozen=True)
class Auth:
    type: str = "none"  # none | key | jwt
    key_header: bytes = b""  # lower-case; b"": not from a header
    key_query: str = ""  # "": not from the query string
    provider: str = ""
    consumers: frozenset[str] = frozenset()  # empty: any authenticated consumer


@dataclass(frozen=True)
class Route:
    name: str
    hosts: tuple[str, ...]
    path_kind: str  # exact | prefix | regex | "" (any)
    path: str
    regex: re.Pattern[str] | None
    methods: frozenset[bytes]  # empty: any
    service: str
    subset: str
    strip_prefix: bool
    auth: Auth
    rate_limits: tuple[RateLimit, ...]
    cors: Cors | None
    max_body_bytes: int | None
    timeout_ms: int | None
    index: int = 0  # position in the control plane's order
    has_global: bool = False  # a global limit: the request waits for Redis (in a task)


@dataclass(frozen=True)
class Consumer:
    name: str
    key_hashes: tuple[str, ...]
    jwt_subjects: tuple[str, ...]


@dataclass(frozen=True)
class Provider:
    name: str
    algorithms: tuple[str, ...]
    issuer: str
    audience: str
    jwks: dict[str, Any] | None
    jwks_url: str
    secret: str
    leeway_s: int
    consumer_claim: str


@dataclass(frozen=True)
class GatewayTable:
    name: str = ""
    routes: tuple[Route, ...] = ()
    consumers: tuple[Consumer, ...] = ()
    providers: dict[str, Provider] = field(default_factory=dict)
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)


def _dict(value: object, path: str, allowed: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GatewayError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _str(value: object, path: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise GatewayError(f"{path}: expected a string, got {type(value).__name__}")
    if pattern is not None and not pattern.match(value):
        raise GatewayError(f"{path}: {value[:100]!r} is not valid")
    return value


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError(f"{path}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise GatewayError(f"{path}: {value} is outside {low}..{high}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise GatewayError(f"{path}: expected a boolean, got {type(value).__name__}")
    return value


def _strings(value: object, path: str, pattern: re.Pattern[str] | None = None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GatewayError(f"{path}: expected a list, got {type(value).__name__}")
    return [_str(v, f"{path}[{i}]", pattern) for i, v in enumerate(value)]


def _path(value: object, path: str) -> tuple[str, str, re.Pattern[str] | None]:
    if value is None:
        return "", "", None
    data = _dict(value, path)
    kinds = [k for k in ("exact", "prefix", "regex") if k in data]
    if len(kinds) != 1:
        raise GatewayError(f"{path}: expected exactly one of exact, prefix, regex")
    kind = kinds[0]
    text = _str(data[kind], f"{path}.{kind}")
    if kind == "regex":
        if len(text) > 1000:
            raise GatewayError(f"{path}.regex: longer than 1000 characters")
        try:
            return kind, text, re.compile(text)
        except re.error as exc:
            raise GatewayError(f"{path}.regex: {exc}") from None
    if not text.startswith("/") or any(c in text for c in " \t\r\n?#"):
        raise GatewayError(f"{path}.{kind}: {text[:100]!r} is not a path starting with /")
    return kind, text, None


def _auth(value: object, path: str, providers: dict[str, Any]) -> Auth:
    if value is None:
        return Auth()
    data = _dict(value, path)
    kind = _str(data.get("type", "none"), f"{path}.type")
    if kind not in ("none", "key", "jwt"):
        raise GatewayError(f"{path}.type: expected none, key or jwt, got {kind!r}")
    consumers = frozenset(_strings(data.get("consumers"), f"{path}.consumers", NAME_RE))
    if kind == "key":
        key = _dict(data.get("key") or {}, f"{path}.key")
        header = _str(key.get("header", ""), f"{path}.key.header").lower()
        query = _str(key.get("query", ""), f"{path}.key.query")
        if header and not _HEADER_RE.match(header):
            raise GatewayError(f"{path}.key.header: {header[:100]!r} is not a header name")
        if not header and not query:
            header = "apikey"
        return Auth("key", header.encode(), query, "", consumers)
    if kind == "jwt":
        jwt = _dict(data.get("jwt"), f"{path}.jwt")
        provider = _str(jwt.get("provider"), f"{path}.jwt.provider")
        if provider not in providers:
            raise GatewayError(f"{path}.jwt.provider: {provider!r} is not in jwt_providers")
        return Auth("jwt", b"", "", provider, consumers)
    return Auth("none", consumers=consumers)


def _limit(value: object, path: str) -> RateLimit:
    data = _dict(value, path)
    scope = _str(data.get("scope", "route"), f"{path}.scope")
    mode = _str(data.get("mode", "local"), f"{path}.mode")
    per = _str(data.get("per", "second"), f"{path}.per")
    if scope not in ("route", "consumer"):
        raise GatewayError(f"{path}.scope: expected route or consumer, got {scope!r}")
    if mode not in ("local", "global"):
        raise GatewayError(f"{path}.mode: expected local or global, got {mode!r}")
    if per not in PER_SECONDS:
        raise GatewayError(f"{path}.per: expected second or minute, got {per!r}")
    requests = _int(data.get("requests"), f"{path}.requests", 1, 10_000_000)
    burst = _int(data.get("burst", requests), f"{path}.burst", 0, 10_000_000)
    return RateLimit(scope, mode, requests, per, burst)


def _cors(value: object, path: str) -> Cors | None:
    if value is None:
        return None
    data = _dict(value, path)
    origins = _strings(data.get("origins"), f"{path}.origins")
    for i, origin in enumerate(origins):
        if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise GatewayError(f"{path}.origins[{i}]: {origin[:100]!r} is not an origin")
    methods = _strings(data.get("methods"), f"{path}.methods", _METHOD_RE)
    headers = _strings(data.get("headers"), f"{path}.headers", _HEADER_RE)
    return Cors(frozenset(origins), tuple(methods), tuple(headers),
                _bool(data.get("credentials", False), f"{path}.credentials"),
                _int(data.get("max_age_s", 600), f"{path}.max_age_s", 0, 86400))


def _route(value: object, path: str, index: int, providers: dict[str, Any]) -> Route:
    data = _dict(value, path)
    hosts = [h.lower() for h in _strings(data.get("hosts"), f"{path}.hosts")]
    for i, host in enumerate(hosts):
        if not _HOST_RE.match(host) or len(host) > 253:
            raise GatewayError(f"{path}.hosts[{i}]: {host[:100]!r} is not a host name")
    kind, text, regex = _path(data.get("path"), f"{path}.path")
    strip = _bool(data.get("strip_prefix", False), f"{path}.strip_prefix")
    if strip and kind != "prefix":
        raise GatewayError(f"{path}.strip_prefix: needs a path prefix")
    limits = data.get("rate_limits") or []
    if not isinstance(limits, list):
        raise GatewayError(f"{path}.rate_limits: expected a list")
    body = data.get("max_body_bytes")
    timeout = data.get("timeout_ms")
    parsed_limits = tuple(_limit(v, f"{path}.rate_limits[{i}]") for i, v in enumerate(limits))
    return Route(
        name=_str(data.get("name"), f"{path}.name", NAME_RE),
        hosts=tuple(hosts),
        path_kind=kind, path=text, regex=regex,
        methods=frozenset(m.encode() for m in _strings(data.get("methods"), f"{path}.methods",
                                                       _METHOD_RE)),
        service=_str(data.get("service"), f"{path}.service", NAME_RE),
        subset=_str(data.get("subset") or "", f"{path}.subset"),
        strip_prefix=strip,
        auth=_auth(data.get("auth"), f"{path}.auth", providers),
        rate_limits=parsed_limits,
        cors=_cors(data.get("cors"), f"{path}.cors"),
        max_body_bytes=None if body is None else _int(body, f"{path}.max_body_bytes", 0, 1 << 40),
        timeout_ms=None if timeout is None else _int(timeout, f"{path}.timeout_ms", 1, 3_600_000),
        index=index,
        has_global=any(li.mode == "global" for li in parsed_limits),
    )


def _provider(name: str, value: object, path: str) -> Provider:
    data = _dict(value, path)
    algorithms = _strings(data.get("algorithms"), f"{path}.algorithms")
    if not algorithms:
        raise GatewayError(f"{path}.algorithms: at least one algorithm is needed")
    for i, alg in enumerate(algorithms):
        if alg not in HS_ALGORITHMS + ASYMMETRIC_ALGORITHMS:
            raise GatewayError(f"{path}.algorithms[{i}]: {alg[:20]!r} is not accepted")
    symmetric = {a in HS_ALGORITHMS for a in algorithms}
    if len(symmetric) > 1:  # a key of one family must never verify a token of the other
        raise GatewayError(f"{path}.algorithms: HS* and public-key algorithms cannot be mixed")
    secret = _str(data.get("secret", ""), f"{path}.secret")
    jwks = data.get("jwks")
    jwks_url = _str(data.get("jwks_url", ""), f"{path}.jwks_url")
    if True in symmetric:
        if len(secret.encode()) < 32:
            raise GatewayError(f"{path}.secret: an HS* provider needs a secret of 32+ bytes "
                               "(RFC 7518 3.2)")
    else:
        if jwks is None and not jwks_url:
            raise GatewayError(f"{path}: a public-key provider needs jwks or jwks_url")
        if jwks is not None:
            keys = _dict(jwks, f"{path}.jwks").get("keys")
            if not isinstance(keys, list):
                raise GatewayError(f"{path}.jwks.keys: expected a list")
        if jwks_url and not re.match(r"^https?://[^\s/]+", jwks_url):
            raise GatewayError(f"{path}.jwks_url: expected an http(s) URL")
    return Provider(
        name=name, algorithms=tuple(algorithms),
        issuer=_str(data.get("issuer", ""), f"{path}.issuer"),
        audience=_str(data.get("audience", ""), f"{path}.audience"),
        jwks=jwks if isinstance(jwks, dict) else None, jwks_url=jwks_url, secret=secret,
        leeway_s=_int(data.get("leeway_s", 30), f"{path}.leeway_s", 0, 3600),
        consumer_claim=_str(data.get("consumer_claim", "sub") or "sub",
                            f"{path}.consumer_claim"),
    )


def _consumer(value: object, path: str) -> Consumer:
    data = _dict(value, path)
    hashes = _strings(data.get("key_hashes"), f"{path}.key_hashes",
                      re.compile(r"^sha256:[0-9a-f]{64}$"))
    return Consumer(_str(data.get("name"), f"{path}.name", NAME_RE), tuple(hashes),
                    tuple(_strings(data.get("jwt_subjects"), f"{path}.jwt_subjects")))


def parse_gateway_section(raw: object) -> GatewayTable:
    """The table of a snapshot's `gateway` section (absent/None: an empty table)."""
    if raw is None:
        return GatewayTable()
    data = _dict(raw, "gateway")
    providers_raw = _dict(data.get("jwt_providers") or {}, "gateway.jwt_providers")
    providers = {}
    for name, value in providers_raw.items():
        _str(name, "gateway.jwt_providers", NAME_RE)
        providers[name] = _provider(name, value, f"gateway.jwt_providers.{name}")
    routes_raw = data.get("routes") or []
    if not isinstance(routes_raw, list):
        raise GatewayError("gateway.routes: expected a list")
    routes = [_route(v, f"gateway.routes[{i}]", i, providers) for i, v in enumerate(routes_raw)]
    names: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in names:
            raise GatewayError(f"gateway.routes[{i}].name: {route.name!r} is listed twice")
        names.add(route.name)
    consumers_raw = data.get("consumers") or []
    if not isinstance(consumers_raw, list):
        raise GatewayError("gateway.consumers: expected a list")
    consumers = [_consumer(v, f"gateway.consumers[{i}]") for i, v in enumerate(consumers_raw)]
    return GatewayTable(_str(data.get("name", ""), "gateway.name"), tuple(routes),
                        tuple(consumers), providers, data)
