"""After-commit notifications of mesh changes: revision waiters (Redis pub/sub)
and live consoles. Scheduled by `registry.revision.mesh_change` only.

Failures here are logged and swallowed: the database row is the truth, and
waiters re-read it on their own, so a missed message costs latency, not data.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

REVISION_CHANNEL = "meshconsole:revision"
TOPOLOGY_GROUP = "topology"
# Longest a change committed inside a batch() waits for its fan-out (waiters
# are promised a wake-up within a second).
FLUSH_AFTER = 0.25

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


# Index keys whose kind (the part before ":") is not told to consoles as a change:
# a service has its own group (service.<name>), and agents' keys move with every
# enrollment of a fleet (the agents page polls).
UNTOLD_KINDS = frozenset({"service", "agent"})


def changes_group(kind: str) -> str:
    """The group of the consoles showing KIND (`security`, `gateway`, `gateway-auth`):
    told `resource.changed` after each commit that moved a key of that kind."""
    return f"changes.{kind}"


def change_kinds(keys: list[str]) -> list[str]:
    return sorted({k.partition(":")[0] for k in keys} - UNTOLD_KINDS)


def revision_message(value: int, keys: list[str]) -> str:
    """What waiters receive: the revision and the index keys it changed
    (empty: wake everyone). meshconsole.longpoll parses it."""
    return json.dumps({"revision": value, "keys": keys}, separators=(",", ":"))


def publish_revision(value: int, keys: list[str] | None = None) -> None:
    try:
        _client().publish(REVISION_CHANNEL, revision_message(value, keys or []))
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


def _fan_out(revision: int, names: list[str], keys: list[str]) -> None:
    publish_revision(revision, keys)
    _group_send(TOPOLOGY_GROUP, {"type": "topology.changed", "revision": revision})
    for name in names:
        _group_send(service_group(name), {"type": "service.changed", "service": name})
    for kind in change_kinds(keys):
        _group_send(changes_group(kind),
                    {"type": "resource.changed", "kind": kind, "revision": revision})


class _Pending:
    """Changes committed inside one batch() and not yet sent."""

    def __init__(self) -> None:
        self.revision: int | None = None
        self.services: set[str] = set()
        self.keys: set[str] = set()
        self.since = 0.0

    def add(self, revision: int, names: list[str], keys: list[str]) -> None:
        if self.revision is None:
            self.since = time.monotonic()
        self.revision = max(revision, self.revision or revision)
        self.services.update(names)
        self.keys.update(keys)
        # A long batch must not hold waiters past their promised second.
        if time.monotonic() - self.since >= FLUSH_AFTER:
            self.flush()

    def flush(self) -> None:
        if self.revision is None:
            return
        revision, names, keys = self.revision, sorted(self.services), sorted(self.keys)
        self.revision, self.services, self.keys = None, set(), set()
        _fan_out(revision, names, keys)


_batch = threading.local()


@contextmanager
def batch() -> Iterator[None]:
    """Coalesce the fan-out of the changes committed inside: the latest revision
    is published once, each group is told once. Each change still notifies only
    once it has committed; the rest goes out when the block ends (or its outer
    transaction commits), and at least every FLUSH_AFTER seconds meanwhile."""
    if getattr(_batch, "pending", None) is not None:
        yield  # nested: the outermost batch sends
        return
    pending = _batch.pending = _Pending()
    try:
        yield
    finally:
        _batch.pending = None
        transaction.on_commit(pending.flush)


def after_commit(
    *, revision: int, services: set[str] | None = None, keys: list[str] | None = None
) -> None:
    """Schedule, for after the commit, the fan-out of a change to the mesh."""
    names = sorted(services or ())
    changed = sorted(keys or ())
    pending: _Pending | None = getattr(_batch, "pending", None)
    if pending is not None:
        transaction.on_commit(lambda: pending.add(revision, names, changed))
    else:
        transaction.on_commit(lambda: _fan_out(revision, names, changed))
