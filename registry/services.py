"""Workflows on the registry: each one writes its rows, then records the change
with `registry.revision.mesh_change` (revision, events, audit, after-commit
fan-out) inside one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from journal.models import EventKind, Severity
from journal.records import Actor, AuditNote, EventNote, actor_name
from registry.models import (
    SECURITY_KEY,
    AdminState,
    Health,
    HealthCause,
    Instance,
    JSONListContains,
    Node,
    Service,
    initial_health,
)
from registry.panic import panic_event_record, panic_flip, service_panic_refresh
from registry.revision import mesh_change
from registry.targets import target_refusal

User = Actor

SERVICE_FIELDS = (
    "protocol",
    "mtls_mode",
    "description",
    "tags",
    "check_type",
    "check_path",
    "check_interval_ms",
    "check_timeout_ms",
    "check_rise",
    "check_fall",
    "check_expect_status",
    "check_body",
    "check_headers",
    "drain_timeout_ms",
)
INSTANCE_FIELDS = ("zone", "weight", "tags", "metadata")


def service_state(service: Service) -> dict[str, Any]:
    state: dict[str, Any] = {"name": service.name}
    state.update({field: getattr(service, field) for field in SERVICE_FIELDS})
    return state


def instance_state(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "service": instance.service.name,
        "address": instance.address,
        "port": instance.port,
        "zone": instance.zone,
        "weight": instance.weight,
        "tags": instance.tags,
        "metadata": instance.metadata,
        "node": instance.node.name if instance.node else None,
        "status": instance.status,
    }


def push_empty_note(service: str, *, lost: int) -> list[EventNote]:
    """The warning of a change that leaves SERVICE with no instance at all by
    deregistration or deletion: agents hold its last LOST endpoints for a while
    (push-empty protection, agents.runtime.admission) rather than answer 503."""
    hold = settings.MESH_PUSH_EMPTY_HOLD
    if not lost or hold <= 0:
        return []
    return [
        EventNote(
            kind=EventKind.REGISTRY,
            severity=Severity.WARNING,
            message=(
                f"push-empty protection: {service} lost its last {lost} endpoint(s) by "
                f"deregistration; agents keep serving them for {hold}s"
            ),
            service=service,
            actor="system",
            data={"push_empty": True, "lost": lost, "hold_s": hold},
        )
    ]


def instance_label(instance: Instance) -> str:
    return f"instance {instance.address}:{instance.port} of {instance.service.name}"


@transaction.atomic
def service_create(*, user: User, data: dict[str, Any]) -> Service:
    service = Service(name=data["name"])
    for field in SERVICE_FIELDS:
        if field in data:
            setattr(service, field, data[field])
    service.full_clean()
    service.save()
    mesh_change(
        services={service.name},
        keys=[SECURITY_KEY] if service.mtls_mode else [],  # its agents' inbound mode
        events=[
            EventNote(
                kind=EventKind.REGISTRY,
                message=f"service {service.name} registered",
                service=service.name,
                actor=actor_name(user),
            )
        ],
        audit=[AuditNote(user, "create", "service", service.name, None, service_state(service))],
    )
    return service


@transaction.atomic
def service_update(*, user: User, service: Service, data: dict[str, Any]) -> Service:
    service = Service.objects.select_for_update().get(pk=service.pk)
    before = service_state(service)
    for field in SERVICE_FIELDS:
        if field in data:
            setattr(service, field, data[field])
    after = service_state(service)
    if after == before:
        return service
    service.full_clean()
    service.save()
    if before["check_type"] != after["check_type"]:
        # A new kind of check starts over: no verdict carries across kinds.
        health, cause, reason = initial_health(service)
        service.instances.update(
            health=health,
            health_cause=cause,
            status_reason=reason,
            status_since=timezone.now(),
            consecutive_ok=0,
            consecutive_fail=0,
            next_check_at=timezone.now(),
        )
    changed = sorted(k for k in after if after[k] != before[k])
    revision = mesh_change(
        services={service.name},
        # The service's own agents read their inbound mode from the security section.
        keys=[SECURITY_KEY] if "mtls_mode" in changed else [],
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=f"service {service.name} changed: {', '.join(changed)}",
                service=service.name,
                actor=actor_name(user),
                data={"before": before, "after": after},
            )
        ],
        audit=[AuditNote(user, "update", "service", service.name, before, after)],
    )
    if before["check_type"] != after["check_type"]:
        service_panic_refresh(service=service, actor=actor_name(user), revision=revision)
    return service


class ServiceInUse(Exception):
    """A service other services fail over to cannot be deleted (they would
    fail over to nothing)."""

    def __init__(self, name: str, referrers: list[str], kind: str = "failover") -> None:
        one = len(referrers) == 1
        if kind == "route":
            text = (
                f"the routes of {', '.join(referrers)} split traffic to {name}: "
                f"remove {name} from {'its' if one else 'their'} splits first"
            )
        elif kind == "gateway":
            text = (
                f"gateway route{'' if one else 's'} {', '.join(referrers)} "
                f"send{'s' if one else ''} traffic to {name}: change or remove "
                f"{'it' if one else 'them'} first"
            )
        else:
            text = (
                f"{', '.join(referrers)} fail{'s' if one else ''} over to {name}: "
                f"remove {name} from {'its' if one else 'their'} failover targets first"
            )
        super().__init__(text)
        self.referrers = referrers
        self.kind = kind  # failover | route | gateway


# Apps above the registry that name services (the gateway's routes) register a
# function NAME -> who names it here at startup (gateway.apps); the registry
# imports none of them.
referrer_hooks: dict[str, Callable[[str], list[str]]] = {}


def failover_referrers(name: str) -> list[str]:
    """Services whose failover targets name NAME (read through the policy
    relation: the registry does not import policies)."""
    return sorted(
        Service.objects.exclude(name=name)
        .filter(JSONListContains(F("policy__failover_targets"), name))
        .values_list("name", flat=True)
    )


def route_referrers(name: str) -> list[str]:
    """Services whose routes split traffic to NAME (read through the routes
    relation, policies.models.ServiceRoutes: the registry does not import policies)."""
    rows = (
        Service.objects.exclude(name=name)
        .filter(routes__isnull=False)
        .values_list("name", "routes__document")
    )
    return sorted(
        str(service)
        for service, document in rows
        if any(
            target.get("service") == name
            for route in (document or {}).get("routes", [])
            for target in route.get("split", [])
        )
    )


@transaction.atomic
def service_delete(*, user: User, service: Service, check_referrers: bool = True) -> None:
    """Delete SERVICE; refused (ServiceInUse) while another service fails over
    to it or its routes split traffic to it, unless the caller checked that
    itself (mesh-as-code prunes the referrers in the same apply)."""
    if check_referrers and (referrers := failover_referrers(service.name)):
        raise ServiceInUse(service.name, referrers)
    if check_referrers and (splitters := route_referrers(service.name)):
        raise ServiceInUse(service.name, splitters, kind="route")
    for kind, referrers_of in referrer_hooks.items() if check_referrers else ():
        if referrers := referrers_of(service.name):
            raise ServiceInUse(service.name, referrers, kind=kind)
    before = service_state(service)
    name = service.name
    lost = Instance.objects.filter(service=service).enabled().count()
    service.delete()
    mesh_change(
        services={name},
        keys=[SECURITY_KEY] if before["mtls_mode"] else [],  # its agents' inbound mode
        events=[
            EventNote(
                kind=EventKind.REGISTRY,
                message=f"service {name} deregistered",
                service=name,
                actor=actor_name(user),
            ),
            *push_empty_note(name, lost=lost),
        ],
        audit=[AuditNote(user, "delete", "service", name, before, None)],
    )


def node_ensure(name: str, zone: str = "") -> Node:
    node, created = Node.objects.get_or_create(name=name, defaults={"zone": zone})
    if not created and zone and node.zone != zone:
        node.zone = zone
        node.save(update_fields=["zone"])
    return node


@transaction.atomic
def instance_register(
    *,
    user: User,
    service: Service,
    data: dict[str, Any],
    actor: str | None = None,
    agent_managed: bool = False,
) -> Instance:
    node_name = data.get("node") or ""
    node = node_ensure(node_name, data.get("zone", "")) if node_name else None
    health, cause, reason = initial_health(service)
    if refusal := target_refusal(data["address"]):  # agents never route to it (snapshot)
        reason = f"refused address: {refusal}; never routed to"
    instance = Instance(
        service=service,
        address=data["address"],
        port=data["port"],
        node=node,
        agent_managed=agent_managed,
        health=health,
        health_cause=cause,
        status_reason=reason,
        next_check_at=timezone.now(),
    )
    for field in INSTANCE_FIELDS:
        if field in data:
            setattr(instance, field, data[field])
    if data.get("maintenance"):
        instance.admin_state = AdminState.MAINTENANCE
    instance.full_clean(validate_unique=False)
    instance.save(force_insert=True)
    who = actor or actor_name(user)
    revision = mesh_change(
        services={service.name},
        events=[
            EventNote(
                kind=EventKind.REGISTRY,
                message=f"{instance_label(instance)} registered",
                service=service.name,
                instance=instance.id,
                actor=who,
            )
        ],
        audit=[AuditNote(user, "create", "instance", instance.id, None, instance_state(instance))],
    )
    service_panic_refresh(service=service, actor=who, revision=revision)
    return instance


@transaction.atomic
def instance_update(*, user: User, instance: Instance, data: dict[str, Any]) -> Instance:
    instance = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("service", "node")
        .get(pk=instance.pk)
    )
    before = instance_state(instance)
    for field in INSTANCE_FIELDS:
        if field in data:
            setattr(instance, field, data[field])
    who = actor_name(user)
    if "maintenance" in data:
        target = AdminState.MAINTENANCE if data["maintenance"] else AdminState.ENABLED
        instance.admin_transition(target, actor=who, now=timezone.now())
    after = instance_state(instance)
    if after == before:
        return instance
    instance.full_clean(validate_unique=False)
    instance.save()
    changed = sorted(k for k in after if after[k] != before[k])
    if before["status"] != after["status"]:
        message = f"{instance_label(instance)}: {before['status']} -> {after['status']} (by {who})"
    else:
        message = f"{instance_label(instance)} changed: {', '.join(changed)}"
    revision = mesh_change(
        services={instance.service.name},
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=message,
                service=instance.service.name,
                instance=instance.id,
                actor=who,
                data={"before": before, "after": after},
            )
        ],
        audit=[AuditNote(user, "update", "instance", instance.id, before, after)],
    )
    service_panic_refresh(service=instance.service, actor=who, revision=revision)
    return instance


@transaction.atomic
def instance_deregister(*, user: User, instance: Instance, actor: str | None = None) -> None:
    before = instance_state(instance)
    service_name = instance.service.name
    instance_id = instance.id
    service = instance.service
    was_enabled = Instance.objects.filter(pk=instance_id).enabled().exists()
    instance.delete()
    who = actor or actor_name(user)
    left = Instance.objects.filter(service=service)
    lost = left.count() == 0 and was_enabled
    revision = mesh_change(
        services={service_name},
        events=[
            EventNote(
                kind=EventKind.REGISTRY,
                message=(
                    f"instance {before['address']}:{before['port']} of {service_name} deregistered"
                ),
                service=service_name,
                instance=instance_id,
                actor=who,
            ),
            *push_empty_note(service_name, lost=1 if lost else 0),
        ],
        audit=[AuditNote(user, "delete", "instance", instance_id, before, None)],
    )
    service_panic_refresh(service=service, actor=who, revision=revision)


def instance_transition(
    *,
    instance_id: str,
    expected: str,
    health: str,
    cause: HealthCause,
    reason: str,
    actor: str,
    now: datetime | None = None,
    panic_refresh: bool = True,
) -> bool:
    """Move an instance's health from EXPECTED to HEALTH, once.

    The conditional UPDATE makes concurrent workers safe: only the one that sees
    the expected state records the transition and bumps the revision. A caller
    moving many instances passes panic_refresh=False and calls
    service_panic_settle once per service afterwards (the refresh counts the
    whole service, so per transition it is quadratic).
    """
    now = now or timezone.now()
    with transaction.atomic():
        moved = Instance.objects.filter(pk=instance_id, health=expected).update(
            health=health,
            health_cause=cause,
            status_reason=reason[:500],
            status_since=now,
            updated_at=now,
        )
        if not moved:
            return False
        instance = Instance.objects.select_related("service").get(pk=instance_id)
        severity = {
            Health.PASSING: Severity.INFO,
            Health.WARNING: Severity.WARNING,
            Health.CRITICAL: Severity.CRITICAL,
        }[Health(health)]
        revision = mesh_change(
            services={instance.service.name},
            events=[
                EventNote(
                    kind=EventKind.HEALTH,
                    severity=severity,
                    message=f"{instance_label(instance)}: {expected} -> {health} ({reason})",
                    service=instance.service.name,
                    instance=instance.id,
                    actor=actor,
                    data={"from": expected, "to": health, "reason": reason, "cause": cause},
                )
            ],
        )
        if panic_refresh:
            service_panic_refresh(service=instance.service, actor=actor, revision=revision)
    return True


def service_panic_settle(*, service: Service, actor: str) -> bool:
    """Bring the service's panic state up to date after transitions recorded with
    panic_refresh=False; a change is its own revision (consoles show the flag, so
    a waiter must not read a revision with a stale one). Returns whether it changed."""
    with transaction.atomic():
        state = panic_flip(service)
        if state is None:
            return False
        revision = mesh_change(services={service.name})
        panic_event_record(service=service, state=state, actor=actor, revision=revision)
    return True
