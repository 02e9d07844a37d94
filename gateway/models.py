"""Gateways, their ordered route tables, API consumers with hashed keys, and
JWT providers (docs/gateway.md). Writes go through gateway.services only."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from django.db import models

from gateway.vocabulary import DEFAULT_LEEWAY_S, KEY_HASH_PREFIX

# Index keys (registry.MeshIndex): one per gateway (its route table), and one that
# every gateway agent reads (consumers and JWT providers are shared by all gateways).
AUTH_KEY = "gateway-auth"


def gateway_key(name: str) -> str:
    return f"gateway:{name}"


def key_hash(raw: str) -> str:
    """What is stored of an API key and what a gateway compares: sha256 of its UTF-8."""
    return KEY_HASH_PREFIX + hashlib.sha256(raw.encode()).hexdigest()


class Gateway(models.Model):
    """One gateway (any number of gateway agents declare its name). `version`
    counts the writes of its route table (optimistic concurrency)."""

    name = models.CharField(max_length=63, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"gateway {self.name} v{self.version}"


class GatewayRoute(models.Model):
    """One route of a gateway's table; the fields of the contract, in the
    table's order (`position`). The snapshot orders them for matching."""

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="routes")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=63)
    hosts = models.JSONField(default=list, blank=True)
    path = models.JSONField(default=dict)  # {"exact"|"prefix"|"regex": str}
    methods = models.JSONField(default=list, blank=True)
    service = models.CharField(max_length=63)
    subset = models.CharField(max_length=63, blank=True, default="")
    strip_prefix = models.BooleanField(default=False)
    auth = models.JSONField(default=dict)
    rate_limits = models.JSONField(default=list, blank=True)
    cors = models.JSONField(null=True, blank=True)
    max_body_bytes = models.PositiveIntegerField(null=True, blank=True)
    timeout_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["gateway", "position"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["gateway", "name"], name="unique_gateway_route"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway.name}/{self.name}"


class Consumer(models.Model):
    """An API client of the gateways: key auth (ConsumerKey) and/or JWT subjects."""

    name = models.CharField(max_length=63, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    jwt_subjects = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"consumer {self.name}"


class ConsumerKey(models.Model):
    """An API key of a consumer: only its hash is kept; the clear key is shown
    once, in the answer that created it."""

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="keys")
    key_hash = models.CharField(max_length=80, unique=True)
    prefix = models.CharField(max_length=12)  # shown in lists, names the key in a DELETE
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["consumer", "created_at"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["consumer", "prefix"], name="unique_key_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer.name}: {self.prefix}…"


class JWTProvider(models.Model):
    """Who issues the JWTs a route accepts. `secret` (HS*) is write-only in the
    API and reaches only gateway agents' snapshots."""

    name = models.CharField(max_length=63, unique=True)
    algorithms = models.JSONField(default=list)
    issuer = models.CharField(max_length=500)
    audience = models.CharField(max_length=500)
    jwks = models.JSONField(null=True, blank=True)
    jwks_url = models.CharField(max_length=2000, blank=True, default="")
    secret = models.CharField(max_length=4096, blank=True, default="")
    leeway_s = models.PositiveIntegerField(default=DEFAULT_LEEWAY_S)
    consumer_claim = models.CharField(max_length=100, default="sub")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"jwt provider {self.name}"
