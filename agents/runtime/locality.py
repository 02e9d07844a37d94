"""Which endpoints a request may go to: panic, priority levels and zones (docs/policies.md).

The plan is computed when the snapshot or an endpoint's health changes, never
per request: a request draws one random number to choose a group (only when
traffic is split) and the balancer picks inside that group's tuple.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

from agents.runtime.endpoint import Endpoint

OVERPROVISIONING = 1.4  # Envoy's factor: a level at ≥ 71 % health takes all its traffic


@dataclass(frozen=True)
class Plan:
    groups: tuple[tuple[Endpoint, ...], ...]  # endpoints of each traffic share
    bounds: tuple[float, ...]  # cumulative shares, the last one 1.0
    fallback: tuple[Endpoint, ...]  # every routable endpoint: where retries may spill
    panic: bool = False

    def choose(self, rng: random.Random) -> tuple[Endpoint, ...]:
        if len(self.groups) == 1:
            return self.groups[0]
        index = bisect.bisect_right(self.bounds, rng.random())
        return self.groups[min(index, len(self.groups) - 1)]

    def shares(self) -> list[tuple[float, tuple[Endpoint, ...]]]:
        lows = (0.0, *self.bounds[:-1])
        return [(round(hi - lo, 6), g) for lo, hi, g in zip(lows, self.bounds, self.groups,
                                                             strict=True)]


EMPTY = Plan(((),), (1.0,), ())


def _spill(levels: Sequence[tuple[int, int]]) -> list[float]:
    """Share of traffic per level given (healthy, total) each: min(1, h × 1.4) of what is left."""
    left, shares = 1.0, []
    for healthy, total in levels:
        share = min(left, OVERPROVISIONING * healthy / total) if total else 0.0
        shares.append(share)
        left -= share
    assigned = sum(shares)
    # Every level degraded: Envoy normalises so the traffic still goes somewhere.
    return [s / assigned for s in shares] if assigned > 0 else shares


def _zones(level: Sequence[Endpoint], zone: str) -> list[tuple[float, tuple[Endpoint, ...]]]:
    local = [e for e in level if e.zone == zone]
    healthy_local = tuple(e for e in local if e.healthy)
    healthy_other = tuple(e for e in level if e.zone != zone and e.healthy)
    if not local or not healthy_other:
        return [(1.0, tuple(e for e in level if e.healthy))]
    share = min(1.0, OVERPROVISIONING * len(healthy_local) / len(local))
    return [(share, healthy_local), (1.0 - share, healthy_other)]


def plan(endpoints: Sequence[Endpoint], *, zone: str, panic_threshold_percent: int,
         locality: bool) -> Plan:
    if not endpoints:
        return EMPTY
    healthy = tuple(e for e in endpoints if e.healthy)
    if len(healthy) * 100 < panic_threshold_percent * len(endpoints):
        every = tuple(endpoints)
        return Plan((every,), (1.0,), every, panic=True)
    by_priority: dict[int, list[Endpoint]] = {}
    for e in endpoints:
        by_priority.setdefault(e.priority, []).append(e)
    levels = [by_priority[p] for p in sorted(by_priority)]
    level_shares = _spill([(sum(e.healthy for e in lv), len(lv)) for lv in levels])
    weighted: list[tuple[float, tuple[Endpoint, ...]]] = []
    for share, level in zip(level_shares, levels, strict=True):
        if share <= 0:
            continue
        parts = _zones(level, zone) if locality and zone else [(1.0, tuple(
            e for e in level if e.healthy))]
        weighted += [(share * s, g) for s, g in parts if s > 0 and g]
    if not weighted:
        return Plan(((),), (1.0,), healthy)
    total = sum(s for s, _ in weighted)
    bounds, running = [], 0.0
    for s, _ in weighted:
        running += s / total
        bounds.append(running)
    bounds[-1] = 1.0
    return Plan(tuple(g for _, g in weighted), tuple(bounds), healthy)
