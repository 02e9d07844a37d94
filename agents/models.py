"""Agents (one per host) and the enrollment tokens they join with."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from registry.models import Node


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class EnrollmentToken(models.Model):
    """A secret that lets agents enroll until it expires, is used up or revoked;
    only its hash is stored (agents.enrollment)."""

    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)  # shown in lists so a token can be told apart
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    revoked = models.BooleanField(default=False)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: never
    max_uses = models.PositiveIntegerField(null=True, blank=True)  # None: unlimited
    # The services an agent enrolled with it may run (register, report, hold the
    # identity of); None: any service. Agents keep the list they enrolled with.
    services = models.JSONField(null=True, blank=True, default=None)
    # The gateways an agent enrolled with it may serve as: none unless listed (a
    # gateway agent's snapshot holds JWT secrets and every consumer's key hashes).
    gateways = models.JSONField(default=list, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.state()})"

    def state(self, now: datetime | None = None) -> str:
        """active | revoked | expired | used-up: the rule agents.enrollment's
        conditional claim applies in SQL, for lists and pages."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or timezone.now()):
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used-up"
        return "active"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.OneToOneField(Node, on_delete=models.CASCADE, related_name="agent")
    token_hash = models.CharField(max_length=64, unique=True)
    version = models.CharField(max_length=32, blank=True, default="")
    address = models.CharField(max_length=64, blank=True, default="")
    # Upstream services this agent proxies to, as declared in its agent.yaml.
    upstreams = models.JSONField(default=list, blank=True)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)
    applied_revision = models.BigIntegerField(null=True, blank=True)
    nack_revision = models.BigIntegerField(null=True, blank=True)
    nack_reason = models.CharField(max_length=1000, blank=True, default="")
    # Agents silenced by TTL expiry are marked so their return can be an event.
    silent = models.BooleanField(default=False)
    # An operator let the next enrollment under this node replace this agent.
    reenroll_allowed = models.BooleanField(default=False)
    # Disabled by an operator: its certificates are revoked and it gets no new ones.
    disabled = models.BooleanField(default=False)
    # Where other agents reach this host's inbound (mTLS) listener; "" = none.
    inbound_address = models.CharField(max_length=253, blank=True, default="")
    inbound_port = models.PositiveIntegerField(null=True, blank=True)
    # Names of the local services its last report (or enrollment) listed.
    local_services = models.JSONField(default=list, blank=True)
    # The gateway this agent serves as (its agent.yaml `gateway.name`); "" = not a gateway.
    gateway = models.CharField(max_length=63, blank=True, default="")
    # From its enrollment token (EnrollmentToken.services): None = any service.
    allowed_services = models.JSONField(null=True, blank=True, default=None)
    # From its enrollment token (EnrollmentToken.gateways): the gateways it may serve as.
    allowed_gateways = models.JSONField(default=list, blank=True)

    class Meta:
        ordering: ClassVar = ["node__name"]

    def __str__(self) -> str:
        return f"agent {self.node.name}"

    def refused_services(self, names: Iterable[str]) -> list[str]:
        """The NAMES this agent may not run (its enrollment token did not allow them)."""
        if self.allowed_services is None:
            return []
        allowed = set(self.allowed_services)
        return sorted({n for n in names if n not in allowed})
