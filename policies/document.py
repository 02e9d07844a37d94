"""The policy document of the REST API and of PolicyVersion rows, and its validation.

The document mirrors the snapshot's groups (docs/policies.md) with durations
spelled as in the rest of the API ("500ms", "5s"). Nested groups use
`source="*"`, so validated data comes out flat, keyed by model field names.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.runtime.balancers import CONSISTENT_HASH_BALANCERS
from agents.runtime.vocabulary import (
    DEFAULT_RETRY_ON,
    HASH_NAME_MAX,
    HASH_TYPES,
    POLICY_BOUNDS,
    RATE_LIMIT_RPS,
    RETRY_CONDITIONS,
    default_burst,
)
from meshconsole.api import DurationField, StrictSerializer
from policies.models import (
    BALANCER_CHOICES,
    FAILBACK_HOLD_DOWN_MS,
    HASH_CHOICES,
    TrafficPolicy,
)
from registry.models import SERVICE_NAME_RE, Service

CLIENT_IP = "client_ip"
ZONE_RE = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
MAX_FAILOVER_TARGETS = 8
READ_ONLY_KEYS = ("service", "version", "updated_at", "updated_by")


def _duration(key: str, source: str) -> DurationField:
    """An API duration for the vocabulary's POLICY_BOUNDS[KEY] (milliseconds)."""
    bound = POLICY_BOUNDS[key]
    return DurationField(source=source, min_ms=bound.low, max_ms=bound.high)


def _integer(key: str, source: str | None = None) -> serializers.IntegerField:
    bound = POLICY_BOUNDS[key]
    kwargs: dict[str, Any] = {"source": source} if source else {}
    return serializers.IntegerField(min_value=bound.low, max_value=bound.high, **kwargs)


def policy_defaults() -> TrafficPolicy:
    """The policy a service without a row gets (unsaved; version 0 = never saved)."""
    return TrafficPolicy(retry_on=list(DEFAULT_RETRY_ON), version=0)


class HashOnShape(serializers.Serializer):
    """Schema only: the shape HashOnField reads and writes."""

    type = serializers.ChoiceField(choices=HASH_CHOICES)
    name = serializers.CharField(max_length=HASH_NAME_MAX, allow_blank=True, required=False)


@extend_schema_field(HashOnShape(allow_null=True))
class HashOnField(serializers.Field):
    """`{"type": "header"|"cookie"|"client_ip", "name": "..."}` or null (two model fields)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if data is None:
            return {"hash_on": "", "hash_key": ""}
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise serializers.ValidationError('expected {"type": ..., "name": ...} or null')
        unknown = sorted(set(data) - {"type", "name"})
        if unknown:
            raise serializers.ValidationError(f"unknown field(s): {', '.join(unknown)}")
        kind = data.get("type")
        if kind not in HASH_TYPES:
            raise serializers.ValidationError({"type": f"one of {', '.join(HASH_TYPES)}"})
        name = data.get("name") or ""
        if not isinstance(name, str) or len(name) > HASH_NAME_MAX:
            raise serializers.ValidationError(
                {"name": f"a string of at most {HASH_NAME_MAX} characters"}
            )
        if kind == CLIENT_IP and name:
            raise serializers.ValidationError({"name": "client_ip takes no name"})
        if kind != CLIENT_IP and not name.strip():
            raise serializers.ValidationError({"name": f"the {kind} name is required"})
        return {"hash_on": str(kind), "hash_key": name.strip()}

    def to_representation(self, value: TrafficPolicy) -> dict[str, str] | None:
        if not value.hash_on:
            return None
        return {"type": value.hash_on, "name": value.hash_key}


class RateLimitShape(StrictSerializer):
    rps = serializers.FloatField(min_value=RATE_LIMIT_RPS[0], max_value=RATE_LIMIT_RPS[1])
    burst = serializers.IntegerField(
        min_value=POLICY_BOUNDS["rate_limit.burst"].low,
        max_value=POLICY_BOUNDS["rate_limit.burst"].high,
        required=False,
    )


@extend_schema_field(RateLimitShape(allow_null=True))
class RateLimitField(serializers.Field):
    """`{"rps": 100.0, "burst": 200}` or null (off)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if data is None:
            return {"rate_limit_rps": 0.0, "rate_limit_burst": 0}
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        inner = RateLimitShape(data=data)
        if not isinstance(data, dict) or not inner.is_valid():
            raise serializers.ValidationError(
                inner.errors if isinstance(data, dict) else 'expected {"rps", "burst"} or null'
            )
        rps = float(inner.validated_data["rps"])
        burst = inner.validated_data.get("burst") or default_burst(rps)
        return {"rate_limit_rps": rps, "rate_limit_burst": burst}

    def to_representation(self, value: TrafficPolicy) -> dict[str, Any] | None:
        if value.rate_limit_rps <= 0:
            return None
        return {"rps": value.rate_limit_rps, "burst": value.rate_limit_burst}


class RetriesSerializer(StrictSerializer):
    attempts = _integer("retries.attempts", "retry_attempts")
    per_try_timeout = _duration("retries.per_try_timeout_ms", "retry_per_try_timeout_ms")
    on = serializers.ListField(
        source="retry_on",
        child=serializers.ChoiceField(choices=RETRY_CONDITIONS),
        min_length=1,
        max_length=len(RETRY_CONDITIONS),
    )
    backoff_base = _duration("retries.backoff_base_ms", "retry_backoff_base_ms")
    backoff_max = _duration("retries.backoff_max_ms", "retry_backoff_max_ms")
    budget_percent = _integer("retries.budget_percent", "retry_budget_percent")
    min_per_second = _integer("retries.min_per_second", "retry_min_per_second")

    def validate_on(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("a condition is listed twice")
        return value


class OutlierSerializer(StrictSerializer):
    consecutive_5xx = _integer("outlier.consecutive_5xx", "outlier_consecutive_5xx")
    consecutive_gateway = _integer("outlier.consecutive_gateway", "outlier_consecutive_gateway")
    base_ejection = _duration("outlier.base_ejection_ms", "outlier_base_ejection_ms")
    max_ejection_percent = _integer(
        "outlier.max_ejection_percent", "outlier_max_ejection_percent"
    )


class CircuitBreakerSerializer(StrictSerializer):
    max_connections = _integer("circuit_breaker.max_connections")
    max_pending = _integer("circuit_breaker.max_pending")
    max_requests = _integer("circuit_breaker.max_requests")


class LocalitySerializer(StrictSerializer):
    enabled = serializers.BooleanField(source="locality_enabled")


class FailoverSerializer(StrictSerializer):
    targets = serializers.ListField(
        source="failover_targets",
        child=serializers.RegexField(SERVICE_NAME_RE, max_length=63),
        max_length=MAX_FAILOVER_TARGETS,
    )
    hold_down = DurationField(
        source="failback_hold_down_ms",
        min_ms=FAILBACK_HOLD_DOWN_MS[0],
        max_ms=FAILBACK_HOLD_DOWN_MS[1],
    )


class PolicyDocumentSerializer(StrictSerializer):
    """The whole document. Validate a *complete* document (callers merge first:
    PUT over the defaults, PATCH over the current document), so every
    cross-field rule sees every value. context["service"]: the policy's service."""

    service = serializers.CharField(source="service.name", read_only=True)
    version = serializers.IntegerField(read_only=True)
    load_balancer = serializers.ChoiceField(choices=BALANCER_CHOICES)
    hash_on = HashOnField(allow_null=True)
    connect_timeout = _duration("connect_timeout_ms", "connect_timeout_ms")
    request_timeout = _duration("request_timeout_ms", "request_timeout_ms")
    idle_timeout = _duration("idle_timeout_ms", "idle_timeout_ms")
    retries = RetriesSerializer(source="*")
    outlier = OutlierSerializer(source="*")
    circuit_breaker = CircuitBreakerSerializer(source="*")
    rate_limit = RateLimitField(allow_null=True)
    panic_threshold_percent = _integer("panic_threshold_percent")
    locality = LocalitySerializer(source="*")
    zone_priority = serializers.ListField(
        child=serializers.RegexField(ZONE_RE, max_length=63), max_length=32
    )
    failover = FailoverSerializer(source="*")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    updated_by = serializers.CharField(
        source="updated_by.username", read_only=True, allow_null=True, default=None
    )

    def validate_zone_priority(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("a zone is listed twice")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        if attrs["load_balancer"] in CONSISTENT_HASH_BALANCERS:
            if not attrs["hash_on"]:
                # Documented choice: a consistent-hash balancer without a key hashes the
                # client address, which is always there (docs/policies.md).
                attrs["hash_on"], attrs["hash_key"] = CLIENT_IP, ""
        elif attrs["hash_on"]:
            hashing = " and ".join(CONSISTENT_HASH_BALANCERS)
            errors["hash_on"] = [f"only {hashing} hash; set it to null"]
        retries: dict[str, list[str]] = {}
        if attrs["retry_backoff_base_ms"] > attrs["retry_backoff_max_ms"]:
            retries["backoff_base"] = ["must not exceed backoff_max"]
        if attrs["retry_per_try_timeout_ms"] > attrs["request_timeout_ms"]:
            retries["per_try_timeout"] = ["must not exceed request_timeout"]
        if retries:
            errors["retries"] = retries
        failover = self._failover_errors(attrs["failover_targets"])
        if failover:
            errors["failover"] = {"targets": failover}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _failover_errors(self, targets: list[str]) -> list[str]:
        service: Service = self.context["service"]
        if service.name in targets:
            return [f"{service.name} cannot fail over to itself"]
        if len(set(targets)) != len(targets):
            return ["a target is listed twice"]
        missing = sorted(
            set(targets)
            - set(Service.objects.filter(name__in=targets).values_list("name", flat=True))
        )
        if missing:
            return [f"no such service: {', '.join(missing)}"]
        cycle = failover_cycle(service.name, targets)
        if cycle:
            return [f"failover cycle: {' -> '.join(cycle)}"]
        return []


def failover_cycle(name: str, targets: list[str]) -> list[str]:
    """A path NAME -> ... -> NAME through the saved policies if NAME had TARGETS, or []."""
    graph: dict[str, list[str]] = {
        str(service_name): list(saved or [])
        for service_name, saved in TrafficPolicy.objects.values_list(
            "service__name", "failover_targets"
        )
    }
    graph[name] = list(targets)
    stack: list[tuple[str, list[str]]] = [(name, [name])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == name:
                return [*path, name]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def policy_document(policy: TrafficPolicy) -> dict[str, Any]:
    """The writable document of POLICY (what versions store and rollback restores)."""
    data = dict(PolicyDocumentSerializer(policy).data)
    for key in READ_ONLY_KEYS:
        data.pop(key, None)
    return data


def document_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: groups merge key by key; anything else (null too) replaces."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = document_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
