"""Who may use the console and the API: hashed API tokens, failed logins."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

API_TOKEN_PREFIX_LENGTH = 8


def hash_key(key: str) -> str:
    # Keys are 256 random bits: a plain SHA-256 cannot be brute-forced, and a
    # fast hash keeps per-request authentication cheap (as GitHub's tokens).
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """An API token for tooling (`Authorization: Token <key>`); only its hash is kept."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    prefix = models.CharField(max_length=16, db_index=True)  # shown in listings
    key_hash = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    read_only = models.BooleanField(default=False)  # safe methods only
    created_at = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class LoginFailure(models.Model):
    """One failed login (meshconsole.lockout): the lockout counts these rows."""

    ts = models.DateTimeField(auto_now_add=True, db_index=True)
    username = models.CharField(max_length=150, db_index=True)
    address = models.CharField(max_length=45, db_index=True)
    path = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-ts", "-id"]

    def __str__(self) -> str:
        return f"{self.username!r} from {self.address} at {self.ts:%Y-%m-%d %H:%M:%S}"


class Role(models.TextChoices):
    """What a person may do (meshconsole.roles): each role includes the ones before it."""

    VIEWER = "viewer"  # read everything, write nothing
    OPERATOR = "operator"  # instance control: maintenance, drain, weight, enable/disable
    ADMIN = "admin"  # services, policies, failover, mesh as code, tokens, users


class UserRole(models.Model):
    """A person's role, optionally scoped to the services carrying one tag.

    A user without a row is a viewer; a superuser is always an unscoped admin."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mesh_role"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    # A service tag such as "team=payments"; empty: every service.
    scope = models.CharField(max_length=100, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.user}: {self.role}" + (f" ({self.scope})" if self.scope else "")
