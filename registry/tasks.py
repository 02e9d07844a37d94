"""Periodic registry tasks (the beat schedule is assembled in meshconsole.celery)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from registry import heartbeats
from registry.control import drains_finish

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def expire_ttl() -> list[str]:
    """Turn critical the TTL-checked instances whose heartbeat is overdue; returns
    their ids."""
    expired = heartbeats.ttl_expire(now=timezone.now())
    if expired:
        log.info("TTL expired: %d", len(expired))
    return expired


@shared_task(ignore_result=True)
def finish_drains() -> list[str]:
    """Put drained instances past their service's drain timeout in maintenance;
    returns their ids."""
    drained = drains_finish(now=timezone.now())
    if drained:
        log.info("drains finished: %d", len(drained))
    return drained
