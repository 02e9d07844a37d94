"""Traffic and failover policy per destination service, carried to agents in
their snapshot (docs/policies.md has the schema and the semantics)."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from registry.models import Service


class LoadBalancer(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin", "Weighted round robin (smooth)"
    RANDOM = "random", "Random"
    LEAST_REQUEST = "least_request", "Least request (P2C)"
    PEAK_EWMA = "peak_ewma", "Peak EWMA (latency-aware)"
    RING_HASH = "ring_hash", "Ring hash (consistent)"
    MAGLEV = "maglev", "Maglev (consistent)"


class HashOn(models.TextChoices):
    HEADER = "header", "Header"
    COOKIE = "cookie", "Cookie"
    CLIENT_IP = "client_ip", "Client IP"


def _ms(default: int, low: int, high: int) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        default=default, validators=[MinValueValidator(low), MaxValueValidator(high)]
    )


def _pct(default: int) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        default=default, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )


class TrafficPolicy(models.Model):
    """How agents send traffic to one service. Zero means "off" where noted."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="policy")
    version = models.PositiveIntegerField(default=1)

    load_balancer = models.CharField(
        max_length=32, choices=LoadBalancer.choices, default=LoadBalancer.ROUND_ROBIN
    )
    hash_on = models.CharField(max_length=16, choices=HashOn.choices, blank=True, default="")
    hash_key = models.CharField(max_length=100, blank=True, default="")  # header/cookie name

    connect_timeout_ms = _ms(1000, 1, 60_000)
    request_timeout_ms = _ms(15_000, 1, 3_600_000)
    idle_timeout_ms = _ms(60_000, 1000, 3_600_000)

    retry_attempts = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(10)]
    )  # retries after the first try; 0 = off
    retry_per_try_timeout_ms = _ms(0, 0, 3_600_000)  # 0 = the request timeout
    retry_on = models.JSONField(default=list, blank=True)  # see RETRY_CONDITIONS
    retry_backoff_base_ms = _ms(25, 1, 10_000)
    retry_backoff_max_ms = _ms(250, 1, 60_000)
    retry_budget_percent = _pct(20)  # retries may add at most this share of active requests
    retry_min_per_second = models.PositiveIntegerField(default=3)

    outlier_consecutive_5xx = models.PositiveIntegerField(default=5)  # 0 = off
    outlier_consecutive_gateway = models.PositiveIntegerField(default=3)  # 0 = off
    outlier_base_ejection_ms = _ms(30_000, 100, 3_600_000)
    outlier_max_ejection_percent = _pct(50)

    max_connections = models.PositiveIntegerField(default=0)  # 0 = unlimited
    max_pending = models.PositiveIntegerField(default=0)
    max_requests = models.PositiveIntegerField(default=0)

    rate_limit_rps = models.FloatField(default=0, validators=[MinValueValidator(0)])  # 0 = off
    rate_limit_burst = models.PositiveIntegerField(default=0)

    panic_threshold_percent = _pct(50)  # 0 = never panic
    locality_enabled = models.BooleanField(default=True)
    zone_priority = models.JSONField(default=list, blank=True)  # zones, most preferred first

    failover_targets = models.JSONField(default=list, blank=True)  # service names, in order
    failback_hold_down_ms = _ms(30_000, 0, 86_400_000)

    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return f"policy v{self.version} for {self.service.name}"


RETRY_CONDITIONS = ("connect-failure", "reset", "5xx", "gateway-error")
DEFAULT_RETRY_ON = ["connect-failure", "reset", "gateway-error"]


class PolicyVersion(models.Model):
    """Every saved version of a policy, for history, diff and rollback."""

    service_name = models.CharField(max_length=63, db_index=True)
    version = models.PositiveIntegerField()
    document = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering: ClassVar = ["service_name", "-version"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["service_name", "version"], name="unique_policy_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service_name} v{self.version}"


class FailoverState(models.Model):
    """Which failover target (if any) currently serves a service's traffic."""

    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="failover")
    active_target = models.CharField(max_length=63, blank=True, default="")
    activated_at = models.DateTimeField(null=True, blank=True)
    healthy_since = models.DateTimeField(null=True, blank=True)  # for the failback hold-down
    reason = models.CharField(max_length=500, blank=True, default="")  # why the target is active

    def __str__(self) -> str:
        return f"{self.service.name} -> {self.active_target or '(itself)'}"
