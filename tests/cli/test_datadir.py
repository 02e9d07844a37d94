"""The data dir and what meshconsole keeps in it are the owner's only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshconsole import datadir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_tighten_fixes_loose_modes_left_by_an_older_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "demo" / "host-a" / "agent").mkdir(parents=True)
    ours = [
        data / "meshconsole.sqlite3",
        data / "meshconsole.sqlite3-wal",
        data / "meshconsole.sqlite3-shm",
        data / "secret_key",
        data / "redis.log",
        data / "celerybeat-schedule.dat",
        data / "logs" / "web.log",
        data / "demo" / "host-a" / "agent.yaml",
        data / "demo" / "host-a" / "agent" / "token",
    ]
    for path in ours:
        path.write_text("x")
        path.chmod(0o644)
    for directory in (data, data / "logs", data / "demo", data / "demo" / "host-a"):
        directory.chmod(0o755)
    theirs = data / "notes.txt"  # not ours: left as it is
    theirs.write_text("x")
    theirs.chmod(0o644)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    (data / "logs" / "link.log").symlink_to(outside)  # never followed

    datadir.tighten(data)

    assert mode(data) == 0o700
    assert mode(data / "logs") == mode(data / "demo") == mode(data / "demo" / "host-a") == 0o700
    assert {p.name: mode(p) for p in ours} == {p.name: 0o600 for p in ours}
    assert mode(theirs) == 0o644
    assert mode(outside) == 0o644


def test_tighten_creates_a_missing_dir_private_and_keeps_stricter_modes(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    datadir.tighten(data)
    assert mode(data) == 0o700
    secret = data / "secret_key"
    secret.write_text("x")
    secret.chmod(0o400)
    datadir.tighten(data)
    assert mode(secret) == 0o400


def test_tighten_covers_a_sqlite_database_outside_the_data_dir(tmp_path: Path) -> None:
    database = tmp_path / "db" / "mesh.sqlite3"
    database.parent.mkdir()
    for path in (database, database.with_name("mesh.sqlite3-wal")):
        path.write_text("x")
        path.chmod(0o664)
    datadir.tighten(tmp_path / "data", [database])
    assert mode(database) == mode(database.with_name("mesh.sqlite3-wal")) == 0o600


def test_meshconsole_runs_with_a_private_umask_and_restores_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshconsole.cli import main

    monkeypatch.setenv("MESH_DATA_DIR", os.environ["MESH_DATA_DIR"])  # restored after main sets it
    before = os.umask(0o022)
    try:
        assert main(["--data-dir", str(tmp_path / "d"), "check", "--fail-level", "ERROR"]) == 0
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


def test_a_data_dir_that_cannot_be_made_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshconsole.cli import main

    monkeypatch.setenv("MESH_DATA_DIR", os.environ["MESH_DATA_DIR"])  # restored after main sets it
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["--data-dir", str(blocker / "d"), "up"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"meshconsole: cannot use the data dir {blocker / 'd'}: "), err
