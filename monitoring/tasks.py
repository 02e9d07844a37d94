"""Periodic monitoring tasks (the beat schedule is assembled in meshconsole.celery;
the agents' and the registry's timers, TTL expiry included, are in agents/tasks.py
and registry/tasks.py).

Thin on purpose: each one calls services; JSON-serialisable returns only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from journal.models import Event
from monitoring import checks, health, ingest, rollups, timetravel
from monitoring.models import EdgeWindow, InstanceWindow

log = logging.getLogger(__name__)

CHECK_BATCH = 1000
# Beat ticks every second and claims are exclusive, so a tick that finds a huge
# backlog does a few batches and leaves the rest to the next tick (or worker).
MAX_BATCHES_PER_RUN = 5


@shared_task(ignore_result=True)
def dispatch_due_checks() -> int:
    """Run every check that is due; returns how many ran."""
    ran = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        specs = health.checks_claim_due(now=timezone.now(), limit=CHECK_BATCH)
        if not specs:
            break
        results = asyncio.run(checks.run_batch(specs))
        moved = health.check_results_record(
            results=list(zip(specs, results, strict=True)), now=timezone.now()
        )
        ran += len(specs)
        if moved:
            log.info("health checks: %d ran, %d changed health", len(specs), len(moved))
        if len(specs) < CHECK_BATCH:
            break
    return ran


@shared_task(ignore_result=True)
def ingest_metrics() -> int:
    """Store the traffic windows agents reported since the last run (monitoring.ingest)."""
    return ingest.metrics_ingest()


@shared_task(ignore_result=True)
def prune_history() -> dict[str, int]:
    """Delete traffic windows and events past their retention."""
    now = timezone.now()
    oldest = now - timedelta(seconds=settings.MESH_METRICS_RETENTION)
    windows, _ = EdgeWindow.objects.filter(window_end__lt=oldest).delete()
    instance_windows, _ = InstanceWindow.objects.filter(window_end__lt=oldest).delete()
    events, _ = Event.objects.filter(
        ts__lt=now - timedelta(seconds=settings.MESH_EVENTS_RETENTION)
    ).delete()
    results = health.check_results_prune(
        before=now - timedelta(seconds=settings.MESH_EVENTS_RETENTION)
    )
    frames = timetravel.frames_prune(now)
    return {"edge_windows": windows, "instance_windows": instance_windows, "events": events,
            "check_results": results, "topology_frames": frames,
            "rollups": rollups.rollups_prune(now)}


@shared_task(ignore_result=True)
def record_topology_frame() -> str:
    """This minute's topology, for the overview's time slider (monitoring.timetravel)."""
    return timetravel.frame_record().minute.isoformat()


@shared_task(ignore_result=True)
def rollup_metrics() -> dict[str, int]:
    """Sum the traffic windows into one- and ten-minute rows (monitoring.rollups)."""
    return rollups.rollups_record(timezone.now())
