"""After-commit notifications: revision waiters (Redis pub/sub) and live consoles.

Failures here are logged and swallowed: the database row is the truth, and
waiters re-read it on their own, so a missed message costs latency, not data.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

REVISION_CHANNEL = "meshconsole:revision"
TOPOLOGY_GROUP = "topology"

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _redis


def service_group(name: str) -> str:
    return f"service.{name}"


def publish_revision(value: int) -> None:
    try:
        _client().publish(REVISION_CHANNEL, str(value))
    except redis.RedisError as exc:
        log.warning("could not publish revision %s: %s", value, exc)


def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception as exc:  # the console is best effort; never fail a write for it
        log.warning("could not notify %s: %s", group, exc)


def mesh_changed(*, revision: int, services: set[str] | None = None) -> None:
    """Schedule, for after the commit, the fan-out of a change to the mesh."""
    names = sorted(services or ())

    def fan_out() -> None:
        publish_revision(revision)
        _group_send(TOPOLOGY_GROUP, {"type": "topology.changed", "revision": revision})
        for name in names:
            _group_send(service_group(name), {"type": "service.changed", "service": name})

    transaction.on_commit(fan_out)
