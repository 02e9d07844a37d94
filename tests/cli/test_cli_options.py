"""`meshconsole`'s global options stand before or after the command."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshconsole.cli import take_global_options


@pytest.fixture
def clean_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_DATA_DIR", raising=False)


@pytest.mark.parametrize(
    "argv, rest",
    [
        (["--data-dir", "D", "up", "--demo"], ["up", "--demo"]),
        (["up", "--demo", "--data-dir", "D"], ["up", "--demo"]),
        (["up", "--data-dir=D", "--bind", "127.0.0.1:9"], ["up", "--bind", "127.0.0.1:9"]),
        (["--data-dir", "D", "apitoken", "admin"], ["apitoken", "admin"]),
        (["apitoken", "admin", "--data-dir", "D"], ["apitoken", "admin"]),
        (["--data-dir=D", "enrolltoken", "--description", "x"], ["enrolltoken", "--description", "x"]),
        (["enrolltoken", "--data-dir", "D"], ["enrolltoken"]),
        (["--data-dir", "D", "migrate", "-v0"], ["migrate", "-v0"]),
        (["migrate", "-v0", "--data-dir", "D"], ["migrate", "-v0"]),
    ],
)
def test_data_dir_is_taken_before_or_after_the_command(
    argv: list[str], rest: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    clean_data_dir_env: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert take_global_options(argv) == rest
    assert os.environ["MESH_DATA_DIR"] == str(tmp_path / "D")


def test_arguments_after_a_double_dash_belong_to_the_command(clean_data_dir_env: None) -> None:
    argv = ["shell", "--", "--data-dir", "X"]
    assert take_global_options(argv) == argv
    assert "MESH_DATA_DIR" not in os.environ


@pytest.mark.parametrize("argv", [["apitoken", "admin", "--data-dir"], ["--data-dir", "--demo", "up"]])
def test_data_dir_without_a_value_is_a_clear_error(argv: list[str], clean_data_dir_env: None) -> None:
    with pytest.raises(SystemExit, match="--data-dir needs a value"):
        take_global_options(argv)


def meshconsole(*args: str) -> str:
    """Run the real command (a fresh process: the settings read MESH_DATA_DIR once)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MESH_DATA_DIR", "DATABASE_URL")}
    env["DJANGO_SUPERUSER_PASSWORD"] = "a-long-enough-password-1"
    result = subprocess.run(
        [sys.executable, "-m", "meshconsole.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, f"meshconsole {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


@pytest.mark.e2e
def test_every_command_reads_the_data_dir_in_either_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = str(data)
    # Each step works only on the database the step before made in DATA.
    meshconsole("migrate", "-v0", "--data-dir", d)  # a manage.py command, option after
    assert (data / "meshconsole.sqlite3").exists()
    meshconsole("--data-dir", d, "createsuperuser", "--noinput", "--username", "admin",
                "--email", "admin@example.com")  # option before
    first = meshconsole("apitoken", "admin", "--data-dir", d)
    second = meshconsole("--data-dir", d, "apitoken", "admin")
    assert first.startswith("mesh-api-") and second.startswith("mesh-api-") and first != second
    assert meshconsole("enrolltoken", "--data-dir", d).startswith("mesh-enroll-")
    assert meshconsole("--data-dir", d, "enrolltoken").startswith("mesh-enroll-")
    assert len(meshconsole("resetpassword", "--data-dir", d)) >= 16

    # What the commands created is the owner's only, in a private dir.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "meshconsole.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600
