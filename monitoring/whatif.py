"""What-if before apply: the load each instance would get after a pending edit.

From the last minute's traffic to the service (the edge windows agents
report, per calling node), the agents' own routing plan
(`agents.runtime.locality.plan`: panic, priority levels, zones) and the
balancer's split inside each group (L = T × w / Σw for a weighted balancer,
T / N for round_robin and random, which ignore weights), before and after the edit:
per-instance requests per second, whether the service would be in panic or
fail over (and to whom), and which callers the edit affects. Nothing is
written; the edit is applied to in-memory copies.

Edits (the API document, `docs/api.md`):
  instances: {"<id>": {"weight": N, "state": "enabled|maintenance|draining|disabled"}}
  policy:    {"panic_threshold_percent": N, "locality": bool, "zone_priority": [...]}
  failover:  {"targets": [...]}
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from agents.runtime.balancers import BALANCERS, DEFAULT_BALANCER
from agents.runtime.endpoint import Endpoint
from agents.runtime.locality import plan
from agents.runtime.vocabulary import LOCALITY_ENABLED
from monitoring.models import EdgeWindow
from policies.models import FailoverState, TrafficPolicy
from policies.snapshot import endpoint_priority
from registry.models import ROUTABLE_HEALTH, AdminState, Instance, Node, Service
from registry.panic import DEFAULT_PANIC_THRESHOLD
from registry.targets import target_refusal

WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class Member:
    """An instance as routing sees it (a copy the edit may change)."""

    id: str
    address: str
    port: int
    zone: str
    weight: int
    state: str
    health: str

    @property
    def enabled(self) -> bool:
        # InstanceQuerySet.enabled(): what agents are given.
        return self.state == AdminState.ENABLED and self.weight > 0

    @property
    def routable(self) -> bool:
        return self.enabled and self.health in ROUTABLE_HEALTH


@dataclass
class Routing:
    balancer: str
    threshold: int
    locality: bool
    zone_priority: list[str]
    targets: list[str]
    active_target: str


@dataclass(frozen=True)
class Caller:
    source: str
    node: str
    zone: str
    rps: float


@dataclass
class Outcome:
    served_by: str
    panic: bool
    load: dict[str, float] = field(default_factory=dict)  # instance id -> rps
    members: list[Member] = field(default_factory=list)


class WhatIfError(ValueError):
    """An edit that names what does not exist or holds a bad value (a 400)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(str(errors))
        self.errors = errors


def _members(service: Service) -> list[Member]:
    return [
        Member(i.id, i.address, i.port, i.zone, i.weight, i.admin_state, i.health)
        for i in Instance.objects.filter(service=service).order_by("address", "port")
        if target_refusal(i.address) is None
    ]


def _routing(service: Service) -> Routing:
    policy = TrafficPolicy.objects.filter(service=service).first()
    state = FailoverState.objects.filter(service=service).first()
    return Routing(
        balancer=policy.load_balancer if policy else DEFAULT_BALANCER,
        threshold=policy.panic_threshold_percent if policy else DEFAULT_PANIC_THRESHOLD,
        locality=policy.locality_enabled if policy else LOCALITY_ENABLED,
        zone_priority=list(policy.zone_priority or []) if policy else [],
        targets=list(policy.failover_targets or []) if policy else [],
        active_target=state.active_target if state else "",
    )


def callers(name: str, *, now: Any = None) -> list[Caller]:
    """Who called NAME over the last minute: rps per (source, calling node)."""
    since = (now or timezone.now()) - WINDOW
    rows = (
        EdgeWindow.objects.filter(destination=name, window_end__gt=since)
        .values("source", "node")
        .annotate(requests=Sum("requests"), seconds=Sum("seconds"))
    )
    nodes = {r["node"] for r in rows}
    zones = dict(Node.objects.filter(name__in=nodes).values_list("name", "zone"))
    return sorted(
        (
            Caller(r["source"], r["node"], zones.get(r["node"], ""),
                   float(r["requests"]) / max(float(r["seconds"] or 0), 1.0))
            for r in rows
            if r["requests"]
        ),
        key=lambda c: (c.source, c.node),
    )


def _load(
    members: list[Member], routing: Routing, by: list[Caller]
) -> tuple[bool, dict[str, float]]:
    """(panic, rps per instance id): each caller's traffic through the agent's plan."""
    enabled = [m for m in members if m.enabled]
    endpoints = [
        Endpoint(m.id, m.address, m.port, weight=m.weight, zone=m.zone, status=m.health,
                 priority=endpoint_priority(m.zone, routing.zone_priority))
        for m in enabled
    ]
    load: dict[str, float] = defaultdict(float)
    weighted = BALANCERS[routing.balancer].weighted if routing.balancer in BALANCERS else True
    panic = False
    for caller in by:
        route = plan(endpoints, zone=caller.zone, panic_threshold_percent=routing.threshold,
                     locality=routing.locality)
        panic = panic or route.panic
        for share, group in route.shares():
            weights = sum(e.weight if weighted else 1 for e in group)
            for e in group:
                if weights:
                    load[e.id] += caller.rps * share * (e.weight if weighted else 1) / weights
    if not by and endpoints:  # no traffic: still say whether the plan panics
        panic = plan(endpoints, zone="", panic_threshold_percent=routing.threshold,
                     locality=False).panic
    return panic, dict(load)


def _outcome(service: Service, members: list[Member], routing: Routing, by: list[Caller],
             *, failover_to: str) -> Outcome:
    if failover_to:
        target = Service.objects.filter(name=failover_to).first()
        if target is not None:
            target_members = _members(target)
            panic, load = _load(target_members, routing, by)
            return Outcome(failover_to, panic, load, target_members)
    panic, load = _load(members, routing, by)
    return Outcome(service.name, panic, load, members)


def _healthy_services(names: list[str]) -> set[str]:
    return set(
        Instance.objects.routable().filter(service__name__in=names)
        .values_list("service__name", flat=True)
    )


def _failover_after(service: Service, members: list[Member], routing: Routing) -> str:
    """The failover engine's next step, without its hold-down: no routable
    instance → the first target with one; healthy again → back to itself (once
    the hold-down has passed; the answer says so)."""
    if any(m.routable for m in members) or not routing.targets:
        return ""
    healthy = _healthy_services(routing.targets)
    return next((t for t in routing.targets if t in healthy), "")


POLICY_FIELDS = {"panic_threshold_percent", "locality", "zone_priority"}


def _apply(
    members: list[Member], routing: Routing, edit: dict[str, Any]
) -> tuple[list[Member], Routing]:
    errors: dict[str, Any] = {}
    after = _apply_instances(members, edit.get("instances", {}), errors)
    new = _apply_routing(routing, edit.get("policy", {}), edit.get("failover", {}), errors)
    if errors:
        raise WhatIfError(errors)
    return after, new


def _apply_instances(members: list[Member], changes: Any, errors: dict[str, Any]) -> list[Member]:
    if not isinstance(changes, dict):
        errors["instances"] = "an object of instance id -> changes"
        return members
    by_id = {m.id: m for m in members}
    after = dict(by_id)
    for instance_id, change in changes.items():
        if instance_id not in by_id:
            errors[f"instances.{instance_id}"] = "no such instance of this service"
            continue
        if not isinstance(change, dict) or set(change) - {"weight", "state"}:
            errors[f"instances.{instance_id}"] = "only weight and state can be tried"
            continue
        member = by_id[instance_id]
        if "weight" in change:
            weight = change["weight"]
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 10_000:
                errors[f"instances.{instance_id}.weight"] = "an integer from 0 to 10000"
                continue
            member = replace(member, weight=weight)
        if "state" in change:
            if change["state"] not in AdminState.values:
                errors[f"instances.{instance_id}.state"] = f"one of {', '.join(AdminState.values)}"
                continue
            member = replace(member, state=change["state"])
        after[instance_id] = member
    return [after[m.id] for m in members]


def _apply_routing(routing: Routing, policy: Any, failover: Any, errors: dict[str, Any]) -> Routing:
    if not isinstance(policy, dict) or set(policy) - POLICY_FIELDS:
        errors["policy"] = "only panic_threshold_percent, locality and zone_priority can be tried"
        policy = {}
    if not isinstance(failover, dict) or set(failover) - {"targets"}:
        errors["failover"] = "only targets can be tried"
        failover = {}
    new = replace(routing)
    if "panic_threshold_percent" in policy:
        value = policy["panic_threshold_percent"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            errors["policy.panic_threshold_percent"] = "an integer from 0 to 100"
        else:
            new.threshold = value
    if "locality" in policy:
        if not isinstance(policy["locality"], bool):
            errors["policy.locality"] = "true or false"
        else:
            new.locality = policy["locality"]
    if "zone_priority" in policy:
        zones = policy["zone_priority"]
        if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
            errors["policy.zone_priority"] = "a list of zone names"
        else:
            new.zone_priority = list(zones)
    if "targets" in failover:
        targets = failover["targets"]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            errors["failover.targets"] = "a list of service names"
        else:
            missing = sorted(set(targets) - set(
                Service.objects.filter(name__in=targets).values_list("name", flat=True)))
            if missing:
                errors["failover.targets"] = f"no such service: {', '.join(missing)}"
            else:
                new.targets = list(targets)
    return new


def _side(outcome: Outcome) -> dict[str, Any]:
    return {
        "served_by": outcome.served_by,
        "panic": outcome.panic,
        "rps": round(sum(outcome.load.values()), 3),
        "instances": [
            {
                "id": m.id, "address": m.address, "port": m.port, "zone": m.zone,
                "weight": m.weight, "state": m.state, "health": m.health,
                "routable": m.routable, "rps": round(outcome.load.get(m.id, 0.0), 3),
            }
            for m in outcome.members
        ],
    }


@dataclass(frozen=True)
class State:
    """What routing of one service rests on: its instances and its policy."""

    members: list[Member]
    routing: Routing


def state_of(service: Service) -> State:
    return State(_members(service), _routing(service))


def what_if(service: Service, edit: dict[str, Any]) -> dict[str, Any]:
    """The prediction for EDIT on SERVICE (raises WhatIfError for a bad edit)."""
    now = state_of(service)
    new_members, new_routing = _apply(now.members, now.routing, edit)
    return compare(service, now, State(new_members, new_routing))


def compare(service: Service, now: State, then: State) -> dict[str, Any]:
    """The load per instance in state NOW and in state THEN (the same instances,
    changed), from the last minute's traffic, with the warnings between them."""
    members, routing = now.members, now.routing
    new_members, new_routing = then.members, then.routing
    by = callers(service.name)
    before = _outcome(service, members, routing, by, failover_to=routing.active_target)
    target_after = _failover_after(service, new_members, new_routing)
    hold_down = bool(routing.active_target and not target_after)
    if hold_down:
        target_after = routing.active_target  # failback waits out the hold-down
    after = _outcome(service, new_members, new_routing, by, failover_to=target_after)
    changed = {
        m.id for m in members
        if abs(before.load.get(m.id, 0.0) - after.load.get(m.id, 0.0)) > 1e-9
    } | ({"served_by"} if before.served_by != after.served_by else set())
    warnings = []
    total_rps = sum(c.rps for c in by)
    if by and not after.load:
        warnings.append(
            f"no instance would get traffic: {', '.join(sorted({c.source for c in by}))} "
            f"would get 503s"
        )
    if after.panic and not before.panic:
        warnings.append(
            f"{after.served_by} would enter panic mode (fewer than {new_routing.threshold}% "
            f"healthy): traffic would go to every enabled instance, unhealthy ones included"
        )
    if after.served_by != before.served_by:
        warnings.append(
            f"traffic would fail over from {before.served_by} to {after.served_by}"
            if after.served_by != service.name
            else f"traffic would fail back to {service.name}"
        )
    if hold_down:
        warnings.append(
            f"{service.name} would be healthy again; traffic stays on {routing.active_target} "
            f"until the failback hold-down passes"
        )
    then_weights = {m.id: m.weight for m in new_members}
    weights_changed = any(then_weights.get(m.id, m.weight) not in (m.weight, 0) for m in members)
    if weights_changed and not BALANCERS[new_routing.balancer].weighted:
        warnings.append(
            f"{service.name} balances with {new_routing.balancer}, which ignores weights: "
            f"only weight 0 changes its traffic (weighted_round_robin, least_request, "
            f"peak_ewma, ring_hash and maglev follow them)"
        )
    busiest = max(after.load.values(), default=0.0)
    if total_rps and busiest > 0:
        before_busiest = max(before.load.values(), default=0.0)
        if before_busiest and busiest > 1.5 * before_busiest:
            warnings.append(
                f"the busiest instance would take {busiest:.1f} rps "
                f"({busiest / before_busiest:.1f}× today's busiest)"
            )
    return {
        "service": service.name,
        "window_seconds": int(WINDOW.total_seconds()),
        "callers": [
            {"source": c.source, "node": c.node, "zone": c.zone, "rps": round(c.rps, 3)}
            for c in by
        ],
        "panic_threshold_percent": new_routing.threshold,
        "before": _side(before),
        "after": _side(after),
        "affected_callers": sorted({c.source for c in by}) if changed else [],
        "warnings": warnings,
    }
