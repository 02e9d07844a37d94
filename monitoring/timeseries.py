"""Inbound traffic of one service over time, in fixed steps, for charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow


class SeriesPoint(TypedDict):
    t: str
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ServiceSeries(TypedDict):
    service: str
    window_seconds: int
    step_seconds: int
    points: list[SeriesPoint]


def choose_step(window_seconds: int) -> int:
    """About 90 points a chart, on round steps."""
    for step in (2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if window_seconds / step <= 90:
            return step
    return 3600


def service_series(name: str, window_seconds: int, now: datetime | None = None) -> ServiceSeries:
    now = now or timezone.now()
    step = choose_step(window_seconds)
    end_epoch = (int(now.timestamp()) // step + 1) * step
    start_epoch = end_epoch - (window_seconds // step) * step
    nsteps = (end_epoch - start_epoch) // step
    requests = [0] * nsteps
    errors = [0] * nsteps
    buckets = [histogram.empty() for _ in range(nsteps)]
    start = datetime.fromtimestamp(start_epoch, tz=UTC)
    rows = EdgeWindow.objects.filter(
        destination=name,
        window_end__gt=start,
        window_end__lte=start + timedelta(seconds=nsteps * step),
    ).values_list("window_end", "requests", "errors", "buckets")
    for window_end, req, err, counts in rows:
        index = min(int((window_end.timestamp() - start_epoch) // step), nsteps - 1)
        requests[index] += req
        errors[index] += err
        histogram.merge(buckets[index], counts or [])
    points: list[SeriesPoint] = []
    for i in range(nsteps):
        t = datetime.fromtimestamp(start_epoch + i * step, tz=UTC)
        points.append(
            {
                "t": t.isoformat().replace("+00:00", "Z"),
                "rps": round(requests[i] / step, 3),
                "error_rate": round(errors[i] / requests[i], 4) if requests[i] else 0.0,
                "p50_ms": histogram.percentile(buckets[i], 0.50),
                "p95_ms": histogram.percentile(buckets[i], 0.95),
                "p99_ms": histogram.percentile(buckets[i], 0.99),
            }
        )
    return {
        "service": name,
        "window_seconds": window_seconds,
        "step_seconds": step,
        "points": points,
    }
