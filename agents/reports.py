"""An agent's report: heartbeat, its local services, ack/nack of a revision,
traffic windows and ejections (docs/agent-protocol.md, "Report")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Subquery
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


def _wanted(agent: Agent, spec: dict[str, Any]) -> dict[str, Any]:
    """The instance fields a report's service entry sets."""
    return {
        "zone": agent.node.zone,
        "tags": spec.get("tags", []),
        "metadata": spec.get("metadata", {}),
    }


def _unchanged(agent: Agent, spec: dict[str, Any], known: Instance | None) -> bool:
    """Whether KNOWN (the instance at SPEC's endpoint, its service loaded) is this
    node's own and already what SPEC says: nothing to register or change."""
    check = spec.get("check") or {}
    return (
        known is not None
        and known.node_id == agent.node_id
        and known.agent_managed
        and not any(getattr(known.service, k) != v for k, v in check.items())
        and not any(getattr(known, k) != v for k, v in _wanted(agent, spec).items())
    )


def _own_instances(agent: Agent) -> list[Instance]:
    """The node's agent-managed instances with their services, and in the same
    query the mesh revision (`mesh_revision` on each row): a steady report's
    one read besides its authentication."""
    revision = MeshRevision.objects.filter(pk=1).values("value")[:1]
    return list(
        Instance.objects.filter(node_id=agent.node_id, agent_managed=True)
        .select_related("service")
        .annotate(mesh_revision=Subquery(revision))
    )


def _sync_service(agent: Agent, spec: dict[str, Any]) -> Instance | None:
    """Register (or refresh) one local service the agent runs. An agent changes
    only what its node owns: an instance registered by an operator (or by
    another node) with the same address is not taken over, and a service others
    run keeps its check; both are reported as an event instead. (The steady
    case, the node's own instance as reported, never gets here: agent_report
    checks it against `_own_instances`.)"""
    check = spec.get("check") or {}
    endpoint = f"{spec['address']}:{spec['port']}"
    known = (
        Instance.objects.filter(
            service__name=spec["name"], address=spec["address"], port=spec["port"]
        )
        .select_related("service", "node")
        .first()
    )
    wanted = _wanted(agent, spec)
    if _unchanged(agent, spec, known):
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

    nack_changed = bool(
        nack
        and (nack.get("revision") != agent.nack_revision
             or nack.get("reason") != agent.nack_reason)
    )
    if nack and nack_changed:
        agent.nack_revision = nack.get("revision")
        agent.nack_reason = str(nack.get("reason", ""))[:1000]
        fields += ["nack_revision", "nack_reason"]
    elif not nack and agent.nack_reason and report.get("applied_revision") is not None:
        agent.nack_reason = ""
        agent.nack_revision = None
        fields += ["nack_revision", "nack_reason"]
    if upstreams_changed:
        agent.upstreams = report["upstreams"]
        fields.append("upstreams")
    keys_used = (report.get("gateway") or {}).get("keys_used") or []

    # Registrations first: in the steady state one read (the node's own instances,
    # and the mesh revision with them) and no write; then the agent row and the
    # heartbeats in one write (SQLite has one write lock; a report used to take it twice).
    instances: dict[str, str] = {}
    seen: set[str] = set()
    own: list[Instance] = []
    registered = False
    if "services" in report:
        own = _own_instances(agent)
        by_endpoint = {(i.service.name, i.address, i.port): i for i in own}
        for spec in report["services"]:
            known = by_endpoint.get((spec["name"], spec["address"], spec["port"]))
            instance: Instance | None = known
            if not _unchanged(agent, spec, known):
                registered = True
                instance = _sync_service(agent, spec)
            if instance is None:
                continue
            seen.add(instance.id)
            instances[spec["id"]] = instance.id  # the entry's id: one service may run twice
        if registered:  # what the registrations left (services as they are now)
            own = list(
                Instance.objects.filter(node=agent.node, agent_managed=True)
                .select_related("service")
            )
    gone = [i for i in own if i.id not in seen]
    revive = [i for i in own if i.id in seen and _revivable(i)]
    steady = not (
        registered or gone or revive or came_back or keys_used
        or set(fields) - HEARTBEAT_FIELDS
    )
    if steady:
        # Nothing changed: the heartbeat alone, and the revision read with the instances.
        _heartbeat_write(agent, fields, now, seen)
        revision = (getattr(own[0], "mesh_revision", None) or 0) if own else MeshRevision.current()
    else:
        for instance in gone:
            registry_services.instance_deregister(
                user=None, instance=instance, actor=f"agent:{agent.node.name}"
            )
        _report_write(agent, fields, now, seen, keys_used=keys_used,
                      nack_changed=nack_changed, came_back=came_back,
                      changed=(inbound_changed, upstreams_changed or local_changed
                               or gateway_changed))
        _revive_heartbeat_instances(agent, revive)
        revision = MeshRevision.current()
    # Windows go onto the ingest stream (monitoring.ingest); a worker stores them in batches.
    metrics_accept(
        node=agent.node.name,
        windows=_gateway_windows(agent, report.get("metrics", [])),
        instances=report.get("instances", []),
    )
    _denial_events(agent, report.get("metrics", []))
    _record_ejections(agent, report.get("ejections", []))
    return {"revision": revision, "instances": instances,
            "report_interval_ms": report_interval_ms()}


# The agent row's fields a report that changes nothing writes: the heartbeat.
HEARTBEAT_FIELDS = frozenset({"last_seen", "silent", "version", "applied_revision"})


def _heartbeat_write(agent: Agent, fields: list[str], now: datetime, seen: set[str]) -> None:
    """A steady report's one write: the agent row's FIELDS (the heartbeat, its
    version and applied revision) and the heartbeats of the instances SEEN.

    On PostgreSQL one statement (the agent's UPDATE in a WITH) in autocommit, its
    commit asynchronous (`synchronous_commit` off for it alone): one round trip,
    no wait for the disk (bench/report_cost.py: 0.5 ms of 6.5 per report here).
    Elsewhere (SQLite) the two UPDATEs in one transaction, one UPDATE alone in
    autocommit."""
    if connection.vendor != "postgresql":
        if not seen:
            agent.save(update_fields=fields)
            return
        with transaction.atomic():
            agent.save(update_fields=fields)
            Instance.objects.filter(pk__in=seen).update(last_heartbeat=now)
        return
    qn = connection.ops.quote_name
    agent_id, agent_columns = _field(Agent, "id"), [_field(Agent, name) for name in fields]
    sets = ", ".join(f"{qn(_column(f))} = %s" for f in agent_columns)
    params: list[Any] = [f.get_db_prep_save(getattr(agent, f.attname), connection)
                         for f in agent_columns]
    params.append(agent_id.get_db_prep_value(agent.pk, connection))
    sql = f"UPDATE {qn(Agent._meta.db_table)} SET {sets} WHERE {qn(_column(agent_id))} = %s"
    if seen:
        ids = sorted(seen)
        sql = (
            f"WITH agent AS ({sql}) UPDATE {qn(Instance._meta.db_table)} "
            f"SET {qn(_column(_field(Instance, 'last_heartbeat')))} = %s "
            f"WHERE {qn(_column(_field(Instance, 'id')))} IN ({', '.join(['%s'] * len(ids))})"
        )
        params += [now, *ids]
    if not connection.in_atomic_block and not connection.settings_dict["OPTIONS"].get(
        "server_side_binding"
    ):
        # Its own implicit transaction (one simple query): the commit does not wait for
        # the WAL flush. A heartbeat lost in a database crash is sent again next report.
        sql = f"SET LOCAL synchronous_commit TO OFF; {sql}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _column(field: models.Field[Any, Any]) -> str:
    assert field.column is not None
    return field.column


def _report_write(
    agent: Agent,
    fields: list[str],
    now: datetime,
    seen: set[str],
    *,
    keys_used: list[str],
    nack_changed: bool,
    came_back: bool,
    changed: tuple[bool, bool],
) -> None:
    """A report that changes something: the agent row, its events and mesh
    change, and the heartbeats, in one transaction."""
    inbound_changed, own_changed = changed
    with transaction.atomic():
        if nack_changed:
            event_record(
                kind=EventKind.AGENT,
                severity=Severity.WARNING,
                message=(
                    f"agent {agent.node.name} refused revision {agent.nack_revision}: "
                    f"{agent.nack_reason}"
                ),
                actor=f"agent:{agent.node.name}",
            )
        agent.save(update_fields=fields)
        # The rows before the mesh revision (mesh_change, below): every writer takes the
        # revision row last (a health transition locks its instance, then bumps), or two
        # of them deadlock (seen at 1,000 agents: this report bumping, then waiting for
        # an instance a check held while it waited for the revision).
        if seen:
            Instance.objects.filter(pk__in=seen).update(last_heartbeat=now)
        if "gateway" in fields:
            gateway_declared(agent)
        hook = gateways.hook()
        if agent.gateway and keys_used and hook is not None:
            hook.keys_used(sorted(set(keys_used)), now)
        if inbound_changed:
            inbound_changed_notify(agent)
        elif own_changed:
            # Only this agent's snapshot changes (its upstreams, or the intentions and
            # inbound modes of its local services): its own index moves, no one else wakes.
            mesh_change(agents=[agent.pk])
        if came_back:
            event_record(
                kind=EventKind.AGENT,
                message=f"agent {agent.node.name} is reporting again",
                actor=f"agent:{agent.node.name}",
            )


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


def _revivable(instance: Instance) -> bool:
    """Whether INSTANCE (critical or not) would come back with its agent's
    heartbeat: critical, and its health rests on the heartbeat (a TTL or no
    check) or went critical with the agent (HealthCause.AGENT)."""
    return instance.health == Health.CRITICAL and (
        instance.service.check_type in (CheckType.TTL, CheckType.NONE)
        or instance.health_cause == HealthCause.AGENT
    )


def _revive_heartbeat_instances(agent: Agent, candidates: list[Instance]) -> None:
    """Instances whose health rests on this agent's heartbeat come back with it
    (CANDIDATES: the agent's reported instances that are `_revivable`)."""
    for instance in candidates:
        if instance.service.check_type in (CheckType.TTL, CheckType.NONE):
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
