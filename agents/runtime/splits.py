"""L7 routes at run time: route tables per upstream, weighted and sticky splits, fallback.

Built at apply time from the parsed snapshot (routes.py), after every upstream
has its endpoints: a route's targets read them (a subset filters the upstream's
own endpoints, a service target views that service's upstream, which the
agent keeps without a listener when it is only a `route_target`). A table is
hung on the upstream's RouteState (`state.routes`), so a request of an
upstream without routes pays one attribute check, and a new snapshot swaps
the table with the state.

Per request (`route_request`): the first matching route (routing.MatchTable),
then a target drawn by weight, or by the sticky key's hash; a drawn target
with no healthy endpoint falls back to the next one in split order (`next`,
wrapping round) or answers 503 `no-healthy-subset` (`fail`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from agents.runtime.endpoint import Endpoint
from agents.runtime.heads import request_hash_key
from agents.runtime.routes import NO_HEADER_OPS, HeaderOps, RouteSpec, path_bytes
from agents.runtime.routing import MatchTable, RequestView
from agents.runtime.snapshot import UpstreamSnapshot
from agents.runtime.upstream import Destination, Target, UpstreamRuntime

if TYPE_CHECKING:
    from agents.runtime.exchange import Exchange

_HASH_SPACE = float(1 << 64)


class Route:
    """One compiled route: its spec, its targets (in split order) and the weights."""

    __slots__ = ("spec", "name", "targets", "bounds", "picks", "total", "sticky", "fail",
                 "edge", "prefix_len", "request_ops", "response_ops", "rewrites", "new_path",
                 "new_prefix")

    def __init__(self, spec: RouteSpec, targets: Sequence[Target], edge: tuple[str, ...]
                 ) -> None:
        self.spec = spec
        self.name = spec.name
        self.targets = tuple(targets)
        bounds: list[int] = []
        picks: list[int] = []
        running = 0
        for index, split in enumerate(spec.split):
            if split.weight > 0:  # weight 0: never drawn (a fallback only)
                running += split.weight
                bounds.append(running)
                picks.append(index)
        self.bounds, self.picks, self.total = tuple(bounds), tuple(picks), running
        self.sticky = spec.sticky
        self.fail = spec.fallback == "fail"
        self.edge = edge  # where a request that found no healthy target is counted
        path = spec.match.path
        self.prefix_len = len(path.value.encode("utf-8", "surrogateescape")) if (
            path is not None and path.kind == "prefix") else 0
        ops = spec.request_headers
        self.request_ops: HeaderOps | None = None if ops is NO_HEADER_OPS else ops
        ops = spec.response_headers
        self.response_ops: HeaderOps | None = None if ops is NO_HEADER_OPS else ops
        self.rewrites = spec.rewrite_prefix is not None or spec.rewrite_path is not None
        # The rewrites as request-line bytes, once.
        self.new_path = None if spec.rewrite_path is None else path_bytes(spec.rewrite_path)
        self.new_prefix = None if spec.rewrite_prefix is None else path_bytes(
            spec.rewrite_prefix)

    def draw(self, point: float) -> int:
        """The split index for POINT in [0, 1): cumulative weights, in split order, so
        when weights move only the keys in the moved share change target."""
        index = bisect.bisect_right(self.bounds, point * self.total)
        return self.picks[min(index, len(self.picks) - 1)]

    def choose(self, point: float) -> Target | None:
        index = self.draw(point)
        targets = self.targets
        target = targets[index]
        if target.healthy:
            return target
        if self.fail:
            return None
        count = len(targets)
        for step in range(1, count):
            target = targets[(index + step) % count]
            if target.healthy:
                return target
        return None

    def rewrite(self, url: bytes) -> bytes:
        path, mark, query = url.partition(b"?")
        if self.new_path is not None:
            path = self.new_path
        elif self.new_prefix is not None:
            rest = path[self.prefix_len:]
            new = self.new_prefix
            # "/api" → "/v2/api" keeps "/api/x" → "/v2/api/x"; → "/" gives "/x", not "//x"
            path = new[:-1] + rest if new.endswith(b"/") and rest.startswith(b"/") else (
                new + rest)
        return path + mark + query


RouteTable = MatchTable[Route]


def route_request(ex: Exchange, table: RouteTable) -> Destination | None:
    """Where EX goes: the first matching route's target (its rewrites and header changes
    applied to EX), EX's destination (the listener's upstream, or the service a gateway
    route names) when no route matches, or None when the route has no healthy target (the
    caller answers 503 no-healthy-subset)."""
    upstream = ex.target
    route = table.first(RequestView.of(ex.method, ex.url, ex.headers))
    if route is None:
        return upstream
    ex.route = route
    key = None
    if route.sticky is not None:
        key = request_hash_key(route.sticky, ex.client.peer, ex.headers)
    point = upstream.rng.random() if key is None else key / _HASH_SPACE
    target = route.choose(point)
    if target is None:
        ex.edge = route.edge
        return None
    ex.edge = target.edge
    if route.rewrites:
        ex.url = route.rewrite(ex.url)
    ops = route.request_ops
    if ops is not None:
        # The names a route may touch exclude Host and the framing headers (routes.py),
        # so what the first pass learned (framing, Host, Expect) still holds.
        ex.headers = ops.apply(ex.headers)
        ex.forwarded = ex.reread_headers()  # the listener's rules (a gateway's are its own)
    return target


def subset_endpoints(runtime: UpstreamRuntime, snapshot: UpstreamSnapshot | None,
                     subset: str) -> tuple[Endpoint, ...]:
    """The endpoints of RUNTIME (SNAPSHOT applied) that SUBSET selects: every listed tag
    and metadata pair; none when the service does not define SUBSET. The one rule for a
    mesh route's subset target and a gateway route's."""
    spec = snapshot.subsets.get(subset) if snapshot is not None else None
    if spec is None:
        return ()
    if snapshot is not None and snapshot.failover_target:
        # The endpoints are the failover target's (docs/policies.md), whose instances
        # need not carry this service's subset labels: the whole service has moved, so
        # every subset is served by all of them.
        return runtime.state.endpoints
    labels = runtime.labels
    return tuple(e for e in runtime.state.endpoints if spec.selects(*labels[e.key]))


def build_routes(runtime: UpstreamRuntime, snapshot: UpstreamSnapshot | None,
                 services: Mapping[str, UpstreamRuntime]) -> RouteTable | None:
    """RUNTIME's route table for SNAPSHOT (None: no routes, or a TCP listener, where L7
    routes do not apply); registers each target as a view of the upstream it reads."""
    if snapshot is None or not snapshot.routes or runtime.protocol != "http":
        return None
    entries = []
    for spec in snapshot.routes:
        targets: list[Target] = []
        for split in spec.split:
            if split.subset:
                owner = runtime
                endpoints = subset_endpoints(runtime, snapshot, split.subset)
                destination = runtime.service
            else:
                found = services.get(split.service)
                owner = found if found is not None else runtime
                endpoints = found.state.endpoints if found is not None else ()
                destination = split.service
            edge = (runtime.source, destination, split.subset, spec.name)
            target = Target(owner, endpoints, subset=split.subset, edge=edge,
                            timeout_ms=spec.timeout_ms, attempts=spec.attempts)
            owner.views.append(target)
            targets.append(target)
        route = Route(spec, targets, (runtime.source, runtime.service, "", spec.name))
        entries.append((spec.match, route))
    return MatchTable.of(entries)


def apply_upstreams(listeners: Sequence[UpstreamRuntime],
                    extra: Mapping[str, UpstreamRuntime],
                    upstreams: Mapping[str, UpstreamSnapshot],
                    make: Callable[[str, str], UpstreamRuntime]) -> dict[str, UpstreamRuntime]:
    """Apply a snapshot's upstreams to the LISTENERS (agent.yaml's), then their routes.
    EXTRA are the runtimes kept for split targets without a listener (by service); the
    new set is returned: made with MAKE(service, source) when new, retired when no route
    names them any more."""
    by_service: dict[str, UpstreamRuntime] = {}
    for runtime in listeners:
        runtime.apply(upstreams.get(runtime.service))
        by_service.setdefault(runtime.service, runtime)
    kept: dict[str, UpstreamRuntime] = {}
    for runtime in listeners:
        snapshot = upstreams.get(runtime.service)
        if snapshot is None or runtime.protocol != "http":
            continue
        for spec in snapshot.routes:
            for service in sorted(spec.services - by_service.keys() - kept.keys()):
                target = extra.get(service) or make(service, runtime.source)
                target.apply(upstreams.get(service))
                kept[service] = target
    for service, runtime in extra.items():
        if service not in kept:
            runtime.apply(None)
            runtime.pool.close_all()
    by_service.update(kept)
    for runtime in [*listeners, *kept.values()]:
        runtime.views = []  # the tables about to be built register their targets again
    for runtime in listeners:
        runtime.state.routes = build_routes(runtime, upstreams.get(runtime.service), by_service)
    return kept
