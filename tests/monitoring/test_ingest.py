"""Traffic windows are ingested in batches off the report's request: at least
once (acknowledged after the commit) and idempotent (each row keyed by its
stream entry), so a worker dying mid-batch loses nothing and doubles nothing."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import redis

from agents.runtime import histogram
from monitoring import ingest
from monitoring.models import EdgeWindow

pytestmark = pytest.mark.django_db


class WorkerDied(BaseException):
    """What SIGKILL looks like from inside: nothing after it runs, not even except Exception."""


def report_windows(n: int) -> list[tuple[str, list[dict[str, Any]]]]:
    reports = []
    for r in range(n):
        buckets = histogram.empty()
        buckets[r % histogram.NBUCKETS] = r + 1
        windows = [
            {"source": f"caller-{r}", "destination": "payments", "window_end": time.time() - k,
             "seconds": 10.0, "requests": 10 * r + k, "errors": k, "latency_sum_ms": 1.5,
             "buckets": buckets}
            for k in range(3)
        ]
        reports.append((f"host-{r}", windows))
    return reports


def stored() -> Counter[tuple[str, str, int, int]]:
    return Counter(EdgeWindow.objects.values_list("node", "source", "requests", "errors"))


def expected(reports: list[tuple[str, list[dict[str, Any]]]]) -> Counter[tuple[str, str, int, int]]:
    return Counter(
        (node, w["source"], w["requests"], w["errors"]) for node, windows in reports for w in windows
    )


def pending() -> int:
    return int(ingest._client().xpending(ingest.stream_key(), ingest.GROUP)["pending"])


def test_accepted_windows_are_stored_as_reported() -> None:
    reports = report_windows(4)
    for node, windows in reports:
        ingest.metrics_accept(node=node, windows=windows)
    assert EdgeWindow.objects.count() == 0
    assert ingest.metrics_ingest(batch=3) == 12
    assert stored() == expected(reports)
    row = EdgeWindow.objects.get(node="host-2", requests=21)
    sent = reports[2][1][1]
    assert row.window_end.timestamp() == pytest.approx(sent["window_end"], abs=1e-6)
    assert row.buckets == sent["buckets"] and row.seconds == 10.0 and row.latency_sum_ms == 1.5
    assert ingest.metrics_backlog() == 0 and pending() == 0


def test_a_worker_dying_before_its_commit_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = report_windows(5)
    for node, windows in reports:
        ingest.metrics_accept(node=node, windows=windows)
    real = EdgeWindow.objects.bulk_create
    calls = {"n": 0}

    def dies_on_the_second_batch(rows: list[EdgeWindow], **kwargs: Any) -> list[EdgeWindow]:
        calls["n"] += 1
        written = real(rows, **kwargs)
        if calls["n"] == 2:
            raise WorkerDied  # inside the transaction: its rows roll back, nothing acked
        return written

    monkeypatch.setattr(EdgeWindow.objects, "bulk_create", dies_on_the_second_batch)
    with pytest.raises(WorkerDied):
        ingest.metrics_ingest(consumer="worker-a", batch=2)
    monkeypatch.undo()
    assert sum(stored().values()) == 6  # the first batch (two reports) committed
    assert pending() == 2  # the second, delivered to worker-a, never acknowledged
    # Another worker: reads what is new, and claims what worker-a left once idle.
    assert ingest.metrics_ingest(consumer="worker-b", claim_idle_ms=60_000, batch=2) == 3
    assert pending() == 2
    ingest.metrics_ingest(consumer="worker-b", claim_idle_ms=0, batch=2)
    assert stored() == expected(reports)
    assert ingest.metrics_backlog() == 0 and pending() == 0


def test_a_worker_dying_after_its_commit_stores_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports = report_windows(3)
    for node, windows in reports:
        ingest.metrics_accept(node=node, windows=windows)
    client = ingest._client()

    def dies(*args: Any, **kwargs: Any) -> None:
        raise WorkerDied  # committed, not yet acknowledged

    monkeypatch.setattr(client, "xack", dies)
    with pytest.raises(WorkerDied):
        ingest.metrics_ingest(consumer="worker-a", batch=10)
    monkeypatch.undo()
    assert stored() == expected(reports) and pending() == 3
    ingest.metrics_ingest(consumer="worker-b", claim_idle_ms=0)
    assert stored() == expected(reports)  # taken again, stored once
    assert ingest.metrics_backlog() == 0 and pending() == 0


def test_without_redis_the_report_stores_its_windows_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(ingest, "_redis", down)
    reports = report_windows(2)
    for node, windows in reports:
        ingest.metrics_accept(node=node, windows=windows)
    assert stored() == expected(reports)
