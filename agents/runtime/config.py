"""agent.yaml: load, validate, and turn into typed, frozen dataclasses.

Every error names the file and the path of the offending value, so a user can
fix a config without reading code: `agent.yaml: upstreams[0].listen: ...`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from agents.runtime.addresses import address_error
from agents.runtime.durations import format_duration_ms, parse_duration_ms
from agents.runtime.yamlfile import load_yaml

if TYPE_CHECKING:
    from agents.runtime.gateway.config import GatewayConfig

# Same rule as the registry (a DNS label), so the control plane never refuses a name we accept.
SERVICE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PATH_RE = re.compile(r"^/\S*$")
NODE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-_]{0,251}[A-Za-z0-9])?$")
CHECK_TYPES = ("http", "tcp", "ttl", "none")
PROTOCOLS = ("http", "tcp")
# The control plane's limits (agents.api.serializers reads them): a config `check`
# accepts must not be one enrollment or the report refuses.
MAX_ZONE = 63
MAX_TAGS = 64
MAX_TAG = 100
MAX_METADATA_VALUE = 500
DEFAULT_DNS = "127.0.0.1:8600"
DEFAULT_ADMIN = "127.0.0.1:19000"

T = TypeVar("T")


class ConfigError(ValueError):
    """A config the agent refuses; the message is meant for the user as is."""


@dataclass(frozen=True)
class Check:
    type: str = "tcp"
    path: str = "/health"
    interval_ms: int = 5000
    timeout_ms: int = 2000
    rise: int = 2
    fall: int = 3

    def as_report(self) -> dict[str, Any]:
        """The check as the control plane's report expects it (durations as strings)."""
        return {
            "type": self.type,
            "path": self.path,
            "interval": format_duration_ms(self.interval_ms),
            "timeout": format_duration_ms(self.timeout_ms),
            "rise": self.rise,
            "fall": self.fall,
        }


ENTRY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def default_entry_id(name: str, port: int, *, shared: bool) -> str:
    """The id of a `services` entry without `id:`: its name, or name:port when
    SHARED (several entries of one service on this host). The control plane keys
    the report's returned `instances` by it (docs/agent-protocol.md)."""
    return f"{name}:{port}" if shared else name


@dataclass(frozen=True)
class LocalService:
    name: str
    address: str
    port: int
    protocol: str = "http"
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    weight: int = 100
    check: Check | None = None
    id: str = ""  # "" = default_entry_id(); filled in by load_config

    def as_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id or self.name,
            "name": self.name,
            "protocol": self.protocol,
            "address": self.address,
            "port": self.port,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "weight": self.weight,
        }
        if self.check is not None:
            out["check"] = self.check.as_report()
        return out


@dataclass(frozen=True)
class Upstream:
    service: str
    host: str
    port: int
    protocol: str = "http"
    source: str = "unknown"

    @property
    def listen(self) -> str:
        return join_host_port(self.host, self.port)


@dataclass(frozen=True)
class Inbound:
    """agent.yaml `inbound:`: where this host's mTLS inbound listener binds, and the
    address other agents are told to dial (docs/agent.md)."""

    host: str
    port: int
    advertise_host: str
    advertise_port: int

    def as_report(self) -> dict[str, Any]:
        return {"address": self.advertise_host, "port": self.advertise_port}


@dataclass(frozen=True)
class AgentConfig:
    control_plane: str
    token: str
    node: str
    data_dir: Path
    zone: str = ""
    admin_host: str = "127.0.0.1"
    admin_port: int = 19000
    services: tuple[LocalService, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    # The DNS listener (agents.runtime.dns); None: `dns: off`. A default address
    # that is taken only logs a warning; one written in agent.yaml must bind.
    dns: tuple[str, int] | None = ("127.0.0.1", 8600)
    dns_explicit: bool = False
    inbound: Inbound | None = None  # None: no inbound listener (not in the mTLS path)
    gateway: GatewayConfig | None = None  # `gateway:` (agents.runtime.gateway); None: not one


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_host_error(host: str) -> str | None:
    """Why HOST (of host:port, brackets removed) cannot be bound, as far as its form says:
    "[...]" must hold an IPv6 address, four dotted numbers an IPv4 one, else a host name."""
    if ":" in host:
        valid = _is_ip(host, ipaddress.IPv6Address)
        return None if valid else f"[{host}] is not an IPv6 address"
    if all(part.isdigit() for part in host.split(".")):
        return None if _is_ip(host, ipaddress.IPv4Address) else f"{host} is not an IPv4 address"
    return address_error(host)


def _is_ip(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(host)
    except ValueError:
        return False
    return True


def split_host_port(value: str) -> tuple[str, int] | None:
    """("host", port) for "host:port" or "[v6]:port"; None if it is not that shape."""
    # [0-9], not \d: int() would read "٩١٠١" (Arabic-Indic digits) as port 9101.
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^\s:\[\]/]+):([0-9]{1,5})", value)
    if not match:
        return None
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    return host, port


class _Reader:
    """Walks the parsed YAML, carrying the path for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ConfigError:
        where = f"{path}: " if path else ""
        return ConfigError(f"{self.source}: {where}{message}")

    def mapping(self, value: object, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None,
               pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        where = f"{path}.{key}" if path else key
        if key not in data or data[key] is None:
            if default is None:
                raise self.fail(where, "required")
            return default
        value = data[key]
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(where, f"{value!r} is not {what}")
        return value

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int | None,
                low: int, high: int) -> int:
        where = f"{path}.{key}"
        value = data.get(key, default)
        if value is None:
            raise self.fail(where, "required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"must be between {low} and {high}, got {value}")
        return value

    def choice(self, data: Mapping[str, Any], key: str, path: str, default: str,
               choices: tuple[str, ...]) -> str:
        value = self.string(data, key, path, default)
        if value not in choices:
            raise self.fail(f"{path}.{key}", f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: int,
                 low: int, high: int) -> int:
        where = f"{path}.{key}"
        if key not in data:
            return default
        try:
            ms = parse_duration_ms(data[key])
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if not low <= ms <= high:
            span = f"{format_duration_ms(low)} and {format_duration_ms(high)}"
            raise self.fail(where, f"must be between {span}, got {data[key]!r}")
        return ms

    def address(self, data: Mapping[str, Any], key: str, path: str,
                default: str | None = None) -> tuple[str, int]:
        where = f"{path}.{key}" if path else key
        raw = data.get(key, default)
        if raw is None:
            raise self.fail(where, "required")
        parsed = split_host_port(raw) if isinstance(raw, str) else None
        if parsed is None:
            raise self.fail(where, f"expected host:port, got {raw!r}")
        if parsed[1] > 65535:
            raise self.fail(where, f"port must be between 0 and 65535, got {parsed[1]}")
        problem = listen_host_error(parsed[0])
        if problem:
            raise self.fail(where, problem)
        return parsed

    def items(self, data: Mapping[str, Any], key: str,
              parse: Callable[[object, str], T]) -> list[T]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_kind(value)}")
        return [parse(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    for kind, name in names.items():
        if type(value) is kind:
            return f"{name} ({value!r})" if kind in (bool, int, float, str) else name
    return type(value).__name__


def _check(r: _Reader, value: object, path: str) -> Check:
    data = r.mapping(value, path, {"type", "path", "interval", "timeout", "rise", "fall"})
    check = Check(
        type=r.choice(data, "type", path, "tcp", CHECK_TYPES),
        path=r.string(data, "path", path, "/health", _PATH_RE, "a path such as /health"),
        interval_ms=r.duration(data, "interval", path, 5000, 100, 3_600_000),
        timeout_ms=r.duration(data, "timeout", path, 2000, 10, 600_000),
        rise=r.integer(data, "rise", path, 2, 1, 100),
        fall=r.integer(data, "fall", path, 3, 1, 100),
    )
    if check.timeout_ms > check.interval_ms:
        raise r.fail(f"{path}.timeout", "must not exceed the interval")
    return check


def _no_nul(r: _Reader, where: str, text: str) -> None:
    # YAML's "\0" escape passes the reader's control-character check; the API refuses it.
    if "\x00" in text:
        raise r.fail(where, "null characters are not allowed")


def _service(r: _Reader, value: object, path: str) -> LocalService:
    keys = {"id", "name", "address", "port", "protocol", "tags", "metadata", "weight", "check"}
    data = r.mapping(value, path, keys)
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise r.fail(f"{path}.tags", "expected a list of strings")
    if len(tags) > MAX_TAGS:
        raise r.fail(f"{path}.tags", f"at most {MAX_TAGS} tags, got {len(tags)}")
    for i, tag in enumerate(tags):
        if not 1 <= len(tag) <= MAX_TAG:
            raise r.fail(f"{path}.tags[{i}]", f"a tag is 1-{MAX_TAG} characters, got {len(tag)}")
        _no_nul(r, f"{path}.tags[{i}]", tag)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise r.fail(f"{path}.metadata", "expected a mapping of strings to strings")
    for key, text in metadata.items():
        _no_nul(r, f"{path}.metadata", key)
        _no_nul(r, f"{path}.metadata.{key}", text)
        if len(text) > MAX_METADATA_VALUE:
            raise r.fail(f"{path}.metadata.{key}",
                         f"at most {MAX_METADATA_VALUE} characters, got {len(text)}")
    address = r.string(data, "address", path)
    problem = address_error(address)  # the control plane's and the snapshot's rule too
    if problem:
        raise r.fail(f"{path}.address", problem)
    return LocalService(
        name=r.string(data, "name", path, None, SERVICE_NAME_RE, "a DNS label ([a-z0-9-], 1-63)"),
        address=address,
        port=r.integer(data, "port", path, None, 1, 65535),
        protocol=r.choice(data, "protocol", path, "http", PROTOCOLS),
        tags=tuple(tags),
        metadata=dict(metadata),
        weight=r.integer(data, "weight", path, 100, 0, 10_000),
        check=_check(r, data["check"], f"{path}.check") if data.get("check") is not None else None,
        id=r.string(data, "id", path, "", ENTRY_ID_RE, "an id ([A-Za-z0-9_.:-], 1-100)"),
    )


def _entry_ids(r: _Reader, services: list[LocalService]) -> list[LocalService]:
    """Several instances of one service may run here: name+port must be unique, and
    so must the entries' ids (explicit, or default_entry_id)."""
    first: dict[tuple[str, int], int] = {}
    for i, s in enumerate(services):
        j = first.setdefault((s.name, s.port), i)
        if j != i:
            raise r.fail(f"services[{i}].name", f"{s.name!r} is listed twice with port {s.port} "
                                                f"(services[{j}] and services[{i}])")
    counts: dict[str, int] = {}
    for s in services:
        counts[s.name] = counts.get(s.name, 0) + 1
    out = [replace(s, id=s.id or default_entry_id(s.name, s.port, shared=counts[s.name] > 1))
           for s in services]
    ids: dict[str, int] = {}
    for i, s in enumerate(out):
        j = ids.setdefault(s.id, i)
        if j != i:
            raise r.fail(f"services[{i}].id", f"{s.id!r} is already the id of services[{j}]")
    return out


def _upstream(r: _Reader, value: object, path: str) -> Upstream:
    data = r.mapping(value, path, {"service", "listen", "protocol", "source"})
    label = "a DNS label ([a-z0-9-], 1-63)"
    host, port = r.address(data, "listen", path)
    return Upstream(
        service=r.string(data, "service", path, None, SERVICE_NAME_RE, label),
        host=host,
        port=port,
        protocol=r.choice(data, "protocol", path, "http", PROTOCOLS),
        # Empty means "not given": parse_config fills in the node's default source.
        source=r.string(data, "source", path, "", SERVICE_NAME_RE, label) if "source" in data
        else "",
    )


def _inbound(r: _Reader, value: object) -> Inbound:
    data = r.mapping(value, "inbound", {"listen", "advertise"})
    host, port = r.address(data, "listen", "inbound")
    if port == 0:
        raise r.fail("inbound.listen", "needs a fixed port (other agents dial it)")
    wildcard = host in ("0.0.0.0", "::")
    default = join_host_port("127.0.0.1" if wildcard else host, port)
    adv_host, adv_port = r.address(data, "advertise", "inbound", default)
    if adv_port == 0:
        raise r.fail("inbound.advertise", "needs a port")
    if adv_host in ("0.0.0.0", "::"):
        raise r.fail("inbound.advertise", f"{adv_host} cannot be dialled; give the host's address")
    return Inbound(host, port, adv_host, adv_port)


def _control_plane(r: _Reader, data: Mapping[str, Any]) -> str:
    url = r.string(data, "control_plane", "")
    try:
        parts = urlsplit(url)  # raises on "http://[::1" and on "http://[::::]"
        hostname = parts.hostname
    except ValueError as exc:
        raise r.fail("control_plane", f"{exc} in {url!r}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise r.fail("control_plane", f"expected an http:// or https:// URL, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise r.fail("control_plane", f"bad port in {url!r}") from None
    return url.rstrip("/")


def parse_config(data: object, source: str = "agent.yaml") -> AgentConfig:
    """Validate already-parsed YAML; ConfigError names the first problem."""
    r = _Reader(source)
    top = {"control_plane", "token", "node", "zone", "data_dir", "admin", "services", "upstreams",
           "dns", "inbound", "gateway"}
    data = r.mapping(data, "", top)
    control_plane = _control_plane(r, data)
    token = r.string(data, "token", "")
    if not token.strip():
        raise r.fail("token", "must not be empty")
    node = r.string(data, "node", "", None, NODE_RE, "a host name")
    data_dir = r.string(data, "data_dir", "")
    zone = r.string(data, "zone", "", "")
    if len(zone) > MAX_ZONE:
        raise r.fail("zone", f"at most {MAX_ZONE} characters, got {len(zone)}")
    _no_nul(r, "zone", zone)
    admin_host, admin_port = r.address(data, "admin", "", DEFAULT_ADMIN)
    raw_dns = data.get("dns")  # YAML reads a bare `off` as False
    dns = None if raw_dns is False or raw_dns == "off" else r.address(data, "dns", "", DEFAULT_DNS)
    services = _entry_ids(r, r.items(data, "services", lambda v, p: _service(r, v, p)))
    names = sorted({s.name for s in services})
    # The edge's source: the node's only service, else "unknown" unless given explicitly.
    default_source = names[0] if len(names) == 1 else "unknown"
    upstreams = [
        u if u.source else Upstream(u.service, u.host, u.port, u.protocol, default_source)
        for u in r.items(data, "upstreams", lambda v, p: _upstream(r, v, p))
    ]
    taken: dict[tuple[str, int], int] = {}
    if admin_port:
        taken[(admin_host, admin_port)] = -1
    for i, u in enumerate(upstreams):
        key = (u.host, u.port)
        if u.port and key in taken:
            other = "admin" if taken[key] < 0 else f"upstreams[{taken[key]}]"
            raise r.fail(f"upstreams[{i}].listen", f"{u.listen} is already used by {other}")
        taken[key] = i
    if dns and dns[1] and dns in taken:
        raise r.fail("dns", f"{join_host_port(*dns)} is already used by an upstream or admin")
    inbound = _inbound(r, data["inbound"]) if data.get("inbound") is not None else None
    if inbound is not None and (inbound.host, inbound.port) in taken:
        raise r.fail("inbound.listen", f"{join_host_port(inbound.host, inbound.port)} is already "
                                       "used by an upstream or admin")
    gateway = None
    if data.get("gateway") is not None:
        from agents.runtime.gateway.config import parse_gateway

        gateway = parse_gateway(r, data["gateway"])
        for i, listener in enumerate(gateway.listeners):
            key = (listener.host, listener.port)
            used = key in taken or (inbound is not None and key == (inbound.host, inbound.port))
            if listener.port and used:
                raise r.fail(f"gateway.listeners[{i}].listen",
                             f"{listener.listen} is already used by an upstream, admin or inbound")
    return AgentConfig(
        control_plane=control_plane,
        token=token,
        node=node,
        zone=zone,
        data_dir=Path(data_dir).expanduser(),
        admin_host=admin_host,
        admin_port=admin_port,
        services=tuple(services),
        upstreams=tuple(upstreams),
        dns=dns,
        dns_explicit=raw_dns is not None and dns is not None,
        inbound=inbound,
        gateway=gateway,
    )


def load_config(path: str | Path) -> AgentConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    try:
        data = load_yaml(text)  # duplicate keys and deep nesting refused, with the line
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return parse_config(data, source)
