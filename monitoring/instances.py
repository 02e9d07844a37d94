"""Golden metrics per instance (issue 13): the tries each instance served, as its
callers' agents report them (`InstanceWindow`, rolled up into `InstanceRollup`).
Only "in": what an instance sends is its node's outbound edges (per service)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypedDict

from django.db.models import Sum
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import InstanceRollup, InstanceWindow
from monitoring.timeseries import SeriesPoint, series_points


class InstanceSeries(TypedDict):
    service: str
    instance: str
    direction: str  # always "in"
    window_seconds: int
    step_seconds: int
    source: str
    points: list[SeriesPoint]


class InstanceFigures(TypedDict):
    instance: str
    requests: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def instance_series(
    service: str, instance: str, window_seconds: int, now: datetime | None = None
) -> InstanceSeries:
    step, source, points = series_points(
        InstanceWindow, InstanceRollup, {"instance": instance}, window_seconds, now
    )
    return {"service": service, "instance": instance, "direction": "in",
            "window_seconds": window_seconds, "step_seconds": step, "source": source,
            "points": points}


def instance_figures(
    instances: Sequence[str], window_seconds: int, now: datetime | None = None
) -> list[InstanceFigures]:
    """Each of INSTANCES over the last WINDOW_SECONDS of raw windows (the table's
    "now"): rps, error rate, percentiles; an instance nobody called has zeros.
    Two queries: the sums grouped by the database, then the buckets of the window."""
    now = now or timezone.now()
    rows = InstanceWindow.objects.filter(
        instance__in=list(instances), window_end__gt=now - timedelta(seconds=window_seconds),
        window_end__lte=now,
    )
    sums = {
        r["instance"]: (r["requests"] or 0, r["errors"] or 0)
        for r in rows.values("instance").annotate(requests=Sum("requests"), errors=Sum("errors"))
    }
    buckets = {i: histogram.empty() for i in sums}
    for instance, counts in rows.values_list("instance", "buckets"):
        histogram.merge(buckets[instance], counts or [])
    figures: list[InstanceFigures] = []
    for instance in instances:
        requests, errors = sums.get(instance, (0, 0))
        merged = buckets.get(instance) or histogram.empty()
        figures.append({
            "instance": instance,
            "requests": requests,
            "rps": round(requests / window_seconds, 3),
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "p50_ms": histogram.percentile(merged, 0.50),
            "p95_ms": histogram.percentile(merged, 0.95),
            "p99_ms": histogram.percentile(merged, 0.99),
        })
    return figures
