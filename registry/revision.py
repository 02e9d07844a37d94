"""The one way to make a change agents must see: `mesh_change`.

Every workflow that changes what an agent, a blocking query or a console
derives from the registry (a service, an instance, its health, a policy, a
failover, an agent's upstream set) writes its rows and then calls
`mesh_change` inside the same transaction. It keeps together what must never
be done halfway:

1. the mesh revision row is bumped (`MeshRevision.bump`), so the change and
   its revision commit or roll back as one;
2. the change's events are written with that revision, and its audit entries
   (a person's or a token's write) beside them;
3. the fan-out is scheduled for after the commit (`registry.notify`): the Redis
   publish that wakes blocked long-polls (`meshconsole.longpoll`) and the
   channel-layer messages to the live consoles.

A new kind of change (a new resource in the snapshot) calls this and nothing
else; `tests/registry/test_revision.py` holds the rules.

Call it after the transaction's own row writes, not before more of them: the
revision row is every writer's lock, so each takes it last (rows, then the
revision). A writer that bumped and then updated an instance deadlocked, at a
1,000-agent fleet, with a health transition that had locked that instance and
waited for the revision. (PostgreSQL then aborts one: a 503 with Retry-After,
`meshconsole.api.database_busy`.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from django.db import transaction

from journal.records import AuditNote, EventNote, audits_record, events_record
from registry import notify
from registry.models import MeshIndex, MeshRevision, agent_key, service_key

_open = threading.local()


@contextmanager
def one_revision() -> Iterator[None]:
    """Every mesh_change inside (and inside one transaction.atomic) shares one
    revision: an apply of many documents is one mesh revision, all or nothing.
    The first change bumps the revision; the others write their events and
    indexes with it; nothing is sent before the commit."""
    if not transaction.get_connection().in_atomic_block:
        raise NotInTransaction("one_revision must run inside transaction.atomic()")
    if getattr(_open, "revision", None) is not None:
        yield  # nested: the outer block owns the revision
        return
    _open.revision = 0
    try:
        yield
    finally:
        _open.revision = None


class NotInTransaction(RuntimeError):
    """mesh_change was called outside transaction.atomic: the revision and the
    change could then commit apart."""


def mesh_change(
    *,
    services: Iterable[str] = (),
    agents: Iterable[object] = (),
    keys: Iterable[str] = (),
    events: Sequence[EventNote] = (),
    audit: Sequence[AuditNote] = (),
) -> int:
    """Record one change to the mesh (inside the caller's transaction) and return
    its revision. SERVICES are the names whose answers it changes (the snapshot
    of every agent consuming one, discovery, consoles); AGENTS the ids of agents
    whose own config it changes; KEYS other index keys (SECURITY_KEY). Each
    gets the revision as its index (MeshIndex), so only their watchers wake."""
    if not transaction.get_connection().in_atomic_block:
        raise NotInTransaction("mesh_change must run inside transaction.atomic()")
    shared = getattr(_open, "revision", None)
    if shared:
        revision = shared
    else:
        revision = MeshRevision.bump()
        if shared is not None:
            _open.revision = revision
    names = set(services)
    extra = set(keys)
    keys = sorted({service_key(n) for n in names} | {agent_key(a) for a in agents} | extra)
    if keys:
        MeshIndex.objects.bulk_create(
            [MeshIndex(key=k, revision=revision) for k in keys],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["revision"],
        )
    if events:
        events_record(list(events), revision=revision)
    if audit:
        audits_record(list(audit))
    notify.after_commit(revision=revision, services=names, keys=keys)
    return revision
