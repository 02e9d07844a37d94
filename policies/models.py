"""Traffic and failover policy per destination service, carried to agents in
their snapshot (docs/policies.md has the schema and the semantics)."""

from __future__ import annotations

from typing import ClassVar, Self

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Max, QuerySet

from agents.runtime.balancers import BALANCERS, DEFAULT_BALANCER
from agents.runtime.vocabulary import (
    HASH_NAME_MAX,
    HASH_TYPES,
    LOCALITY_ENABLED,
    POLICY_BOUNDS,
    RATE_LIMIT_RPS,
)
from registry.models import Service

# The vocabulary is the agent's (agents.runtime.vocabulary, agents.runtime.balancers):
# the control plane accepts exactly what the agent will.
BALANCER_CHOICES = [(name, cls.label) for name, cls in BALANCERS.items()]
HASH_CHOICES = list(HASH_TYPES.items())
FAILBACK_HOLD_DOWN_MS = (0, 86_400_000)  # control-plane only: agents never see it


def _bounded(key: str) -> models.PositiveIntegerField:
    """A field whose default and bounds are the vocabulary's POLICY_BOUNDS[KEY]."""
    bound = POLICY_BOUNDS[key]
    return models.PositiveIntegerField(
        default=bound.default,
        validators=[MinValueValidator(bound.low), MaxValueValidator(bound.high)],
    )


def _small(key: str) -> models.PositiveSmallIntegerField:
    bound = POLICY_BOUNDS[key]
    return models.PositiveSmallIntegerField(
        default=bound.default,
        validators=[MinValueValidator(bound.low), MaxValueValidator(bound.high)],
    )


class TrafficPolicy(models.Model):
    """How agents send traffic to one service. Zero means "off" where noted."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="policy")
    version = models.PositiveIntegerField(default=1)

    load_balancer = models.CharField(
        max_length=32, choices=BALANCER_CHOICES, default=DEFAULT_BALANCER
    )
    hash_on = models.CharField(max_length=16, choices=HASH_CHOICES, blank=True, default="")
    hash_key = models.CharField(max_length=HASH_NAME_MAX, blank=True, default="")

    connect_timeout_ms = _bounded("connect_timeout_ms")
    request_timeout_ms = _bounded("request_timeout_ms")
    idle_timeout_ms = _bounded("idle_timeout_ms")

    retry_attempts = _small("retries.attempts")  # retries after the first try; 0 = off
    retry_per_try_timeout_ms = _bounded("retries.per_try_timeout_ms")  # 0 = request timeout
    retry_on = models.JSONField(default=list, blank=True)  # see vocabulary.RETRY_CONDITIONS
    retry_backoff_base_ms = _bounded("retries.backoff_base_ms")
    retry_backoff_max_ms = _bounded("retries.backoff_max_ms")
    retry_budget_percent = _small("retries.budget_percent")  # share of active requests
    retry_min_per_second = _bounded("retries.min_per_second")

    outlier_consecutive_5xx = _bounded("outlier.consecutive_5xx")  # 0 = off
    outlier_consecutive_gateway = _bounded("outlier.consecutive_gateway")  # 0 = off
    outlier_base_ejection_ms = _bounded("outlier.base_ejection_ms")
    outlier_max_ejection_percent = _small("outlier.max_ejection_percent")

    max_connections = _bounded("circuit_breaker.max_connections")  # 0 = unlimited
    max_pending = _bounded("circuit_breaker.max_pending")
    max_requests = _bounded("circuit_breaker.max_requests")

    # 0 = off (the snapshot then says "rate_limit": null); else within RATE_LIMIT_RPS
    rate_limit_rps = models.FloatField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(RATE_LIMIT_RPS[1])]
    )
    rate_limit_burst = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(POLICY_BOUNDS["rate_limit.burst"].high)]
    )  # 0 with rps 0; the API always stores one with a rate limit

    panic_threshold_percent = _small("panic_threshold_percent")  # 0 = never panic
    locality_enabled = models.BooleanField(default=LOCALITY_ENABLED)
    zone_priority = models.JSONField(default=list, blank=True)  # zones, most preferred first

    failover_targets = models.JSONField(default=list, blank=True)  # service names, in order
    failback_hold_down_ms = models.PositiveIntegerField(
        default=30_000,
        validators=[
            MinValueValidator(FAILBACK_HOLD_DOWN_MS[0]),
            MaxValueValidator(FAILBACK_HOLD_DOWN_MS[1]),
        ],
    )

    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return f"policy v{self.version} for {self.service.name}"


class DocumentVersion(models.Model):
    """One saved version of a service's versioned document (its policy, its routes).
    Keyed by the service's name, not a foreign key: versions outlive a deleted
    service, and a re-created one continues the numbering rather than colliding."""

    service_name = models.CharField(max_length=63, db_index=True)
    version = models.PositiveIntegerField()
    document = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        abstract = True
        ordering: ClassVar = ["service_name", "-version"]

    def __str__(self) -> str:
        return f"{self.service_name} v{self.version}"

    @classmethod
    def history(cls, service_name: str) -> QuerySet[Self]:
        """The saved versions of SERVICE_NAME's document, newest first."""
        return cls._default_manager.filter(service_name=service_name).order_by("-version")

    @classmethod
    def next_number(cls, service_name: str, current: int) -> int:
        """The number of SERVICE_NAME's next version: past both the live row's
        CURRENT version (0 when none) and every version stored."""
        last = cls.history(service_name).aggregate(v=Max("version"))["v"]
        return max(current, last or 0) + 1


class PolicyVersion(DocumentVersion):
    """Every saved version of a policy, for history, diff and rollback."""

    class Meta(DocumentVersion.Meta):
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["service_name", "version"], name="unique_policy_version"
            )
        ]


class FailoverState(models.Model):
    """Which failover target (if any) currently serves a service's traffic."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="failover")
    active_target = models.CharField(max_length=63, blank=True, default="")
    activated_at = models.DateTimeField(null=True, blank=True)
    healthy_since = models.DateTimeField(null=True, blank=True)  # for the failback hold-down
    reason = models.CharField(max_length=500, blank=True, default="")  # why the target is active

    def __str__(self) -> str:
        return f"{self.service.name} -> {self.active_target or '(itself)'}"


class ServiceRoutes(models.Model):
    """The subsets and ordered L7 routes of one destination service: one versioned
    document (policies.routes validates it; docs/policies.md "Routes and subsets").
    `document` is {"subsets": {...}, "routes": [...]} in the snapshot's shape."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="routes")
    version = models.PositiveIntegerField(default=1)
    document = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return f"routes v{self.version} for {self.service.name}"


class RoutesVersion(DocumentVersion):
    """Every saved version of a service's routes document, for history and rollback."""

    class Meta(DocumentVersion.Meta):
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["service_name", "version"], name="unique_routes_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service_name} routes v{self.version}"
