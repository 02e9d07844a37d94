"""The load balancers by name: the policy's `load_balancer` values are this registry's keys.

Adding a balancer is one class and one entry here; the snapshot parser, the
control plane's choices and its "which balancers hash" rule all read it.
"""

from __future__ import annotations

import random

from agents.runtime.balancer import (
    Balancer,
    LeastRequest,
    PeakEwma,
    RandomPick,
    RoundRobin,
    SmoothWeighted,
)
from agents.runtime.hashing import Maglev, RingHash

BALANCERS: dict[str, type[Balancer]] = {
    cls.name: cls
    for cls in (RoundRobin, SmoothWeighted, RandomPick, LeastRequest, PeakEwma, RingHash, Maglev)
}
BALANCER_NAMES = tuple(BALANCERS)
CONSISTENT_HASH_BALANCERS = tuple(n for n, cls in BALANCERS.items() if cls.consistent_hash)
DEFAULT_BALANCER = RoundRobin.name


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    cls = BALANCERS.get(name)
    if cls is None:
        raise ValueError(f"unknown load balancer {name!r}")
    return cls(rng)
