"""Per-edge (source → destination) request metrics: report windows and running totals.

record() is on the hot path: a dict lookup and a few integer adds, no allocation
once an edge exists. drain() hands the window to the report and starts a new one.

An edge key is (source, destination), or (source, destination, subset, route) for
a request an L7 route sent to a target (splits.py); a window says `subset` and
`route` either way ("" for none), and counts answers by class in `statuses`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agents.runtime.endpoint import Endpoint
from agents.runtime.histogram import BOUNDS_MS, NBUCKETS, bucket_index

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
Edge = tuple[str, ...]

if TYPE_CHECKING:
    from agents.runtime.upstream import UpstreamRuntime


class EdgeCounters:
    __slots__ = ("requests", "errors", "latency_sum_ms", "buckets", "denied", "statuses")

    def __init__(self) -> None:
        self.denied = 0  # requests (HTTP) or connections (TCP) refused by an intention
        self.requests = 0
        self.errors = 0
        self.latency_sum_ms = 0.0
        self.buckets = [0] * NBUCKETS
        # Answers by status // 100 (a status is 3 digits, or 0 when there was none):
        # indexed without a test on the hot path; windows report 2xx..5xx (STATUS_CLASSES).
        self.statuses = [0] * 10

    def add(self, latency_ms: float, error: bool, status: int = 0) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_sum_ms += latency_ms
        self.buckets[bucket_index(latency_ms)] += 1
        self.statuses[status // 100] += 1

    def add_counters(self, other: EdgeCounters) -> None:
        self.requests += other.requests
        self.denied += other.denied
        self.errors += other.errors
        self.latency_sum_ms += other.latency_sum_ms
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.statuses = [a + b for a, b in zip(self.statuses, other.statuses, strict=True)]

    def merge(self, window: dict[str, Any]) -> None:
        """Add a drained window (a protocol "metrics" entry) from another process."""
        self.requests += int(window["requests"])
        self.denied += int(window.get("denied", 0))
        self.errors += int(window["errors"])
        self.latency_sum_ms += float(window["latency_sum_ms"])
        for i, count in enumerate(window["buckets"][:NBUCKETS]):
            self.buckets[i] += int(count)
        statuses = window.get("statuses") or {}
        for i, name in enumerate(STATUS_CLASSES):
            self.statuses[i + 2] += int(statuses.get(name, 0))

    def classes(self) -> dict[str, int]:
        """The window's `statuses`: 2xx, 3xx, 4xx and 5xx counts."""
        return dict(zip(STATUS_CLASSES, self.statuses[2:6], strict=True))


class Metrics:
    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._window: dict[Edge, EdgeCounters] = {}
        self._window_start = clock()
        self._drained: dict[Edge, EdgeCounters] = {}  # every window before this one

    @property
    def totals(self) -> dict[Edge, EdgeCounters]:
        """Running totals per edge: the drained windows plus the current one (summed when
        read, so a request is counted once on the hot path, not twice)."""
        totals: dict[Edge, EdgeCounters] = {}
        for table in (self._drained, self._window):
            for key, counters in table.items():
                total = totals.get(key)
                if total is None:
                    total = totals[key] = EdgeCounters()
                total.add_counters(counters)
        return totals

    def record(self, source: str, destination: str, latency_ms: float, error: bool) -> None:
        self.record_edge((source, destination), latency_ms, error)

    def record_edge(self, edge: Edge, latency_ms: float, error: bool, status: int = 0) -> None:
        """record() for an edge key the caller keeps (the proxy's hot path)."""
        window = self._window.get(edge)
        if window is None:
            window = self._window[edge] = EdgeCounters()
        window.add(latency_ms, error, status)

    def deny(self, edge: Edge) -> None:
        """An intention refused a request on EDGE (it is recorded as a request too)."""
        window = self._window.get(edge)
        if window is None:
            window = self._window[edge] = EdgeCounters()
        window.denied += 1

    def merge(self, windows: Iterable[dict[str, Any]]) -> None:
        """Fold in the windows drained by worker processes (--workers): per edge, summed."""
        for window in windows:
            key = edge_key(window)
            counters = self._window.get(key)
            if counters is None:
                counters = self._window[key] = EdgeCounters()
            counters.merge(window)

    def drain(self) -> list[dict[str, Any]]:
        """The current window as protocol "metrics" entries, and start the next one."""
        now = self._clock()
        seconds = max(now - self._window_start, 0.001)
        window_end = self._wall()
        windows, self._window, self._window_start = self._window, {}, now
        for key, counters in windows.items():
            drained = self._drained.get(key)
            if drained is None:
                drained = self._drained[key] = EdgeCounters()
            drained.add_counters(counters)
        return [
            {
                "source": key[0],
                "destination": key[1],
                "subset": key[2] if len(key) > 2 else "",
                "route": key[3] if len(key) > 3 else "",
                "window_end": window_end,
                "seconds": round(min(seconds, 3600.0), 3),
                "requests": c.requests,
                "errors": c.errors,
                "denied": c.denied,
                "latency_sum_ms": round(c.latency_sum_ms, 3),
                "buckets": list(c.buckets),
                "statuses": c.classes(),
            }
            for key, c in windows.items()
            if c.requests
        ]

    def totals_json(self) -> list[dict[str, Any]]:
        return [
            {**_names(key), "requests": c.requests, "errors": c.errors,
             "latency_sum_ms": round(c.latency_sum_ms, 3),
             "statuses": c.classes()}
            for key, c in sorted(self.totals.items())
        ]


def edge_key(window: Mapping[str, Any]) -> Edge:
    """The key of a window (a worker's, or a report's): (source, destination), with
    subset and route when either is set."""
    source, destination = str(window["source"]), str(window["destination"])
    subset, route = str(window.get("subset") or ""), str(window.get("route") or "")
    return (source, destination, subset, route) if subset or route else (source, destination)


def _names(key: Edge) -> dict[str, str]:
    """An edge key's label names: source, destination, and subset/route when routed."""
    names = {"source": key[0], "destination": key[1]}
    if len(key) > 2:
        names["subset"], names["route"] = key[2], key[3]
    return names


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def render_prometheus(metrics: Metrics, revision: int | None,
                      endpoints: Iterable[tuple[str, Endpoint]] = ()) -> str:
    """Prometheus text exposition (version 0.0.4) of the cumulative totals."""
    lines = [
        "# HELP meshagent_requests_total Requests proxied per edge.",
        "# TYPE meshagent_requests_total counter",
    ]
    edges = sorted(metrics.totals.items())
    for key, c in edges:
        lines.append(f"meshagent_requests_total{_labels(**_names(key))} {c.requests}")
    lines += ["# HELP meshagent_errors_total 5xx answers and proxy failures per edge.",
              "# TYPE meshagent_errors_total counter"]
    for key, c in edges:
        lines.append(f"meshagent_errors_total{_labels(**_names(key))} {c.errors}")
    lines += ["# HELP meshagent_responses_total Answers per edge by status class.",
              "# TYPE meshagent_responses_total counter"]
    for key, c in edges:
        for name, count in c.classes().items():
            labels = _labels(**_names(key), code=name)
            lines.append(f"meshagent_responses_total{labels} {count}")
    lines += ["# HELP meshagent_request_duration_ms Request latency through the proxy.",
              "# TYPE meshagent_request_duration_ms histogram"]
    for key, c in edges:
        names = _names(key)
        running = 0
        for i, bound in enumerate(BOUNDS_MS):
            running += c.buckets[i]
            labels = _labels(**names, le=repr(float(bound)))
            lines.append(f"meshagent_request_duration_ms_bucket{labels} {running}")
        labels = _labels(**names, le="+Inf")
        lines.append(f"meshagent_request_duration_ms_bucket{labels} {c.requests}")
        edge = _labels(**names)
        lines.append(f"meshagent_request_duration_ms_sum{edge} {c.latency_sum_ms:.3f}")
        lines.append(f"meshagent_request_duration_ms_count{edge} {c.requests}")
    lines += ["# HELP meshagent_endpoint_requests_total Requests per upstream endpoint.",
              "# TYPE meshagent_endpoint_requests_total counter"]
    rows = [(service, e) for service, e in endpoints]
    for service, e in rows:
        labels = _labels(service=service, endpoint=f"{e.address}:{e.port}")
        lines.append(f"meshagent_endpoint_requests_total{labels} {e.requests}")
    lines += ["# HELP meshagent_endpoint_errors_total Failures per upstream endpoint.",
              "# TYPE meshagent_endpoint_errors_total counter"]
    for service, e in rows:
        labels = _labels(service=service, endpoint=f"{e.address}:{e.port}")
        lines.append(f"meshagent_endpoint_errors_total{labels} {e.errors}")
    lines += ["# HELP meshagent_applied_revision Mesh revision of the applied snapshot.",
              "# TYPE meshagent_applied_revision gauge",
              f"meshagent_applied_revision {revision if revision is not None else -1}"]
    return "\n".join(lines) + "\n"


def render_certificates(leaves: Mapping[str, Any], expiry: Mapping[str, float]) -> str:
    """Seconds until each of this host's certificates expires (leaves: certs.Leaf by name)."""
    lines = ["# HELP meshagent_certificate_expiry_seconds Seconds until the certificate expires.",
             "# TYPE meshagent_certificate_expiry_seconds gauge"]
    for name, leaf in sorted(leaves.items()):
        labels = _labels(identity=leaf.identity, serial=f"{leaf.serial:x}")
        lines.append(f"meshagent_certificate_expiry_seconds{labels} {expiry[name]:.0f}")
    return "\n".join(lines) + "\n"


def render_inbound(metrics: Metrics) -> str:
    """The inbound listener's edges (from verified identities): requests and denials."""
    edges = [((k[0], k[1]), c) for k, c in sorted(metrics.totals.items())]
    lines = ["# HELP meshagent_inbound_requests_total Requests (TCP: connections) received over "
             "mTLS per edge.", "# TYPE meshagent_inbound_requests_total counter"]
    lines += [f"meshagent_inbound_requests_total{_labels(source=s, destination=d)} {c.requests}"
              for (s, d), c in edges]
    lines += ["# HELP meshagent_inbound_denied_total Requests (TCP: connections) denied by an "
              "intention per edge.", "# TYPE meshagent_inbound_denied_total counter"]
    lines += [f"meshagent_inbound_denied_total{_labels(source=s, destination=d)} {c.denied}"
              for (s, d), c in edges]
    return "\n".join(lines) + "\n"


def render_resilience(upstreams: Iterable[UpstreamRuntime]) -> str:
    """Per destination and per endpoint: requests, latency, retries, ejections, refusals."""
    lines = ["# HELP meshagent_upstream_rq_total Requests per destination endpoint.",
             "# TYPE meshagent_upstream_rq_total counter"]
    runtimes = list(upstreams)
    for u in runtimes:
        for e in u.state.endpoints:
            labels = _labels(destination=u.service, endpoint=f"{e.address}:{e.port}")
            lines.append(f"meshagent_upstream_rq_total{labels} {e.requests}")
    lines += ["# HELP meshagent_upstream_rq_duration_ms Latency per destination endpoint.",
              "# TYPE meshagent_upstream_rq_duration_ms histogram"]
    for u in runtimes:
        for e in u.state.endpoints:
            endpoint = f"{e.address}:{e.port}"
            running = 0
            for i, bound in enumerate(BOUNDS_MS):
                running += e.buckets[i]
                labels = _labels(destination=u.service, endpoint=endpoint, le=repr(float(bound)))
                lines.append(f"meshagent_upstream_rq_duration_ms_bucket{labels} {running}")
            labels = _labels(destination=u.service, endpoint=endpoint, le="+Inf")
            total = running + e.buckets[-1]
            lines.append(f"meshagent_upstream_rq_duration_ms_bucket{labels} {total}")
            labels = _labels(destination=u.service, endpoint=endpoint)
            lines.append(f"meshagent_upstream_rq_duration_ms_sum{labels} {e.latency_sum_ms:.3f}")
            lines.append(f"meshagent_upstream_rq_duration_ms_count{labels} {sum(e.buckets)}")
    counters = [
        ("meshagent_upstream_retries_total", "Retries sent.", lambda u: u.retries_total),
        ("meshagent_upstream_ejections_total", "Outlier ejections.",
         lambda u: u.outlier.ejections_total),
        ("meshagent_upstream_rate_limited_total", "Requests refused by the local rate limit.",
         lambda u: u.rate_limited_total),
    ]
    for name, text, value in counters:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
        lines += [f"{name}{_labels(destination=u.service)} {value(u)}" for u in runtimes]
    lines += ["# HELP meshagent_upstream_circuit_open_total Requests refused by a circuit breaker.",
              "# TYPE meshagent_upstream_circuit_open_total counter"]
    for u in runtimes:
        for which in ("max_connections", "max_pending", "max_requests"):
            labels = _labels(destination=u.service, limit=which)
            lines.append(f"meshagent_upstream_circuit_open_total{labels} "
                         f"{u.circuit_open_total.get(which, 0)}")
    return "\n".join(lines) + "\n"
