"""Periodic identity tasks (the beat schedule is assembled in meshconsole.celery)."""

from __future__ import annotations

from celery import shared_task

from identity.services import certificates_prune


@shared_task(ignore_result=True)
def prune_certificates() -> int:
    """Forget certificate records expired for a day; returns how many."""
    return certificates_prune()
