"""A gateway's traffic over a window (`GET gateway/{gw}/metrics/`): per
destination service, and per route and per consumer once the windows carry
them (the `route`/`consumer` columns the routes work adds to EdgeWindow; read
only if present, so this module works before and after that lands)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from agents.runtime import histogram
from monitoring.models import EdgeWindow

GROUPS = {"service": "destination", "route": "route", "consumer": "consumer"}


def _present() -> dict[str, str]:
    columns = {f.name for f in EdgeWindow._meta.get_fields()}
    return {group: column for group, column in GROUPS.items() if column in columns}


def gateway_metrics(name: str, window_seconds: int) -> dict[str, Any]:
    """{gateway, window_seconds, by_service: [...], by_route?, by_consumer?}: each
    row {name, requests, errors, rps, error_rate, p50_ms, p95_ms, p99_ms}."""
    since = timezone.now() - timedelta(seconds=window_seconds)
    groups = _present()
    rows = EdgeWindow.objects.filter(source=name, gateway=True, window_end__gt=since).values_list(
        "requests", "errors", "buckets", *groups.values()
    )
    totals: dict[str, dict[str, dict[str, Any]]] = {group: {} for group in groups}
    for requests, errors, buckets, *keys in rows:
        for group, key in zip(groups, keys, strict=True):
            entry = totals[group].setdefault(
                str(key or ""), {"requests": 0, "errors": 0, "buckets": histogram.empty()}
            )
            entry["requests"] += int(requests)
            entry["errors"] += int(errors)
            histogram.merge(entry["buckets"], buckets or [])
    out: dict[str, Any] = {"gateway": name, "window_seconds": window_seconds}
    for group, entries in totals.items():
        out[f"by_{group}"] = [
            {
                "name": key,
                "requests": t["requests"],
                "errors": t["errors"],
                "rps": round(t["requests"] / window_seconds, 3),
                "error_rate": round(t["errors"] / t["requests"], 4) if t["requests"] else 0.0,
                "p50_ms": histogram.percentile(t["buckets"], 0.50),
                "p95_ms": histogram.percentile(t["buckets"], 0.95),
                "p99_ms": histogram.percentile(t["buckets"], 0.99),
            }
            for key, t in sorted(entries.items())
        ]
    return out
