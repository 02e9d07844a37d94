"""The live routing state of one upstream listener, swapped whole on each snapshot.

A request reads `runtime.state` once and keeps that object, so applying a new
snapshot (one attribute assignment) never disturbs requests in flight, and a
removed endpoint is simply absent from the next request's state. Everything a
request needs from the policy is turned into plain attributes here, at apply
time, so the hot path does no parsing and no policy lookups.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from agents.runtime.balancer import Balancer, RoundRobin
from agents.runtime.balancers import make_balancer
from agents.runtime.config import Upstream
from agents.runtime.dial import TlsRoute, inbound_sni
from agents.runtime.endpoint import Endpoint, endpoint_key
from agents.runtime.locality import EMPTY, Plan, plan
from agents.runtime.outlier import OutlierDetector
from agents.runtime.policy import Policy
from agents.runtime.pool import Pool
from agents.runtime.ratelimit import TokenBucket
from agents.runtime.snapshot import UpstreamSnapshot

if TYPE_CHECKING:
    from agents.runtime.routing import MatchTable
    from agents.runtime.splits import Route

ROUTABLE = ("passing", "warning", "critical")  # critical ones only receive traffic in panic
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class RouteState:
    """One snapshot's view of an upstream, with the policy flattened for the hot path."""

    def __init__(self, endpoints: tuple[Endpoint, ...], balancer: Balancer, policy: Policy,
                 bucket: TokenBucket | None = None, failover: tuple[str, str] = ("", "")
                 ) -> None:
        self.endpoints = endpoints
        self.balancer = balancer
        self.policy = policy
        self.plan: Plan = EMPTY
        self.bucket = bucket
        self.failover_target, self.failover_reason = failover
        self.connect_timeout = policy.connect_timeout_ms / 1000
        self.request_timeout = policy.request_timeout_ms / 1000
        self.idle_timeout = policy.idle_timeout_ms / 1000
        retries = policy.retries
        self.attempts = retries.attempts
        self.per_try_timeout = retries.per_try_timeout_ms / 1000
        self.retry_on = retries.on
        self.retry_5xx = "5xx" in retries.on
        self.retry_gateway = "gateway-error" in retries.on
        self.backoff_base = retries.backoff_base_ms / 1000
        self.backoff_max = retries.backoff_max_ms / 1000
        self.budget_percent = retries.budget_percent
        self.min_retries = retries.min_per_second
        breaker = policy.circuit_breaker
        self.max_connections = breaker.max_connections
        self.max_pending = breaker.max_pending
        self.max_requests = breaker.max_requests
        self.hash_on = policy.hash_on
        self.hashing = policy.hash_on is not None and balancer.consistent_hash
        # The upstream's L7 routes (splits.py); None: no routes, nothing to match.
        self.routes: MatchTable[Route] | None = None


class Destination:
    """Where a proxied request goes: an upstream's whole endpoint set, or one route
    target (a subset of it, or another service's). The counters circuit breaking and the
    retry budget read are per destination; pool and outlier detector are the owning
    upstream's (an endpoint's ejection holds in every view of it)."""

    state: RouteState
    pool: Pool
    outlier: OutlierDetector
    rng: random.Random
    service: str
    subset: str = ""  # a Target's subset; "" for a whole service
    edge: tuple[str, ...]  # the metrics key of its traffic

    def _counters(self) -> None:
        self.active = 0
        self.pending = 0
        self.retries_inflight = 0
        self.retries_peak = 0
        self.retries_total = 0
        self.rate_limited_total = 0
        self.circuit_open_total: dict[str, int] = {}

    def pick(self, state: RouteState, tried: Collection[str],
             hash_key: int | None = None) -> Endpoint | None:
        plan = state.plan
        endpoint = state.balancer.pick(plan.choose(self.rng), tried, hash_key)
        if endpoint is None and tried:
            # That share is used up for this request: anywhere routable, then anything at all.
            endpoint = state.balancer.pick(plan.fallback, tried, hash_key)
            if endpoint is None:
                endpoint = state.balancer.pick(plan.choose(self.rng), (), hash_key)
        return endpoint

    def retry_allowed(self, state: RouteState) -> bool:
        """The retry budget: retries in flight ≤ max(min, budget % of active requests)."""
        limit = max(state.min_retries, state.budget_percent * self.active / 100)
        return self.retries_inflight < limit

    def circuit_open(self, which: str) -> None:
        self.circuit_open_total[which] = self.circuit_open_total.get(which, 0) + 1


class UpstreamRuntime(Destination):
    def __init__(self, config: Upstream, zone: str = "") -> None:
        self.config = config
        self.service = config.service
        self.source = config.source
        self.edge = (config.source, config.service)  # the metrics key of this listener's traffic
        self.protocol = config.protocol
        self.zone = zone
        self.state = RouteState((), RoundRobin(), Policy())
        self.pool = Pool()
        self.bound: str = config.listen  # the real address once listening (port 0 resolved)
        self.outlier = OutlierDetector(config.service, self.rebuild)
        self.rng = random.Random()
        self._known: dict[str, Endpoint] = {}
        # What subsets select on, per endpoint key: (tags, metadata).
        self.labels: dict[str, tuple[tuple[str, ...], Mapping[str, str]]] = {}
        # Route targets viewing this upstream's endpoints, replanned when one is ejected.
        self.views: list[Target] = []
        self._counters()

    def apply(self, snapshot: UpstreamSnapshot | None) -> None:
        policy = snapshot.policy if snapshot else Policy()
        endpoints: list[Endpoint] = []
        known: dict[str, Endpoint] = {}
        labels: dict[str, tuple[tuple[str, ...], Mapping[str, str]]] = {}
        identities = self._peer_identities(snapshot)
        for spec in snapshot.endpoints if snapshot else ():
            if spec.status not in ROUTABLE:
                continue  # maintenance/draining: never, not even in panic
            tls = None
            if identities and spec.inbound is not None:
                tls = TlsRoute(spec.inbound[0], spec.inbound[1],
                               inbound_sni(spec.port, self.service), identities)
            key = endpoint_key(spec.id, spec.address, spec.port, tls)
            endpoint = self._known.get(key) or Endpoint(spec.id, spec.address, spec.port, tls=tls)
            # Same endpoint object across snapshots: counters, in-flight and ejection carry on.
            endpoint.weight, endpoint.zone, endpoint.status = spec.weight, spec.zone, spec.status
            endpoint.priority = spec.priority
            endpoint.removed = False
            endpoints.append(endpoint)
            known[key] = endpoint
            labels[key] = (spec.tags, dict(spec.metadata))
        for key, endpoint in self._known.items():
            if key not in known:
                endpoint.removed = True
                self.outlier.forget(endpoint)
        old = self.state
        balancer = old.balancer
        if balancer.name != policy.load_balancer:
            balancer = make_balancer(policy.load_balancer)
        bucket = old.bucket
        limit = policy.rate_limit
        if limit is None:
            bucket = None
        elif bucket is None or (bucket.rate, bucket.burst) != (limit.rps, float(limit.burst)):
            bucket = TokenBucket(limit.rps, limit.burst)
        failover = (snapshot.failover_target, snapshot.failover_reason) if snapshot else ("", "")
        state = RouteState(tuple(endpoints), balancer, policy, bucket, failover)
        self._known = known
        self.labels = labels
        self.outlier.configure(policy.outlier, state.endpoints)
        self._plan(state)
        self.state = state
        self.pool.retain(set(known))
        self.pool.idle_timeout = state.idle_timeout

    def _peer_identities(self, snapshot: UpstreamSnapshot | None) -> frozenset[str]:
        """Whom this upstream's mTLS dials may reach (empty: dial directly): the
        destination's identity (and an active failover target's)."""
        tls = self.pool.tls
        security = tls.security if tls is not None else None
        if snapshot is None or snapshot.mtls == "off" or security is None:
            return frozenset()
        names = {self.service, snapshot.failover_target} - {""}
        return frozenset(security.service_identity(n) for n in names)

    def _plan(self, state: RouteState) -> None:
        state.plan = plan(state.endpoints, zone=self.zone,
                          panic_threshold_percent=state.policy.panic_threshold_percent,
                          locality=state.policy.locality_enabled)

    def rebuild(self) -> None:
        """An endpoint was ejected or came back: recompute where traffic goes."""
        self._plan(self.state)
        for view in self.views:
            view.replan()

    def drain_events(self) -> list[dict[str, Any]]:
        return self.outlier.drain()

    def stats(self) -> dict[str, Any]:
        state = self.state
        return {
            "service": self.service,
            "source": self.source,
            "protocol": self.protocol,
            "listen": self.bound,
            "load_balancer": state.policy.load_balancer,
            "failover": {"active_target": state.failover_target,
                         "reason": state.failover_reason},
            "panic": state.plan.panic,
            "active_requests": self.active,
            "retries_in_flight": self.retries_inflight,
            "idle_connections": self.pool.idle_count(),
            "open_connections": self.pool.open,
            "endpoints": [
                {"id": e.id, "address": e.address, "port": e.port, "weight": e.weight,
                 "zone": e.zone, "priority": e.priority, "status": e.status,
                 "ejected": e.ejected, "active": e.active, "requests": e.requests,
                 "errors": e.errors}
                for e in state.endpoints
            ],
            "routes": self._route_stats(state),
        }

    @staticmethod
    def _route_stats(state: RouteState) -> list[dict[str, Any]]:
        table = state.routes
        if table is None:
            return []
        return [
            {"name": route.name, "fallback": route.spec.fallback,
             "targets": [{"subset": t.subset, "service": t.service, "weight": split.weight,
                          "healthy": t.healthy, "endpoints": len(t.state.endpoints),
                          "active_requests": t.active}
                         for split, t in zip(route.spec.split, route.targets, strict=True)]}
            for _, route in table.entries
        ]


class Target(Destination):
    """One target of a route's split: a subset of OWNER's endpoints (filtered by the
    subset's tags and metadata), or OWNER's whole set when it is another service. Its
    own balancer, plan and breaker counters; OWNER's policy, pool and outlier detector.
    A route's timeout and retry attempts override the policy's here. It carries OWNER's
    rate-limit bucket, which a request started on the target takes from (a gateway route
    to a subset); a mesh request took it at its listener's upstream, before routing."""

    def __init__(self, owner: UpstreamRuntime, endpoints: tuple[Endpoint, ...], *,
                 subset: str, edge: tuple[str, ...], timeout_ms: int | None = None,
                 attempts: int | None = None) -> None:
        self.owner = owner
        self.service = owner.service
        self.subset = subset
        self.edge = edge
        self.pool, self.outlier, self.rng = owner.pool, owner.outlier, owner.rng
        old = owner.state
        policy = old.policy
        state = RouteState(endpoints, make_balancer(policy.load_balancer), policy, old.bucket,
                           (old.failover_target, old.failover_reason))
        if timeout_ms is not None:
            state.request_timeout = timeout_ms / 1000
        if attempts is not None:
            state.attempts = attempts
        self.state = state
        self.healthy = False
        self._counters()
        self.replan()

    def replan(self) -> None:
        state = self.state
        state.plan = plan(state.endpoints, zone=self.owner.zone,
                          panic_threshold_percent=state.policy.panic_threshold_percent,
                          locality=state.policy.locality_enabled)
        # What fallback asks: has this target an endpoint that may get traffic now?
        self.healthy = any(e.healthy and e.weight > 0 for e in state.endpoints)
