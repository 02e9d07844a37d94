"""Topology time travel: one frame per minute, replayed by the overview's slider.

A frame is the topology as the API gave it at that minute (node health and
state, edges with rps / errors / latency over the minute before it), recorded
by the beat every minute (`monitoring.tasks.record_topology_frame`). Storage is
bounded: frames older than MESH_TIMETRAVEL_FINE (default 6 h) are thinned to
one per 10 minutes, and none is kept past MESH_TIMETRAVEL_RETENTION (default
24 h) — a thinned frame is that minute's picture, not an average of ten.

The changes marked on the timeline are the audit trail (every write by a
person or a token, with before/after: policies, maintenance, weights,
services, intentions…) and the failover events (the engine's own moves).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from journal.models import AuditEntry, Event, EventKind
from monitoring.models import TopologyFrame
from monitoring.topology import topology_snapshot

FRAME_SECONDS = 60
COARSE_MINUTES = 10
MAX_CHANGES = 500


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def frame_record(now: datetime | None = None) -> TopologyFrame:
    """Record (or redo) the frame of NOW's minute."""
    minute = minute_of(now or timezone.now())
    topology = topology_snapshot(FRAME_SECONDS)
    frame, _ = TopologyFrame.objects.update_or_create(
        minute=minute, defaults={"topology": dict(topology)}
    )
    return frame


def frames_prune(now: datetime | None = None) -> int:
    """Thin old frames to one per COARSE_MINUTES and drop those past retention."""
    now = now or timezone.now()
    gone, _ = TopologyFrame.objects.filter(
        minute__lt=now - timedelta(seconds=settings.MESH_TIMETRAVEL_RETENTION)
    ).delete()
    coarse = TopologyFrame.objects.filter(
        minute__lt=now - timedelta(seconds=settings.MESH_TIMETRAVEL_FINE)
    )
    doomed = [f.pk for f in coarse.only("pk", "minute") if f.minute.minute % COARSE_MINUTES]
    thinned, _ = TopologyFrame.objects.filter(pk__in=doomed).delete()
    return int(gone + thinned)


def changes_between(since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The configuration changes to mark on the timeline, oldest first."""
    audits = AuditEntry.objects.filter(ts__gte=since, ts__lt=until).order_by("ts", "id")
    failovers = Event.objects.filter(ts__gte=since, ts__lt=until, kind=EventKind.FAILOVER)
    marks = [
        {
            "ts": a.ts.isoformat(), "kind": "audit", "id": a.id, "actor": a.actor,
            "summary": f"{a.actor} {a.action} {a.object_type} {a.object_id}",
            "object_type": a.object_type, "object_id": a.object_id,
            "before": a.before, "after": a.after,
        }
        for a in audits[:MAX_CHANGES]
    ] + [
        {
            "ts": e.ts.isoformat(), "kind": "failover", "id": e.id, "actor": e.actor,
            "summary": e.message, "object_type": "service", "object_id": e.service,
            "before": None, "after": e.data,
        }
        for e in failovers.order_by("ts", "id")[:MAX_CHANGES]
    ]
    return sorted(marks, key=lambda m: (m["ts"], m["kind"], m["id"]))


def timeline(since: datetime, until: datetime) -> dict[str, Any]:
    frames = list(
        TopologyFrame.objects.filter(minute__gte=minute_of(since), minute__lte=until)
        .order_by("minute").values_list("minute", flat=True)
    )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "frames": [m.isoformat() for m in frames],
        "changes": changes_between(since, until),
    }


def frame_at(at: datetime) -> dict[str, Any] | None:
    """The last frame at or before AT, with the changes of its minute."""
    frame = TopologyFrame.objects.filter(minute__lte=at).order_by("-minute").first()
    if frame is None:
        return None
    return {
        "minute": frame.minute.isoformat(),
        "topology": frame.topology,
        # What changed in the minute that led to this picture.
        "changes": changes_between(frame.minute - timedelta(seconds=FRAME_SECONDS), frame.minute
                                   + timedelta(seconds=FRAME_SECONDS)),
    }
