"""Golden metrics per instance: the report's `instances` (validated, ingested off the
request path), their rollups, and the two API views that serve them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents.models import Agent
from agents.runtime import histogram
from monitoring import ingest
from monitoring.instances import instance_series
from monitoring.models import InstanceRollup, InstanceWindow
from monitoring.rollups import rollups_record
from registry import services
from registry.models import Instance
from tests.agents.test_api_agents import enroll

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


def two_instances() -> tuple[Instance, Instance]:
    payments = services.service_create(user=None, data={"name": "payments"})
    a = services.instance_register(user=None, service=payments,
                                   data={"address": "10.0.0.1", "port": 8080})
    b = services.instance_register(user=None, service=payments,
                                   data={"address": "10.0.0.2", "port": 8080})
    return a, b


def of_instance(instance: str, requests: int, errors: int = 0, ms: float = 4.0,
                end: float | None = None) -> dict[str, Any]:
    buckets = histogram.empty()
    buckets[histogram.bucket_index(ms)] = requests
    return {"service": "payments", "instance": instance, "window_end": end or time.time(),
            "seconds": 2.0, "requests": requests, "errors": errors,
            "latency_sum_ms": requests * ms, "buckets": buckets}


def stored(instance: str, end: datetime, requests: int, errors: int = 0,
           ms: float = 4.0) -> InstanceWindow:
    window = of_instance(instance, requests, errors, ms)
    return InstanceWindow.objects.create(
        window_end=end, seconds=2, node="host-a", service="payments", instance=instance,
        requests=requests, errors=errors, latency_sum_ms=window["latency_sum_ms"],
        buckets=window["buckets"])


def served(series: dict[str, Any]) -> float:
    return sum(p["rps"] * series["step_seconds"] for p in series["points"])


def test_reported_instances_reach_the_series_and_the_table(api: APIClient) -> None:
    a, b = two_instances()
    client, body = enroll()
    report = {"instances": [of_instance(a.id, 30, errors=3, ms=40.0), of_instance(b.id, 10)]}
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", report, format="json")
    assert response.status_code == 200, response.content
    assert not InstanceWindow.objects.exists()  # on the ingest stream, off the request path
    assert ingest.metrics_ingest() == 2
    assert {(w.instance, w.requests, w.node) for w in InstanceWindow.objects.all()} == {
        (a.id, 30, "host-a"), (b.id, 10, "host-a")}

    series = api.get(f"/api/v1/services/payments/instances/{a.id}/metrics/?window=5m").json()
    assert (series["instance"], series["direction"], series["source"]) == (a.id, "in", "windows")
    assert served(series) == pytest.approx(30)
    busy = [p for p in series["points"] if p["rps"]]
    assert len(busy) == 1 and busy[0]["error_rate"] == 0.1
    assert 36.2 <= busy[0]["p99_ms"] <= 51.2  # 40 ms lies in (36.2, 51.2]

    table = api.get("/api/v1/services/payments/metrics/instances/?window=60s").json()
    rows = {r["instance"]: r for r in table["instances"]}
    assert set(rows) == {a.id, b.id} and table["window_seconds"] == 60
    assert (rows[a.id]["requests"], rows[a.id]["rps"], rows[a.id]["error_rate"]) == (30, 0.5, 0.1)
    assert rows[b.id]["requests"] == 10 and 3.0 <= rows[b.id]["p50_ms"] <= 5.2


def test_an_older_agent_without_instances_still_reports() -> None:
    client, body = enroll()
    edge = {"source": "orders", "destination": "payments", "window_end": time.time(),
            "seconds": 2.0, "requests": 5, "errors": 0}
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"metrics": [edge]},
                           format="json")
    assert response.status_code == 200
    assert ingest.metrics_ingest() == 1 and not InstanceWindow.objects.exists()


BAD = [
    ("id", {"instance": "not an id!"}),
    ("too long", {"instance": "x" * 33}),
    ("a number", {"instance": 12}),
    ("service", {"service": "Payments_"}),
    ("errors > requests", {"requests": 2, "errors": 3}),
    ("negative", {"requests": -1}),
    ("buckets", {"buckets": [1] * (histogram.NBUCKETS + 1)}),
    ("seconds", {"seconds": 0}),
    ("missing", {"instance": None}),
]


@pytest.mark.parametrize(("what", "change"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_instance_window_refuses_the_whole_report(what: str, change: dict[str, Any]) -> None:
    a, _ = two_instances()
    client, body = enroll()
    good = of_instance(a.id, 5)
    bad = {k: v for k, v in {**good, **change}.items() if v is not None}
    edge = {"source": "orders", "destination": "payments", "window_end": time.time(),
            "seconds": 2.0, "requests": 5, "errors": 0}
    seen = Agent.objects.get(pk=body["agent_id"]).last_seen
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/",
                           {"metrics": [edge], "instances": [good, bad]}, format="json")
    assert response.status_code == 400, (what, response.content)
    assert "instances" in response.json()
    assert ingest.metrics_ingest() == 0  # nothing on the stream: no edge, no instance
    assert not InstanceWindow.objects.exists()
    assert Agent.objects.get(pk=body["agent_id"]).last_seen == seen  # not even the heartbeat


def test_more_instance_windows_than_the_bound_are_refused() -> None:
    client, body = enroll()
    many = [of_instance(f"i{n}", 1) for n in range(5001)]
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"instances": many},
                           format="json")
    assert response.status_code == 400 and "instances" in response.json()
    assert ingest.metrics_ingest() == 0


def test_instances_are_rolled_up_and_long_series_read_the_rollups() -> None:
    start = NOW - timedelta(hours=3)
    for i in range(0, 3 * 3600, 10):
        stored("ia", start + timedelta(seconds=i), requests=6, errors=i % 2)
        stored("ib", start + timedelta(seconds=i), requests=1)
    rollups_record(NOW)
    minutes = InstanceRollup.objects.filter(resolution=60, instance="ia")
    raw = InstanceWindow.objects.filter(instance="ia", window_end__lt=NOW.replace(second=0))
    assert sum(r.requests for r in minutes) == sum(w.requests for w in raw)
    assert sum(r.errors for r in minutes) == sum(w.errors for w in raw)
    assert sum(sum(r.buckets) for r in minutes) == sum(w.requests for w in raw)
    assert minutes.count() == 180  # one row per instance and minute
    assert InstanceRollup.objects.filter(resolution=600, instance="ia").count() == 18

    with override_settings(MESH_METRICS_RETENTION=3600):
        day = instance_series("payments", "ia", 24 * 3600, now=NOW)
        week = instance_series("payments", "ia", 7 * 24 * 3600, now=NOW)
    assert day["source"] == "rollups-60s"
    assert served(day) == pytest.approx(sum(r.requests for r in minutes),
                                        abs=0.0005 * day["step_seconds"] * len(day["points"]))
    assert week["source"] == "rollups-600s"
    tens = InstanceRollup.objects.filter(resolution=600, instance="ia")
    assert served(week) == pytest.approx(sum(r.requests for r in tens),
                                         abs=0.0005 * week["step_seconds"] * len(week["points"]))
    recent = instance_series("payments", "ib", 900, now=NOW)
    first = datetime.fromisoformat(recent["points"][0]["t"])
    assert recent["source"] == "windows" and served(recent) == pytest.approx(
        InstanceWindow.objects.filter(instance="ib", window_end__gt=first).count())


def test_the_views_refuse_an_unknown_instance_and_a_bad_window(api: APIClient) -> None:
    a, _ = two_instances()
    services.service_create(user=None, data={"name": "orders"})
    assert api.get(f"/api/v1/services/payments/instances/{a.id}/metrics/").status_code == 200
    assert api.get(f"/api/v1/services/orders/instances/{a.id}/metrics/").status_code == 404
    assert api.get("/api/v1/services/payments/instances/nope/metrics/").status_code == 404
    assert api.get("/api/v1/services/nope/metrics/instances/").status_code == 404
    for bad in ("window=169h", "window=soon"):
        url = f"/api/v1/services/payments/instances/{a.id}/metrics/?{bad}"
        assert api.get(url).status_code == 400, bad
    assert api.get("/api/v1/services/payments/metrics/instances/?window=2h").status_code == 400
