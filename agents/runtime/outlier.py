"""Outlier detection: eject endpoints that keep failing, bring them back later.

Consecutive 5xx answers, or consecutive gateway failures (connect failures,
resets, 502/503/504), eject an endpoint for base × times ejected, never more
than max_ejection_percent of the endpoints at once (Envoy's rule: an ejection
is allowed while the ejected share is below the maximum). Every ejection and
return is queued for the next report (`ejections`, docs/policies.md).

As in Envoy, the multiplier decays: for every base_ejection_ms an endpoint
spends back in rotation, times ejected drops by one, so an endpoint that
recovered is not punished forever for old failures. It is computed when the
next ejection happens, from the time the last one ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from agents.runtime.endpoint import Endpoint
from agents.runtime.policy import OutlierPolicy

CONNECT_FAILURE = -1  # pseudo-statuses for failures without an HTTP answer
RESET = -2
MAX_EVENTS = 1000


class OutlierDetector:
    def __init__(self, service: str, on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.clock = clock
        self.policy = OutlierPolicy()
        self.endpoints: Sequence[Endpoint] = ()
        self.events: list[dict[str, Any]] = []
        self.ejections_total = 0
        self._on_change = on_change

    def configure(self, policy: OutlierPolicy, endpoints: Sequence[Endpoint]) -> None:
        self.policy, self.endpoints = policy, endpoints

    def record(self, endpoint: Endpoint, status: int) -> None:
        """The outcome of one try: an HTTP status, CONNECT_FAILURE or RESET."""
        if status < 500 and status >= 0:
            endpoint.consecutive_5xx = endpoint.consecutive_gateway = 0
            return
        policy = self.policy
        reason = ""
        if status >= 500:
            endpoint.consecutive_5xx += 1
            if policy.consecutive_5xx and endpoint.consecutive_5xx >= policy.consecutive_5xx:
                reason = f"{endpoint.consecutive_5xx} consecutive 5xx"
        if status < 0 or status in (502, 503, 504):
            endpoint.consecutive_gateway += 1
            if (not reason and policy.consecutive_gateway
                    and endpoint.consecutive_gateway >= policy.consecutive_gateway):
                reason = f"{endpoint.consecutive_gateway} consecutive gateway failures"
        if reason and not endpoint.ejected and not endpoint.removed:
            self._eject(endpoint, reason)

    def _eject(self, endpoint: Endpoint, reason: str) -> None:
        total = len(self.endpoints)
        ejected = sum(e.ejected for e in self.endpoints)
        if not total or ejected * 100 >= self.policy.max_ejection_percent * total:
            return
        self._decay(endpoint)
        endpoint.ejected = True
        endpoint.times_ejected += 1
        endpoint.ejections += 1
        self.ejections_total += 1
        duration_ms = self.policy.base_ejection_ms * endpoint.times_ejected
        loop = asyncio.get_running_loop()
        endpoint.return_timer = loop.call_later(duration_ms / 1000, self._return, endpoint)
        self._event(endpoint, "ejected", reason, duration_ms)
        self._on_change()

    def _decay(self, endpoint: Endpoint) -> None:
        base_s = self.policy.base_ejection_ms / 1000
        if endpoint.times_ejected and base_s > 0:
            healthy_for = max(self.clock() - endpoint.returned_at, 0.0)
            endpoint.times_ejected = max(endpoint.times_ejected - int(healthy_for // base_s), 0)

    def _return(self, endpoint: Endpoint) -> None:
        endpoint.return_timer = None
        if not endpoint.ejected:
            return
        endpoint.ejected = False
        endpoint.returned_at = self.clock()
        endpoint.consecutive_5xx = endpoint.consecutive_gateway = 0
        self._event(endpoint, "returned", "ejection time over", 0)
        self._on_change()

    def _event(self, endpoint: Endpoint, event: str, reason: str, duration_ms: int) -> None:
        self.events.append({"service": self.service, "endpoint": endpoint.id,
                            "address": endpoint.address, "port": endpoint.port, "event": event,
                            "reason": reason, "duration_ms": duration_ms, "at": time.time()})
        del self.events[:-MAX_EVENTS]

    def drain(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events

    def forget(self, endpoint: Endpoint) -> None:
        """A snapshot dropped the endpoint: its return timer has nothing left to do."""
        timer = endpoint.return_timer
        if isinstance(timer, asyncio.TimerHandle):
            timer.cancel()
        endpoint.return_timer = None
        endpoint.ejected = False
        endpoint.returned_at = self.clock()
