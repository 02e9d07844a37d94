"""The snapshot's per-upstream `policy` object (docs/policies.md), parsed and validated.

Every field is optional (the documented default applies), unknown fields are
ignored, and a present but bad value refuses the whole snapshot: the
PolicyError text names the field and goes into the NACK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BALANCER_NAMES = ("round_robin", "weighted_round_robin", "random", "least_request",
                  "peak_ewma", "ring_hash", "maglev")
HASH_TYPES = ("header", "cookie", "client_ip")
RETRY_CONDITIONS = ("connect-failure", "reset", "5xx", "gateway-error")
DEFAULT_RETRY_ON = ("connect-failure", "reset", "gateway-error")


class PolicyError(ValueError):
    """A policy value the agent refuses; the message is the NACK reason."""


@dataclass(frozen=True)
class HashOn:
    type: str
    name: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 2
    per_try_timeout_ms: int = 0  # 0 = bounded by the request timeout only
    on: frozenset[str] = frozenset(DEFAULT_RETRY_ON)
    backoff_base_ms: int = 25
    backoff_max_ms: int = 250
    budget_percent: int = 20
    min_per_second: int = 3


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_5xx: int = 5
    consecutive_gateway: int = 3
    base_ejection_ms: int = 30_000
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class CircuitBreakerPolicy:
    max_connections: int = 0
    max_pending: int = 0
    max_requests: int = 0


@dataclass(frozen=True)
class RateLimitPolicy:
    rps: float
    burst: int


@dataclass(frozen=True)
class Policy:
    load_balancer: str = "round_robin"
    hash_on: HashOn | None = None
    connect_timeout_ms: int = 1000
    request_timeout_ms: int = 15_000
    idle_timeout_ms: int = 60_000
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    circuit_breaker: CircuitBreakerPolicy = field(default_factory=CircuitBreakerPolicy)
    rate_limit: RateLimitPolicy | None = None
    panic_threshold_percent: int = 50
    locality_enabled: bool = True


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{path}.{key}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise PolicyError(f"{path}.{key}: {value} is outside {low}..{high}")
    return value


def _hash_on(value: object, path: str) -> HashOn | None:
    if value is None:
        return None
    data = _obj(value, path)
    kind = data.get("type")
    if kind not in HASH_TYPES:
        raise PolicyError(f"{path}.type: expected one of {', '.join(HASH_TYPES)}, got {kind!r}")
    name = data.get("name", "") or ""
    if not isinstance(name, str) or len(name) > 100:
        raise PolicyError(f"{path}.name: expected a header or cookie name")
    if kind != "client_ip" and not name:
        raise PolicyError(f"{path}.name: required for hashing on a {kind}")
    return HashOn(kind, name.lower() if kind == "header" else name)


def _retries(value: object, path: str) -> RetryPolicy:
    data = _obj(value, path)
    d = RetryPolicy()
    on = data.get("on", list(d.on))
    if not isinstance(on, list) or any(c not in RETRY_CONDITIONS for c in on):
        raise PolicyError(f"{path}.on: expected a list of {', '.join(RETRY_CONDITIONS)}")
    policy = RetryPolicy(
        attempts=_int(data, "attempts", path, d.attempts, 0, 10),
        per_try_timeout_ms=_int(data, "per_try_timeout_ms", path, 0, 0, 3_600_000),
        on=frozenset(on),
        backoff_base_ms=_int(data, "backoff_base_ms", path, d.backoff_base_ms, 1, 10_000),
        backoff_max_ms=_int(data, "backoff_max_ms", path, d.backoff_max_ms, 1, 60_000),
        budget_percent=_int(data, "budget_percent", path, d.budget_percent, 0, 100),
        min_per_second=_int(data, "min_per_second", path, d.min_per_second, 0, 1_000_000),
    )
    if policy.backoff_max_ms < policy.backoff_base_ms:
        raise PolicyError(f"{path}.backoff_max_ms: must not be below backoff_base_ms")
    return policy


def _outlier(value: object, path: str) -> OutlierPolicy:
    data = _obj(value, path)
    d = OutlierPolicy()
    return OutlierPolicy(
        consecutive_5xx=_int(data, "consecutive_5xx", path, d.consecutive_5xx, 0, 1_000_000),
        consecutive_gateway=_int(data, "consecutive_gateway", path, d.consecutive_gateway, 0,
                                 1_000_000),
        base_ejection_ms=_int(data, "base_ejection_ms", path, d.base_ejection_ms, 1, 3_600_000),
        max_ejection_percent=_int(data, "max_ejection_percent", path, d.max_ejection_percent,
                                  0, 100),
    )


def _breaker(value: object, path: str) -> CircuitBreakerPolicy:
    data = _obj(value, path)
    top = 2**31 - 1
    return CircuitBreakerPolicy(
        max_connections=_int(data, "max_connections", path, 0, 0, top),
        max_pending=_int(data, "max_pending", path, 0, 0, top),
        max_requests=_int(data, "max_requests", path, 0, 0, top),
    )


def _rate_limit(value: object, path: str) -> RateLimitPolicy | None:
    if value is None:
        return None
    data = _obj(value, path)
    rps = data.get("rps")
    if isinstance(rps, bool) or not isinstance(rps, int | float) or not 0 < rps <= 10_000_000:
        raise PolicyError(f"{path}.rps: expected a number above 0, got {rps!r}")
    burst = _int(data, "burst", path, 0, 0, 2**31 - 1)
    return RateLimitPolicy(float(rps), max(burst, 1))  # a bucket holds at least one token


def parse_policy(value: object, path: str = "policy") -> Policy:
    data = _obj(value, path)
    d = Policy()
    balancer = data.get("load_balancer", d.load_balancer)
    if balancer not in BALANCER_NAMES:
        raise PolicyError(f"{path}.load_balancer: unknown balancer {balancer!r}")
    locality = _obj(data.get("locality", {}), f"{path}.locality")
    enabled = locality.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{path}.locality.enabled: expected a boolean")
    return Policy(
        load_balancer=balancer,
        hash_on=_hash_on(data.get("hash_on"), f"{path}.hash_on"),
        connect_timeout_ms=_int(data, "connect_timeout_ms", path, d.connect_timeout_ms, 1,
                                60_000),
        request_timeout_ms=_int(data, "request_timeout_ms", path, d.request_timeout_ms, 1,
                                3_600_000),
        idle_timeout_ms=_int(data, "idle_timeout_ms", path, d.idle_timeout_ms, 1, 3_600_000),
        retries=_retries(data.get("retries", {}), f"{path}.retries"),
        outlier=_outlier(data.get("outlier", {}), f"{path}.outlier"),
        circuit_breaker=_breaker(data.get("circuit_breaker", {}), f"{path}.circuit_breaker"),
        rate_limit=_rate_limit(data.get("rate_limit"), f"{path}.rate_limit"),
        panic_threshold_percent=_int(data, "panic_threshold_percent", path,
                                     d.panic_threshold_percent, 0, 100),
        locality_enabled=enabled,
    )
