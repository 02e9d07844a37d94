"""Metrics: report windows in the protocol's shape, totals, Prometheus text."""

from __future__ import annotations

from agents.runtime.endpoint import Endpoint
from agents.runtime.histogram import NBUCKETS, bucket_index
from agents.runtime.metrics import Metrics, render_prometheus


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_drain_returns_protocol_windows_and_starts_a_new_one() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock, wall=lambda: 1764086400.5)
    metrics.record("orders", "payments", 3.0, False)
    metrics.record("orders", "payments", 40.0, True)
    metrics.record("unknown", "billing", 1.0, False)
    clock.now += 2.0
    windows = sorted(metrics.drain(), key=lambda w: w["destination"])
    assert [w["destination"] for w in windows] == ["billing", "payments"]
    payments = windows[1]
    assert set(payments) == {"source", "destination", "window_end", "seconds", "requests",
                             "errors", "denied", "latency_sum_ms", "buckets", "subset", "route",
                             "statuses"}
    assert (payments["subset"], payments["route"]) == ("", "")  # no route: no subset
    assert payments["window_end"] == 1764086400.5 and payments["seconds"] == 2.0
    assert (payments["requests"], payments["errors"], payments["latency_sum_ms"]) == (2, 1, 43.0)
    assert len(payments["buckets"]) == NBUCKETS
    assert payments["buckets"][bucket_index(3.0)] == 1
    assert payments["buckets"][bucket_index(40.0)] == 1
    assert metrics.drain() == []  # nothing new: nothing to report
    assert metrics.totals[("orders", "payments")].requests == 2  # totals stay


def test_prometheus_text_has_cumulative_buckets_and_revision() -> None:
    metrics = Metrics()
    for ms in (0.05, 3.0, 3.0, 5000.0):
        metrics.record("orders", "payments", ms, ms > 1000)
    endpoint = Endpoint("e1", "127.0.0.1", 8080)
    endpoint.requests = 4
    text = render_prometheus(metrics, 42, [("payments", endpoint)])
    edge = 'source="orders",destination="payments"'
    assert f"meshagent_requests_total{{{edge}}} 4" in text
    assert f"meshagent_errors_total{{{edge}}} 1" in text
    assert f'meshagent_request_duration_ms_bucket{{{edge},le="0.1"}} 1' in text
    assert f'meshagent_request_duration_ms_bucket{{{edge},le="+Inf"}} 4' in text
    assert f"meshagent_request_duration_ms_count{{{edge}}} 4" in text
    assert 'meshagent_endpoint_requests_total{service="payments",endpoint="127.0.0.1:8080"} 4' in text
    assert "meshagent_applied_revision 42" in text
    buckets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("meshagent_request_duration_ms_bucket")]
    assert buckets == sorted(buckets)  # cumulative
