"""Traffic policy per destination service, carried to agents in their snapshot."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from registry.models import Service


class LoadBalancer(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin", "Weighted round robin"
    RANDOM = "random", "Random"
    LEAST_REQUEST = "least_request", "Least request (P2C)"


class TrafficPolicy(models.Model):
    service = models.OneToOneField(Service, on_delete=models.CASCADE, related_name="policy")
    load_balancer = models.CharField(
        max_length=32, choices=LoadBalancer.choices, default=LoadBalancer.ROUND_ROBIN
    )
    connect_timeout_ms = models.PositiveIntegerField(
        default=1000, validators=[MinValueValidator(1), MaxValueValidator(60_000)]
    )
    request_timeout_ms = models.PositiveIntegerField(
        default=15_000, validators=[MinValueValidator(1), MaxValueValidator(3_600_000)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"policy for {self.service.name}"

    def as_snapshot(self) -> dict[str, object]:
        return {
            "load_balancer": self.load_balancer,
            "connect_timeout_ms": self.connect_timeout_ms,
            "request_timeout_ms": self.request_timeout_ms,
        }


DEFAULT_POLICY_SNAPSHOT: dict[str, object] = {
    "load_balancer": LoadBalancer.ROUND_ROBIN.value,
    "connect_timeout_ms": 1000,
    "request_timeout_ms": 15_000,
}
