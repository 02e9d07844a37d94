"""The live routing state of one upstream listener, swapped whole on each snapshot.

A request reads `runtime.state` once and keeps that object, so applying a new
snapshot (one attribute assignment) never disturbs requests in flight, and a
removed endpoint is simply absent from the next request's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.runtime.balancer import Balancer, Endpoint, RoundRobin, make_balancer
from agents.runtime.config import Upstream
from agents.runtime.pool import Pool
from agents.runtime.snapshot import Policy, UpstreamSnapshot

ROUTABLE = ("passing", "warning")


@dataclass(frozen=True)
class RouteState:
    endpoints: tuple[Endpoint, ...]
    balancer: Balancer
    policy: Policy

    @property
    def connect_timeout(self) -> float:
        return self.policy.connect_timeout_ms / 1000

    @property
    def request_timeout(self) -> float:
        return self.policy.request_timeout_ms / 1000


class UpstreamRuntime:
    def __init__(self, config: Upstream) -> None:
        self.config = config
        self.service = config.service
        self.source = config.source
        self.protocol = config.protocol
        self.state = RouteState((), RoundRobin(), Policy())
        self.pool = Pool()
        self.bound: str = config.listen  # the real address once listening (port 0 resolved)
        self._known: dict[str, Endpoint] = {}

    def apply(self, snapshot: UpstreamSnapshot | None) -> None:
        policy = snapshot.policy if snapshot else Policy()
        endpoints: list[Endpoint] = []
        known: dict[str, Endpoint] = {}
        for spec in snapshot.endpoints if snapshot else ():
            if spec.status not in ROUTABLE:
                continue  # the control plane filters these too; never route to them regardless
            key = f"{spec.id}@{spec.address}:{spec.port}"
            endpoint = self._known.get(key) or Endpoint(spec.id, spec.address, spec.port)
            # Same endpoint object across snapshots: its counters and in-flight count carry on.
            endpoint.weight, endpoint.zone, endpoint.status = spec.weight, spec.zone, spec.status
            endpoint.removed = False
            endpoints.append(endpoint)
            known[key] = endpoint
        for key, endpoint in self._known.items():
            if key not in known:
                endpoint.removed = True
        balancer = self.state.balancer
        if balancer.name != policy.load_balancer:
            balancer = make_balancer(policy.load_balancer)
        self._known = known
        self.state = RouteState(tuple(endpoints), balancer, policy)
        self.pool.retain(set(known))

    def stats(self) -> dict[str, Any]:
        state = self.state
        return {
            "service": self.service,
            "source": self.source,
            "protocol": self.protocol,
            "listen": self.bound,
            "load_balancer": state.policy.load_balancer,
            "idle_connections": self.pool.idle_count(),
            "endpoints": [
                {"id": e.id, "address": e.address, "port": e.port, "weight": e.weight,
                 "zone": e.zone, "status": e.status, "active": e.active,
                 "requests": e.requests, "errors": e.errors}
                for e in state.endpoints
            ],
        }
