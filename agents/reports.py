"""An agent's report: heartbeat, its local services, ack/nack of a revision,
traffic windows and ejections (docs/agent-protocol.md, "Report")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import gateways
from agents.enrollment import (
    GatewayNotAllowed,
    ServiceNotAllowed,
    agent_inbound_set,
    gateway_declared,
    inbound_changed_notify,
)
from agents.models import Agent
from agents.runtime.durations import format_duration_ms
from journal.models import EventKind, Severity
from journal.records import event_record
from monitoring.ingest import metrics_accept
from registry import services as registry_services
from registry.models import CheckType, Health, HealthCause, Instance, MeshRevision, Service
from registry.pacing import report_interval_ms
from registry.revision import mesh_change

# How long the same disagreement stays one event rather than one per report.
DISAGREEMENT_QUIET_S = 600


def _first_in(key: str, seconds: int) -> bool:
    """Whether KEY was not seen in the last SECONDS (an event once in a while,
    not per report); with the cache down, always (it must not fail the report)."""
    try:
        return bool(cache.add(key, 1, timeout=seconds))
    except Exception:
        return True


def _disagreement(agent: Agent, service: str, what: str, message: str) -> None:
    """An agent's config disagrees with what it does not own: an event (once in
    a while, not per report), never an overwrite."""
    if _first_in(f"agents:disagree:{agent.pk}:{service}:{what}", DISAGREEMENT_QUIET_S):
        event_record(
            kind=EventKind.AGENT,
            severity=Severity.WARNING,
            message=f"agent {agent.node.name}: {message}",
            service=service,
            actor=f"agent:{agent.node.name}",
            data={"node": agent.node.name, "what": what},
        )


def _runs_alone(agent: Agent, service: Service) -> bool:
    """Whether every instance of SERVICE is this agent's own: only then may its
    config change the service's definition (its health check)."""
    return not (
        Instance.objects.filter(service=service)
        .exclude(node=agent.node, agent_managed=True)
        .exists()
    )


def _service_create_or_get(spec: dict[str, Any], check: dict[str, Any]) -> Service:
    """Register the service a first report names. The agents of a new service
    report it at about the same time: the one that loses the race to create it
    (the unique name: a ValidationError from full_clean, or an IntegrityError at
    the insert) takes the winner's row instead of answering 400/409."""
    try:
        return registry_services.service_create(
            user=None,
            data={"name": spec["name"], "protocol": spec.get("protocol", "http"), **check},
        )
    except (IntegrityError, DjangoValidationError):
        existing = Service.objects.filter(name=spec["name"]).first()
        if existing is None:
            raise  # not the race: the definition itself was refused
        return existing


def _sync_service(agent: Agent, spec: dict[str, Any]) -> Instance | None:
    """Register (or refresh) one local service the agent runs. An agent changes
    only what its node owns: an instance registered by an operator (or by
    another node) with the same address is not taken over, and a service others
    run keeps its check; both are reported as an event instead."""
    check = spec.get("check") or {}
    endpoint = f"{spec['address']}:{spec['port']}"
    # The steady case, one query: this node's own instance, nothing to change.
    known = (
        Instance.objects.filter(
            service__name=spec["name"], address=spec["address"], port=spec["port"]
        )
        .select_related("service", "node")
        .first()
    )
    wanted = {
        "zone": agent.node.zone,
        "tags": spec.get("tags", []),
        "metadata": spec.get("metadata", {}),
    }
    if (
        known is not None
        and known.node_id == agent.node_id
        and known.agent_managed
        and not any(getattr(known.service, k) != v for k, v in check.items())
        and not any(getattr(known, k) != v for k, v in wanted.items())
    ):
        return known
    service = known.service if known is not None else (
        Service.objects.filter(name=spec["name"]).first()
    )
    if service is None:
        service = _service_create_or_get(spec, check)
    elif check and any(getattr(service, k) != v for k, v in check.items()):
        if _runs_alone(agent, service):
            service = registry_services.service_update(user=None, service=service, data=check)
        else:
            _disagreement(
                agent,
                service.name,
                "check",
                f"its health check for {service.name} differs from the service's; "
                "the service's check stays (other instances run it)",
            )
    instance = (
        Instance.objects.filter(service=service, address=spec["address"], port=spec["port"])
        .select_related("node")
        .first()
    )
    if instance is None:
        return registry_services.instance_register(
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
    if instance.node_id != agent.node_id or not instance.agent_managed:
        owner = (
            f"by agent {instance.node.name}"
            if instance.agent_managed and instance.node
            else "by an operator"
        )
        _disagreement(
            agent,
            service.name,
            f"instance:{endpoint}",
            f"reports {service.name} at {endpoint}, which is registered {owner}; not taken over",
        )
        return None
    if any(getattr(instance, k) != v for k, v in wanted.items()):
        with transaction.atomic():
            for k, v in wanted.items():
                setattr(instance, k, v)
            instance.save()
            mesh_change(services={service.name})
    return instance


# A denied edge is one event per this many seconds, not one per report window.
DENIAL_EVENT_QUIET_S = 60


def _denial_events(agent: Agent, windows: list[dict[str, Any]]) -> None:
    """Requests an intention refused at this agent's inbound listener: an event
    per (source, destination), at most once a minute; the counts are in EdgeWindow
    (stored by monitoring.ingest)."""
    totals: dict[tuple[str, str], int] = {}
    for w in windows:
        if w.get("denied"):
            edge = (str(w["source"]), str(w["destination"]))
            totals[edge] = totals.get(edge, 0) + int(w["denied"])
    for (source, destination), denied in sorted(totals.items()):
        if _first_in(f"agents:denied:{agent.pk}:{source}:{destination}", DENIAL_EVENT_QUIET_S):
            event_record(
                kind=EventKind.AGENT,
                severity=Severity.WARNING,
                message=f"{denied} request(s) {source} -> {destination} denied by policy "
                f"on {agent.node.name}",
                service=destination,
                actor=f"agent:{agent.node.name}",
                data={"source": source, "destination": destination, "denied": denied},
            )


def agent_report(*, agent: Agent, report: dict[str, Any]) -> dict[str, Any]:
    """Take an agent's report: heartbeat, registrations, ack/nack, metrics.
    ServiceNotAllowed (nothing stored) when it lists a service its enrollment
    token does not allow."""
    refused = agent.refused_services(s["name"] for s in report.get("services", []))
    if refused:
        raise ServiceNotAllowed(agent.node.name, refused)
    declared = (report.get("gateway") or {}).get("name", "")
    if declared and declared not in agent.allowed_gateways:
        raise GatewayNotAllowed(agent.node.name, declared)
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
    inbound_changed = agent_inbound_set(agent, report.get("inbound"))
    if inbound_changed:
        fields += ["inbound_address", "inbound_port"]
    gateway_changed = declared != agent.gateway
    if gateway_changed:
        agent.gateway = declared
        fields.append("gateway")
    local = sorted({s["name"] for s in report.get("services", [])})
    local_changed = "services" in report and local != sorted(agent.local_services)
    if local_changed:
        agent.local_services = local
        fields.append("local_services")

    # Registrations first (reads only, in the steady state); then one write
    # transaction for the agent row and the heartbeats: SQLite has one write
    # lock, and a report used to take it twice.
    instances: dict[str, str] = {}
    seen: set[str] = set()
    own: list[Instance] = []
    if "services" in report:
        for spec in report["services"]:
            instance = _sync_service(agent, spec)
            if instance is None:
                continue
            seen.add(instance.id)
            instances[spec["id"]] = instance.id  # the entry's id: one service may run twice
        own = list(
            Instance.objects.filter(node=agent.node, agent_managed=True).select_related("service")
        )
        for instance in own:
            if instance.id not in seen:
                registry_services.instance_deregister(
                    user=None, instance=instance, actor=f"agent:{agent.node.name}"
                )
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
        if gateway_changed:
            gateway_declared(agent)
        keys_used = (report.get("gateway") or {}).get("keys_used") or []
        hook = gateways.hook()
        if declared and keys_used and hook is not None:
            hook.keys_used(sorted(set(keys_used)), now)
        if inbound_changed:
            inbound_changed_notify(agent)
        elif upstreams_changed or local_changed or gateway_changed:
            # Only this agent's snapshot changes (its upstreams, or the intentions and
            # inbound modes of its local services): its own index moves, no one else wakes.
            mesh_change(agents=[agent.pk])
        if came_back:
            event_record(
                kind=EventKind.AGENT,
                message=f"agent {agent.node.name} is reporting again",
                actor=f"agent:{agent.node.name}",
            )
        if seen:
            Instance.objects.filter(pk__in=seen).update(last_heartbeat=now)
    if "services" in report:
        _revive_heartbeat_instances(
            agent, [i for i in own if i.id in seen and i.health == Health.CRITICAL]
        )
    # Windows go onto the ingest stream (monitoring.ingest); a worker stores them in batches.
    metrics_accept(
        node=agent.node.name,
        windows=_gateway_windows(agent, report.get("metrics", [])),
        instances=report.get("instances", []),
    )
    _denial_events(agent, report.get("metrics", []))
    _record_ejections(agent, report.get("ejections", []))
    return {"revision": MeshRevision.current(), "instances": instances,
            "report_interval_ms": report_interval_ms()}


def _gateway_windows(agent: Agent, windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A window says `gateway: true` only from a gateway agent, about its own
    gateway: anything else would draw an entry node an agent made up."""
    return [
        {**w, "gateway": False}
        if w.get("gateway") and (not agent.gateway or w["source"] != agent.gateway)
        else w
        for w in windows
    ]


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
                # On the control plane's clock: the explanation reads it (registry.explain).
                "until": (timezone.now() + timedelta(milliseconds=e["duration_ms"])).isoformat()
                if e["event"] == "ejected"
                else None,
            },
        )


def _revive_heartbeat_instances(agent: Agent, candidates: list[Instance]) -> None:
    """Instances whose health rests on this agent's heartbeat come back with it
    (CANDIDATES: the agent's reported instances that were critical)."""
    for instance in candidates:
        heartbeat_based = instance.service.check_type in (CheckType.TTL, CheckType.NONE)
        if heartbeat_based or instance.health_cause == HealthCause.AGENT:
            if heartbeat_based:
                registry_services.instance_transition(
                    instance_id=instance.id,
                    expected=Health.CRITICAL,
                    health=Health.PASSING,
                    cause=HealthCause.HEARTBEAT,
                    reason=f"heartbeat from agent {agent.node.name}",
                    actor=f"agent:{agent.node.name}",
                )
            else:
                # Checked instances go back to their checks: due now, verdict from the check.
                Instance.objects.filter(pk=instance.id).update(
                    next_check_at=timezone.now(),
                    health_cause=HealthCause.AWAITING,
                    status_reason="agent back; awaiting check",
                )
