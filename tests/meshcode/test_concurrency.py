"""Concurrent applies serialize on the apply lock (PostgreSQL: real concurrent writers)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from meshcode.apply import mesh_apply
from meshcode.models import ApplyLock, MeshVersion
from meshcode.plan import InvalidDocuments
from registry.models import Service


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_applies_serialize() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent writers (PostgreSQL)")
    ApplyLock.objects.get_or_create(pk=1)  # the flush of transactional tests removed it
    outcomes: list[str] = []

    def apply(description: str) -> None:
        try:
            documents = [
                {"kind": "Service", "name": "payments", "description": description},
                {"kind": "TrafficPolicy", "name": "payments", "load_balancer": "random"},
            ]
            mesh_apply(user=None, documents=documents, message=description)
            outcomes.append("ok")
        except InvalidDocuments as exc:
            outcomes.append(f"invalid: {exc.errors}")
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            outcomes.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    # Hold the lock so that both appliers start before either may go on; both
    # would read "no payments" and create it if they did not wait for the lock.
    holder_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                ApplyLock.objects.select_for_update().get(pk=1)
                holder_ready.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holder_ready.wait(10)
    appliers = [threading.Thread(target=apply, args=(d,)) for d in ("first", "second")]
    for t in appliers:
        t.start()
    deadline = time.monotonic() + 10
    while _lock_waiters() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    for t in (holder, *appliers):
        t.join(30)

    assert outcomes == ["ok", "ok"]
    versions = list(MeshVersion.objects.order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    # The later version wrote last: the mesh is what it says.
    assert Service.objects.get(name="payments").description == versions[1].message
    assert versions[0].summary["added"] == 2 and versions[1].summary["changed"] == 1
