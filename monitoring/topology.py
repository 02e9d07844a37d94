"""The topology: services with their health, and caller->callee edges with
rates, error ratios and latency percentiles over a window."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict

from django.db.models import Count, Q
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow
from policies.models import FailoverState, TrafficPolicy
from registry.api.payloads import service_payload
from registry.models import ROUTABLE_HEALTH, AdminState, MeshRevision, Service

OPERATOR_STATES = (AdminState.MAINTENANCE, AdminState.DRAINING, AdminState.DISABLED)


class TopologyNode(TypedDict):
    id: str
    name: str
    protocol: str
    passing: int
    total: int
    health: str  # passing | warning | critical | empty
    # What the console draws (service_state_label): health, unless operators
    # hold the instances out (maintenance/draining/disabled) or a failover is
    # active. held: instances per operator state; failover: the active target.
    state: str
    held: dict[str, int]
    failover: str


class TopologyEdge(TypedDict):
    source: str
    destination: str
    requests: int
    errors: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass
class _EdgeTotals:
    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=histogram.empty)


class Topology(TypedDict):
    window_seconds: int
    generated_at: str
    nodes: list[TopologyNode]
    edges: list[TopologyEdge]


def service_health_label(passing: int, total: int) -> str:
    if total == 0:
        return "empty"
    if passing == total:
        return "passing"
    if passing == 0:
        return "critical"
    return "warning"


def service_state_label(*, passing: int, total: int, held: dict[str, int], failover: str) -> str:
    """The console's one label for a service: an active failover first, then the
    operator's doing (every instance not passing is held out on purpose: not a
    failure), then health (service_health_label)."""
    if failover:
        return "failover"
    held_total = sum(held.values())
    if total and held_total and passing + held_total == total:
        if passing:
            return "passing"
        return next(str(s) for s in OPERATOR_STATES if held.get(str(s)))
    return service_health_label(passing, total)


def active_failovers() -> dict[str, str]:
    """Service name -> the failover target serving it now."""
    rows = FailoverState.objects.exclude(active_target="").values_list(
        "service__name", "active_target"
    )
    return {str(name): str(target) for name, target in rows}


def service_state_payload(name: str) -> dict[str, Any] | None:
    """registry.api.payloads.service_payload (what the service page renders first
    and its websocket pushes) plus the console's state: "state" (the label),
    "held" (instances per operator state) and "failover"; None if gone."""
    data = service_payload(name)
    if data is None:
        return None
    data["failover"] = failover_payload(name)
    held: dict[str, int] = {}
    for row in data["instances"]:
        if row["status"] in OPERATOR_STATES:
            held[row["status"]] = held.get(row["status"], 0) + 1
    data["held"] = held
    data["state"] = service_state_label(
        passing=data["health"]["passing"],
        total=data["health"]["total"],
        held=held,
        failover=data["failover"]["active_target"],
    )
    return data


def failover_payload(name: str) -> dict[str, Any]:
    """Where service NAME's traffic goes when it fails over, and whether it does
    now: the active target, since when, and the failback hold-down."""
    state = FailoverState.objects.filter(service__name=name).first()
    policy = TrafficPolicy.objects.filter(service__name=name).first() or TrafficPolicy()
    return {
        "active_target": state.active_target if state else "",
        "activated_at": state.activated_at.isoformat() if state and state.activated_at else None,
        "healthy_since": state.healthy_since.isoformat() if state and state.healthy_since else None,
        "reason": state.reason if state else "",
        "targets": list(policy.failover_targets or []),
        "hold_down_ms": policy.failback_hold_down_ms,
    }


def topology_nodes() -> list[TopologyNode]:
    """Every service with its health and the console's state label."""
    routable = Q(instances__admin_state=AdminState.ENABLED) & Q(
        instances__health__in=ROUTABLE_HEALTH
    )
    held_counts = {
        f"held_{state}": Count("instances", filter=Q(instances__admin_state=state))
        for state in OPERATOR_STATES
    }
    services = Service.objects.annotate(
        total=Count("instances"), passing=Count("instances", filter=routable), **held_counts
    ).order_by("name")
    failovers = active_failovers()
    nodes: list[TopologyNode] = []
    for s in services:
        held = {
            str(state): int(getattr(s, f"held_{state}"))
            for state in OPERATOR_STATES
            if getattr(s, f"held_{state}")
        }
        failover = failovers.get(s.name, "")
        nodes.append(
            {
                "id": s.name,
                "name": s.name,
                "protocol": s.protocol,
                "passing": s.passing,
                "total": s.total,
                "health": service_health_label(s.passing, s.total),
                "state": service_state_label(
                    passing=s.passing, total=s.total, held=held, failover=failover
                ),
                "held": held,
                "failover": failover,
            }
        )
    return nodes


def topology_snapshot(window_seconds: int = 60) -> Topology:
    now = timezone.now()
    nodes = topology_nodes()
    since = now - timedelta(seconds=window_seconds)
    merged: dict[tuple[str, str], _EdgeTotals] = {}
    rows = EdgeWindow.objects.filter(window_end__gt=since).values_list(
        "source", "destination", "requests", "errors", "buckets"
    )
    for source, destination, requests, errors, buckets in rows:
        totals = merged.setdefault((source, destination), _EdgeTotals())
        totals.requests += requests
        totals.errors += errors
        histogram.merge(totals.buckets, buckets or [])
    edges: list[TopologyEdge] = [
        {
            "source": source,
            "destination": destination,
            "requests": t.requests,
            "errors": t.errors,
            "rps": round(t.requests / window_seconds, 3),
            "error_rate": round(t.errors / t.requests, 4) if t.requests else 0.0,
            "p50_ms": histogram.percentile(t.buckets, 0.50),
            "p95_ms": histogram.percentile(t.buckets, 0.95),
            "p99_ms": histogram.percentile(t.buckets, 0.99),
        }
        for (source, destination), t in sorted(merged.items())
    ]
    return {
        "window_seconds": window_seconds,
        "generated_at": now.isoformat(),
        "nodes": nodes,
        "edges": edges,
    }


# Consoles share one computation: a snapshot is reused while the mesh revision
# is unchanged and it is younger than SHARED_MAX_AGE_S (traffic figures move
# without a revision, so age bounds their staleness).
SHARED_MAX_AGE_S = 1.0
_shared: dict[int, tuple[int, float, Topology]] = {}


def topology_shared(window_seconds: int) -> Topology:
    """topology_snapshot, shared by every live console of this process."""
    revision = MeshRevision.current()
    now = time.monotonic()
    cached = _shared.get(window_seconds)
    if cached is not None and cached[0] == revision and now - cached[1] < SHARED_MAX_AGE_S:
        return cached[2]
    snapshot = topology_snapshot(window_seconds)
    _shared[window_seconds] = (revision, now, snapshot)
    return snapshot
