"""SQLite backend: transaction_mode (IMMEDIATE) for every transaction, except
meshconsole.db.read_transaction()'s, which begin DEFERRED.

IMMEDIATE takes the single write lock at BEGIN, so a writer waits (busy
timeout) instead of failing when it upgrades a stale read snapshot; but a
read-only transaction (the agent snapshot build) must not queue behind every
writer for a lock it never needs. In WAL mode a DEFERRED reader sees the last
commit and blocks nobody.

Closed connections are kept open for the next request (meshconsole.sqlite.idle).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.backends.sqlite3 import base

from meshconsole.db import deferred_begin
from meshconsole.sqlite.idle import IDLE


class DatabaseWrapper(base.DatabaseWrapper):
    def _reusable(self) -> bool:
        return not self.is_in_memory_db()

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self._reusable():
            conn = IDLE.take(str(self.settings_dict["NAME"]))
            if conn is not None:
                # What a migration, a fixture load or a test may have changed on it.
                conn.execute("PRAGMA foreign_keys = ON")
                timeout_ms = int(float(conn_params.get("timeout", 5)) * 1000)
                conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
                return conn
        return super().get_new_connection(conn_params)

    def _close(self) -> None:
        conn = self.connection
        # Inside atomic() Django keeps the wrapper's reference: never share that one.
        if (
            conn is not None
            and self._reusable()
            and not self.in_atomic_block
            and IDLE.give(
                str(self.settings_dict["NAME"]), conn, limit=settings.MESH_SQLITE_IDLE_MAX
            )
        ):
            return
        super()._close()  # type: ignore[misc]

    def _start_transaction_under_autocommit(self) -> None:
        if deferred_begin.get():
            self.cursor().execute("BEGIN DEFERRED")
        else:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
