"""Agent workflows: enroll, build the config snapshot, take a report."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent, EnrollmentToken, hash_token, new_secret
from agents.runtime.durations import format_duration_ms
from agents.snapshot import upstreams_snapshot
from meshconsole.db import read_transaction
from monitoring.models import EdgeWindow, EventKind, Severity
from monitoring.notify import mesh_changed
from monitoring.services import event_record
from registry import services as registry_services
from registry.models import (
    CheckType,
    Health,
    Instance,
    MeshRevision,
    Service,
)

REPORT_INTERVAL_MS = 2000


class EnrollmentRefused(Exception):
    pass


def enrollment_token_create(*, user: AbstractBaseUser | None = None, description: str = "") -> str:
    raw = "mesh-enroll-" + secrets.token_urlsafe(24)
    EnrollmentToken.objects.create(
        token_hash=hash_token(raw),
        prefix=raw[12:18],
        description=description,
        created_by=user if isinstance(user, User) else None,
    )
    return raw


@transaction.atomic
def agent_enroll(
    *, token: str, node: str, zone: str, version: str, upstreams: list[dict[str, Any]], address: str
) -> tuple[Agent, str]:
    updated = EnrollmentToken.objects.filter(token_hash=hash_token(token), revoked=False).update(
        uses=F("uses") + 1
    )
    if not updated:
        raise EnrollmentRefused("unknown or revoked enrollment token")
    node_obj = registry_services.node_ensure(node, zone)
    agent_token = new_secret()
    agent, created = Agent.objects.select_for_update().get_or_create(
        node=node_obj,
        defaults={"token_hash": hash_token(agent_token)},
    )
    agent.token_hash = hash_token(agent_token)
    agent.version = version
    agent.address = address
    agent.upstreams = upstreams
    agent.last_seen = timezone.now()
    agent.silent = False
    agent.save()
    revision = MeshRevision.bump()
    event_record(
        kind=EventKind.AGENT,
        message=f"agent {node} {'enrolled' if created else 're-enrolled'} (version {version})",
        actor=f"agent:{node}",
        revision=revision,
    )
    mesh_changed(revision=revision)
    return agent, agent_token


def agent_for_token(raw: str) -> Agent | None:
    return Agent.objects.select_related("node").filter(token_hash=hash_token(raw)).first()


def agent_snapshot(*, agent: Agent) -> dict[str, Any]:
    """The whole config an agent needs, as of one revision."""
    with read_transaction():  # one snapshot of the database, without SQLite's write lock
        revision = MeshRevision.current()
        names = sorted({str(u.get("service")) for u in agent.upstreams if u.get("service")})
        upstreams = upstreams_snapshot(names)
    return {
        "revision": revision,
        "agent_id": str(agent.id),
        "node": agent.node.name,
        "zone": agent.node.zone,
        "report_interval_ms": REPORT_INTERVAL_MS,
        "upstreams": upstreams,
    }


def _sync_service(agent: Agent, spec: dict[str, Any]) -> Instance:
    """Register (or refresh) one local service the agent runs."""
    check = spec.get("check") or {}
    service = Service.objects.filter(name=spec["name"]).first()
    if service is None:
        service = registry_services.service_create(
            user=None,
            data={"name": spec["name"], "protocol": spec.get("protocol", "http"), **check},
        )
    elif check and any(getattr(service, k) != v for k, v in check.items()):
        service = registry_services.service_update(user=None, service=service, data=check)
    instance = Instance.objects.filter(
        service=service, address=spec["address"], port=spec["port"]
    ).first()
    wanted = {
        "zone": agent.node.zone,
        "tags": spec.get("tags", []),
        "metadata": spec.get("metadata", {}),
    }
    if instance is None:
        instance = registry_services.instance_register(
            user=None,
            service=service,
            data={
                "address": spec["address"],
                "port": spec["port"],
                "node": agent.node.name,
                "weight": spec.get("weight", 100),
                **wanted,
            },
            actor=f"agent:{agent.node.name}",
            agent_managed=True,
        )
    elif (
        any(getattr(instance, k) != v for k, v in wanted.items())
        or instance.node_id != agent.node_id
    ):
        with transaction.atomic():
            for k, v in wanted.items():
                setattr(instance, k, v)
            instance.node = agent.node
            instance.agent_managed = True
            instance.save()
            mesh_changed(revision=MeshRevision.bump(), services={service.name})
    return instance


def _store_metrics(agent: Agent, windows: list[dict[str, Any]]) -> None:
    rows = []
    for w in windows:
        end = w["window_end"]
        if not isinstance(end, datetime):
            end = datetime.fromtimestamp(float(end), tz=UTC)
        rows.append(
            EdgeWindow(
                window_end=end,
                seconds=w["seconds"],
                node=agent.node.name,
                source=w["source"],
                destination=w["destination"],
                requests=w["requests"],
                errors=w["errors"],
                latency_sum_ms=w.get("latency_sum_ms", 0.0),
                buckets=list(w.get("buckets", [])),
            )
        )
    if rows:
        EdgeWindow.objects.bulk_create(rows)


def agent_report(*, agent: Agent, report: dict[str, Any]) -> dict[str, Any]:
    """Take an agent's report: heartbeat, registrations, ack/nack, metrics."""
    now = timezone.now()
    came_back = agent.silent
    fields = ["last_seen", "silent"]
    agent.last_seen = now
    agent.silent = False
    if "version" in report:
        agent.version = report["version"]
        fields.append("version")
    if report.get("applied_revision") is not None:
        agent.applied_revision = report["applied_revision"]
        fields.append("applied_revision")
    nack = report.get("nack")
    upstreams_changed = "upstreams" in report and report["upstreams"] != agent.upstreams
    with transaction.atomic():
        if nack and (
            nack.get("revision") != agent.nack_revision or nack.get("reason") != agent.nack_reason
        ):
            agent.nack_revision = nack.get("revision")
            agent.nack_reason = str(nack.get("reason", ""))[:1000]
            fields += ["nack_revision", "nack_reason"]
            event_record(
                kind=EventKind.AGENT,
                severity=Severity.WARNING,
                message=(
                    f"agent {agent.node.name} refused revision {nack.get('revision')}: "
                    f"{agent.nack_reason}"
                ),
                actor=f"agent:{agent.node.name}",
            )
        elif not nack and agent.nack_reason and report.get("applied_revision") is not None:
            agent.nack_reason = ""
            agent.nack_revision = None
            fields += ["nack_revision", "nack_reason"]
        if upstreams_changed:
            agent.upstreams = report["upstreams"]
            fields.append("upstreams")
        agent.save(update_fields=fields)
        if upstreams_changed:
            # Only this agent's snapshot changes, but the revision is global.
            mesh_changed(revision=MeshRevision.bump())
        if came_back:
            event_record(
                kind=EventKind.AGENT,
                message=f"agent {agent.node.name} is reporting again",
                actor=f"agent:{agent.node.name}",
            )

    instances: dict[str, str] = {}
    if "services" in report:
        seen: set[str] = set()
        for spec in report["services"]:
            instance = _sync_service(agent, spec)
            seen.add(instance.id)
            instances[spec["name"]] = instance.id
        stale = Instance.objects.filter(node=agent.node, agent_managed=True).exclude(pk__in=seen)
        for instance in stale.select_related("service"):
            registry_services.instance_deregister(
                user=None, instance=instance, actor=f"agent:{agent.node.name}"
            )
        Instance.objects.filter(pk__in=seen).update(last_heartbeat=now)
        _revive_heartbeat_instances(agent, seen)
    _store_metrics(agent, report.get("metrics", []))
    _record_ejections(agent, report.get("ejections", []))
    return {"revision": MeshRevision.current(), "instances": instances}


def _record_ejections(agent: Agent, ejections: list[dict[str, Any]]) -> None:
    """Each ejection (or return) the agent's outlier detection saw becomes an event."""
    node = agent.node.name
    for e in ejections:
        endpoint = f"{e['address']}:{e['port']}"
        if e["event"] == "ejected":
            message = (
                f"agent {node} ejected {endpoint} of {e['service']} for "
                f"{format_duration_ms(e['duration_ms'])}: {e['reason'] or 'outlier'}"
            )
        else:
            message = f"agent {node}: {endpoint} of {e['service']} returned from ejection"
        event_record(
            kind=EventKind.EJECTION,
            severity=Severity.WARNING if e["event"] == "ejected" else Severity.INFO,
            message=message,
            service=e["service"],
            instance=e["endpoint"],
            actor=f"agent:{node}",
            data={
                "node": node,
                "event": e["event"],
                "address": e["address"],
                "port": e["port"],
                "reason": e["reason"],
                "duration_ms": e["duration_ms"],
                "at": e.get("at"),
                # On the control plane's clock: the explanation reads it (monitoring.explain).
                "until": (timezone.now() + timedelta(milliseconds=e["duration_ms"])).isoformat()
                if e["event"] == "ejected"
                else None,
            },
        )


def _revive_heartbeat_instances(agent: Agent, ids: set[str]) -> None:
    """Instances whose health rests on this agent's heartbeat come back with it."""
    candidates = Instance.objects.filter(pk__in=ids, health=Health.CRITICAL).select_related(
        "service"
    )
    for instance in candidates:
        heartbeat_based = instance.service.check_type in (CheckType.TTL, CheckType.NONE)
        if heartbeat_based or instance.status_reason.startswith("agent "):
            if heartbeat_based:
                registry_services.instance_transition(
                    instance_id=instance.id,
                    expected=Health.CRITICAL,
                    health=Health.PASSING,
                    reason=f"heartbeat from agent {agent.node.name}",
                    actor=f"agent:{agent.node.name}",
                )
            else:
                # Checked instances go back to their checks: due now, verdict from the check.
                Instance.objects.filter(pk=instance.id).update(
                    next_check_at=timezone.now(), status_reason="agent back; awaiting check"
                )


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
    ttl = settings.MESH_HEARTBEAT_TTL
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
                reason=reason,
                actor="system",
                now=now,
            )
    return expired
