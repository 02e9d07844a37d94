"""Operators' control of instances: maintenance, drain, enable/disable, weight,
one at a time or in bulk by selector. Each call is one transaction with one
revision bump; every changed instance gets an audit entry and an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from journal.models import EventKind
from journal.records import AuditNote, EventNote, actor_name
from registry.models import AdminState, Instance, Service
from registry.panic import service_panic_refresh
from registry.revision import mesh_change
from registry.services import User, instance_label, instance_state

ACTIONS = ("maintenance", "drain", "enable", "disable", "weight")
# The admin state each action leads to, from the states it applies to.
TARGET = {
    "maintenance": AdminState.MAINTENANCE,
    "drain": AdminState.DRAINING,
    "enable": AdminState.ENABLED,
    "disable": AdminState.DISABLED,
}


@dataclass(frozen=True)
class Selector:
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.tags and not self.metadata

    def matches(self, instance: Instance) -> bool:
        tags = set(instance.tags or [])
        meta = instance.metadata or {}
        return all(t in tags for t in self.tags) and all(
            str(meta.get(k)) == v and k in meta for k, v in self.metadata.items()
        )


def _apply(instance: Instance, action: str, weight: int | None, actor: str, now: datetime) -> bool:
    """Change INSTANCE in memory for ACTION; returns whether anything changed."""
    if action == "weight":
        if weight is None or weight == instance.weight:
            return False
        instance.weight = weight
        return True
    return instance.admin_transition(TARGET[action], actor=actor, now=now)


def _message(instance: Instance, before: dict[str, Any], after: dict[str, Any], actor: str) -> str:
    name = instance_label(instance)
    if before["status"] != after["status"]:
        return f"{name}: {before['status']} -> {after['status']} (by {actor})"
    return f"{name}: weight {before['weight']} -> {after['weight']} (by {actor})"


@transaction.atomic
def instances_control(
    *,
    user: User,
    service: Service,
    action: str,
    ids: list[str] | None = None,
    selector: Selector | None = None,
    weight: int | None = None,
) -> list[str]:
    """Apply ACTION to the instances of SERVICE with IDS, or matching SELECTOR
    (an empty selector matches all); returns the ids that changed."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    now = timezone.now()
    actor = actor_name(user)
    rows = Instance.objects.select_for_update(of=("self",)).select_related("service", "node")
    rows = rows.filter(service=service).order_by("pk")
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    changes: list[tuple[Instance, dict[str, Any]]] = []
    for instance in rows:
        if selector is not None and not selector.matches(instance):
            continue
        before = instance_state(instance)
        if _apply(instance, action, weight, actor, now):
            instance.save()
            changes.append((instance, before))
    if not changes:
        return []
    events, audit = [], []
    for instance, before in changes:
        after = instance_state(instance)
        audit.append(AuditNote(user, action, "instance", instance.id, before, after))
        events.append(
            EventNote(
                kind=EventKind.CONFIG,
                message=_message(instance, before, after, actor),
                service=service.name,
                instance=instance.id,
                actor=actor,
                data={"action": action, "before": before, "after": after},
            )
        )
    revision = mesh_change(services={service.name}, events=events, audit=audit)
    service_panic_refresh(service=service, actor=actor, revision=revision)
    return [instance.id for instance, _ in changes]


def drains_finish(*, now: datetime | None = None) -> list[str]:
    """Move instances drained for longer than their service's drain timeout to
    maintenance; returns their ids. Safe with concurrent workers: each move is a
    conditional UPDATE on the draining state and the drain start it read."""
    now = now or timezone.now()
    draining = Instance.objects.filter(
        admin_state=AdminState.DRAINING, drain_started_at__isnull=False
    ).select_related("service")
    finished: list[str] = []
    for instance in draining:
        started = instance.drain_started_at
        assert started is not None
        if started + timedelta(milliseconds=instance.service.drain_timeout_ms) > now:
            continue
        with transaction.atomic():
            moved = Instance.objects.filter(
                pk=instance.pk, admin_state=AdminState.DRAINING, drain_started_at=started
            ).update(
                admin_state=AdminState.MAINTENANCE,
                drain_started_at=None,
                status_since=now,
                updated_at=now,
            )
            if not moved:
                continue
            waited = round((now - started).total_seconds(), 1)
            mesh_change(
                services={instance.service.name},
                events=[
                    EventNote(
                        kind=EventKind.CONFIG,
                        message=(
                            f"{instance_label(instance)}: "
                            f"draining -> maintenance (drain timeout, after {waited}s)"
                        ),
                        service=instance.service.name,
                        instance=instance.id,
                        actor="system",
                        data={"action": "drain-finished", "drained_for_s": waited},
                    )
                ],
            )
        finished.append(instance.id)
    return finished
