"""The policy object of an agent snapshot (schema: docs/policies.md)."""

from __future__ import annotations

from typing import TypedDict

from agents.runtime.vocabulary import DEFAULT_RETRY_ON, default_burst
from policies.models import TrafficPolicy


class HashOnSnapshot(TypedDict):
    type: str
    name: str


class RetriesSnapshot(TypedDict):
    attempts: int
    per_try_timeout_ms: int
    on: list[str]
    backoff_base_ms: int
    backoff_max_ms: int
    budget_percent: int
    min_per_second: int


class OutlierSnapshot(TypedDict):
    consecutive_5xx: int
    consecutive_gateway: int
    base_ejection_ms: int
    max_ejection_percent: int


class CircuitBreakerSnapshot(TypedDict):
    max_connections: int
    max_pending: int
    max_requests: int


class RateLimitSnapshot(TypedDict):
    rps: float
    burst: int


class LocalitySnapshot(TypedDict):
    enabled: bool


class PolicySnapshot(TypedDict):
    """What agents/runtime/policy.py parses (the contract test feeds one to it)."""

    load_balancer: str
    hash_on: HashOnSnapshot | None
    connect_timeout_ms: int
    request_timeout_ms: int
    idle_timeout_ms: int
    retries: RetriesSnapshot
    outlier: OutlierSnapshot
    circuit_breaker: CircuitBreakerSnapshot
    rate_limit: RateLimitSnapshot | None
    panic_threshold_percent: int
    locality: LocalitySnapshot


def endpoint_priority(zone: str, zone_priority: list[str]) -> int:
    """An endpoint's priority level: the index of ZONE in the policy's
    zone_priority; unlisted zones come after (the snapshot and the what-if)."""
    return zone_priority.index(zone) if zone in zone_priority else len(zone_priority)


def policy_snapshot(policy: TrafficPolicy | None) -> PolicySnapshot:
    p = policy or TrafficPolicy(retry_on=list(DEFAULT_RETRY_ON))
    return {
        "load_balancer": p.load_balancer,
        "hash_on": {"type": p.hash_on, "name": p.hash_key} if p.hash_on else None,
        "connect_timeout_ms": p.connect_timeout_ms,
        "request_timeout_ms": p.request_timeout_ms,
        "idle_timeout_ms": p.idle_timeout_ms,
        "retries": {
            "attempts": p.retry_attempts,
            "per_try_timeout_ms": p.retry_per_try_timeout_ms,
            "on": list(p.retry_on or DEFAULT_RETRY_ON),
            "backoff_base_ms": p.retry_backoff_base_ms,
            "backoff_max_ms": p.retry_backoff_max_ms,
            "budget_percent": p.retry_budget_percent,
            "min_per_second": p.retry_min_per_second,
        },
        "outlier": {
            "consecutive_5xx": p.outlier_consecutive_5xx,
            "consecutive_gateway": p.outlier_consecutive_gateway,
            "base_ejection_ms": p.outlier_base_ejection_ms,
            "max_ejection_percent": p.outlier_max_ejection_percent,
        },
        "circuit_breaker": {
            "max_connections": p.max_connections,
            "max_pending": p.max_pending,
            "max_requests": p.max_requests,
        },
        "rate_limit": {
            "rps": p.rate_limit_rps,
            "burst": p.rate_limit_burst or default_burst(p.rate_limit_rps),
        }
        if p.rate_limit_rps > 0
        else None,
        "panic_threshold_percent": p.panic_threshold_percent,
        "locality": {"enabled": p.locality_enabled},
    }
