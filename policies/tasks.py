"""Periodic policy tasks (beat schedule in meshconsole.celery); thin on purpose."""

from __future__ import annotations

from celery import shared_task

from policies.failover import failover_evaluate


@shared_task(ignore_result=True)
def evaluate_failover() -> dict[str, str]:
    """Fail over / fail back where health calls for it; returns what changed."""
    return failover_evaluate()
