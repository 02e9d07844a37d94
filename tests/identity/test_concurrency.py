"""Concurrent writers (PostgreSQL): one first root whatever the race, and the
intention version check holds under the row lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from identity.intentions import VersionConflict, intention_create, intention_update
from identity.models import CARoot, Intention
from identity.services import signing_root

pytestmark = pytest.mark.django_db(transaction=True)


def race(n: int, work: Callable[[], Any]) -> list[Any]:
    if connection.vendor != "postgresql":
        # The SQLite test database is in memory with a shared cache: threads get
        # "table is locked" instead of waiting (the file database of production
        # waits its busy timeout). PostgreSQL is the real race.
        pytest.skip("needs real concurrent writers (PostgreSQL)")
    barrier = threading.Barrier(n)
    results: list[Any] = []

    def worker() -> None:
        try:
            barrier.wait()
            try:
                results.append(work())
            except Exception as exc:  # collected: the test asserts on them
                results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_first_uses_make_one_root() -> None:
    results = race(4, lambda: signing_root().fingerprint)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert CARoot.objects.count() == 1
    assert set(results) == {CARoot.objects.get().fingerprint}


def test_two_writers_with_the_same_version_one_wins_one_gets_409() -> None:
    rule = intention_create(user=None, data={"source": "a", "destination": "b", "action": "deny"})
    actions = iter(["allow", "deny"])
    lock = threading.Lock()

    def write() -> Any:
        with lock:
            action = next(actions)
        target = Intention.objects.get(pk=rule.pk)
        return intention_update(
            user=None, intention=target, data={"description": action}, expected_version=1
        )

    results = race(2, write)
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    wins = [r for r in results if isinstance(r, Intention)]
    assert (len(wins), len(conflicts)) == (1, 1), results
    assert Intention.objects.get(pk=rule.pk).version == 2
