"""One writer at a time per process, queued on a lock rather than on SQLite's
busy handler.

SQLite has one write lock per database; a writer that finds it taken sleeps in
the busy handler (1, 2, 5, 10 ... 100 ms) and tries again, so the lock sits
idle between the holder's commit and the waiter's next try, and the fewer the
waiters, the longer it idles (at 200 agents with reports bounded to eight
threads, an experiment since reverted: 19 reports a second where unbounded
threads managed 66). Writers of one process
now wait for each other on a threading.Lock, which hands over at the commit;
only writers of other processes (the Celery worker, beat) still meet in the
busy handler.
"""

from __future__ import annotations

import threading

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def write_lock(name: str) -> threading.Lock:
    """The process's writer lock for the database file NAME."""
    with _guard:
        lock = _locks.get(name)
        if lock is None:
            lock = _locks[name] = threading.Lock()
        return lock
