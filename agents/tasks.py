"""Periodic agent tasks (the beat schedule is assembled in meshconsole.celery)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from agents.expiry import agents_expire


@shared_task(ignore_result=True)
def expire_agents() -> list[str]:
    """Mark silent agents' instances critical; returns the silenced nodes."""
    return agents_expire(now=timezone.now())
