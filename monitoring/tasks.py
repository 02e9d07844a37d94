"""Periodic monitoring tasks (see the beat schedule in meshconsole.celery).

Thin on purpose: each one calls services; JSON-serialisable returns only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from agents.expiry import agents_expire
from journal.models import Event
from monitoring import checks, health
from monitoring.models import EdgeWindow
from registry import heartbeats
from registry.control import drains_finish

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
def expire_heartbeats() -> list[str]:
    """Mark silent agents and their instances, overdue TTL instances critical, and
    finish drains past their timeout; returns the silenced nodes.

    One beat entry for the three timers: each is a cheap indexed query when
    nothing is due, and they share the same 2 s granularity."""
    now = timezone.now()
    silenced = agents_expire(now=now)
    expired = heartbeats.ttl_expire(now=now)
    drained = drains_finish(now=now)
    if expired or drained:
        log.info("TTL expired: %d; drains finished: %d", len(expired), len(drained))
    return silenced


@shared_task(ignore_result=True)
def prune_history() -> dict[str, int]:
    """Delete traffic windows and events past their retention."""
    now = timezone.now()
    windows, _ = EdgeWindow.objects.filter(
        window_end__lt=now - timedelta(seconds=settings.MESH_METRICS_RETENTION)
    ).delete()
    events, _ = Event.objects.filter(
        ts__lt=now - timedelta(seconds=settings.MESH_EVENTS_RETENTION)
    ).delete()
    results = health.check_results_prune(
        before=now - timedelta(seconds=settings.MESH_EVENTS_RETENTION)
    )
    return {"edge_windows": windows, "events": events, "check_results": results}
