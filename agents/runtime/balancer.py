"""Load balancers over a snapshot's endpoints, chosen by the policy's `load_balancer`.

pick() takes the keys already tried for this request and never returns one of
them, so a retry after a refused connection always moves to another endpoint.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection, Sequence
from typing import ClassVar

from agents.runtime.endpoint import EWMA_DECAY_S, Endpoint


class Balancer:
    name: ClassVar[str] = "base"
    label: ClassVar[str] = ""  # what the console shows
    # A consistent-hash balancer: the request's hash key (policy.hash_on) chooses.
    consistent_hash: ClassVar[bool] = False
    # Traffic follows the endpoints' weights (else weight 0 only takes one out);
    # the control plane's what-if splits load by it.
    weighted: ClassVar[bool] = True

    def __init__(self, rng: random.Random | None = None) -> None:
        """rng: the random source, for the balancers that sample."""

    def pick(self, endpoints: Sequence[Endpoint], tried: Collection[str] = (),
             hash_key: int | None = None) -> Endpoint | None:
        raise NotImplementedError


def _candidates(endpoints: Sequence[Endpoint], tried: Collection[str]) -> list[Endpoint]:
    return [e for e in endpoints if e.weight > 0 and e.key not in tried]


class RoundRobin(Balancer):
    name = "round_robin"
    label = "Round robin"
    weighted = False

    def __init__(self, rng: random.Random | None = None) -> None:
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
    label = "Weighted round robin (smooth)"

    def __init__(self, rng: random.Random | None = None) -> None:
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
    label = "Random"
    weighted = False

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
    label = "Least request (P2C)"

    def _lighter_or_equal(self, a: Endpoint, b: Endpoint) -> bool:
        # Weight scales capacity: compare active/weight without dividing.
        return a.active * b.weight <= b.active * a.weight


class PeakEwma(_PowerOfTwo):
    """Linkerd/Finagle: P2C over cost = peak-EWMA latency × (in flight + 1) / weight."""

    name = "peak_ewma"
    label = "Peak EWMA (latency-aware)"

    def _lighter_or_equal(self, a: Endpoint, b: Endpoint) -> bool:
        return _cost(a) <= _cost(b)


def _cost(e: Endpoint) -> float:
    # A fresh endpoint (no latency seen yet) costs like a 1 ms one, so it gets tried.
    ewma = e.ewma_ms
    if ewma and e.active == 0:
        # Decay while idle too, or one slow answer would starve it forever.
        ewma *= math.exp(-(time.monotonic() - e.ewma_at) / EWMA_DECAY_S)
    return max(ewma, 1.0) * (e.active + 1) / e.weight
