"""TTL checks: the instance (or its agent) reports its own status, and an
instance whose heartbeat is overdue turns critical."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q

from journal.records import check_result_record
from registry.models import AdminState, CheckType, Health, HealthCause, Instance, Service
from registry.pacing import heartbeat_ttl_s
from registry.services import instance_transition

TTL_STATUSES = (Health.PASSING, Health.WARNING, Health.CRITICAL)


def ttl_heartbeat_record(
    *, instance: Instance, status: str, output: str, actor: str, now: datetime
) -> bool:
    """Take one heartbeat of a TTL-checked instance: the reported status is its
    health at once (no rise/fall: the instance knows best). Returns whether its
    health changed."""
    output = output[:400]
    with transaction.atomic():
        ok = status != Health.CRITICAL
        previous = (
            Instance.objects.filter(pk=instance.pk)
            .values_list("last_check_output", "consecutive_ok", "consecutive_fail")
            .first()
        )
        if previous is None:
            return False
        counters = (
            {"consecutive_ok": F("consecutive_ok") + 1, "consecutive_fail": 0}
            if ok
            else {"consecutive_ok": 0, "consecutive_fail": F("consecutive_fail") + 1}
        )
        Instance.objects.filter(pk=instance.pk).update(
            last_heartbeat=now, last_check_at=now, last_check_output=output, **counters
        )
        _, was_ok, was_fail = previous
        if ok != (was_ok > 0) or not (was_ok or was_fail):
            check_result_record(
                ts=now,
                service=instance.service.name,
                instance=instance.pk,
                check_type=CheckType.TTL,
                ok=ok,
                output=f"{status}: {output}" if output else str(status),
            )
        current = Instance.objects.values_list("health", flat=True).get(pk=instance.pk)
        if current == status:
            return False
        reason = f"TTL heartbeat {status}" + (f": {output}" if output else "")
        return instance_transition(
            instance_id=instance.pk,
            expected=current,
            health=status,
            cause=HealthCause.HEARTBEAT,
            reason=reason,
            actor=actor,
            now=now,
        )


def ttl_for(service: Service, *, agent_managed: bool) -> timedelta:
    """How long a TTL-checked instance stays as reported without a heartbeat: the
    check interval; an agent's instances are heartbeated with the agent's reports,
    so they get at least the agent heartbeat TTL (registry.pacing: it grows with the
    fleet's report interval)."""
    ttl_ms = service.check_interval_ms
    if agent_managed:
        ttl_ms = max(ttl_ms, heartbeat_ttl_s() * 1000)
    return timedelta(milliseconds=ttl_ms)


def ttl_expire(*, now: datetime) -> list[str]:
    """Turn critical the TTL-checked instances whose heartbeat is overdue."""
    expired: list[str] = []
    for service in Service.objects.filter(check_type=CheckType.TTL):
        for agent_managed in (False, True):
            ttl = ttl_for(service, agent_managed=agent_managed)
            overdue = (
                Instance.objects.filter(service=service, agent_managed=agent_managed)
                .exclude(admin_state=AdminState.DISABLED)
                .exclude(health=Health.CRITICAL)
                .filter(Q(last_heartbeat__isnull=True) | Q(last_heartbeat__lt=now - ttl))
                .values_list("pk", "health")
            )
            for pk, health in overdue:
                seconds = ttl.total_seconds()
                if instance_transition(
                    instance_id=pk,
                    expected=health,
                    health=Health.CRITICAL,
                    cause=HealthCause.HEARTBEAT,
                    reason=f"TTL expired: no heartbeat for {seconds:g}s",
                    actor="system",
                    now=now,
                ):
                    expired.append(pk)
    return expired
