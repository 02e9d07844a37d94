"""Agents that stop reporting: their instances turn critical, unless so many went
quiet at once that the control plane's network is the likelier cause."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from agents.models import Agent
from journal.models import EventKind, Severity
from journal.records import event_record
from registry import services as registry_services
from registry.models import Health, HealthCause, Instance
from registry.pacing import heartbeat_ttl_s

SELF_PRESERVATION_KEY = "agents:self-preservation"


def _self_preservation(*, silent: int, total: int) -> bool:
    """Whether too many agents went quiet at once to believe them (Eureka's
    self-preservation): that is more likely the control plane's network than
    the hosts. The flag lives in the shared cache; cache.add/delete are atomic,
    so the warning and the release are each recorded once across workers."""
    threshold = settings.MESH_SELF_PRESERVATION_PERCENT
    tripped = threshold < 100 and total >= 3 and silent * 100 > threshold * total
    if tripped:
        if cache.add(SELF_PRESERVATION_KEY, f"{silent}/{total}", timeout=None):
            event_record(
                kind=EventKind.AGENT,
                severity=Severity.WARNING,
                message=(
                    f"self-preservation: {silent} of {total} agents silent at once; "
                    "not marking their instances critical"
                ),
                actor="system",
                data={"silent": silent, "total": total, "threshold_percent": threshold},
            )
        return True
    if cache.delete(SELF_PRESERVATION_KEY):
        event_record(
            kind=EventKind.AGENT,
            message=(
                f"self-preservation released: {silent} of {total} agents silent; "
                "resuming normal expiry"
            ),
            actor="system",
            data={"silent": silent, "total": total, "threshold_percent": threshold},
        )
    return False


def agents_expire(*, now: datetime | None = None) -> list[str]:
    """Mark agents silent past the TTL and their instances critical, unless more
    than MESH_SELF_PRESERVATION_PERCENT of the reporting agents (with at least 3)
    went silent within the same TTL window: then nothing is marked until enough
    of them are back."""
    now = now or timezone.now()
    ttl = heartbeat_ttl_s()
    cutoff = now - timedelta(seconds=ttl)
    # Agents already marked silent went quiet in an earlier window: they are
    # not part of the population that may go quiet "at once".
    reporting = Agent.objects.filter(silent=False)
    stale = list(reporting.select_related("node").filter(last_seen__lt=cutoff))
    if _self_preservation(silent=len(stale), total=reporting.count()):
        return []
    expired: list[str] = []
    for agent in stale:
        # Conditional claim: only one worker handles a given expiry.
        if not Agent.objects.filter(pk=agent.pk, silent=False).update(silent=True):
            continue
        expired.append(agent.node.name)
        event_record(
            kind=EventKind.AGENT,
            severity=Severity.WARNING,
            message=f"agent {agent.node.name} silent for more than {ttl}s",
            actor="system",
        )
        reason = f"agent {agent.node.name} silent for {ttl}s"
        for instance in Instance.objects.filter(node=agent.node, agent_managed=True).exclude(
            health=Health.CRITICAL
        ):
            registry_services.instance_transition(
                instance_id=instance.id,
                expected=instance.health,
                health=Health.CRITICAL,
                cause=HealthCause.AGENT,
                reason=reason,
                actor="system",
                now=now,
            )
    return expired
