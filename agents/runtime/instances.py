"""Per-instance report windows: the golden figures of each upstream endpoint (the
instance that served each try) over one report window.

Nothing is added to the proxy's hot path: every finished try already counts on its
Endpoint (`Endpoint.observe`: requests, errors, latency sum, histogram). A window is
the difference between those running counters and what the last drain saw, taken
once per report. The baseline lives here, keyed by the Endpoint object (a snapshot
keeps the object while the endpoint stays: endpoint.py), so an endpoint a snapshot
dropped is reported once more (its last tries), then forgotten.

A window: {"service", "instance", "window_end", "seconds", "requests", "errors",
"latency_sum_ms", "buckets"} (docs/agent-protocol.md "Report", `instances`).
`service` is the upstream the tries went to; `instance` the endpoint's id from
the snapshot (during a failover, an instance of the failover target).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from agents.runtime.endpoint import Endpoint
from agents.runtime.histogram import NBUCKETS


class _Counts:
    __slots__ = ("requests", "errors", "latency_sum_ms", "buckets")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency_sum_ms = 0.0
        self.buckets = [0] * NBUCKETS


class InstanceWindows:
    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._start = clock()
        self._seen: dict[Endpoint, tuple[str, _Counts]] = {}

    def drain(self, upstreams: Iterable[tuple[str, Iterable[Endpoint]]]) -> list[dict[str, Any]]:
        """The window since the last drain, per (service, instance id) that served a
        try; UPSTREAMS: (service, its current endpoints) of every upstream runtime."""
        now = self._clock()
        seconds = round(min(max(now - self._start, 0.001), 3600.0), 3)
        self._start = now
        window_end = self._wall()
        current: dict[Endpoint, str] = {}
        for service, endpoints in upstreams:
            for endpoint in endpoints:
                current.setdefault(endpoint, service)
        # Dropped by a snapshot since the last drain: counted once more, then forgotten.
        for endpoint, (service, _) in self._seen.items():
            current.setdefault(endpoint, service)
        sums: dict[tuple[str, str], _Counts] = {}
        seen: dict[Endpoint, tuple[str, _Counts]] = {}
        for endpoint, service in current.items():
            before = self._seen.get(endpoint)
            last = before[1] if before is not None else _Counts()
            if endpoint.requests < last.requests:
                last = _Counts()  # the counters started again (a worker's restart): all new
            delta = endpoint.requests - last.requests
            if delta:
                key = (service, endpoint.id)
                total = sums.get(key)
                if total is None:
                    total = sums[key] = _Counts()
                total.requests += delta
                total.errors += max(endpoint.errors - last.errors, 0)
                total.latency_sum_ms += max(endpoint.latency_sum_ms - last.latency_sum_ms, 0.0)
                buckets = endpoint.buckets
                for i in range(min(len(buckets), NBUCKETS)):
                    total.buckets[i] += max(buckets[i] - last.buckets[i], 0)
                last = _Counts()
                last.requests, last.errors = endpoint.requests, endpoint.errors
                last.latency_sum_ms, last.buckets = endpoint.latency_sum_ms, list(buckets)
            if not endpoint.removed:
                seen[endpoint] = (service, last)
        self._seen = seen
        return [
            {"service": service, "instance": instance, "window_end": window_end,
             "seconds": seconds, "requests": s.requests, "errors": min(s.errors, s.requests),
             "latency_sum_ms": round(s.latency_sum_ms, 3), "buckets": s.buckets}
            for (service, instance), s in sums.items()
        ]
