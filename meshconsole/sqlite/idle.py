"""Raw SQLite connections kept open between requests (the embedded default).

Django opens a connection per thread and, with CONN_MAX_AGE=0, closes it at the
end of each request; under ASGI every request runs its sync code in a thread of
its own, so every request opened a fresh sqlite3 connection: the connect, about
forty Python functions registered on it, three PRAGMAs, and the close. Profiled
at 200 agents that was a quarter of the web process's CPU. Here a closed
wrapper hands its raw connection back and the next wrapper that connects (in
any thread) takes it: sqlite3 is built serialized and Django opens every
connection with check_same_thread=False, and one connection is only ever held by
one wrapper at a time.

A connection goes back only outside a transaction; one is reused only while the
database file is the same file (checked at most once a second: a test that
deletes and recreates it gets new connections); a forked child never uses its
parent's (SQLite forbids carrying a connection across fork()).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

# Idle connections kept per database file and process by default; more are
# closed (settings.MESH_SQLITE_IDLE_MAX).
IDLE_MAX = 8

FileId = tuple[int, int]


def _file_id(name: str) -> FileId | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# How long a stat() of the database file is trusted: one per take was 5 % of
# the web process's samples at 200 agents (a GIL round trip each).
RECHECK_S = 1.0


class IdleConnections:
    def __init__(self, limit: int = IDLE_MAX, recheck_s: float = RECHECK_S) -> None:
        self.limit = limit
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[sqlite3.Connection, FileId]]] = {}
        self._seen: dict[str, tuple[float, FileId]] = {}
        # A forked child's inherited connections: never used, never closed.
        self._inherited: list[object] = []

    def _current(self, name: str) -> FileId | None:
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is not None and now - seen[0] < self.recheck_s:
            return seen[1]
        file_id = _file_id(name)
        if file_id is not None:  # a file not there yet (first connect) is asked again
            self._seen[name] = (now, file_id)
        return file_id

    def take(self, name: str) -> sqlite3.Connection | None:
        """An idle connection to the file NAME still is (as of RECHECK_S ago), or None."""
        current = self._current(name)
        while True:
            with self._lock:
                stack = self._idle.get(name)
                if not stack:
                    return None
                conn, file_id = stack.pop()
            if file_id == current:
                return conn
            conn.close()  # the file was replaced: that connection reads the old one

    def give(self, name: str, conn: sqlite3.Connection, *, limit: int | None = None) -> bool:
        """Keep CONN for the next taker (at most LIMIT idle ones, default the
        list's own); False when it must be closed instead."""
        if conn.in_transaction:
            return False
        file_id = self._current(name)
        if file_id is None:
            return False
        with self._lock:
            stack = self._idle.setdefault(name, [])
            if len(stack) >= (self.limit if limit is None else limit):
                return False
            stack.append((conn, file_id))
        return True

    def idle_count(self, name: str) -> int:
        with self._lock:
            return len(self._idle.get(name, ()))

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._inherited.append(self._idle)
        self._idle = {}
        self._seen = {}


IDLE = IdleConnections()
os.register_at_fork(after_in_child=IDLE.forget_after_fork)
