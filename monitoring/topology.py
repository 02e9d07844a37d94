"""The topology: services with their health, and caller->callee edges with
rates, error ratios and latency percentiles over a window."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow
from policies.models import FailoverState, TrafficPolicy
from registry.api.payloads import service_payload
from registry.api.serializers import attach_health
from registry.models import ROUTABLE_HEALTH, AdminState, Instance, MeshRevision, Service

OPERATOR_STATES = (AdminState.MAINTENANCE, AdminState.DRAINING, AdminState.DISABLED)


class TopologyNode(TypedDict):
    id: str
    name: str
    # service | gateway (an entry node: a gateway that reported traffic in the window)
    kind: str
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
    tags: list[str]  # the console groups by a tag key (team=...)


class EdgeFigures(TypedDict):
    requests: int
    errors: int
    rps: float
    error_rate: float
    # Refused by an intention at the destination's inbound listener (zero trust).
    denied: int
    denied_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class TopologyEdge(EdgeFigures):
    source: str
    destination: str
    # The same figures per route subset the traffic went to (windows with a
    # `subset`; issue 12), so a canary's v2 can be read against v1. The edge's
    # own figures are the totals over every subset and none.
    subsets: dict[str, EdgeFigures]


@dataclass
class _EdgeTotals:
    requests: int = 0
    errors: int = 0
    denied: int = 0
    buckets: list[int] = field(default_factory=histogram.empty)
    subsets: dict[str, _EdgeTotals] = field(default_factory=dict)

    def add(self, requests: int, errors: int, denied: int) -> None:
        self.requests += requests
        self.errors += errors
        self.denied += denied


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


def page_states(services: list[Service]) -> dict[str, str]:
    """service_state_label for a page of services already loaded: their health
    (registry.api.serializers.attach_health), instances held per operator state
    and active failovers, in three queries whatever the page's size."""
    attach_health(services)
    held: dict[int, dict[str, int]] = {s.pk: {} for s in services}
    rows = (
        Instance.objects.filter(service__in=services, admin_state__in=OPERATOR_STATES)
        .order_by()
        .values_list("service_id", "admin_state")
        .annotate(n=Count("id"))
    )
    for service_id, state, n in rows:
        held[service_id][str(state)] = int(n)
    failovers = {
        int(service_id): str(target)
        for service_id, target in FailoverState.objects.filter(service__in=services)
        .exclude(active_target="")
        .values_list("service_id", "active_target")
    }
    return {
        s.name: service_state_label(
            passing=int(getattr(s, "passing_instances", 0)),
            total=int(getattr(s, "total_instances", 0)),
            held=held[s.pk],
            failover=failovers.get(s.pk, ""),
        )
        for s in services
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
                "kind": "service",
                "protocol": s.protocol,
                "passing": s.passing,
                "total": s.total,
                "health": service_health_label(s.passing, s.total),
                "state": service_state_label(
                    passing=s.passing, total=s.total, held=held, failover=failover
                ),
                "held": held,
                "failover": failover,
                "tags": list(s.tags),
            }
        )
    return nodes


def gateway_nodes(since: datetime, services: set[str]) -> list[TopologyNode]:
    """The gateways whose windows ended after SINCE: entry nodes, no health of
    their own (a name a service also has stays that service's node)."""
    names = (
        EdgeWindow.objects.filter(window_end__gt=since, gateway=True)
        .order_by()
        .values_list("source", flat=True)
        .distinct()
    )
    return [
        {
            "id": name,
            "name": name,
            "kind": "gateway",
            "protocol": "http",
            "passing": 0,
            "total": 0,
            "health": "empty",
            "state": "gateway",
            "held": {},
            "failover": "",
            "tags": [],
        }
        for name in sorted(set(names) - services)
    ]


def edge_totals(since: datetime) -> dict[tuple[str, str], _EdgeTotals]:
    """Every edge's requests, errors, denials and latency buckets summed over the windows
    that ended after SINCE, by the database: two grouped queries, whatever the
    number of windows; Python sees one row per edge and subset and one per
    non-empty bucket. Each edge's `subsets` holds the same per named subset."""
    rows = (
        EdgeWindow.objects.filter(window_end__gt=since)
        .order_by()
        .values_list("source", "destination", "subset")
        .annotate(requests=Sum("requests"), errors=Sum("errors"), denied=Sum("denied"))
    )
    merged: dict[tuple[str, str], _EdgeTotals] = {}
    for source, destination, subset, requests, errors, denied in rows:
        figures = (int(requests or 0), int(errors or 0), int(denied or 0))
        totals = merged.setdefault((str(source), str(destination)), _EdgeTotals())
        totals.add(*figures)
        if subset:
            totals.subsets.setdefault(str(subset), _EdgeTotals()).add(*figures)
    for source, destination, subset, index, count in _bucket_sums(since):
        edge = merged.get((source, destination))
        if edge is None or not 0 <= index < histogram.NBUCKETS:
            continue
        edge.buckets[index] += count
        if subset and subset in edge.subsets:
            edge.subsets[subset].buckets[index] += count
    return merged


def _bucket_sums(since: datetime) -> list[tuple[str, str, str, int, int]]:
    """(source, destination, subset, bucket index, summed count) over the windows ended
    after SINCE: the JSON arrays unnested in SQL (json_each on SQLite,
    jsonb_array_elements_text on PostgreSQL) and grouped per edge and index."""
    table = connection.ops.quote_name(EdgeWindow._meta.db_table)
    if connection.vendor == "postgresql":
        unnest = (
            f"{table} AS e CROSS JOIN LATERAL "
            "jsonb_array_elements_text(e.buckets) WITH ORDINALITY AS j(value, ord)"
        )
        index, value = "j.ord - 1", "j.value::bigint"
    else:
        unnest = f"{table} AS e, json_each(e.buckets) AS j"
        index, value = "j.key", "j.value"
    sql = (
        f"SELECT e.source, e.destination, e.subset, {index} AS idx, SUM({value}) "
        # Agents send every bucket, mostly zeros: only the counted ones come back.
        f"FROM {unnest} WHERE e.window_end > %s AND {value} <> 0 "
        "GROUP BY e.source, e.destination, e.subset, idx"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(since)])
        return [
            (str(s), str(d), str(u or ""), int(i), int(c or 0))
            for s, d, u, i, c in cursor.fetchall()
        ]


def _figures(t: _EdgeTotals, window_seconds: int) -> EdgeFigures:
    return {
        "requests": t.requests,
        "errors": t.errors,
        "rps": round(t.requests / window_seconds, 3),
        "error_rate": round(t.errors / t.requests, 4) if t.requests else 0.0,
        "denied": t.denied,
        "denied_rps": round(t.denied / window_seconds, 3),
        "p50_ms": histogram.percentile(t.buckets, 0.50),
        "p95_ms": histogram.percentile(t.buckets, 0.95),
        "p99_ms": histogram.percentile(t.buckets, 0.99),
    }


def topology_snapshot(window_seconds: int = 60) -> Topology:
    now = timezone.now()
    since = now - timedelta(seconds=window_seconds)
    nodes = topology_nodes()
    nodes += gateway_nodes(since, {n["name"] for n in nodes})
    merged = edge_totals(since)
    edges: list[TopologyEdge] = [
        {
            "source": source,
            "destination": destination,
            **_figures(t, window_seconds),
            "subsets": {
                name: _figures(sub, window_seconds) for name, sub in sorted(t.subsets.items())
            },
        }
        for (source, destination), t in sorted(merged.items())
    ]
    return {
        "window_seconds": window_seconds,
        "generated_at": now.isoformat(),
        "nodes": nodes,
        "edges": edges,
    }


# The API and every live console share one computation per window. A snapshot
# is reused while the mesh revision is unchanged and it is younger than
# SHARED_MAX_AGE_S. Traffic figures move without a revision: past that age an
# API reader is still served the snapshot (up to SHARED_STALE_S old) while one
# background thread recomputes it, so API readers never queue behind the
# aggregation for traffic alone; a new revision, an older snapshot, or a
# console's periodic push (wait=True) recomputes before answering.
# At most SHARED_WINDOWS windows are kept (LRU): ?window= is the client's.
SHARED_MAX_AGE_S = 1.0
SHARED_STALE_S = 5.0
SHARED_WINDOWS = 8


@dataclass
class _Shared:
    revision: int
    at: float
    topology: Topology
    encoded: bytes | None = None  # the JSON, made once for every API reader


_shared: OrderedDict[int, _Shared] = OrderedDict()
_lock = threading.Lock()
_refreshing: dict[int, threading.Thread] = {}


def _store(window_seconds: int, entry: _Shared) -> None:
    with _lock:
        current = _shared.get(window_seconds)
        # Never replace a newer snapshot (revisions only grow) with an older one.
        if current is None or (current.revision, current.at) <= (entry.revision, entry.at):
            _shared[window_seconds] = entry
        _shared.move_to_end(window_seconds)
        while len(_shared) > SHARED_WINDOWS:
            _shared.popitem(last=False)


def _refresh(window_seconds: int, revision: int) -> None:
    try:
        started = time.monotonic()
        _store(window_seconds, _Shared(revision, started, topology_snapshot(window_seconds)))
    finally:
        connection.close()  # this thread's own connection
        with _lock:
            _refreshing.pop(window_seconds, None)


def _shared_entry(window_seconds: int, *, wait: bool) -> _Shared:
    revision = MeshRevision.current()
    now = time.monotonic()
    with _lock:
        cached = _shared.get(window_seconds)
        if cached is not None and cached.revision == revision:
            age = now - cached.at
            if age < SHARED_MAX_AGE_S:
                _shared.move_to_end(window_seconds)
                return cached
            if not wait and age < SHARED_STALE_S:
                if window_seconds not in _refreshing:
                    thread = threading.Thread(
                        target=_refresh, args=(window_seconds, revision),
                        name=f"topology-{window_seconds}s", daemon=True,
                    )
                    _refreshing[window_seconds] = thread
                    thread.start()
                return cached
    entry = _Shared(revision, now, topology_snapshot(window_seconds))
    _store(window_seconds, entry)
    return entry


def topology_shared(window_seconds: int) -> Topology:
    """topology_snapshot, shared by every request and console of this process."""
    return _shared_entry(window_seconds, wait=True).topology


def topology_shared_json(window_seconds: int) -> bytes:
    """topology_shared as JSON bytes, encoded once per shared snapshot; for API
    readers, who may get a snapshot up to SHARED_STALE_S old while it is redone."""
    entry = _shared_entry(window_seconds, wait=False)
    if entry.encoded is None:
        entry.encoded = json.dumps(
            entry.topology, separators=(",", ":"), ensure_ascii=False
        ).encode()
    return entry.encoded
