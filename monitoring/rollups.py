"""Metrics rollups: the agents' report windows (a few seconds each, kept
MESH_METRICS_RETENTION) summed into one-minute rows (kept MESH_ROLLUP_1M_RETENTION,
24 h by default) and those into ten-minute rows (MESH_ROLLUP_10M_RETENTION, 7 days),
so a chart of the last day or week reads a few hundred rows an edge, and storage
is bounded whatever the fleet's size.

A period is rolled once it is complete, and rolled again on the next runs until
it ended LATE ago (windows arrive a second or so after they end, batched by
the ingest worker): each roll replaces the period's rows, so re-rolling is
idempotent and a window that arrives late (within LATE) is counted. One that
arrives later still is in the raw windows but not in the rollups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Min

from agents.runtime import histogram
from monitoring.models import EdgeRollup, EdgeWindow

MINUTE = 60
TEN_MINUTES = 600
RESOLUTIONS = (MINUTE, TEN_MINUTES)
LATE = timedelta(minutes=3)  # how long a period keeps being re-rolled
MAX_PERIODS = 180  # per run and resolution: a long outage catches up over a few runs


@dataclass
class Sums:
    requests: int = 0
    errors: int = 0
    denied: int = 0
    latency_sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=histogram.empty)

    def add(self, requests: int, errors: int, denied: int, latency: float, buckets: Any) -> None:
        self.requests += requests
        self.errors += errors
        self.denied += denied
        self.latency_sum_ms += latency
        histogram.merge(self.buckets, buckets or [])


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(epoch, tz=UTC)


def _source_rows(resolution: int, start: datetime, end: datetime) -> Iterable[tuple[Any, ...]]:
    """(when, source, destination, requests, errors, denied, latency, buckets) in [start, end)."""
    if resolution == MINUTE:
        # A window belongs to the minute it ends in (as the charts' raw steps).
        return EdgeWindow.objects.filter(window_end__gte=start, window_end__lt=end).values_list(
            "window_end", "source", "destination", "requests", "errors", "denied",
            "latency_sum_ms", "buckets",
        )
    minutes = EdgeRollup.objects.filter(resolution=MINUTE, start__gte=start, start__lt=end)
    return minutes.values_list(
        "start", "source", "destination", "requests", "errors", "denied",
        "latency_sum_ms", "buckets",
    )


def _first_period(resolution: int, now: datetime) -> datetime | None:
    """Where this run starts: the period after the newest rolled one, or the first
    period that is not final yet (it ends less than LATE ago), whichever is older;
    the oldest source row when nothing is rolled yet."""
    newest = EdgeRollup.objects.filter(resolution=resolution).aggregate(m=Max("start"))["m"]
    if newest is not None:
        after = _floor(newest, resolution) + timedelta(seconds=resolution)
        return min(after, _floor(now - LATE, resolution))
    if resolution == MINUTE:
        oldest = EdgeWindow.objects.aggregate(m=Min("window_end"))["m"]
    else:
        oldest = EdgeRollup.objects.filter(resolution=MINUTE).aggregate(m=Min("start"))["m"]
    return None if oldest is None else _floor(oldest, resolution)


def roll(resolution: int, now: datetime) -> int:
    """Roll (or roll again) every complete period of RESOLUTION not older than
    LATE behind the newest; returns how many rows were written."""
    first = _first_period(resolution, now)
    if first is None:
        return 0
    end = _floor(now, resolution)  # the current period is not complete
    end = min(end, first + timedelta(seconds=resolution * MAX_PERIODS))
    if end <= first:
        return 0
    sums: dict[tuple[datetime, str, str], Sums] = defaultdict(Sums)
    for when, source, destination, req, err, den, latency, buckets in _source_rows(
        resolution, first, end
    ):
        sums[(_floor(when, resolution), source, destination)].add(req, err, den, latency, buckets)
    rows = [
        EdgeRollup(resolution=resolution, start=start, source=source, destination=destination,
                   requests=s.requests, errors=s.errors, denied=s.denied,
                   latency_sum_ms=round(s.latency_sum_ms, 3), buckets=s.buckets)
        for (start, source, destination), s in sums.items()
    ]
    try:
        with transaction.atomic():
            EdgeRollup.objects.filter(
                resolution=resolution, start__gte=first, start__lt=end
            ).delete()
            EdgeRollup.objects.bulk_create(rows, batch_size=500)
    except IntegrityError:
        return 0  # a concurrent run (a late tick) wrote the same periods: its rows stand
    return len(rows)


def rollups_record(now: datetime) -> dict[str, int]:
    """One run of the beat task: minutes first, then the ten-minute rows from them."""
    return {f"{r}s": roll(r, now) for r in RESOLUTIONS}


def rollups_prune(now: datetime) -> int:
    """Delete rollups past their retention; returns how many."""
    deleted = 0
    for resolution, keep in (
        (MINUTE, settings.MESH_ROLLUP_1M_RETENTION),
        (TEN_MINUTES, settings.MESH_ROLLUP_10M_RETENTION),
    ):
        count, _ = EdgeRollup.objects.filter(
            resolution=resolution, start__lt=now - timedelta(seconds=keep)
        ).delete()
        deleted += count
    return deleted
