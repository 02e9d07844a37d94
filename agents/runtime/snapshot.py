"""Config snapshots from the control plane: validate whole, persist atomically, reload.

A snapshot is either valid in every field or refused with a reason (the NACK);
nothing is ever half-applied. Unknown extra keys are ignored so that a newer
control plane adding a field does not make every older agent refuse it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.runtime.addresses import address_error
from agents.runtime.policy import Policy, PolicyError, parse_policy
from agents.runtime.routes import (
    RouteError,
    RouteSpec,
    SubsetSpec,
    parse_metadata,
    parse_routes,
    parse_subsets,
)
from agents.runtime.security import (
    Security,
    SecurityError,
    parse_inbound,
    parse_mtls,
    parse_security,
)

SNAPSHOT_FILE = "snapshot.json"
IDENTITY_FILE = "agent.json"
PENDING_FILE = "enroll-pending.json"
STATUSES = ("passing", "warning", "critical", "maintenance", "draining")
_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class SnapshotError(ValueError):
    """Why a snapshot was refused; the text goes into the NACK."""


@dataclass(frozen=True)
class EndpointSpec:
    id: str
    address: str
    port: int
    weight: int = 100
    zone: str = ""
    status: str = "passing"
    priority: int = 0
    tags: tuple[str, ...] = ()  # what DNS subsets (v2.payments.service.mesh) select on
    inbound: tuple[str, int] | None = None  # the node agent's mTLS inbound listener, if any
    metadata: tuple[tuple[str, str], ...] = ()  # the instance's, sorted: what subsets select on


@dataclass(frozen=True)
class UpstreamSnapshot:
    protocol: str
    policy: Policy
    endpoints: tuple[EndpointSpec, ...]
    failover_target: str = ""
    failover_reason: str = ""
    # Instances left out by an operator (maintenance, drain, disabled, weight 0):
    # an empty endpoint list with none withheld is a deregistration, which
    # push-empty protection does not believe at once (agents.runtime.admission).
    withheld: int = 0
    mtls: str = "off"  # the destination's mode ("off": an older control plane)
    # L7 routes (routes.py): none for an older control plane or a service without any.
    subsets: dict[str, SubsetSpec] = field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    route_target: bool = False  # only a split's target: no listener of its own


@dataclass(frozen=True)
class Snapshot:
    revision: int
    agent_id: str
    node: str
    zone: str
    report_interval_ms: int
    upstreams: dict[str, UpstreamSnapshot]
    raw: dict[str, Any] = field(compare=False, repr=False)
    push_empty_hold_ms: int = 0
    security: Security | None = None  # None: an older control plane, no mTLS


REPORT_INTERVAL_BOUNDS_MS = (100, 3_600_000)


def answered_interval_ms(answer: object) -> int | None:
    """The `report_interval_ms` of a report's answer when it is a usable one (an
    integer within the snapshot's bounds), else None: keep the snapshot's."""
    if not isinstance(answer, dict):
        return None
    value = answer.get("report_interval_ms")
    low, high = REPORT_INTERVAL_BOUNDS_MS
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotError(f"{path}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise SnapshotError(f"{path}: {value} is outside {low}..{high}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SnapshotError(f"{path}: expected a string, got {type(value).__name__}")
    return value


def _dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _address(value: object, path: str) -> str:
    address = _str(value, path)
    error = address_error(address)
    if error:
        raise SnapshotError(f"{path}: {error}")
    return address


def _policy(value: object, path: str) -> Policy:
    try:
        return parse_policy(value, path)
    except PolicyError as exc:
        raise SnapshotError(str(exc)) from None


def _endpoint(value: object, path: str) -> EndpointSpec:
    data = _dict(value, path)
    status = _str(data.get("status", "passing"), f"{path}.status")
    if status not in STATUSES:
        raise SnapshotError(f"{path}.status: unknown status {status!r}")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SnapshotError(f"{path}.tags: expected a list of strings")
    return EndpointSpec(
        id=_str(data.get("id"), f"{path}.id"),
        address=_address(data.get("address"), f"{path}.address"),
        port=_int(data.get("port"), f"{path}.port", 1, 65535),
        weight=_int(data.get("weight", 100), f"{path}.weight", 0, 1_000_000),
        zone=_str(data.get("zone", ""), f"{path}.zone"),
        status=status,
        priority=_int(data.get("priority", 0), f"{path}.priority", 0, 1000),
        tags=tuple(tags),
        inbound=_checked(parse_inbound, data.get("inbound"), f"{path}.inbound"),
        metadata=_routed(parse_metadata, data.get("metadata"), f"{path}.metadata"),
    )


def _routed(parse: Any, value: object, path: str, *args: Any) -> Any:
    try:
        return parse(value, path, *args)
    except RouteError as exc:
        raise SnapshotError(str(exc)) from None


def _checked(parse: Any, value: object, path: str) -> Any:
    try:
        result = parse(value, path)
    except SecurityError as exc:
        raise SnapshotError(str(exc)) from None
    if isinstance(result, tuple):
        error = address_error(result[0])
        if error:
            raise SnapshotError(f"{path}.address: {error}")
    return result


def _upstream(value: object, path: str) -> UpstreamSnapshot:
    data = _dict(value, path)
    protocol = _str(data.get("protocol", "http"), f"{path}.protocol")
    if protocol not in ("http", "tcp"):
        raise SnapshotError(f"{path}.protocol: unknown protocol {protocol!r}")
    endpoints = data.get("endpoints", [])
    if not isinstance(endpoints, list):
        raise SnapshotError(f"{path}.endpoints: expected a list")
    specs = tuple(_endpoint(e, f"{path}.endpoints[{i}]") for i, e in enumerate(endpoints))
    seen: set[tuple[str, int]] = set()
    for i, spec in enumerate(specs):
        if (spec.address, spec.port) in seen:
            raise SnapshotError(f"{path}.endpoints[{i}]: {spec.address}:{spec.port} listed twice")
        seen.add((spec.address, spec.port))
    raw_failover = data.get("failover")
    failover = _dict({} if raw_failover is None else raw_failover, f"{path}.failover")
    subsets = _routed(parse_subsets, data.get("subsets"), f"{path}.subsets")
    route_target = data.get("route_target")
    route_target = False if route_target is None else route_target
    if not isinstance(route_target, bool):
        raise SnapshotError(f"{path}.route_target: expected true or false")
    return UpstreamSnapshot(
        protocol, _policy(data.get("policy", {}), f"{path}.policy"), specs,
        failover_target=_str(failover.get("active_target") or "", f"{path}.failover.active_target"),
        failover_reason=_str(failover.get("reason") or "", f"{path}.failover.reason"),
        withheld=_int(data.get("withheld", 0), f"{path}.withheld", 0, 10_000_000),
        mtls=_checked(parse_mtls, data.get("mtls"), f"{path}.mtls"),
        subsets=subsets,
        routes=_routed(parse_routes, data.get("routes"), f"{path}.routes", subsets),
        route_target=route_target,
    )


def parse_upstreams(
    data: dict[str, Any],
) -> tuple[dict[str, UpstreamSnapshot], dict[str, SnapshotError]]:
    """Each upstream on its own: the valid ones, and the error of each other one
    (an invalid upstream is refused alone, as xDS NACKs one resource)."""
    upstreams = _dict(data.get("upstreams"), "upstreams")
    parsed: dict[str, UpstreamSnapshot] = {}
    errors: dict[str, SnapshotError] = {}
    for name, value in upstreams.items():
        if not isinstance(name, str) or not _SERVICE.match(name):
            errors[str(name)] = SnapshotError(f"upstreams: {name!r} is not a service name")
            continue
        try:
            parsed[name] = _upstream(value, f"upstreams.{name}")
        except SnapshotError as exc:
            errors[name] = exc
    for name, upstream in list(parsed.items()):
        # A split to another service needs that service's endpoints in this snapshot.
        for index, route in enumerate(upstream.routes):
            missing = sorted(s for s in route.services if s not in upstreams)
            if missing:
                del parsed[name]
                errors[name] = SnapshotError(
                    f"upstreams.{name}.routes[{index}].split: service {missing[0]!r} is not "
                    "in upstreams (a split target needs its route_target entry)")
                break
    return parsed, errors


def parse_snapshot(raw: object) -> Snapshot:
    """A validated Snapshot, or SnapshotError naming the first bad field."""
    data = _dict(raw, "snapshot")
    parsed, errors = parse_upstreams(data)
    if errors:
        raise next(iter(errors.values()))
    return snapshot_of(data, parsed)


def snapshot_of(data: dict[str, Any], parsed: dict[str, UpstreamSnapshot]) -> Snapshot:
    """The Snapshot of DATA's top-level fields (validated here) with PARSED upstreams."""
    try:
        security = parse_security(data.get("security"))
    except SecurityError as exc:
        raise SnapshotError(str(exc)) from None
    return Snapshot(
        revision=_int(data.get("revision"), "revision", 0, 2**63 - 1),
        agent_id=_str(data.get("agent_id", ""), "agent_id"),
        node=_str(data.get("node", ""), "node"),
        zone=_str(data.get("zone", ""), "zone"),
        report_interval_ms=_int(data.get("report_interval_ms", 2000), "report_interval_ms",
                                *REPORT_INTERVAL_BOUNDS_MS),
        upstreams=parsed,
        raw=data,
        push_empty_hold_ms=_int(data.get("push_empty_hold_ms", 0), "push_empty_hold_ms",
                                0, 86_400_000),
        security=security,
    )


def write_atomic(path: Path, payload: dict[str, Any], mode: int = 0o644) -> None:
    """Write JSON so a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed or widened what os.open asked for
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        # The rename is durable only once the directory entry is on disk too.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_snapshot(data_dir: Path, snapshot: Snapshot) -> None:
    write_atomic(data_dir / SNAPSHOT_FILE, snapshot.raw)


def load_snapshot(data_dir: Path) -> Snapshot | None:
    """The last applied snapshot, or None if there is none or it no longer validates."""
    try:
        raw = json.loads((data_dir / SNAPSHOT_FILE).read_text(encoding="utf-8"))
        return parse_snapshot(raw)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Identity:
    agent_id: str
    agent_token: str
    control_plane: str
    node: str


def save_identity(data_dir: Path, identity: Identity) -> None:
    write_atomic(data_dir / IDENTITY_FILE, identity.__dict__, mode=0o600)


def load_identity(data_dir: Path, *, control_plane: str, node: str) -> Identity | None:
    """The stored identity if it is whole and for this control plane and node."""
    try:
        data = json.loads((data_dir / IDENTITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    values = [data.get(k) for k in ("agent_id", "agent_token", "control_plane", "node")]
    if not all(isinstance(v, str) and v for v in values):
        return None
    identity = Identity(*values)  # type: ignore[arg-type]
    if identity.control_plane != control_plane or identity.node != node:
        return None  # enrolled elsewhere: that token means nothing here
    return identity


def forget_identity(data_dir: Path) -> None:
    (data_dir / IDENTITY_FILE).unlink(missing_ok=True)
    (data_dir / PENDING_FILE).unlink(missing_ok=True)


def pending_agent_token(data_dir: Path, *, control_plane: str, node: str) -> str:
    """The agent token this host proposes when it enrolls: generated here, kept
    on disk before the first attempt, so every retry (after a timeout, or a
    restart) proposes the same one and gets the same enrollment back."""
    try:
        data = json.loads((data_dir / PENDING_FILE).read_text(encoding="utf-8"))
        if (
            isinstance(data, dict)
            and data.get("control_plane") == control_plane
            and data.get("node") == node
            and isinstance(data.get("agent_token"), str)
            and len(data["agent_token"]) >= 32
        ):
            return str(data["agent_token"])
    except (OSError, ValueError):
        pass
    token = secrets.token_urlsafe(32)
    write_atomic(
        data_dir / PENDING_FILE,
        {"agent_token": token, "control_plane": control_plane, "node": node},
        mode=0o600,
    )
    return token
