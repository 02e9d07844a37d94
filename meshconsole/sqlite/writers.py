"""One writer at a time per process, queued on a lock rather than on SQLite's
busy handler.

SQLite has one write lock per database; a writer that finds it taken sleeps in
the busy handler (1, 2, 5, 10 ... 100 ms) and tries again, so the lock sits
idle between the holder's commit and the waiter's next try, and the fewer the
waiters, the longer it idles (at 200 agents with reports bounded to eight
threads, an experiment since reverted: 19 reports a second where unbounded
threads managed 66). Writers of one process
now wait for each other on a lock handed over at the commit, first come first
served;
only writers of other processes (the Celery worker, beat) still meet in the
busy handler.
"""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    """A lock handed over in arrival order: under a fleet's reports, an
    operator's write must not lose the race for it again and again (a plain
    threading.Lock lets whoever asks at the release win)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append(baton)
        if baton.acquire(timeout=max(timeout, 0)):
            return True  # handed over by release(): held now
        with self._mutex:
            try:
                self._waiters.remove(baton)
            except ValueError:
                return True  # handed over just as the wait ended: held all the same
        return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still held, now by the next in line
            else:
                self._held = False

    def locked(self) -> bool:
        with self._mutex:
            return self._held


_locks: dict[str, FairLock] = {}
_guard = threading.Lock()


def write_lock(name: str) -> FairLock:
    """The process's writer lock for the database file NAME."""
    with _guard:
        lock = _locks.get(name)
        if lock is None:
            lock = _locks[name] = FairLock()
        return lock
