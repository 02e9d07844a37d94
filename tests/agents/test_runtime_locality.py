"""Panic threshold, priority spill-over and zone preference: the selection maths."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agents.runtime.endpoint import Endpoint
from agents.runtime.locality import plan


def ep(name: str, zone: str = "z1", priority: int = 0, status: str = "passing",
       ejected: bool = False) -> Endpoint:
    e = Endpoint(name, "10.0.0.1", 1000 + len(name) * 7 + hash(name) % 1000, zone=zone,
                 status=status, priority=priority)
    e.ejected = ejected
    return e


def shares(p: object) -> dict[frozenset[str], float]:
    return {frozenset(e.id for e in g): s for s, g in p.shares()}  # type: ignore[attr-defined]


def test_all_healthy_local_zone_takes_everything() -> None:
    eps = [ep("a", "z1"), ep("b", "z1"), ep("c", "z2")]
    p = plan(eps, zone="z1", panic_threshold_percent=50, locality=True)
    assert shares(p) == {frozenset({"a", "b"}): 1.0}


def test_degraded_local_zone_spills_the_rest() -> None:
    # z1: 1 of 2 healthy → h = 0.5 → 0.7 local, 0.3 to z2.
    eps = [ep("a", "z1"), ep("b", "z1", status="critical"), ep("c", "z2"), ep("d", "z2")]
    p = plan(eps, zone="z1", panic_threshold_percent=50, locality=True)
    assert shares(p) == pytest.approx({frozenset({"a"}): 0.7, frozenset({"c", "d"}): 0.3})


def test_locality_off_balances_over_every_healthy_one() -> None:
    eps = [ep("a", "z1"), ep("b", "z1", status="critical"), ep("c", "z2")]
    p = plan(eps, zone="z1", panic_threshold_percent=50, locality=False)
    assert shares(p) == {frozenset({"a", "c"}): 1.0}


def test_priority_levels_spill_by_health_times_1_4() -> None:
    # Level 0: 1 of 4 healthy → 0.35; the remaining 0.65 goes to level 1 (healthy).
    eps = [ep("a"), ep("b", ejected=True), ep("c", status="critical"), ep("d", ejected=True),
           ep("e", priority=1), ep("f", priority=1), ep("g", priority=1), ep("h", priority=1)]
    p = plan(eps, zone="", panic_threshold_percent=0, locality=True)
    assert shares(p) == pytest.approx({frozenset({"a"}): 0.35,
                                       frozenset({"e", "f", "g", "h"}): 0.65})


def test_healthy_level_zero_keeps_all_traffic() -> None:
    eps = [ep("a"), ep("b"), ep("c", status="warning"), ep("x", priority=1)]
    p = plan(eps, zone="", panic_threshold_percent=50, locality=True)
    assert shares(p) == {frozenset({"a", "b", "c"}): 1.0}


def test_below_the_panic_threshold_everything_gets_traffic() -> None:
    eps = [ep("a"), ep("b", status="critical"), ep("c", ejected=True)]
    p = plan(eps, zone="z1", panic_threshold_percent=50, locality=True)
    assert p.panic and shares(p) == {frozenset({"a", "b", "c"}): 1.0}
    calm = plan(eps, zone="z1", panic_threshold_percent=30, locality=True)
    assert not calm.panic and shares(calm) == {frozenset({"a"}): 1.0}


def test_choose_follows_the_shares() -> None:
    eps = [ep("a", "z1"), ep("b", "z1", status="critical"), ep("c", "z2")]
    p = plan(eps, zone="z1", panic_threshold_percent=0, locality=True)
    rng = random.Random(5)
    counts = Counter(p.choose(rng)[0].id for _ in range(10_000))
    assert 0.66 < counts["a"] / 10_000 < 0.74
