"""The upstreams part of an agent's config snapshot (docs/policies.md)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

from django.conf import settings
from django.db.models import Count

from agents import gateways
from agents.models import Agent
from identity.intentions import IntentionSnapshot, default_action, intentions_for
from identity.services import ca_ready, live_roots, revoked_serials
from meshconsole.db import read_transaction
from policies.models import FailoverState, ServiceRoutes, TrafficPolicy
from policies.routes import RouteDoc, SubsetDoc, split_services
from policies.snapshot import PolicySnapshot, endpoint_priority, policy_snapshot
from registry.models import SECURITY_KEY, Instance, MeshIndex, Service, agent_key, service_key
from registry.pacing import report_interval_ms
from registry.targets import target_refusal

Part = TypeVar("Part")


class InboundSnapshot(TypedDict):
    address: str
    port: int


class EndpointSnapshot(TypedDict):
    id: str
    address: str
    port: int
    weight: int
    zone: str
    priority: int
    status: str
    tags: list[str]
    metadata: dict[str, str]  # what route subsets select on, with the tags
    # The instance's host agent's inbound (mTLS) listener; None: dial it directly.
    inbound: InboundSnapshot | None


class FailoverSnapshot(TypedDict):
    active_target: str
    reason: str


class UpstreamSnapshot(TypedDict):
    protocol: str
    failover: FailoverSnapshot
    policy: PolicySnapshot
    endpoints: list[EndpointSnapshot]
    # Instances an operator took out (maintenance, drain, disabled, weight 0):
    # agents believe an empty list at once only when some were withheld.
    withheld: int
    mtls: str  # strict | permissive | off: the destination's mode (Service.effective_mtls)
    # L7 routes of the destination (policies.routes; absent = none).
    subsets: NotRequired[dict[str, SubsetDoc]]
    routes: NotRequired[list[RouteDoc]]
    # Not declared by the agent: only a target of another upstream's split (no listener).
    route_target: NotRequired[bool]


class InboundModeSnapshot(TypedDict):
    mtls: str


class SecuritySnapshot(TypedDict):
    """docs/security.md; the contract in docs/agent-protocol.md."""

    trust_domain: str
    roots: list[str]
    revoked_serials: list[str]
    default_action: str
    intentions: list[IntentionSnapshot]  # sorted by precedence: the agent takes the first match
    inbound: dict[str, InboundModeSnapshot]


class AgentSnapshot(TypedDict):
    """The config an agent long-polls (docs/agent-protocol.md); parsed by
    agents/runtime/snapshot.py, which a contract test feeds it to."""

    revision: int
    agent_id: str
    node: str
    zone: str
    report_interval_ms: int
    # Push-empty protection: how long agents keep an upstream's last endpoints
    # when a snapshot empties it by deregistration (MESH_PUSH_EMPTY_HOLD).
    push_empty_hold_ms: int
    upstreams: dict[str, UpstreamSnapshot]
    security: SecuritySnapshot
    # Only for a gateway agent (agents.gateways; built by gateway.snapshot).
    gateway: NotRequired[Mapping[str, Any]]


def _enabled_endpoints(names: set[str]) -> dict[str, list[Instance]]:
    """Every enabled instance (any health, weight > 0) of each service in NAMES."""
    by_service: dict[str, list[Instance]] = {name: [] for name in names}
    instances = (
        Instance.objects.enabled()
        .filter(service__name__in=names)
        .select_related("service")
        .order_by("address", "port")
    )
    for instance in instances:
        if target_refusal(instance.address) is None:  # panic or not, never routed to
            by_service[instance.service.name].append(instance)
    return by_service


def _inbound_listeners(instances: list[Instance]) -> dict[int, InboundSnapshot]:
    """node id -> the inbound listener its agent reported, for these instances' nodes."""
    nodes = {i.node_id for i in instances if i.node_id is not None}
    rows = Agent.objects.filter(node_id__in=nodes, inbound_port__isnull=False).exclude(
        inbound_address=""
    )
    return {
        a.node_id: {"address": a.inbound_address, "port": int(a.inbound_port or 0)} for a in rows
    }


def _endpoint(
    instance: Instance, zone_priority: list[str], inbound: dict[int, InboundSnapshot]
) -> EndpointSnapshot:
    return {
        "id": instance.id,
        "address": instance.address,
        "port": instance.port,
        "weight": instance.weight,
        "zone": instance.zone,
        "priority": endpoint_priority(instance.zone, zone_priority),
        "status": instance.status,
        "tags": list(instance.tags),
        "metadata": {str(k): str(v) for k, v in (instance.metadata or {}).items()},
        "inbound": inbound.get(instance.node_id) if instance.node_id is not None else None,
    }


def _routes(names: list[str] | set[str]) -> dict[str, dict[str, Any]]:
    """Service name -> its routes document, for those of NAMES that have one."""
    rows = ServiceRoutes.objects.filter(service__name__in=names).values_list(
        "service__name", "document"
    )
    return {str(name): dict(document or {}) for name, document in rows}


def route_targets(names: list[str] | set[str]) -> set[str]:
    """The services NAMES' routes split traffic to that are not among NAMES."""
    targets: set[str] = set()
    for document in _routes(names).values():
        targets |= split_services(document)
    return targets - set(names)


def upstreams_snapshot(names: list[str]) -> dict[str, UpstreamSnapshot]:
    """NAME -> {protocol, failover, policy, endpoints, subsets?, routes?}, plus a
    `route_target` entry for each service a split names that NAMES lacks; call
    inside one transaction."""
    declared = list(names)
    documents = _routes(declared)
    extra: set[str] = set()
    for document in documents.values():
        extra |= split_services(document)
    names = declared + sorted(extra - set(declared))
    services = {s.name: s for s in Service.objects.filter(name__in=names)}
    policies = {
        p.service.name: p
        for p in TrafficPolicy.objects.select_related("service").filter(service__name__in=names)
    }
    failovers = {
        f.service.name: f
        for f in FailoverState.objects.select_related("service")
        .filter(service__name__in=names)
        .exclude(active_target="")
    }
    # While failover is active, the upstream's endpoints are the target's.
    serving = {name: failovers[name].active_target if name in failovers else name for name in names}
    endpoints = _enabled_endpoints(set(serving.values()))
    withheld = dict(
        Instance.objects.filter(service__name__in=set(serving.values()))
        .exclude(pk__in=Instance.objects.enabled().values("pk"))
        .values_list("service__name")
        .annotate(n=Count("pk"))
        .values_list("service__name", "n")
    )
    inbound = _inbound_listeners([i for group in endpoints.values() for i in group])
    upstreams: dict[str, UpstreamSnapshot] = {}
    for name in names:
        service, policy, failover = services.get(name), policies.get(name), failovers.get(name)
        zone_priority = list(policy.zone_priority or []) if policy else []
        upstreams[name] = {
            "protocol": service.protocol if service else "http",
            "failover": {
                "active_target": failover.active_target if failover else "",
                "reason": failover.reason if failover else "",
            },
            "policy": policy_snapshot(policy),
            "endpoints": [
                _endpoint(i, zone_priority, inbound) for i in endpoints.get(serving[name], [])
            ]
            if service
            else [],
            "withheld": int(withheld.get(serving[name], 0)) if service else 0,
            "mtls": service.effective_mtls if service else str(settings.MESH_MTLS_DEFAULT),
        }
        routes = documents.get(name) or {}
        if routes.get("subsets"):
            upstreams[name]["subsets"] = routes["subsets"]
        if routes.get("routes"):
            upstreams[name]["routes"] = routes["routes"]
        if name not in declared:
            upstreams[name]["route_target"] = True
    return upstreams


def upstream_names(agent: Agent) -> list[str]:
    return sorted({str(u.get("service")) for u in agent.upstreams if u.get("service")})


def gateway_route_targets(agent: Agent) -> list[str]:
    """The services a gateway agent's gateway routes send to that it does not
    declare as upstreams: `upstreams` entries with `route_target: true`."""
    hook = gateways.hook()
    if not agent.gateway or hook is None:
        return []
    return sorted(set(hook.targets(agent.gateway)) - set(upstream_names(agent)))


def snapshot_keys(agent: Agent) -> list[str]:
    """The index keys an agent's snapshot depends on: each upstream service (and
    a gateway's route targets), the services their routes split to, the failover
    target each is served from now, the agent's own upstream set, and a
    gateway's own keys (agents.gateways)."""
    names = set(upstream_names(agent)) | set(gateway_route_targets(agent))
    names |= route_targets(names)
    hook = gateways.hook()
    own = set(hook.keys(agent.gateway)) if agent.gateway and hook is not None else set()
    targets = set(
        FailoverState.objects.filter(service__name__in=names)
        .exclude(active_target="")
        .values_list("active_target", flat=True)
    )
    return sorted(
        {service_key(n) for n in names | targets} | {agent_key(agent.pk), SECURITY_KEY} | own
    )


def local_service_names(agent: Agent) -> list[str]:
    """The services AGENT runs: its node's agent-managed instances and what its
    last report listed (the rule the certificate endpoint applies too)."""
    managed = Instance.objects.filter(node_id=agent.node_id, agent_managed=True).values_list(
        "service__name", flat=True
    )
    return sorted(set(managed) | {str(n) for n in agent.local_services})


def security_snapshot(agent: Agent, index: int | None = None) -> SecuritySnapshot:
    """Call inside one transaction (agent_snapshot's). Every input but the
    agent's local services moves SECURITY_KEY (identity/, registry.services for
    mTLS modes), so the section is built once per (local services, INDEX: that
    key's, read here when not given) — a fleet's snapshots after an intention
    change cost one build per service set."""
    local = local_service_names(agent)
    if index is None:
        index = MeshIndex.of([SECURITY_KEY])
    return security_cache.get(local, index, lambda: _security_build(local))


def _security_build(local: list[str]) -> SecuritySnapshot:
    modes = dict(Service.objects.filter(name__in=local).values_list("name", "mtls_mode"))
    default_mode = str(settings.MESH_MTLS_DEFAULT)
    return {
        "trust_domain": settings.MESH_TRUST_DOMAIN,
        "roots": [r.certificate for r in live_roots()],
        "revoked_serials": revoked_serials(),
        "default_action": default_action(),
        "intentions": intentions_for(local),
        "inbound": {name: {"mtls": modes.get(name) or default_mode} for name in local},
    }


def snapshot_index(agent: Agent) -> int:
    """The revision of the last change to what AGENT's snapshot shows."""
    return MeshIndex.of(snapshot_keys(agent))


class _UpstreamsCache(Generic[Part]):
    """Upstream (and security) parts of snapshots by (upstream names, index). What an agent is
    shown is a function of the rows behind its keys, and every change to those
    rows is a mesh_change that moves the index (registry.revision), so an entry
    never needs invalidating: a fleet consuming one service builds its part
    once per change, not once per agent."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[tuple[str, ...], int], Part] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, names: list[str], index: int, build: Callable[[], Part]) -> Part:
        key = (tuple(names), index)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        value = build()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


upstreams_cache: _UpstreamsCache[dict[str, UpstreamSnapshot]] = _UpstreamsCache()
security_cache: _UpstreamsCache[SecuritySnapshot] = _UpstreamsCache()


def agent_snapshot(*, agent: Agent) -> AgentSnapshot:
    """The whole config an agent needs. Its `revision` is the index of the last
    change to what it shows (snapshot_keys), not the world's: a change to a
    service the agent does not consume neither wakes it nor changes its answer."""
    ca_ready()  # before the read-only transaction: the first root is a write
    with read_transaction():  # one view of the database, without SQLite's write lock
        # The index first: the content read after it is at least as new. One query
        # for all the keys (SECURITY_KEY among them: the security part's own index).
        indexes = MeshIndex.each(snapshot_keys(agent))
        revision = max(indexes.values(), default=0)
        names = upstream_names(agent)
        upstreams = upstreams_cache.get(names, revision, lambda: upstreams_snapshot(names))
        security = security_snapshot(agent, indexes.get(SECURITY_KEY, 0))
        hook = gateways.hook()
        section = hook.section(agent.gateway) if agent.gateway and hook is not None else None
        if section is not None:
            extra = gateway_route_targets(agent)
            targets = upstreams_cache.get(extra, revision, lambda: upstreams_snapshot(extra))
            # Copies: the cached parts are shared with other agents' snapshots.
            upstreams = dict(upstreams)
            for target, part in targets.items():
                if target not in upstreams:
                    upstreams[target] = {**part, "route_target": True}
    snapshot: AgentSnapshot = {
        "revision": revision,
        "agent_id": str(agent.id),
        "node": agent.node.name,
        "zone": agent.node.zone,
        "report_interval_ms": report_interval_ms(),
        "push_empty_hold_ms": settings.MESH_PUSH_EMPTY_HOLD * 1000,
        "upstreams": upstreams,
        "security": security,
    }
    if section is not None:
        snapshot["gateway"] = section
    return snapshot
