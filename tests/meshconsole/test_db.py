"""SQLite in WAL mode, read-only transactions that never wait for a writer, and
writers that still begin IMMEDIATE; a bounded pool on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from meshconsole.db import read_transaction

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite",
                                 reason="the embedded default (SQLite) only")


@pytest.fixture
def file_db(tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """An extra alias on a SQLite file with the production settings (the test
    database itself is in memory, where WAL does not exist)."""
    alias = "walfile"
    config = dict(settings.DATABASES["default"], NAME=str(tmp_path / "wal.sqlite3"))
    connections.settings[alias] = connections.configure_settings({"default": config})["default"]
    with django_db_blocker.unblock():
        with connections[alias].cursor() as cursor:
            cursor.execute("CREATE TABLE item (n integer)")
        yield alias
        connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def _hold_write_lock(alias: str, holding: threading.Event, release: threading.Event,
                     errors: list[BaseException]) -> None:
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute("INSERT INTO item VALUES (1)")
            holding.set()
            release.wait(30)
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
        holding.set()
    finally:
        connections[alias].close()


def _with_a_writer(alias: str, body: Any) -> Any:
    """Run BODY in this thread while another thread holds the write lock (an
    uncommitted INSERT); the reader's busy timeout is 0, so waiting for the lock
    fails at once instead of after 20 s."""
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    writer = threading.Thread(target=_hold_write_lock, args=(alias, holding, release, errors))
    writer.start()
    try:
        assert holding.wait(30)
        assert not errors, errors
        with connections[alias].cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 0")
        return body()
    finally:
        release.set()
        writer.join(30)


@sqlite_only
def test_sqlite_runs_in_wal_mode(file_db: str) -> None:
    with connections[file_db].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 20_000


@sqlite_only
def test_a_read_transaction_does_not_wait_for_a_writer(file_db: str) -> None:
    def read() -> int:
        with read_transaction(using=file_db), connections[file_db].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM item")
            return int(cursor.fetchone()[0])

    assert _with_a_writer(file_db, read) == 0  # the writer has not committed


@sqlite_only
def test_a_write_transaction_still_begins_immediate(file_db: str) -> None:
    # Writers take the lock at BEGIN (and wait their busy timeout for it), so a
    # read-then-write transaction cannot fail on a stale snapshot halfway.
    def write() -> None:
        with transaction.atomic(using=file_db):
            pass

    with pytest.raises(OperationalError, match="locked"):
        _with_a_writer(file_db, write)


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_the_agent_snapshot_is_built_in_a_deferred_transaction() -> None:
    from agents.snapshot import agent_snapshot
    from tests.agents.test_api_agents import enroll

    _, body = enroll()
    from agents.models import Agent
    from identity.services import ca_ready

    agent = Agent.objects.select_related("node").get(pk=body["agent_id"])
    ca_ready()  # the first root is a write, made once (the enrollment no longer builds a snapshot)
    with CaptureQueriesContext(connection) as queries:
        agent_snapshot(agent=agent)
    begins = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("BEGIN")]
    assert begins == ["BEGIN DEFERRED"]


def test_postgresql_gets_a_bounded_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import meshconsole.settings as mesh_settings

    monkeypatch.setenv("DATABASE_URL", "postgres://mesh@127.0.0.1:5432/mesh")
    monkeypatch.setenv("MESH_DB_POOL", "1")
    monkeypatch.setenv("MESH_DB_POOL_MAX", "5")
    monkeypatch.setenv("MESH_DB_CONN_MAX_AGE", "60")
    try:
        fresh = importlib.reload(mesh_settings)
        database = fresh.DATABASES["default"]
        assert database["OPTIONS"]["pool"]["max_size"] == 5
        assert database["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections
    finally:
        monkeypatch.undo()
        importlib.reload(mesh_settings)
