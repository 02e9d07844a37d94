"""Load balancers: distributions and the never-retry-the-same-endpoint rule."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.runtime.balancer import LeastRequest
from agents.runtime.balancers import BALANCER_NAMES, make_balancer
from agents.runtime.endpoint import Endpoint


def endpoints(*weights: int) -> list[Endpoint]:
    return [Endpoint(f"e{i}", "127.0.0.1", 8000 + i, weight=w) for i, w in enumerate(weights)]


def test_round_robin_is_even() -> None:
    eps = endpoints(1, 1, 1)
    balancer = make_balancer("round_robin")
    counts = Counter(balancer.pick(eps).id for _ in range(300))  # type: ignore[union-attr]
    assert counts == {"e0": 100, "e1": 100, "e2": 100}


def test_smooth_weighted_honours_weights_and_interleaves() -> None:
    eps = endpoints(5, 1, 1)
    balancer = make_balancer("weighted_round_robin")
    picks = [balancer.pick(eps).id for _ in range(7)]  # type: ignore[union-attr]
    assert Counter(picks) == {"e0": 5, "e1": 1, "e2": 1}
    assert picks == ["e0", "e0", "e1", "e0", "e2", "e0", "e0"]  # nginx's smooth sequence


def test_random_spreads_over_all_endpoints() -> None:
    eps = endpoints(1, 1, 1, 1)
    balancer = make_balancer("random", random.Random(7))
    counts = Counter(balancer.pick(eps).id for _ in range(4000))  # type: ignore[union-attr]
    assert all(800 < c < 1200 for c in counts.values())


def test_least_request_prefers_the_less_loaded() -> None:
    eps = endpoints(1, 1)
    eps[0].active = 10
    balancer = LeastRequest(random.Random(1))
    assert all(balancer.pick(eps) is eps[1] for _ in range(50))


def test_least_request_spreads_by_load_over_many() -> None:
    eps = endpoints(*[1] * 10)
    for i, e in enumerate(eps):
        e.active = i
    balancer = LeastRequest(random.Random(3))
    counts = Counter(balancer.pick(eps).id for _ in range(5000))  # type: ignore[union-attr]
    assert counts["e0"] > counts["e5"] > counts.get("e9", 0)


@pytest.mark.parametrize("name", BALANCER_NAMES)
def test_tried_endpoints_are_skipped_and_none_when_all_tried(name: str) -> None:
    eps = endpoints(1, 2, 3)
    balancer = make_balancer(name)
    tried: set[str] = set()
    for _ in range(3):
        chosen = balancer.pick(eps, tried)
        assert chosen is not None and chosen.key not in tried
        tried.add(chosen.key)
    assert balancer.pick(eps, tried) is None


@pytest.mark.parametrize("name", BALANCER_NAMES)
def test_zero_weight_and_empty_sets_get_nothing(name: str) -> None:
    balancer = make_balancer(name)
    assert balancer.pick([]) is None
    assert balancer.pick(endpoints(0, 0)) is None


def test_unknown_balancer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown load balancer"):
        make_balancer("fastest")


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8),
       rounds=st.integers(min_value=1, max_value=5))
def test_smooth_weighted_gives_each_its_exact_share_per_cycle(weights: list[int],
                                                              rounds: int) -> None:
    eps = endpoints(*weights)
    balancer = make_balancer("weighted_round_robin")
    total = sum(weights)
    counts = Counter(balancer.pick(eps).id for _ in range(total * rounds))  # type: ignore[union-attr]
    assert counts == {f"e{i}": w * rounds for i, w in enumerate(weights)}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=8), data=st.data())
def test_any_balancer_only_returns_untried_listed_endpoints(n: int, data: st.DataObject) -> None:
    eps = endpoints(*[1] * n)
    name = data.draw(st.sampled_from(BALANCER_NAMES))
    tried = {e.key for e in data.draw(st.lists(st.sampled_from(eps), max_size=n))}
    chosen = make_balancer(name).pick(eps, tried)
    if len(tried) == n:
        assert chosen is None
    else:
        assert chosen in eps and chosen.key not in tried
