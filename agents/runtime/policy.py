"""The snapshot's per-upstream `policy` object (docs/policies.md), parsed and validated.

Every field is optional (the documented default applies), unknown fields are
ignored, and a present but bad value refuses the whole snapshot: the
PolicyError text names the field and goes into the NACK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.runtime.balancers import BALANCER_NAMES, DEFAULT_BALANCER
from agents.runtime.vocabulary import (
    DEFAULT_RETRY_ON,
    HASH_NAME_MAX,
    HASH_TYPES,
    LOCALITY_ENABLED,
    POLICY_BOUNDS,
    RATE_LIMIT_RPS,
    RETRY_CONDITIONS,
    default_burst,
)

_B = POLICY_BOUNDS


class PolicyError(ValueError):
    """A policy value the agent refuses; the message is the NACK reason."""


@dataclass(frozen=True)
class HashOn:
    type: str
    name: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = _B["retries.attempts"].default
    per_try_timeout_ms: int = _B["retries.per_try_timeout_ms"].default
    on: frozenset[str] = frozenset(DEFAULT_RETRY_ON)
    backoff_base_ms: int = _B["retries.backoff_base_ms"].default
    backoff_max_ms: int = _B["retries.backoff_max_ms"].default
    budget_percent: int = _B["retries.budget_percent"].default
    min_per_second: int = _B["retries.min_per_second"].default


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_5xx: int = _B["outlier.consecutive_5xx"].default
    consecutive_gateway: int = _B["outlier.consecutive_gateway"].default
    base_ejection_ms: int = _B["outlier.base_ejection_ms"].default
    max_ejection_percent: int = _B["outlier.max_ejection_percent"].default


@dataclass(frozen=True)
class CircuitBreakerPolicy:
    max_connections: int = _B["circuit_breaker.max_connections"].default
    max_pending: int = _B["circuit_breaker.max_pending"].default
    max_requests: int = _B["circuit_breaker.max_requests"].default


@dataclass(frozen=True)
class RateLimitPolicy:
    rps: float
    burst: int


@dataclass(frozen=True)
class Policy:
    load_balancer: str = DEFAULT_BALANCER
    hash_on: HashOn | None = None
    connect_timeout_ms: int = _B["connect_timeout_ms"].default
    request_timeout_ms: int = _B["request_timeout_ms"].default
    idle_timeout_ms: int = _B["idle_timeout_ms"].default
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    circuit_breaker: CircuitBreakerPolicy = field(default_factory=CircuitBreakerPolicy)
    rate_limit: RateLimitPolicy | None = None
    panic_threshold_percent: int = _B["panic_threshold_percent"].default
    locality_enabled: bool = LOCALITY_ENABLED


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, path: str, group: str = "") -> int:
    """DATA[KEY] checked against the vocabulary's bound for GROUP.KEY (its default if absent)."""
    bound = _B[f"{group}.{key}" if group else key]
    value = data.get(key, bound.default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{path}.{key}: expected an integer, got {type(value).__name__}")
    if not bound.low <= value <= bound.high:
        raise PolicyError(f"{path}.{key}: {value} is outside {bound.low}..{bound.high}")
    return value


def _hash_on(value: object, path: str) -> HashOn | None:
    if value is None:
        return None
    data = _obj(value, path)
    kind = data.get("type")
    if kind not in HASH_TYPES:
        raise PolicyError(f"{path}.type: expected one of {', '.join(HASH_TYPES)}, got {kind!r}")
    name = data.get("name", "") or ""
    if not isinstance(name, str) or len(name) > HASH_NAME_MAX:
        raise PolicyError(f"{path}.name: expected a header or cookie name")
    if kind != "client_ip" and not name:
        raise PolicyError(f"{path}.name: required for hashing on a {kind}")
    return HashOn(kind, name.lower() if kind == "header" else name)


def _retries(value: object, path: str) -> RetryPolicy:
    data = _obj(value, path)
    on = data.get("on", list(DEFAULT_RETRY_ON))
    if not isinstance(on, list) or any(c not in RETRY_CONDITIONS for c in on):
        raise PolicyError(f"{path}.on: expected a list of {', '.join(RETRY_CONDITIONS)}")
    policy = RetryPolicy(
        attempts=_int(data, "attempts", path, "retries"),
        per_try_timeout_ms=_int(data, "per_try_timeout_ms", path, "retries"),
        on=frozenset(on),
        backoff_base_ms=_int(data, "backoff_base_ms", path, "retries"),
        backoff_max_ms=_int(data, "backoff_max_ms", path, "retries"),
        budget_percent=_int(data, "budget_percent", path, "retries"),
        min_per_second=_int(data, "min_per_second", path, "retries"),
    )
    if policy.backoff_max_ms < policy.backoff_base_ms:
        raise PolicyError(f"{path}.backoff_max_ms: must not be below backoff_base_ms")
    return policy


def _outlier(value: object, path: str) -> OutlierPolicy:
    data = _obj(value, path)
    return OutlierPolicy(
        consecutive_5xx=_int(data, "consecutive_5xx", path, "outlier"),
        consecutive_gateway=_int(data, "consecutive_gateway", path, "outlier"),
        base_ejection_ms=_int(data, "base_ejection_ms", path, "outlier"),
        max_ejection_percent=_int(data, "max_ejection_percent", path, "outlier"),
    )


def _breaker(value: object, path: str) -> CircuitBreakerPolicy:
    data = _obj(value, path)
    return CircuitBreakerPolicy(
        max_connections=_int(data, "max_connections", path, "circuit_breaker"),
        max_pending=_int(data, "max_pending", path, "circuit_breaker"),
        max_requests=_int(data, "max_requests", path, "circuit_breaker"),
    )


def _rate_limit(value: object, path: str) -> RateLimitPolicy | None:
    if value is None:
        return None
    data = _obj(value, path)
    rps = data.get("rps")
    low, high = RATE_LIMIT_RPS
    if isinstance(rps, bool) or not isinstance(rps, int | float) or not low <= rps <= high:
        raise PolicyError(f"{path}.rps: expected a number in {low}..{high:g}, got {rps!r}")
    if "burst" not in data:
        return RateLimitPolicy(float(rps), default_burst(rps))
    return RateLimitPolicy(float(rps), _int(data, "burst", path, "rate_limit"))


def parse_policy(value: object, path: str = "policy") -> Policy:
    data = _obj(value, path)
    balancer = data.get("load_balancer", DEFAULT_BALANCER)
    if balancer not in BALANCER_NAMES:
        raise PolicyError(f"{path}.load_balancer: unknown balancer {balancer!r}")
    locality = _obj(data.get("locality", {}), f"{path}.locality")
    enabled = locality.get("enabled", LOCALITY_ENABLED)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{path}.locality.enabled: expected a boolean")
    return Policy(
        load_balancer=balancer,
        hash_on=_hash_on(data.get("hash_on"), f"{path}.hash_on"),
        connect_timeout_ms=_int(data, "connect_timeout_ms", path),
        request_timeout_ms=_int(data, "request_timeout_ms", path),
        idle_timeout_ms=_int(data, "idle_timeout_ms", path),
        retries=_retries(data.get("retries", {}), f"{path}.retries"),
        outlier=_outlier(data.get("outlier", {}), f"{path}.outlier"),
        circuit_breaker=_breaker(data.get("circuit_breaker", {}), f"{path}.circuit_breaker"),
        rate_limit=_rate_limit(data.get("rate_limit"), f"{path}.rate_limit"),
        panic_threshold_percent=_int(data, "panic_threshold_percent", path),
        locality_enabled=enabled,
    )
