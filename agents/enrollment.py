"""Enrollment: the tokens agents join with, and the exchange of one for an agent
token (docs/agent-protocol.md, "Enroll").

An enrollment token has an expiry (MESH_ENROLL_TOKEN_TTL, 24 h by default) and
an optional use count; only its hash is stored. A node name belongs to the
agent that enrolled it: enrolling again under that name is refused unless the
old agent was removed or an operator allowed the re-enrollment. An agent may
propose its own agent token (generated on the host and kept there before it
asks): a retried enrollment with the same proposal is the same enrollment and
returns the same answer, so a request that outlived the agent's timeout cannot
lock the agent out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from agents import gateways
from agents.models import Agent, EnrollmentToken, hash_token, new_secret
from identity.services import certificates_revoke
from journal.models import EventKind, Severity
from journal.records import Actor, AuditNote, EventNote, actor_name, audit_record, event_record
from registry import services as registry_services
from registry.revision import mesh_change

TOKEN_PREFIX = "mesh-enroll-"


class EnrollmentRefused(Exception):
    """The enrollment token is unknown, revoked, expired or used up (HTTP 403)."""


class NodeTaken(Exception):
    """Another agent holds this node name (HTTP 409)."""


class ServiceNotAllowed(Exception):
    """The agent's enrollment token does not let it run these services (HTTP 403)."""

    def __init__(self, node: str, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"the enrollment token of {node} does not allow it to run "
            f"{', '.join(names)}: nothing was stored (create a token with --services)"
        )


class GatewayNotAllowed(Exception):
    """The agent's enrollment token does not let it serve as this gateway (HTTP 403)."""

    def __init__(self, node: str, gateway: str) -> None:
        self.gateway = gateway
        super().__init__(
            f"the enrollment token of {node} does not allow it to serve as gateway "
            f"{gateway}: nothing was stored (create a token with --gateways {gateway})"
        )


@dataclass(frozen=True)
class Enrollment:
    agent: Agent
    agent_token: str
    created: bool


def enrollment_token_create(
    *,
    user: Actor = None,
    description: str = "",
    ttl: timedelta | None = None,
    max_uses: int | None = None,
    services: list[str] | None = None,
    gateways: list[str] | None = None,
) -> str:
    """A new enrollment token; the raw value is returned once and never stored.
    TTL None means the configured default; a zero TTL means no expiry. SERVICES
    (None: any) are the only services agents enrolled with it may run."""
    secret = secrets.token_urlsafe(24)
    while not secret[0].isalnum():  # a prefix starting with "-" reads as an option on a CLI
        secret = secrets.token_urlsafe(24)
    raw = TOKEN_PREFIX + secret
    ttl = timedelta(seconds=settings.MESH_ENROLL_TOKEN_TTL) if ttl is None else ttl
    token = EnrollmentToken.objects.create(
        token_hash=hash_token(raw),
        prefix=raw[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 6],
        description=description,
        created_by=user if isinstance(user, User) else None,
        expires_at=timezone.now() + ttl if ttl.total_seconds() > 0 else None,
        max_uses=max_uses,
        services=sorted(set(services)) if services is not None else None,
        gateways=sorted(set(gateways or [])),
    )
    if user is not None:
        audit_record(
            user=user,
            action="create",
            object_type="enrollment-token",
            object_id=token.prefix,
            before=None,
            after=enrollment_token_state(token),
        )
    return raw


def enrollment_token_state(token: EnrollmentToken) -> dict[str, Any]:
    return {
        "prefix": token.prefix,
        "description": token.description,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "max_uses": token.max_uses,
        "uses": token.uses,
        "revoked": token.revoked,
        "services": token.services,
        "gateways": token.gateways,
    }


def enrollment_token_revoke(*, user: Actor, prefix: str) -> int:
    """Revoke the active tokens whose prefix is PREFIX; returns how many."""
    revoked = 0
    with transaction.atomic():
        for token in EnrollmentToken.objects.select_for_update().filter(
            prefix=prefix, revoked=False
        ):
            before = enrollment_token_state(token)
            token.revoked = True
            token.save(update_fields=["revoked"])
            audit_record(
                user=user,
                action="revoke",
                object_type="enrollment-token",
                object_id=token.prefix,
                before=before,
                after=enrollment_token_state(token),
            )
            revoked += 1
    return revoked


def _usable(raw: str) -> QuerySet[EnrollmentToken]:
    now = timezone.now()
    return (
        EnrollmentToken.objects.filter(token_hash=hash_token(raw), revoked=False)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
    )


def _token_grants(raw: str) -> tuple[list[str] | None, list[str]]:
    """What the token allows, if it may still be used: the services (None: any)
    and the gateways. A read: the use is claimed at the end (_claim_use)."""
    row = _usable(raw).values_list("services", "gateways").first()
    if row is None:
        raise EnrollmentRefused("unknown, revoked, expired or used-up enrollment token")
    allowed, gateways = row
    services = None if allowed is None else [str(name) for name in allowed]
    return services, [str(name) for name in gateways or []]


def _claim_use(raw: str) -> None:
    """Count one use of the token, if it may still be used (a conditional
    UPDATE: two enrollments cannot both take a token's last use). The last
    statement of the enrollment's transaction: the token's row is locked from
    here to the commit only, so a fleet enrolling with one token does not queue
    on it for each enrollment's whole transaction."""
    if not _usable(raw).update(uses=F("uses") + 1):
        raise EnrollmentRefused("unknown, revoked, expired or used-up enrollment token")


@transaction.atomic
def agent_enroll(
    *,
    token: str,
    node: str,
    zone: str,
    version: str,
    upstreams: list[dict[str, Any]],
    address: str,
    proposed_token: str = "",
    inbound: dict[str, Any] | None = None,
    services: list[str] | None = None,
    gateway: str = "",
) -> Enrollment:
    """Exchange an enrollment token for an agent token on NODE."""
    existing = Agent.objects.select_for_update().select_related("node").filter(node__name=node)
    agent = existing.first()
    if agent is not None and proposed_token and agent.token_hash == hash_token(proposed_token):
        # The same agent asking again (its first answer was lost): same answer,
        # no second use of the enrollment token.
        return Enrollment(agent=agent, agent_token=proposed_token, created=False)
    if agent is not None and not agent.reenroll_allowed:
        raise NodeTaken(
            f"node {node!r} is enrolled by another agent; remove that agent or allow "
            "its re-enrollment (meshctl agents allow-reenroll) first"
        )
    allowed, allowed_gateways = _token_grants(token)
    refused = [] if allowed is None else sorted(set(services or []) - set(allowed))
    if refused:
        raise ServiceNotAllowed(node, refused)
    if gateway and gateway not in allowed_gateways:
        raise GatewayNotAllowed(node, gateway)
    agent_token = proposed_token or new_secret()
    node_obj = registry_services.node_ensure(node, zone)
    created = agent is None
    if agent is None:
        agent = Agent(node=node_obj)
    else:  # a rebuilt host replaces the agent: what the old one held is revoked
        certificates_revoke(agent_id=agent.pk, node=node, user=None, reason="agent re-enrolled")
    agent.token_hash = hash_token(agent_token)
    agent.reenroll_allowed = False
    agent.version = version
    agent.address = address
    agent.upstreams = upstreams
    agent.last_seen = timezone.now()
    agent.silent = False
    agent.disabled = False
    agent.local_services = sorted(services or [])
    agent.allowed_services = allowed
    agent.allowed_gateways = allowed_gateways
    inbound_changed = agent_inbound_set(agent, inbound)
    agent.gateway = gateway
    agent.save()
    gateway_declared(agent)
    if inbound_changed:
        inbound_changed_notify(agent)
    # Nothing another agent consumes changed: an event, not a mesh change (each
    # enrollment would otherwise wake every long-poll of the fleet).
    event_record(
        kind=EventKind.AGENT,
        message=f"agent {node} {'enrolled' if created else 're-enrolled'} (version {version})",
        actor=f"agent:{node}",
        data={"address": address},
    )
    _claim_use(token)  # last: a refusal here (the last use raced away) rolls it all back
    return Enrollment(agent=agent, agent_token=agent_token, created=created)


def agent_reenroll_allow(*, user: Actor, agent: Agent) -> None:
    """Let the next enrollment under AGENT's node replace it (a host rebuilt
    without its data dir); its current token keeps working until then."""
    with transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(reenroll_allowed=True)
        audit_record(
            user=user,
            action="allow-reenroll",
            object_type="agent",
            object_id=agent.node.name,
            before={"reenroll_allowed": agent.reenroll_allowed},
            after={"reenroll_allowed": True},
        )
        event_record(
            kind=EventKind.AGENT,
            severity=Severity.WARNING,
            message=f"re-enrollment of node {agent.node.name} allowed by {actor_name(user)}",
            actor=actor_name(user),
        )


def gateway_declared(agent: Agent) -> None:
    """A gateway agent's gateway exists from its first word (agents.gateways)."""
    hook = gateways.hook()
    if agent.gateway and hook is not None:
        hook.declared(agent.gateway)


def agent_inbound_set(agent: Agent, inbound: dict[str, Any] | None) -> bool:
    """Set AGENT's inbound listener (None: none) in memory; whether it changed."""
    address, port = (inbound["address"], inbound["port"]) if inbound else ("", None)
    if (agent.inbound_address, agent.inbound_port) == (address, port):
        return False
    agent.inbound_address, agent.inbound_port = address, port
    return True


def inbound_changed_notify(agent: Agent) -> None:
    """The endpoints on AGENT's node are dialled differently now: every caller
    of the services it runs gets a new snapshot (their upstream keys move)."""
    names = set(
        agent.node.instances.values_list("service__name", flat=True)
    ) | set(agent.local_services)
    mesh_change(services=names, agents=[agent.pk])


def agent_disable(*, user: Actor, agent: Agent, disabled: bool = True) -> None:
    """Disable (or enable again) AGENT. Disabling revokes its unexpired
    certificates (every agent refuses them from its next snapshot) and it gets
    no new ones until enabled."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().select_related("node").get(pk=agent.pk)
        if locked.disabled == disabled:
            return
        locked.disabled = disabled
        locked.save(update_fields=["disabled"])
        if disabled:
            certificates_revoke(
                agent_id=locked.pk, node=locked.node.name, user=user, reason="agent disabled"
            )
        mesh_change(
            agents=[locked.pk],
            events=[
                EventNote(
                    kind=EventKind.AGENT,
                    severity=Severity.WARNING if disabled else Severity.INFO,
                    message=f"agent {locked.node.name} {'disabled' if disabled else 'enabled'} "
                    f"by {actor_name(user)}",
                    actor=actor_name(user),
                )
            ],
            audit=[
                AuditNote(
                    user,
                    "disable" if disabled else "enable",
                    "agent",
                    locked.node.name,
                    {"disabled": not disabled},
                    {"disabled": disabled},
                )
            ],
        )
    agent.disabled = disabled


def agent_for_token(raw: str) -> Agent | None:
    return Agent.objects.select_related("node").filter(token_hash=hash_token(raw)).first()


def token_is_plausible(raw: str) -> bool:
    """An agent's proposed token must be a long random secret, not a guessable word."""
    return 32 <= len(raw) <= 200 and raw.isascii() and raw.isprintable() and " " not in raw



def agent_remove(*, user: Actor, agent: Agent) -> None:
    """Remove AGENT: its token stops working at once, the instances it managed
    are deregistered, and its node name is free to enroll again."""
    node = agent.node
    with transaction.atomic():
        for instance in node.instances.filter(agent_managed=True).select_related(
            "service", "node"
        ):
            registry_services.instance_deregister(
                user=user, instance=instance, actor=actor_name(user)
            )
        before = {"node": node.name, "version": agent.version, "address": agent.address}
        certificates_revoke(agent_id=agent.pk, node=node.name, user=user, reason="agent removed")
        had_inbound = bool(agent.inbound_address)
        agent.delete()
        if had_inbound:  # its node's endpoints are dialled directly again
            mesh_change(services=set(node.instances.values_list("service__name", flat=True)))
        audit_record(
            user=user,
            action="delete",
            object_type="agent",
            object_id=node.name,
            before=before,
            after=None,
        )
        event_record(
            kind=EventKind.AGENT,
            severity=Severity.WARNING,
            message=f"agent {node.name} removed by {actor_name(user)}",
            actor=actor_name(user),
        )
