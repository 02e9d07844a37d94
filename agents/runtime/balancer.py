"""Load balancers over a snapshot's endpoints, chosen by the policy's `load_balancer`.

pick() takes the keys already tried for this request and never returns one of
them, so a retry after a refused connection always moves to another endpoint.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection, Sequence

from agents.runtime.histogram import NBUCKETS, bucket_index
from agents.runtime.policy import BALANCER_NAMES

BALANCERS = BALANCER_NAMES
EWMA_DECAY_S = 10.0  # Finagle's default time constant for peak EWMA


class Endpoint:
    """One instance we may send traffic to; counters live here so stats are cheap."""

    __slots__ = ("key", "id", "address", "port", "weight", "zone", "status", "priority",
                 "active", "requests", "errors", "removed", "latency_sum_ms", "buckets",
                 "ewma_ms", "ewma_at", "ejected", "times_ejected", "consecutive_5xx",
                 "consecutive_gateway", "ejections", "return_timer", "returned_at")

    def __init__(self, id: str, address: str, port: int, weight: int = 100, zone: str = "",
                 status: str = "passing", priority: int = 0) -> None:
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
        self.priority = priority
        self.latency_sum_ms = 0.0
        self.buckets = [0] * NBUCKETS
        self.ewma_ms = 0.0
        self.ewma_at = 0.0
        # Outlier detection (agents.runtime.outlier) keeps its state here.
        self.ejected = False
        self.times_ejected = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejections = 0
        self.return_timer: object | None = None
        self.returned_at = 0.0  # when the last ejection ended (the multiplier decays from then)

    @property
    def healthy(self) -> bool:
        return not self.ejected and self.status in ("passing", "warning")

    def observe(self, latency_ms: float, error: bool, now: float | None = None) -> None:
        """One finished request: counters, histogram, and the peak EWMA of its latency.
        now: time.monotonic(), if the caller has it."""
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_sum_ms += latency_ms
        self.buckets[bucket_index(latency_ms)] += 1
        if now is None:
            now = time.monotonic()
        if latency_ms > self.ewma_ms:
            self.ewma_ms = latency_ms  # peak sensitivity: a slow answer counts at once
        else:
            decay = math.exp(-(now - self.ewma_at) / EWMA_DECAY_S)
            self.ewma_ms = self.ewma_ms * decay + latency_ms * (1.0 - decay)
        self.ewma_at = now

    def __repr__(self) -> str:
        return f"Endpoint({self.address}:{self.port} w={self.weight})"


class Balancer:
    name = "base"

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        raise NotImplementedError


def _candidates(endpoints: Sequence[Endpoint], tried: Collection[str]) -> list[Endpoint]:
    return [e for e in endpoints if e.weight > 0 and e.key not in tried]


class RoundRobin(Balancer):
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
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

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
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

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        candidates = _candidates(endpoints, tried)
        return self._rng.choice(candidates) if candidates else None


class _PowerOfTwo(Balancer):
    """Power of two choices: sample two candidates, keep the lighter one."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        candidates = _candidates(endpoints, tried)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        a, b = self._rng.sample(candidates, 2)
        return a if self._lighter_or_equal(a, b) else b

    def _lighter_or_equal(self, a: Endpoint, b: Endpoint) -> bool:
        raise NotImplementedError


class LeastRequest(_PowerOfTwo):
    """P2C on in-flight requests."""

    name = "least_request"

    def _lighter_or_equal(self, a: Endpoint, b: Endpoint) -> bool:
        # Weight scales capacity: compare active/weight without dividing.
        return a.active * b.weight <= b.active * a.weight


class PeakEwma(_PowerOfTwo):
    """Linkerd/Finagle: P2C over cost = peak-EWMA latency × (in flight + 1) / weight."""

    name = "peak_ewma"

    def _lighter_or_equal(self, a: Endpoint, b: Endpoint) -> bool:
        return _cost(a) <= _cost(b)


def _cost(e: Endpoint) -> float:
    # A fresh endpoint (no latency seen yet) costs like a 1 ms one, so it gets tried.
    ewma = e.ewma_ms
    if ewma and e.active == 0:
        # Decay while idle too, or one slow answer would starve it forever.
        ewma *= math.exp(-(time.monotonic() - e.ewma_at) / EWMA_DECAY_S)
    return max(ewma, 1.0) * (e.active + 1) / e.weight


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted_round_robin":
        return SmoothWeighted()
    if name == "random":
        return RandomPick(rng)
    if name == "least_request":
        return LeastRequest(rng)
    if name == "peak_ewma":
        return PeakEwma(rng)
    if name in ("ring_hash", "maglev"):
        from agents.runtime.hashing import Maglev, RingHash

        return RingHash(rng) if name == "ring_hash" else Maglev(rng)
    raise ValueError(f"unknown load balancer {name!r}")
