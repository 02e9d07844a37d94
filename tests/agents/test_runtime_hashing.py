"""Consistent hashing (ring hash, Maglev) and peak EWMA: distributions and stability."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.runtime.balancer import PeakEwma
from agents.runtime.endpoint import Endpoint
from agents.runtime.hashing import Maglev, RingHash, hash64


def endpoints(n: int, weight: int = 100) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(f"e{i}", "10.0.0.1", 8000 + i, weight=weight) for i in range(n))


KEYS = [hash64(b"user-%d" % i) for i in range(5000)]


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_a_key_stays_on_its_endpoint(kind: type[RingHash]) -> None:
    eps = endpoints(5)
    balancer = kind()
    first = [balancer.pick(eps, (), k) for k in KEYS[:200]]
    again = [balancer.pick(eps, (), k) for k in KEYS[:200]]
    assert first == again
    # A new balancer (another worker, a restart) maps keys the same way.
    other = kind()
    assert [other.pick(eps, (), k) for k in KEYS[:200]] == first


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_when_one_of_n_leaves_only_about_1_over_n_keys_move(kind: type[RingHash]) -> None:
    n = 8
    eps = endpoints(n)
    balancer = kind()
    before = {k: balancer.pick(eps, (), k) for k in KEYS}
    gone = eps[3]
    rest = tuple(e for e in eps if e is not gone)
    after = {k: balancer.pick(rest, (), k) for k in KEYS}
    moved = [k for k in KEYS if before[k] is not after[k]]
    # The departed one's keys move (Maglev may shuffle a few more); about 1/N in all.
    assert all(before[k] is not gone or k in moved for k in KEYS)
    if kind is RingHash:
        assert all(before[k] is gone for k in moved)
    assert 0.5 / n < len(moved) / len(KEYS) < 1.6 / n


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_keys_spread_by_weight(kind: type[RingHash]) -> None:
    eps = (Endpoint("a", "10.0.0.1", 1, weight=100), Endpoint("b", "10.0.0.1", 2, weight=300))
    balancer = kind()
    counts = Counter(balancer.pick(eps, (), k).id for k in KEYS)  # type: ignore[union-attr]
    assert 0.18 < counts["a"] / len(KEYS) < 0.32


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_no_key_falls_back_to_random_and_tried_is_avoided(kind: type[RingHash]) -> None:
    eps = endpoints(3)
    balancer = kind(random.Random(3))
    assert len({balancer.pick(eps).id for _ in range(100)}) == 3  # type: ignore[union-attr]
    owner = balancer.pick(eps, (), KEYS[0])
    assert owner is not None
    other = balancer.pick(eps, {owner.key}, KEYS[0])
    assert other is not None and other is not owner


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=2, max_value=12), st.integers(min_value=0, max_value=2**64 - 1))
def test_ring_hash_always_lands_on_a_live_endpoint(n: int, key: int) -> None:
    eps = endpoints(n)
    chosen = RingHash().pick(eps, (), key)
    assert chosen in eps


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=6))
def test_ring_hash_shares_follow_weights(weights: list[int]) -> None:
    eps = tuple(Endpoint(f"e{i}", "10.0.0.2", 9000 + i, weight=w * 100)
                for i, w in enumerate(weights))
    balancer = RingHash()
    counts = Counter(balancer.pick(eps, (), k).id for k in KEYS)  # type: ignore[union-attr]
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(counts[f"e{i}"] / len(KEYS) - w / total) < 0.12


def test_peak_ewma_avoids_the_slow_endpoint() -> None:
    fast, slow = endpoints(2)
    for _ in range(5):
        fast.observe(2.0, False)
        slow.observe(200.0, False)
    balancer = PeakEwma(random.Random(2))
    counts = Counter(balancer.pick((fast, slow)).id for _ in range(200))  # type: ignore[union-attr]
    assert counts["e0"] == 200


def test_peak_ewma_reacts_to_a_latency_peak_at_once() -> None:
    e = endpoints(1)[0]
    e.observe(5.0, False)
    e.observe(500.0, False)
    assert e.ewma_ms == 500.0
