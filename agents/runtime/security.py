"""The snapshot's zero-trust part: trust bundle, revoked serials, intentions, mTLS modes.

Parsed whole (an invalid `security` is a NACK of the snapshot, like any other top-level
field); a snapshot without `security` is from an older control plane: no mTLS at all.
Intentions arrive sorted by precedence (the control plane's job, docs/security.md):
the agent takes the first rule that matches, else `default_action`.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MTLS_MODES = ("strict", "permissive", "off")
ACTIONS = ("allow", "deny")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.\-]{0,253}[a-z0-9])?$")
_SERIAL = re.compile(r"^[0-9a-f]{1,64}$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


class SecurityError(ValueError):
    """Why the `security` part of a snapshot was refused (the NACK's reason)."""


@dataclass(frozen=True)
class HttpMatch:
    methods: frozenset[bytes] = frozenset()
    path_prefix: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()  # (lower-case name, value)

    def matches(self, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        for name, value in self.headers:
            if not any(n.lower() == name and v == value for n, v in headers):
                return False
        return True


@dataclass(frozen=True)
class Intention:
    id: str
    source: str  # a service name, "node:<name>" or "*"
    destination: str  # a service name or "*"
    action: str
    http: HttpMatch | None = None


@dataclass(frozen=True)
class Security:
    trust_domain: str
    roots: tuple[str, ...]  # PEM
    revoked: frozenset[int]
    default_action: str = "allow"
    intentions: tuple[Intention, ...] = ()
    inbound_modes: Mapping[str, str] = field(default_factory=dict)

    def mode_of(self, service: str) -> str:
        return self.inbound_modes.get(service, "permissive")

    def decide(self, source: str, destination: str, request: tuple[bytes, bytes,
               list[tuple[bytes, bytes]]] | None = None) -> tuple[str, str]:
        """(action, rule id or "default") for SOURCE calling DESTINATION; REQUEST is
        (method, path, headers) for HTTP, None for a TCP connection."""
        for rule in self.intentions:
            if rule.source not in ("*", source) or rule.destination not in ("*", destination):
                continue
            # A rule with HTTP conditions never matches a TCP connection.
            if rule.http is not None and (request is None or not rule.http.matches(*request)):
                continue
            return rule.action, rule.id
        return self.default_action, "default"

    def service_identity(self, service: str) -> str:
        return service_identity(self.trust_domain, service)


def service_identity(trust_domain: str, service: str) -> str:
    return f"spiffe://{trust_domain}/ns/default/svc/{service}"


def node_identity(trust_domain: str, node: str) -> str:
    return f"spiffe://{trust_domain}/ns/default/node/{node}"


def gateway_identity(trust_domain: str, gateway: str) -> str:
    """A gateway's own identity (every agent serving as that gateway holds it)."""
    return f"spiffe://{trust_domain}/ns/default/gateway/{gateway}"


def source_of(trust_domain: str, uri: str) -> str | None:
    """The intention source name of a peer's URI SAN: "orders", "node:<n>",
    "gateway:<g>", or None when it is not an identity of TRUST_DOMAIN."""
    prefix = f"spiffe://{trust_domain}/ns/default/"
    if not uri.startswith(prefix):
        return None
    kind, _, name = uri[len(prefix):].partition("/")
    if not name or "/" in name:
        return None
    if kind == "svc" and _NAME.match(name):
        return name
    if kind == "node":
        return f"node:{name}"
    if kind == "gateway" and _NAME.match(name):
        return f"gateway:{name}"
    return None


def _fail(path: str, message: str) -> SecurityError:
    return SecurityError(f"{path}: {message}")


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {type(value).__name__}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _root(value: object, path: str) -> str:
    """One CA certificate in PEM, read with the stdlib's OpenSSL (the agent does not
    import `cryptography`: agents.runtime.pki)."""
    pem = _str(value, path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise _fail(path, "not a PEM certificate") from None
    stats = ctx.cert_store_stats()
    if stats["x509"] != 1:
        raise _fail(path, f"one certificate per root, got {stats['x509']}")
    if stats["x509_ca"] != 1:  # OpenSSL's X509_check_ca: basicConstraints CA:true
        raise _fail(path, "a root must have basicConstraints CA:true")
    return pem


def _http(value: object, path: str) -> HttpMatch | None:
    if value is None:
        return None
    data = _dict(value, path)
    methods = _list(data.get("methods", []), f"{path}.methods")
    for i, m in enumerate(methods):
        if not isinstance(m, str) or not _METHOD.match(m):
            raise _fail(f"{path}.methods[{i}]", f"{m!r} is not an HTTP method")
    prefix = _str(data.get("path_prefix", "") or "", f"{path}.path_prefix")
    if prefix and not prefix.startswith("/"):
        raise _fail(f"{path}.path_prefix", "must start with /")
    headers = _dict(data.get("headers", {}) or {}, f"{path}.headers")
    pairs = []
    for name, v in headers.items():
        if not _HEADER.match(name):
            raise _fail(f"{path}.headers", f"{name!r} is not a header name")
        pairs.append((name.lower().encode(), _str(v, f"{path}.headers.{name}").encode()))
    if not methods and not prefix and not pairs:
        return None  # no condition at all: a rule for TCP and HTTP alike
    return HttpMatch(frozenset(m.encode() for m in methods), prefix.encode(), tuple(pairs))


def _party(value: object, path: str) -> str:
    name = _str(value, path)
    if name == "*" or _NAME.match(name) or (name.startswith("node:") and len(name) > 5) or (
            name.startswith("gateway:") and _NAME.match(name[8:])):
        return name
    raise _fail(path, f"{name!r} is not a service name or *")


def _intention(value: object, path: str) -> Intention:
    data = _dict(value, path)
    action = _str(data.get("action"), f"{path}.action")
    if action not in ACTIONS:
        raise _fail(f"{path}.action", f"expected allow or deny, got {action!r}")
    rule_id = _str(data.get("id"), f"{path}.id")
    if not rule_id or len(rule_id) > 200:
        raise _fail(f"{path}.id", "must be 1-200 characters")
    return Intention(rule_id, _party(data.get("source"), f"{path}.source"),
                     _party(data.get("destination"), f"{path}.destination"), action,
                     _http(data.get("http"), f"{path}.http"))


def parse_security(value: object) -> Security | None:
    """The snapshot's `security`, validated whole; None when absent (no mTLS)."""
    if value is None:
        return None
    data = _dict(value, "security")
    trust_domain = _str(data.get("trust_domain"), "security.trust_domain")
    if not _TRUST_DOMAIN.match(trust_domain):
        raise _fail("security.trust_domain", f"{trust_domain!r} is not a trust domain")
    roots = tuple(_root(v, f"security.roots[{i}]")
                  for i, v in enumerate(_list(data.get("roots"), "security.roots")))
    if not roots:
        raise _fail("security.roots", "must not be empty")
    revoked: set[int] = set()
    for i, serial in enumerate(_list(data.get("revoked_serials", []), "security.revoked_serials")):
        text = _str(serial, f"security.revoked_serials[{i}]")
        if not _SERIAL.match(text):
            raise _fail(f"security.revoked_serials[{i}]", f"{text!r} is not a lower-hex serial")
        revoked.add(int(text, 16))
    default = _str(data.get("default_action", "allow"), "security.default_action")
    if default not in ACTIONS:
        raise _fail("security.default_action", f"expected allow or deny, got {default!r}")
    intentions = tuple(_intention(v, f"security.intentions[{i}]")
                       for i, v in enumerate(_list(data.get("intentions", []),
                                                   "security.intentions")))
    modes: dict[str, str] = {}
    for name, entry in _dict(data.get("inbound", {}) or {}, "security.inbound").items():
        mode = _str(_dict(entry, f"security.inbound.{name}").get("mtls"),
                    f"security.inbound.{name}.mtls")
        if mode not in MTLS_MODES:
            raise _fail(f"security.inbound.{name}.mtls", f"unknown mode {mode!r}")
        modes[name] = mode
    return Security(trust_domain, roots, frozenset(revoked), default, intentions, modes)


def parse_mtls(value: object, path: str) -> str:
    """An upstream's `mtls` ("off" when absent: an older control plane)."""
    if value is None:
        return "off"
    mode = _str(value, path)
    if mode not in MTLS_MODES:
        raise _fail(path, f"unknown mode {mode!r}")
    return mode


def parse_inbound(value: object, path: str) -> tuple[str, int] | None:
    """An endpoint's `inbound` (address, port), or None."""
    if value is None:
        return None
    data = _dict(value, path)
    address = _str(data.get("address"), f"{path}.address")
    port = data.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _fail(f"{path}.port", f"expected a port 1..65535, got {port!r}")
    return address, port
