"""Load balancers over a snapshot's endpoints, chosen by the policy's `load_balancer`.

pick() takes the keys already tried for this request and never returns one of
them, so a retry after a refused connection always moves to another endpoint.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

BALANCERS = ("round_robin", "weighted_round_robin", "random", "least_request")


class Endpoint:
    """One instance we may send traffic to; counters live here so stats are cheap."""

    __slots__ = ("key", "id", "address", "port", "weight", "zone", "status",
                 "active", "requests", "errors", "removed")

    def __init__(self, id: str, address: str, port: int, weight: int = 100, zone: str = "",
                 status: str = "passing") -> None:
        self.id = id
        self.address = address
        self.port = port
        self.key = f"{id}@{address}:{port}"
        self.weight = weight
        self.zone = zone
        self.status = status
        self.active = 0  # in-flight requests, what least_request compares
        self.requests = 0
        self.errors = 0
        self.removed = False  # set when a snapshot drops it: no new requests, no pooling

    def __repr__(self) -> str:
        return f"Endpoint({self.address}:{self.port} w={self.weight})"


class Balancer:
    name = "base"

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = ()) -> Endpoint | None:
        raise NotImplementedError


def _candidates(endpoints: Sequence[Endpoint], tried: Collection[str]) -> list[Endpoint]:
    return [e for e in endpoints if e.weight > 0 and e.key not in tried]


class RoundRobin(Balancer):
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = ()) -> Endpoint | None:
        n = len(endpoints)
        for step in range(n):
            endpoint = endpoints[(self._next + step) % n]
            if endpoint.weight > 0 and endpoint.key not in tried:
                self._next = (self._next + step + 1) % n
                return endpoint
        return None


class SmoothWeighted(Balancer):
    """nginx's smooth weighted round robin: weights honoured, picks interleaved."""

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = ()) -> Endpoint | None:
        candidates = _candidates(endpoints, tried)
        if not candidates:
            return None
        total = 0
        best: Endpoint | None = None
        best_weight = 0
        for endpoint in candidates:
            current = self._current.get(endpoint.key, 0) + endpoint.weight
            self._current[endpoint.key] = current
            total += endpoint.weight
            if best is None or current > best_weight:
                best, best_weight = endpoint, current
        assert best is not None
        self._current[best.key] = best_weight - total
        if len(self._current) > 4 * len(endpoints) + 16:
            # Endpoints come and go with snapshots; forget the ones that left.
            live = {e.key for e in endpoints}
            self._current = {k: v for k, v in self._current.items() if k in live}
        return best


class RandomPick(Balancer):
    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = ()) -> Endpoint | None:
        candidates = _candidates(endpoints, tried)
        return self._rng.choice(candidates) if candidates else None


class LeastRequest(Balancer):
    """Power of two choices: sample two, take the one with fewer in-flight requests."""

    name = "least_request"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = ()) -> Endpoint | None:
        candidates = _candidates(endpoints, tried)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        a, b = self._rng.sample(candidates, 2)
        # Weight scales capacity: compare active/weight without dividing.
        return a if a.active * b.weight <= b.active * a.weight else b


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted_round_robin":
        return SmoothWeighted()
    if name == "random":
        return RandomPick(rng)
    if name == "least_request":
        return LeastRequest(rng)
    raise ValueError(f"unknown load balancer {name!r}")
