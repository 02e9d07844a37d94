"""Outlier ejection durations and their Envoy-like decay, on an explicit clock."""

from __future__ import annotations

import asyncio

import pytest

from agents.runtime.endpoint import Endpoint
from agents.runtime.outlier import OutlierDetector
from agents.runtime.policy import OutlierPolicy

pytestmark = pytest.mark.timeout(10)

BASE_MS = 1000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector(clock: Clock) -> tuple[OutlierDetector, Endpoint]:
    endpoints = [Endpoint(f"e{i}", "127.0.0.1", 9000 + i) for i in range(4)]
    found = OutlierDetector("payments", lambda: None, clock=clock)
    found.configure(OutlierPolicy(consecutive_5xx=1, consecutive_gateway=0,
                                  base_ejection_ms=BASE_MS, max_ejection_percent=50),
                    endpoints)
    return found, endpoints[0]


def eject_and_return(found: OutlierDetector, endpoint: Endpoint) -> int:
    """One 5xx ejects it; the return timer is fired by hand. Returns the ejection's duration."""
    found.record(endpoint, 500)
    assert endpoint.ejected
    duration = int(found.events[-1]["duration_ms"])
    end_ejection(found, endpoint)
    return duration


def end_ejection(found: OutlierDetector, endpoint: Endpoint) -> None:
    """What the return timer would do when the ejection time is over."""
    timer = endpoint.return_timer
    assert isinstance(timer, asyncio.TimerHandle)
    timer.cancel()
    found._return(endpoint)


async def test_ejections_in_a_row_grow_by_the_base_each_time() -> None:
    clock = Clock()
    found, endpoint = detector(clock)
    assert [eject_and_return(found, endpoint) for _ in range(3)] == [1000, 2000, 3000]


async def test_the_multiplier_drops_by_one_per_base_interval_spent_healthy() -> None:
    clock = Clock()
    found, endpoint = detector(clock)
    for _ in range(3):
        eject_and_return(found, endpoint)
    assert endpoint.times_ejected == 3
    clock.now += 1.5 * BASE_MS / 1000  # one whole interval healthy: 3 → 2, then this ejection
    assert eject_and_return(found, endpoint) == 3000
    clock.now += 2 * BASE_MS / 1000  # two intervals: 3 → 1, then this ejection
    assert eject_and_return(found, endpoint) == 2000


async def test_an_endpoint_healthy_for_long_starts_again_from_the_base() -> None:
    clock = Clock()
    found, endpoint = detector(clock)
    for _ in range(5):
        eject_and_return(found, endpoint)
    clock.now += 3600
    assert eject_and_return(found, endpoint) == BASE_MS
    assert endpoint.times_ejected == 1


async def test_time_spent_ejected_does_not_count_as_healthy() -> None:
    clock = Clock()
    found, endpoint = detector(clock)
    eject_and_return(found, endpoint)
    found.record(endpoint, 500)  # ejected again at once (times 2) ...
    clock.now += 10 * BASE_MS / 1000  # ... and still ejected for a long while
    end_ejection(found, endpoint)
    assert eject_and_return(found, endpoint) == 3000  # no decay: it only just came back
