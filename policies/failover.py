"""The failover engine (docs/policies.md, "Failover").

A service with `failover_targets` and no healthy instance sends its traffic to
the first target that has one; once the service has been healthy continuously
for `failback_hold_down_ms`, the target is cleared. Every change is claimed with
a conditional UPDATE on FailoverState, so concurrent evaluations act once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from journal.models import EventKind, Severity
from journal.records import EventNote
from policies.models import FailoverState, TrafficPolicy
from registry.models import Instance
from registry.revision import mesh_change


def healthy_services(names: Iterable[str] | None = None) -> set[str]:
    """Names of services with at least one instance agents may route to."""
    instances = Instance.objects.routable()
    if names is not None:
        instances = instances.filter(service__name__in=list(names))
    return set(instances.values_list("service__name", flat=True).distinct())


def _first_healthy(targets: list[str], healthy: set[str]) -> str:
    return next((t for t in targets if t in healthy), "")


def _announce(*, service: str, message: str, severity: str, data: dict[str, str]) -> None:
    mesh_change(
        services={service},
        events=[
            EventNote(
                kind=EventKind.FAILOVER,
                severity=severity,
                message=message,
                service=service,
                actor="system",
                data=dict(data),
            )
        ],
    )


def _switch(state: FailoverState, *, target: str, now: datetime, reason: str) -> bool:
    """Point STATE's service at TARGET (or back at itself for ""), once."""
    with transaction.atomic():
        claimed = FailoverState.objects.filter(
            pk=state.pk, active_target=state.active_target, healthy_since=state.healthy_since
        ).update(
            active_target=target,
            activated_at=now if target else None,
            healthy_since=None,
            reason=reason[:500] if target else "",
        )
        if not claimed:
            return False
        name = state.service.name
        if target:
            _announce(
                service=name,
                message=f"failover: {name} -> {target} ({reason})",
                severity=Severity.CRITICAL,
                data={
                    "action": "failover",
                    "from": state.active_target,
                    "to": target,
                    "reason": reason,
                },
            )
        else:
            _announce(
                service=name,
                message=f"failback: {name} serves its own traffic again ({reason})",
                severity=Severity.INFO,
                data={"action": "failback", "from": state.active_target, "reason": reason},
            )
    return True


def _mark_healthy_since(state: FailoverState, value: datetime | None) -> bool:
    """Start (or reset) the hold-down clock; agents see no change, so no revision."""
    claimed = FailoverState.objects.filter(
        pk=state.pk, active_target=state.active_target, healthy_since=state.healthy_since
    ).update(healthy_since=value)
    state.healthy_since = value
    return bool(claimed)


def _evaluate_one(
    state: FailoverState, policy: TrafficPolicy | None, healthy: set[str], now: datetime
) -> str | None:
    """One service's step; returns "failover"/"failback" when it acted."""
    name = state.service.name
    targets = list(policy.failover_targets or []) if policy else []
    active = state.active_target
    if not active:
        if name in healthy or not targets:
            return None
        target = _first_healthy(targets, healthy)
        if target and _switch(
            state, target=target, now=now, reason=f"{name} has no healthy instance"
        ):
            return "failover"
        return None
    if active not in targets:
        # The policy no longer names the active target: follow the policy at once.
        if name in healthy or not _first_healthy(targets, healthy):
            reason = "failover target removed from the policy"
            return "failback" if _switch(state, target="", now=now, reason=reason) else None
        target = _first_healthy(targets, healthy)
        reason = f"{active} is no longer a failover target"
        return "failover" if _switch(state, target=target, now=now, reason=reason) else None
    if name not in healthy:
        if state.healthy_since is not None:
            _mark_healthy_since(state, None)  # failed again inside the hold-down: start over
        better = _first_healthy(targets, healthy)
        if active not in healthy and better and better != active:
            reason = f"{active} has no healthy instance either"
            return "failover" if _switch(state, target=better, now=now, reason=reason) else None
        return None
    if state.healthy_since is None and not _mark_healthy_since(state, now):
        return None  # another evaluation moved this state first; it carries on
    hold_down = timedelta(milliseconds=policy.failback_hold_down_ms if policy else 0)
    if state.healthy_since is not None and now - state.healthy_since >= hold_down:
        reason = f"healthy for {hold_down.total_seconds():g}s"
        return "failback" if _switch(state, target="", now=now, reason=reason) else None
    return None


def failover_evaluate(
    *, service_names: Iterable[str] | None = None, now: datetime | None = None
) -> dict[str, str]:
    """Evaluate failover for services with targets or an active target (or only
    SERVICE_NAMES); returns {service: "failover"|"failback"} for what changed."""
    now = now or timezone.now()
    policies = {
        p.service_id: p
        for p in TrafficPolicy.objects.select_related("service")
        if p.failover_targets
    }
    active_ids = set(
        FailoverState.objects.exclude(active_target="").values_list("service_id", flat=True)
    )
    ids = set(policies) | active_ids
    if not ids:
        return {}
    existing = set(
        FailoverState.objects.filter(service_id__in=ids).values_list("service_id", flat=True)
    )
    if ids - existing:
        FailoverState.objects.bulk_create(
            [FailoverState(service_id=i) for i in ids - existing], ignore_conflicts=True
        )
    states = FailoverState.objects.select_related("service").filter(service_id__in=ids)
    if service_names is not None:
        states = states.filter(service__name__in=set(service_names))
    healthy = healthy_services()
    acted: dict[str, str] = {}
    for state in states:
        outcome = _evaluate_one(state, policies.get(state.service_id), healthy, now)
        if outcome:
            acted[state.service.name] = outcome
    return acted
