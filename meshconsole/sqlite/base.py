"""SQLite backend: transaction_mode (IMMEDIATE) for every transaction, except
meshconsole.db.read_transaction()'s, which begin DEFERRED.

IMMEDIATE takes the single write lock at BEGIN, so a writer waits (busy
timeout) instead of failing when it upgrades a stale read snapshot; but a
read-only transaction (the agent snapshot build) must not queue behind every
writer for a lock it never needs. In WAL mode a DEFERRED reader sees the last
commit and blocks nobody.
"""

from __future__ import annotations

from django.db.backends.sqlite3 import base

from meshconsole.db import deferred_begin


class DatabaseWrapper(base.DatabaseWrapper):
    def _start_transaction_under_autocommit(self) -> None:
        if deferred_begin.get():
            self.cursor().execute("BEGIN DEFERRED")
        else:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
