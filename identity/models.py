"""The built-in CA's roots, the leaf certificates it issued, and intentions
(access policies between services) with the mesh-wide default action
(docs/security.md)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class CARoot(models.Model):
    """One root of the trust bundle. The newest one not retired signs; every
    one not retired is in every agent's `security.roots`. The private key is a
    file on the control plane (KEY_FILE, 0600), never in the database."""

    fingerprint = models.CharField(max_length=64, unique=True)  # sha256 of the DER, hex
    certificate = models.TextField()  # PEM
    key_file = models.CharField(max_length=1000)
    supplied = models.BooleanField(default=False)  # from MESH_CA_CERT_FILE/MESH_CA_KEY_FILE
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["created_at", "id"]

    def __str__(self) -> str:
        return f"root {self.fingerprint[:16]}"


class IssuedCertificate(models.Model):
    """A leaf the CA signed. Kept by agent id and node name, not by foreign key:
    a removed agent's certificates must outlive its row to stay revoked until
    they expire."""

    serial = models.CharField(max_length=40, unique=True)  # lower hex
    agent_id = models.UUIDField(db_index=True)
    node = models.CharField(max_length=253)
    service = models.CharField(max_length=63, blank=True, default="")  # "" = node identity
    identity = models.CharField(max_length=400)
    root_fingerprint = models.CharField(max_length=64, db_index=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering: ClassVar = ["-issued_at", "-id"]

    def __str__(self) -> str:
        return f"{self.identity} #{self.serial}"


class Action(models.TextChoices):
    ALLOW = "allow", "allow"
    DENY = "deny", "deny"


WILDCARD = "*"


class Intention(models.Model):
    """source -> destination: allow | deny, with optional HTTP conditions."""

    source = models.CharField(max_length=71)  # a service name, "*" or "gateway:<name>"
    destination = models.CharField(max_length=63)
    action = models.CharField(max_length=5, choices=Action.choices)
    # None, or {"methods": [...], "path_prefix": "...", "headers": {...}}
    http = models.JSONField(null=True, blank=True, default=None)
    description = models.CharField(max_length=500, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination}: {self.action}"


class SecuritySettings(models.Model):
    """The singleton (pk 1, created by the migration) for mesh-wide security
    settings; its row is also the lock that serializes CA root changes."""

    default_action = models.CharField(max_length=5, choices=Action.choices, default=Action.ALLOW)
    version = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"default {self.default_action}"

    @staticmethod
    def current(*, lock: bool = False) -> SecuritySettings:
        """The singleton. LOCK (inside transaction.atomic): the row, locked,
        created if missing (a flushed test database, a restored dump). Without
        LOCK nothing is written (read-only snapshot transactions): a missing row
        reads as the new-install defaults."""
        if lock:
            SecuritySettings.objects.bulk_create([SecuritySettings(pk=1)], ignore_conflicts=True)
            return SecuritySettings.objects.select_for_update().get(pk=1)
        return SecuritySettings.objects.filter(pk=1).first() or SecuritySettings(pk=1)
