"""Charts' series (in and out) and the rollups they read past the raw retention:
one-minute and ten-minute rows that sum exactly what the windows held, re-rolled
while late windows may still arrive, and pruned on their own retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents.runtime import histogram
from monitoring.models import EdgeRollup, EdgeWindow
from monitoring.rollups import LATE, roll, rollups_prune, rollups_record
from monitoring.timeseries import service_series

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


def window(end: datetime, source: str = "web", destination: str = "orders",
           requests: int = 10, errors: int = 1, ms: float = 8.0) -> EdgeWindow:
    buckets = histogram.empty()
    buckets[histogram.bucket_index(ms)] += requests
    return EdgeWindow.objects.create(
        window_end=end, seconds=2, node="host-a", source=source, destination=destination,
        requests=requests, errors=errors, latency_sum_ms=requests * ms, buckets=buckets)


def totals(rows: Any) -> tuple[int, int, int]:
    rows = list(rows)
    return (sum(r.requests for r in rows), sum(r.errors for r in rows),
            sum(sum(r.buckets) for r in rows))


def test_minutes_sum_exactly_what_the_windows_held() -> None:
    start = NOW - timedelta(minutes=30)
    for i in range(0, 30 * 60, 2):  # a window every 2 s for half an hour, two edges
        window(start + timedelta(seconds=i), requests=i % 7, errors=i % 2)
        window(start + timedelta(seconds=i), source="orders", destination="payments", requests=3)
    rollups_record(NOW)
    minutes = EdgeRollup.objects.filter(resolution=60)
    assert totals(minutes) == totals(EdgeWindow.objects.filter(window_end__lt=NOW.replace(second=0)))
    assert minutes.filter(source="web").count() == 30  # one row per edge and minute
    # Ten-minute rows sum the complete ten minutes of minute rows.
    tens = EdgeRollup.objects.filter(resolution=600)
    assert {r.start.minute for r in tens} == {30, 40, 50}
    assert totals(tens) == totals(minutes.filter(start__lt=NOW.replace(minute=0, second=0)))


def test_re_rolling_is_idempotent_and_counts_late_windows() -> None:
    minute = NOW.replace(second=0) - timedelta(minutes=2)
    window(minute + timedelta(seconds=10))
    rollups_record(NOW)
    rollups_record(NOW)
    (row,) = EdgeRollup.objects.filter(resolution=60)
    assert row.requests == 10
    window(minute + timedelta(seconds=50), requests=5)  # reported late, within LATE
    rollups_record(NOW + timedelta(seconds=20))
    (row,) = EdgeRollup.objects.filter(resolution=60)
    assert (row.start, row.requests) == (minute, 15)
    window(minute + timedelta(seconds=55), requests=100)  # far too late: not re-rolled
    rollups_record(NOW + LATE + timedelta(minutes=2))
    assert EdgeRollup.objects.get(resolution=60, start=minute).requests == 15


def test_the_current_period_is_not_rolled() -> None:
    window(NOW - timedelta(seconds=5))
    assert roll(60, NOW) == 0
    assert not EdgeRollup.objects.exists()


@override_settings(MESH_ROLLUP_1M_RETENTION=3600, MESH_ROLLUP_10M_RETENTION=7200)
def test_rollups_are_pruned_on_their_own_retention() -> None:
    for age in (30, 90, 150):
        for resolution in (60, 600):
            EdgeRollup.objects.create(resolution=resolution, start=NOW - timedelta(minutes=age),
                                      source="a", destination="b", buckets=histogram.empty())
    assert rollups_prune(NOW) == 3  # 1m: 90 and 150 minutes old; 10m: 150
    assert sorted((r.resolution, int((NOW - r.start).total_seconds() // 60))
                  for r in EdgeRollup.objects.all()) == [(60, 30), (600, 30), (600, 90)]


def test_a_day_long_chart_reads_minute_rollups_and_a_week_ten_minute_ones() -> None:
    start = NOW - timedelta(hours=3)
    for i in range(0, 3 * 3600, 10):
        window(start + timedelta(seconds=i), requests=6, errors=0)
    rollups_record(NOW)
    day = service_series("orders", 24 * 3600, now=NOW)
    assert day["source"] == "rollups-60s" and day["step_seconds"] == 1800
    served = sum(p["rps"] * day["step_seconds"] for p in day["points"])
    rolled = sum(r.requests for r in EdgeRollup.objects.filter(resolution=60))
    assert served == pytest.approx(rolled, abs=0.0005 * 1800 * len(day["points"]))
    assert rolled == totals(EdgeWindow.objects.filter(window_end__lt=NOW.replace(second=0)))[0]
    week = service_series("orders", 7 * 24 * 3600, now=NOW)
    assert week["source"] == "rollups-600s" and week["step_seconds"] == 7200
    rounding = 0.0005 * 7200 * len(week["points"])  # rps is given to 3 decimals
    assert sum(p["rps"] * 7200 for p in week["points"]) == pytest.approx(
        sum(r.requests for r in EdgeRollup.objects.filter(resolution=600)), abs=rounding)
    recent = service_series("orders", 900, now=NOW)
    assert recent["source"] == "windows"


def test_in_and_out_are_the_callers_and_the_callees() -> None:
    window(NOW - timedelta(seconds=30), source="web", destination="orders", requests=20)
    window(NOW - timedelta(seconds=30), source="orders", destination="payments", requests=7)
    inbound = service_series("orders", 300, now=NOW)
    outbound = service_series("orders", 300, now=NOW, direction="out")
    step = inbound["step_seconds"]
    assert sum(p["rps"] * step for p in inbound["points"]) == pytest.approx(20)
    assert sum(p["rps"] * step for p in outbound["points"]) == pytest.approx(7)


def test_the_api_takes_a_window_up_to_a_week_and_a_direction(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders"}, format="json")
    ok = api.get("/api/v1/services/orders/metrics/?window=168h&direction=out")
    assert ok.status_code == 200 and ok.json()["direction"] == "out"
    for bad in ("window=169h", "window=soon", "direction=sideways"):
        response = api.get(f"/api/v1/services/orders/metrics/?{bad}")
        assert response.status_code == 400, bad
    assert api.get("/api/v1/topology/?window=25h").status_code == 400  # topology: 24 h
