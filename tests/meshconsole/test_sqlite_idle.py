"""The embedded default keeps closed SQLite connections for the next request
(meshconsole.sqlite.idle): reused across threads, never mid-transaction, never
on a replaced file, never in a forked child."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections, transaction

from meshconsole.sqlite.idle import IDLE, IdleConnections

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite",
                                 reason="the embedded default (SQLite) only")


@pytest.fixture
def file_db(tmp_path: Path, django_db_blocker: Any) -> Iterator[tuple[str, str]]:
    alias = "idlefile"
    name = str(tmp_path / "idle.sqlite3")
    config = dict(settings.DATABASES["default"], NAME=name)
    connections.settings[alias] = connections.configure_settings({"default": config})["default"]
    with django_db_blocker.unblock():
        with connections[alias].cursor() as cursor:
            cursor.execute("CREATE TABLE item (n integer)")
        connections[alias].close()
        yield alias, name
        connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def _in_thread(alias: str) -> int:
    """Open ALIAS in a new thread (as a request does), insert, close; the raw connection's id."""
    seen: list[int] = []

    def run() -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO item VALUES (1)")
            seen.append(id(connections[alias].connection))
        finally:
            connections[alias].close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


@sqlite_only
def test_a_closed_connection_serves_the_next_thread(file_db: tuple[str, str]) -> None:
    alias, name = file_db
    first = _in_thread(alias)
    assert IDLE.idle_count(name) == 1
    assert _in_thread(alias) == first  # the same sqlite3 connection, another thread
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        assert cursor.fetchone()[0] == 2


@sqlite_only
def test_a_reused_connection_gets_its_settings_back(file_db: tuple[str, str]) -> None:
    alias, name = file_db
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 0")
        cursor.execute("PRAGMA foreign_keys = OFF")
    connections[alias].close()
    assert IDLE.idle_count(name) == 1
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == int(settings.DATABASES["default"]["OPTIONS"]["timeout"]
                                           * 1000)
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone()[0] == 1
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@sqlite_only
def test_a_connection_closed_inside_atomic_is_not_shared(file_db: tuple[str, str]) -> None:
    alias, name = file_db
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("INSERT INTO item VALUES (1)")
        connections[alias].close()
        assert IDLE.idle_count(name) == 0
    connections[alias].close()


def test_an_open_transaction_is_never_kept(tmp_path: Path) -> None:
    name = str(tmp_path / "t.sqlite3")
    idle = IdleConnections()
    conn = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n integer)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (1)")
    assert not idle.give(name, conn)
    conn.execute("COMMIT")
    assert idle.give(name, conn)
    assert idle.take(name) is conn


def test_a_replaced_file_gets_new_connections(tmp_path: Path) -> None:
    name = str(tmp_path / "r.sqlite3")
    idle = IdleConnections(recheck_s=0)
    conn = sqlite3.connect(name, check_same_thread=False)
    conn.execute("CREATE TABLE t (n integer)")
    assert idle.give(name, conn)
    os.unlink(name)
    sqlite3.connect(name).close()  # a new file at the same path (a recreated test database)
    assert idle.take(name) is None
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # the stale one was closed, not leaked


def test_the_idle_list_is_bounded(tmp_path: Path) -> None:
    name = str(tmp_path / "b.sqlite3")
    idle = IdleConnections(limit=2)
    conns = [sqlite3.connect(name, check_same_thread=False) for _ in range(3)]
    assert [idle.give(name, c) for c in conns] == [True, True, False]
    assert idle.idle_count(name) == 2


def test_a_forked_child_never_uses_its_parents_connections(tmp_path: Path) -> None:
    name = str(tmp_path / "f.sqlite3")
    conn = sqlite3.connect(name, check_same_thread=False)
    conn.execute("CREATE TABLE t (n integer)")
    assert IDLE.give(name, conn)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the process-wide IDLE was emptied by the fork hook
        os.write(write, b"%d" % (IDLE.take(name) is None))
        os._exit(0)
    os.close(write)
    answer = os.read(read, 10)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert IDLE.take(name) is conn  # the parent still has it
    conn.close()


@sqlite_only
def test_none_are_kept_when_switched_off(file_db: tuple[str, str],
                                         settings: Any) -> None:
    alias, name = file_db
    settings.MESH_SQLITE_IDLE_MAX = 0
    _in_thread(alias)
    assert IDLE.idle_count(name) == 0



def test_the_file_is_looked_at_again_after_the_recheck_interval(tmp_path: Path) -> None:
    name = str(tmp_path / "s.sqlite3")
    idle = IdleConnections(recheck_s=0.2)
    conn = sqlite3.connect(name, check_same_thread=False)
    conn.execute("CREATE TABLE t (n integer)")
    assert idle.give(name, conn)
    os.unlink(name)
    sqlite3.connect(name).close()
    threading.Event().wait(0.25)
    assert idle.take(name) is None
