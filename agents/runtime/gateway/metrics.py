"""Gateway windows per (service, subset, route, consumer), reported like edges with
`"gateway": true`, `route`, `consumer`, `subset` and `statuses` (docs/agent-protocol.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agents.runtime.histogram import bucket_index
from agents.runtime.metrics import EdgeCounters

Key = tuple[str, str, str, str]  # (service, subset, route, consumer)


class GatewayCounters(EdgeCounters):
    __slots__ = ("statuses",)

    def __init__(self) -> None:
        super().__init__()
        self.statuses = [0, 0, 0, 0]  # 2xx (and 1xx), 3xx, 4xx, 5xx

    def record(self, latency_ms: float, status: int, error: bool) -> None:
        self.add(latency_ms, error)
        klass = status // 100
        self.statuses[0 if klass < 3 else min(klass, 5) - 2] += 1


class GatewayMetrics:
    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._wall = wall
        self._window: dict[Key, GatewayCounters] = {}
        self._window_start = clock()
        self.totals: dict[Key, list[int]] = {}  # requests, 2xx, 3xx, 4xx, 5xx since start
        self.no_route_total = 0

    def record(self, key: Key, latency_ms: float, status: int, error: bool) -> None:
        window = self._window.get(key)
        if window is None:
            window = self._window[key] = GatewayCounters()
        window.requests += 1  # GatewayCounters.record, inlined: once per request
        if error:
            window.errors += 1
        window.latency_sum_ms += latency_ms
        window.buckets[bucket_index(latency_ms)] += 1
        klass = status // 100
        window.statuses[0 if klass < 3 else min(klass, 5) - 2] += 1

    def drain(self) -> list[dict[str, Any]]:
        now = self._clock()
        seconds = max(now - self._window_start, 0.001)
        windows, self._window, self._window_start = self._window, {}, now
        end = self._wall()
        out = []
        for (service, subset, route, consumer), c in windows.items():
            total = self.totals.setdefault((service, subset, route, consumer), [0, 0, 0, 0, 0])
            total[0] += c.requests
            for i in range(4):
                total[i + 1] += c.statuses[i]
            out.append({
                "source": self.name, "destination": service, "gateway": True,
                "subset": subset, "route": route, "consumer": consumer,
                "window_end": end, "seconds": round(min(seconds, 3600.0), 3),
                "requests": c.requests, "errors": c.errors, "denied": c.denied,
                "latency_sum_ms": round(c.latency_sum_ms, 3), "buckets": list(c.buckets),
                "statuses": dict(zip(("2xx", "3xx", "4xx", "5xx"), c.statuses, strict=True)),
            })
        return out

    def stats(self) -> list[dict[str, Any]]:
        rows = dict(self.totals)
        for key, c in self._window.items():
            row = rows.setdefault(key, [0, 0, 0, 0, 0])
            rows[key] = [row[0] + c.requests] + [row[i + 1] + c.statuses[i] for i in range(4)]
        return [{"service": k[0], "subset": k[1], "route": k[2], "consumer": k[3],
                 "requests": v[0], "statuses": dict(zip(("2xx", "3xx", "4xx", "5xx"), v[1:],
                                                        strict=True))}
                for k, v in sorted(rows.items())]


def render_gateway(metrics: GatewayMetrics) -> str:
    """Prometheus lines: requests per gateway route/consumer and status class."""

    def label(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = ["# HELP meshagent_gateway_requests_total Requests through the gateway per route, "
             "consumer and status class.", "# TYPE meshagent_gateway_requests_total counter"]
    for row in metrics.stats():
        for klass, count in row["statuses"].items():
            lines.append(
                f'meshagent_gateway_requests_total{{gateway="{label(metrics.name)}",'
                f'service="{label(row["service"])}",route="{label(row["route"])}",'
                f'consumer="{label(row["consumer"])}",status="{klass}"}} {count}')
    lines += ["# HELP meshagent_gateway_no_route_total Requests no gateway route matched.",
              "# TYPE meshagent_gateway_no_route_total counter",
              f'meshagent_gateway_no_route_total{{gateway="{label(metrics.name)}"}} '
              f"{metrics.no_route_total}"]
    return "\n".join(lines) + "\n"
