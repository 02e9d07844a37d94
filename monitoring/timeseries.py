"""Traffic of one service over time, in fixed steps, for charts: inbound (its
callers' requests to it) or outbound (its requests to others). Read from the raw
report windows while the window fits in MESH_METRICS_RETENTION, else from the
rollups (monitoring.rollups): one-minute rows up to a day, ten-minute rows past it.
One instance's series (its callers' tries it served: InstanceWindow) has the same
shape and the same sources (monitoring.instances)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeRollup, EdgeWindow
from monitoring.rollups import MINUTE, TEN_MINUTES

MAX_WINDOW_S = 7 * 24 * 3600
DIRECTIONS = ("in", "out")


class SeriesPoint(TypedDict):
    t: str
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ServiceSeries(TypedDict):
    service: str
    direction: str
    window_seconds: int
    step_seconds: int
    source: str  # "windows" | "rollups-60s" | "rollups-600s": where the points come from
    points: list[SeriesPoint]


def choose_step(window_seconds: int) -> int:
    """About 90 points a chart, on round steps."""
    for step in (2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if window_seconds / step <= 90:
            return step
    return 7200


Row = tuple[datetime, int, int, list[int]]


def _rows(windows: type[models.Model], rollups: type[models.Model], where: dict[str, Any],
          window_seconds: int, step: int, start: datetime, end: datetime
          ) -> tuple[str, int, list[Row]]:
    """(source label, the step actually used, rows) for the chart."""
    fields = ("requests", "errors", "buckets")
    if window_seconds <= settings.MESH_METRICS_RETENTION:
        rows = windows._default_manager.filter(window_end__gt=start, window_end__lte=end, **where)
        return "windows", step, list(rows.values_list("window_end", *fields))
    resolution = MINUTE if window_seconds <= settings.MESH_ROLLUP_1M_RETENTION else TEN_MINUTES
    rolled = rollups._default_manager.filter(
        resolution=resolution, start__gte=start, start__lt=end, **where
    )
    return f"rollups-{resolution}s", max(step, resolution), list(
        rolled.values_list("start", *fields)
    )


def series_points(windows: type[models.Model], rollups: type[models.Model],
                  where: dict[str, Any], window_seconds: int, now: datetime | None = None
                  ) -> tuple[int, str, list[SeriesPoint]]:
    """(step, source, points) of the rows of WINDOWS (or ROLLUPS) matching WHERE."""
    now = now or timezone.now()
    step = choose_step(window_seconds)
    if window_seconds > settings.MESH_METRICS_RETENTION:
        step = max(step, MINUTE if window_seconds <= settings.MESH_ROLLUP_1M_RETENTION
                   else TEN_MINUTES)
    end_epoch = (int(now.timestamp()) // step + 1) * step
    start_epoch = end_epoch - (window_seconds // step) * step
    nsteps = (end_epoch - start_epoch) // step
    requests = [0] * nsteps
    errors = [0] * nsteps
    buckets = [histogram.empty() for _ in range(nsteps)]
    start = datetime.fromtimestamp(start_epoch, tz=UTC)
    source, step, rows = _rows(
        windows, rollups, where, window_seconds, step, start,
        start + timedelta(seconds=nsteps * step),
    )
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
    return step, source, points


def service_series(
    name: str, window_seconds: int, now: datetime | None = None, direction: str = "in"
) -> ServiceSeries:
    where = {"destination": name} if direction == "in" else {"source": name}
    step, source, points = series_points(EdgeWindow, EdgeRollup, where, window_seconds, now)
    return {
        "service": name,
        "direction": direction,
        "window_seconds": window_seconds,
        "step_seconds": step,
        "source": source,
        "points": points,
    }
