"""SQLite backend: transaction_mode (IMMEDIATE) for every transaction, except
meshconsole.db.read_transaction()'s, which begin DEFERRED.

IMMEDIATE takes the single write lock at BEGIN, so a writer waits (busy
timeout) instead of failing when it upgrades a stale read snapshot; but a
read-only transaction (the agent snapshot build) must not queue behind every
writer for a lock it never needs. In WAL mode a DEFERRED reader sees the last
commit and blocks nobody.

Closed connections are kept open for the next request (meshconsole.sqlite.idle);
the writers of one process queue on a lock, not in SQLite's busy handler
(meshconsole.sqlite.writers).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.db.backends.sqlite3 import base

from meshconsole.db import deferred_begin
from meshconsole.sqlite.idle import IDLE
from meshconsole.sqlite.writers import write_lock


class DatabaseWrapper(base.DatabaseWrapper):
    _holding: threading.Lock | None = None

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
        try:
            super()._close()  # type: ignore[misc]
        finally:
            self._release_writer()  # closing ends (rolls back) any transaction

    def _start_transaction_under_autocommit(self) -> None:
        if deferred_begin.get():
            self.cursor().execute("BEGIN DEFERRED")
            return
        if self._reusable():
            lock = write_lock(str(self.settings_dict["NAME"]))
            timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
            if not lock.acquire(timeout=timeout):
                raise OperationalError("database is locked (by another writer of this process)")
            self._holding = lock
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        lock, self._holding = self._holding, None
        if lock is not None:
            lock.release()

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]
        finally:
            self._release_writer()
