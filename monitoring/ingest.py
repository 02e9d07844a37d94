"""Traffic windows off the request path: an agent's report pushes its windows,
validated, onto a Redis stream (one XADD); a Celery task reads them in batches
through a consumer group and writes them with one bulk insert per batch.

At least once, idempotent: an entry is acknowledged (XACK, then XDEL) only after
the transaction that stored its rows has committed, so a worker that dies
mid-batch leaves it pending, and the next run claims what has been pending
longer than CLAIM_IDLE_MS (XAUTOCLAIM). Each row carries the key of the entry
and its place in it (`EdgeWindow.ingest_key`, unique), so a batch stored but not
yet acknowledged when its worker died is not stored twice.

When Redis does not answer, the report writes its windows itself (the
bulk insert, in the request), so no report fails or loses traffic for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from monitoring.models import EdgeWindow, InstanceWindow

log = logging.getLogger(__name__)

GROUP = "ingest"
BATCH = 500  # stream entries (reports) per transaction
MAX_BATCHES = 20  # per run: beat ticks every second, the rest waits for the next
CLAIM_IDLE_MS = 30_000  # a delivered entry unacknowledged this long: its worker is gone
# A memory bound for a stream nobody reads (no worker for hours): the oldest
# entries beyond it are trimmed, approximately.
MAX_PENDING_ENTRIES = 1_000_000

_redis: redis.Redis | None = None


def stream_key() -> str:
    # Per Celery queue: control planes sharing one Redis keep their traffic apart.
    return f"meshconsole:metrics:{settings.CELERY_TASK_DEFAULT_QUEUE}"


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _redis


def _window_end(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), tz=UTC)


def window_rows(
    node: str, windows: Sequence[dict[str, Any]], key: str | None = None
) -> list[EdgeWindow]:
    """The EdgeWindow rows of one report's validated windows; KEY (the stream
    entry's id) makes each row's ingest_key."""
    return [
        EdgeWindow(
            window_end=_window_end(w["window_end"]),
            seconds=w["seconds"],
            node=node,
            source=w["source"],
            destination=w["destination"],
            requests=w["requests"],
            errors=w["errors"],
            denied=w.get("denied", 0),
            gateway=bool(w.get("gateway", False)),
            latency_sum_ms=w.get("latency_sum_ms", 0.0),
            buckets=list(w.get("buckets", [])),
            subset=w.get("subset", ""),
            route=w.get("route", ""),
            consumer=w.get("consumer", ""),
            statuses=w.get("statuses"),
            ingest_key=f"{key}:{i}" if key else None,
        )
        for i, w in enumerate(windows)
    ]


def instance_rows(
    node: str, windows: Sequence[dict[str, Any]], key: str | None = None
) -> list[InstanceWindow]:
    """The InstanceWindow rows of one report's validated `instances`; their
    ingest_key is "<entry id>:i<index>" (apart from the edges' "<entry id>:<index>")."""
    return [
        InstanceWindow(
            window_end=_window_end(w["window_end"]),
            seconds=w["seconds"],
            node=node,
            service=w["service"],
            instance=w["instance"],
            requests=w["requests"],
            errors=w["errors"],
            latency_sum_ms=w.get("latency_sum_ms", 0.0),
            buckets=list(w.get("buckets", [])),
            ingest_key=f"{key}:i{i}" if key else None,
        )
        for i, w in enumerate(windows)
    ]


def counted(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The windows that count: an inbound listener's window (`inbound: true`)
    repeats requests the caller's agent reports, so only its denials are kept."""
    out = []
    for w in windows:
        if not w.get("inbound"):
            out.append(w)
        elif w.get("denied"):
            out.append({**w, "requests": 0, "errors": 0, "latency_sum_ms": 0.0, "buckets": [],
                        "inbound": False})
    return out


def _on_the_wire(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**w, "window_end": _window_end(w["window_end"]).isoformat()} for w in windows]


def metrics_accept(
    *, node: str, windows: Sequence[dict[str, Any]], instances: Sequence[dict[str, Any]] = ()
) -> None:
    """Take one report's validated windows (edges, and per upstream instance): onto
    the stream, or (Redis down) into the database at once."""
    windows = counted(windows)
    instances = [w for w in instances if w["requests"]]
    if not windows and not instances:
        return
    payload: dict[str, Any] = {"node": node, "windows": _on_the_wire(windows)}
    if instances:
        payload["instances"] = _on_the_wire(instances)
    try:
        _client().xadd(
            stream_key(),
            {"d": json.dumps(payload, separators=(",", ":"))},
            maxlen=MAX_PENDING_ENTRIES,
            approximate=True,
        )
    except redis.RedisError as exc:
        log.warning("metrics stream unavailable (%s); storing %d windows now", exc,
                    len(windows) + len(instances))
        with transaction.atomic():
            EdgeWindow.objects.bulk_create(window_rows(node, windows))
            InstanceWindow.objects.bulk_create(instance_rows(node, instances))


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(stream_key(), GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


Rows = tuple[list[EdgeWindow], list[InstanceWindow]]


def _off_the_wire(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**w, "window_end": datetime.fromisoformat(w["window_end"])} for w in windows]


def _decode(entry_id: bytes, fields: dict[bytes, bytes] | None) -> Rows:
    if not fields or b"d" not in fields:
        return [], []  # trimmed or deleted meanwhile: nothing to store
    try:
        payload = json.loads(fields[b"d"])
        node, key = str(payload["node"]), entry_id.decode()
        return (
            window_rows(node, _off_the_wire(payload["windows"]), key=key),
            instance_rows(node, _off_the_wire(payload.get("instances", ())), key=key),
        )
    except (ValueError, KeyError, TypeError) as exc:  # not ours: dropped, not retried forever
        log.error("dropping malformed metrics entry %s: %s", entry_id, exc)
        return [], []


def _store(client: redis.Redis, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> int:
    decoded = [_decode(entry_id, fields) for entry_id, fields in entries]
    rows = [row for edges, _ in decoded for row in edges]
    instances = [row for _, of_instances in decoded for row in of_instances]
    with transaction.atomic():
        EdgeWindow.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        InstanceWindow.objects.bulk_create(instances, batch_size=1000, ignore_conflicts=True)
    ids = [entry_id for entry_id, _ in entries]
    # Only now, after the commit: a worker dying before this leaves them pending.
    client.xack(stream_key(), GROUP, *ids)
    client.xdel(stream_key(), *ids)
    return len(rows) + len(instances)


def metrics_ingest(
    *,
    consumer: str | None = None,
    claim_idle_ms: int = CLAIM_IDLE_MS,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Store what the stream holds, in batches; returns the rows written (or
    found already written). First the entries a gone worker left pending."""
    client = _client()
    _ensure_group(client)
    name = consumer or default_consumer()
    stored = 0
    start = "0-0"
    for _ in range(max_batches):
        reply: Any = client.xautoclaim(
            stream_key(), GROUP, name, min_idle_time=claim_idle_ms, start_id=start, count=batch
        )
        claimed = reply[1]
        if claimed:
            stored += _store(client, claimed)
        start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if start == "0-0":
            break
    for _ in range(max_batches):
        read: Any = client.xreadgroup(GROUP, name, {stream_key(): ">"}, count=batch)
        entries = read[0][1] if read else []
        if not entries:
            break
        stored += _store(client, entries)
    return stored


def metrics_backlog() -> int:
    """Entries on the stream not yet stored and acknowledged (for tests, /readyz-like checks)."""
    return int(_client().xlen(stream_key()))
