"""The topology's edges are summed by the database; the figures must be the
ones a plain merge of every window in the period gives (agents.runtime.histogram)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow
from monitoring.topology import topology_snapshot

pytestmark = pytest.mark.django_db

NAMES = ["orders", "payments", "cart", "search", "auth"]


def random_windows(rng: random.Random, count: int) -> list[EdgeWindow]:
    now = timezone.now()
    rows = []
    for _ in range(count):
        requests = rng.randint(0, 500)
        buckets = [rng.choice((0, 0, rng.randint(0, 40))) for _ in range(rng.randint(0, histogram.NBUCKETS))]
        rows.append(
            EdgeWindow(
                # Some windows ended before the period: they must not count.
                window_end=now - timedelta(seconds=rng.uniform(-5, 150)),
                seconds=10, node=f"host-{rng.randint(0, 3)}",
                source=rng.choice(NAMES), destination=rng.choice(NAMES),
                requests=requests, errors=rng.randint(0, requests), buckets=buckets,
                denied=rng.choice((0, 0, rng.randint(0, 50))),
                subset=rng.choice(("", "", "v1", "v2")),
            )
        )
    return EdgeWindow.objects.bulk_create(rows)


def _figures(totals: list[object], window_seconds: int) -> dict[str, object]:
    r, e, n, b = totals
    return {
        "requests": r, "errors": e,
        "rps": round(r / window_seconds, 3),  # type: ignore[operator]
        "error_rate": round(e / r, 4) if r else 0.0,  # type: ignore[operator]
        "denied": n, "denied_rps": round(n / window_seconds, 3),  # type: ignore[operator]
        "p50_ms": histogram.percentile(b, 0.50),  # type: ignore[arg-type]
        "p95_ms": histogram.percentile(b, 0.95),  # type: ignore[arg-type]
        "p99_ms": histogram.percentile(b, 0.99),  # type: ignore[arg-type]
    }


def brute_force(window_seconds: int, since_at: timezone.datetime) -> list[dict[str, object]]:
    # (source, destination, subset): "" is the edge's total over every window.
    merged: dict[tuple[str, str, str], list[object]] = {}
    for w in EdgeWindow.objects.filter(window_end__gt=since_at):
        for subset in {"", w.subset}:
            totals = merged.setdefault((w.source, w.destination, subset), [0, 0, 0, histogram.empty()])
            totals[0] += w.requests  # type: ignore[operator]
            totals[1] += w.errors  # type: ignore[operator]
            totals[2] += w.denied  # type: ignore[operator]
            histogram.merge(totals[3], w.buckets)  # type: ignore[arg-type]
    return [
        {
            "source": s, "destination": d, **_figures(totals, window_seconds),
            "subsets": {
                u: _figures(t, window_seconds)
                for (s2, d2, u), t in sorted(merged.items()) if (s2, d2) == (s, d) and u
            },
        }
        for (s, d, subset), totals in sorted(merged.items())
        if not subset
    ]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_edges_match_a_brute_force_merge_of_random_windows(seed: int) -> None:
    rng = random.Random(seed)
    random_windows(rng, 300)
    for window_seconds in (10, 60, 120):
        topology = topology_snapshot(window_seconds)
        since = timezone.datetime.fromisoformat(topology["generated_at"]) - timedelta(
            seconds=window_seconds
        )
        expected = brute_force(window_seconds, since)
        assert expected, "the random windows must give edges to compare"
        assert any(e["subsets"] for e in expected), "and edges split by subset"
        assert topology["edges"] == expected


def test_the_edges_cost_the_same_queries_at_any_number_of_windows() -> None:
    rng = random.Random(7)
    random_windows(rng, 20)
    with CaptureQueriesContext(connection) as few:
        topology_snapshot(60)
    random_windows(rng, 400)
    with CaptureQueriesContext(connection) as many:
        topology_snapshot(60)
    assert len(many.captured_queries) == len(few.captured_queries)
