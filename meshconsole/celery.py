"""The Celery app: JSON only, configured from Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")

app = Celery("meshconsole")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["monitoring", "agents", "registry", "policies", "identity"])
# Back on the broker within ~2 s of Redis returning, however long it was gone.
app.conf.worker_consumer = "meshconsole.worker_consumer:SteadyReconnectConsumer"

# Beat's schedule: the one place every timer is listed. The tasks live in their
# apps' tasks.py (monitoring, agents, registry, policies, identity). Checks are claimed per
# instance when due, so the 0.25 s tick is only how often a worker looks (it
# bounds how late a check starts); each check keeps its own interval.
app.conf.beat_schedule = {
    # A tick not picked up quickly is dropped: the next one claims the same work.
    "dispatch-due-checks": {
        "task": "monitoring.tasks.dispatch_due_checks",
        "schedule": 0.25,
        "options": {"expires": 0.5},
    },
    # The three 2 s timers: each is a cheap indexed query when nothing is due.
    "expire-agents": {
        "task": "agents.tasks.expire_agents",
        "schedule": 2.0,
        "options": {"expires": 2.0},
    },
    "expire-ttl": {
        "task": "registry.tasks.expire_ttl",
        "schedule": 2.0,
        "options": {"expires": 2.0},
    },
    "finish-drains": {
        "task": "registry.tasks.finish_drains",
        "schedule": 2.0,
        "options": {"expires": 2.0},
    },
    # Failover follows health within a second; claims make overlapping ticks safe.
    "evaluate-failover": {
        "task": "policies.tasks.evaluate_failover",
        "schedule": 1.0,
        "options": {"expires": 1.0},
    },
    # Agents' traffic windows, in batches off the report's request (monitoring.ingest).
    # Entries are claimed per consumer, so overlapping ticks never store one twice.
    "ingest-metrics": {
        "task": "monitoring.tasks.ingest_metrics",
        "schedule": 1.0,
        "options": {"expires": 1.0},
    },
    "prune-history": {"task": "monitoring.tasks.prune_history", "schedule": 300.0},
    # Topology time travel: every minute gets a frame (twice a minute, the later wins).
    "topology-frame": {
        "task": "monitoring.tasks.record_topology_frame",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    # Traffic windows summed into one- and ten-minute rows (monitoring.rollups).
    "rollup-metrics": {
        "task": "monitoring.tasks.rollup_metrics",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "prune-certificates": {"task": "identity.tasks.prune_certificates", "schedule": 3600.0},
}
