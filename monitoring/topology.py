"""The topology: services with their health, and caller->callee edges with
rates, error ratios and latency percentiles over a window."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypedDict

from django.db.models import Count, Q
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow
from registry.models import ROUTABLE_HEALTH, AdminState, MeshRevision, Service


class TopologyNode(TypedDict):
    id: str
    name: str
    protocol: str
    passing: int
    total: int
    health: str  # passing | warning | critical | empty


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


def topology_snapshot(window_seconds: int = 60) -> Topology:
    now = timezone.now()
    routable = Q(instances__admin_state=AdminState.ENABLED) & Q(
        instances__health__in=ROUTABLE_HEALTH
    )
    services = Service.objects.annotate(
        total=Count("instances"), passing=Count("instances", filter=routable)
    ).order_by("name")
    nodes: list[TopologyNode] = [
        {
            "id": s.name,
            "name": s.name,
            "protocol": s.protocol,
            "passing": s.passing,
            "total": s.total,
            "health": service_health_label(s.passing, s.total),
        }
        for s in services
    ]
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


# The API and every live console share one computation per window: a snapshot
# is reused while the mesh revision is unchanged and it is younger than
# SHARED_MAX_AGE_S (traffic figures move without a revision, so age bounds
# their staleness). At most SHARED_WINDOWS windows are kept (LRU): ?window= is
# the client's to choose.
SHARED_MAX_AGE_S = 1.0
SHARED_WINDOWS = 8


@dataclass
class _Shared:
    revision: int
    at: float
    topology: Topology
    encoded: bytes | None = None  # the JSON, made once for every API reader


_shared: OrderedDict[int, _Shared] = OrderedDict()


def _shared_entry(window_seconds: int) -> _Shared:
    revision = MeshRevision.current()
    now = time.monotonic()
    cached = _shared.get(window_seconds)
    if cached is not None and cached.revision == revision and now - cached.at < SHARED_MAX_AGE_S:
        _shared.move_to_end(window_seconds)
        return cached
    entry = _Shared(revision, now, topology_snapshot(window_seconds))
    _shared[window_seconds] = entry
    _shared.move_to_end(window_seconds)
    while len(_shared) > SHARED_WINDOWS:
        _shared.popitem(last=False)
    return entry


def topology_shared(window_seconds: int) -> Topology:
    """topology_snapshot, shared by every request and console of this process."""
    return _shared_entry(window_seconds).topology


def topology_shared_json(window_seconds: int) -> bytes:
    """topology_shared as JSON bytes, encoded once per shared snapshot."""
    entry = _shared_entry(window_seconds)
    if entry.encoded is None:
        entry.encoded = json.dumps(
            entry.topology, separators=(",", ":"), ensure_ascii=False
        ).encode()
    return entry.encoded
