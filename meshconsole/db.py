"""Database habits shared by every app: read-only transactions that never take
SQLite's write lock, and giving a connection back before a long wait."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction

# Read by meshconsole.sqlite.base when it opens a transaction (see there).
deferred_begin: ContextVar[bool] = ContextVar("deferred_begin", default=False)


@contextmanager
def read_transaction(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """A transaction for consistent reads only (several queries, one snapshot).

    On SQLite it starts DEFERRED, so it takes no write lock and never waits for
    a writer (in WAL mode a reader sees the last commit); every other
    transaction.atomic() there starts IMMEDIATE, so a writer waits for the
    lock instead of failing on upgrade. Writing inside it is a bug. On other
    databases it is transaction.atomic().
    """
    with ExitStack() as stack:
        token = deferred_begin.set(True)
        try:
            stack.enter_context(transaction.atomic(using=using))
        finally:
            deferred_begin.reset(token)  # nested atomic() blocks are savepoints anyway
        yield


def release_connections() -> None:
    """Close (or, with a pool, give back) this thread's database connections.

    Called by the long polls before they wait: a pending poll must not hold a
    connection for its whole wait (30 s), or a fleet of agents exhausts the
    database's connections (or the pool). Connections inside a transaction are
    left alone.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
