"""The policy vocabulary shared by the control plane and the agent: names, defaults, bounds.

One table, on the agent side, that both the agent's snapshot parser
(agents.runtime.policy) and the control plane's model and API validators
(policies.models, policies.document) read, so the two cannot disagree about
what a valid policy is. Keys are the snapshot's paths (docs/policies.md).
Balancer names live with the balancers (agents.runtime.balancers.BALANCERS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """An integer policy field: its default and the inclusive range the agent accepts."""

    default: int
    low: int
    high: int


MAX_CONCURRENCY = 10_000_000  # circuit-breaker limits and a rate limit's burst

POLICY_BOUNDS: dict[str, Bound] = {
    "connect_timeout_ms": Bound(1000, 1, 60_000),
    "request_timeout_ms": Bound(15_000, 1, 3_600_000),
    "idle_timeout_ms": Bound(60_000, 100, 3_600_000),  # below: no keep-alive to speak of
    "retries.attempts": Bound(2, 0, 10),
    "retries.per_try_timeout_ms": Bound(0, 0, 3_600_000),  # 0 = the request timeout only
    "retries.backoff_base_ms": Bound(25, 1, 10_000),
    "retries.backoff_max_ms": Bound(250, 1, 60_000),
    "retries.budget_percent": Bound(20, 0, 100),
    "retries.min_per_second": Bound(3, 0, 1_000_000),
    "outlier.consecutive_5xx": Bound(5, 0, 1_000_000),  # 0 = off
    "outlier.consecutive_gateway": Bound(3, 0, 1_000_000),  # 0 = off
    "outlier.base_ejection_ms": Bound(30_000, 100, 3_600_000),
    "outlier.max_ejection_percent": Bound(50, 0, 100),
    "circuit_breaker.max_connections": Bound(0, 0, MAX_CONCURRENCY),  # 0 = unlimited
    "circuit_breaker.max_pending": Bound(0, 0, MAX_CONCURRENCY),
    "circuit_breaker.max_requests": Bound(0, 0, MAX_CONCURRENCY),
    "rate_limit.burst": Bound(1, 1, MAX_CONCURRENCY),  # absent: default_burst(rps)
    "panic_threshold_percent": Bound(50, 0, 100),  # 0 = never panic
}

RATE_LIMIT_RPS = (0.001, 1_000_000.0)  # inclusive; no rate limit is `"rate_limit": null`

HASH_TYPES: dict[str, str] = {"header": "Header", "cookie": "Cookie", "client_ip": "Client IP"}
HASH_NAME_MAX = 100  # a header or cookie name

RETRY_CONDITIONS = ("connect-failure", "reset", "5xx", "gateway-error")
DEFAULT_RETRY_ON = ("connect-failure", "reset", "gateway-error")

LOCALITY_ENABLED = True


def default_burst(rps: float) -> int:
    """A bucket without an explicit burst holds one second of tokens (at least one)."""
    return max(1, math.ceil(rps))

# Routes and subsets (docs/agent-protocol.md, "Routes, subsets and the gateway"); the
# agent's parser is agents.runtime.routes, which the control plane may call to validate.
ROUTE_NAME = r"^[a-z0-9-]{1,63}$"  # also a subset's name (the contract's pattern)
ROUTE_METHOD = r"^[A-Z][A-Z-]{0,19}$"
ROUTE_REGEX_MAX = 1024  # characters of a path, header or query regex
ROUTE_FALLBACKS = ("next", "fail")
ROUTE_STICKY_TYPES = ("header", "cookie")
ROUTE_REWRITE_KINDS = ("prefix", "path")  # the matched prefix, or the whole path
ROUTE_PATH_KINDS = ("exact", "prefix", "regex")
ROUTE_HEADER_KINDS = ("exact", "prefix", "regex", "present", "absent")
ROUTE_QUERY_KINDS = ("exact", "regex", "present")
ROUTES_MAX = 200  # per service
ROUTE_SPLIT_MAX = 20
ROUTE_WEIGHT_MAX = 1_000_000
# Headers a route may not set or remove: framing and hop-by-hop ones are the proxy's (a
# route changing them could desynchronize the two sides of a connection: smuggling).
ROUTE_FORBIDDEN_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    "transfer-encoding", "content-length", "host",
})

# A gateway's report lists at most this many used keys (`gateway.keys_used`).
MAX_KEYS_USED = 10_000
