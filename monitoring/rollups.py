"""Metrics rollups: the agents' report windows (a few seconds each, kept
MESH_METRICS_RETENTION) summed into one-minute rows (kept MESH_ROLLUP_1M_RETENTION,
24 h by default) and those into ten-minute rows (MESH_ROLLUP_10M_RETENTION, 7 days),
so a chart of the last day or week reads a few hundred rows an edge, and storage
is bounded whatever the fleet's size. The per-instance windows (InstanceWindow,
issue 13) are rolled the same way into InstanceRollup, by the same runs.

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
from django.db import IntegrityError, models, transaction
from django.db.models import Max, Min

from agents.runtime import histogram
from monitoring.models import EdgeRollup, EdgeWindow, InstanceRollup, InstanceWindow

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


@dataclass(frozen=True)
class Table:
    """What is rolled: raw windows keyed by KEYS into rollup rows of the same keys."""

    windows: type[models.Model]
    rollups: type[models.Model]
    keys: tuple[str, ...]
    sums: tuple[str, ...]  # requests, errors, [denied,] latency_sum_ms, buckets

    def rollup(self, resolution: int, start: datetime, key: tuple[Any, ...], s: Sums) -> Any:
        values = {"requests": s.requests, "errors": s.errors, "denied": s.denied,
                  "latency_sum_ms": round(s.latency_sum_ms, 3), "buckets": s.buckets}
        keys = dict(zip(self.keys, key, strict=True))
        return self.rollups(resolution=resolution, start=start, **keys,
                            **{f: values[f] for f in self.sums})


SUMS = ("requests", "errors", "denied", "latency_sum_ms", "buckets")
EDGES = Table(EdgeWindow, EdgeRollup, ("source", "destination"), SUMS)
INSTANCES = Table(InstanceWindow, InstanceRollup, ("service", "instance"),
                  ("requests", "errors", "latency_sum_ms", "buckets"))
TABLES = (EDGES, INSTANCES)


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(epoch, tz=UTC)


def _source_rows(
    table: Table, resolution: int, start: datetime, end: datetime
) -> Iterable[tuple[Any, ...]]:
    """(when, *keys, *sums) in [start, end)."""
    if resolution == MINUTE:
        # A window belongs to the minute it ends in (as the charts' raw steps).
        rows = table.windows._default_manager.filter(window_end__gte=start, window_end__lt=end)
        return rows.values_list("window_end", *table.keys, *table.sums)
    minutes = table.rollups._default_manager.filter(
        resolution=MINUTE, start__gte=start, start__lt=end
    )
    return minutes.values_list("start", *table.keys, *table.sums)


def _first_period(table: Table, resolution: int, now: datetime) -> datetime | None:
    """Where this run starts: the period after the newest rolled one, or the first
    period that is not final yet (it ends less than LATE ago), whichever is older;
    the oldest source row when nothing is rolled yet."""
    rollups = table.rollups._default_manager
    newest = rollups.filter(resolution=resolution).aggregate(m=Max("start"))["m"]
    if newest is not None:
        after = _floor(newest, resolution) + timedelta(seconds=resolution)
        return min(after, _floor(now - LATE, resolution))
    if resolution == MINUTE:
        oldest = table.windows._default_manager.aggregate(m=Min("window_end"))["m"]
    else:
        oldest = rollups.filter(resolution=MINUTE).aggregate(m=Min("start"))["m"]
    return None if oldest is None else _floor(oldest, resolution)


def roll(resolution: int, now: datetime, table: Table = EDGES) -> int:
    """Roll (or roll again) every complete period of RESOLUTION not older than
    LATE behind the newest; returns how many rows were written."""
    first = _first_period(table, resolution, now)
    if first is None:
        return 0
    end = _floor(now, resolution)  # the current period is not complete
    end = min(end, first + timedelta(seconds=resolution * MAX_PERIODS))
    if end <= first:
        return 0
    sums: dict[tuple[Any, ...], Sums] = defaultdict(Sums)
    nkeys = len(table.keys)
    for row in _source_rows(table, resolution, first, end):
        key = (_floor(row[0], resolution), *row[1 : 1 + nkeys])
        figures = dict(zip(table.sums, row[1 + nkeys :], strict=True))
        sums[key].add(figures["requests"], figures["errors"], figures.get("denied", 0),
                      figures["latency_sum_ms"], figures["buckets"])
    rows = [table.rollup(resolution, key[0], key[1:], s) for key, s in sums.items()]
    try:
        with transaction.atomic():
            table.rollups._default_manager.filter(
                resolution=resolution, start__gte=first, start__lt=end
            ).delete()
            table.rollups._default_manager.bulk_create(rows, batch_size=500)
    except IntegrityError:
        return 0  # a concurrent run (a late tick) wrote the same periods: its rows stand
    return len(rows)


def rollups_record(now: datetime) -> dict[str, int]:
    """One run of the beat task: minutes first, then the ten-minute rows from them
    (the edges as `60s`/`600s`, the instances as `instances-60s`/`instances-600s`)."""
    done = {f"{r}s": roll(r, now) for r in RESOLUTIONS}
    done.update({f"instances-{r}s": roll(r, now, INSTANCES) for r in RESOLUTIONS})
    return done


def rollups_prune(now: datetime) -> int:
    """Delete rollups (edges and instances) past their retention; returns how many."""
    deleted = 0
    for resolution, keep in (
        (MINUTE, settings.MESH_ROLLUP_1M_RETENTION),
        (TEN_MINUTES, settings.MESH_ROLLUP_10M_RETENTION),
    ):
        for table in TABLES:
            count, _ = table.rollups._default_manager.filter(
                resolution=resolution, start__lt=now - timedelta(seconds=keep)
            ).delete()
            deleted += count
    return deleted
