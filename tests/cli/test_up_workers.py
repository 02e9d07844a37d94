"""`meshconsole up` runs MESH_WEB_WORKERS web worker processes (default 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshconsole import up


def web_argv(workers: int) -> list[str]:
    (web,) = [c for c in up.core_children(bind="127.0.0.1:1", data_dir=Path("/x"),
                                          web_workers=workers) if c.name == "web"]
    return web.argv


def test_up_runs_two_web_workers_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_WEB_WORKERS", raising=False)
    assert up.web_workers() == 2
    argv = web_argv(up.web_workers())
    assert argv[argv.index("--workers") + 1] == "2" and "web" in argv


def test_mesh_web_workers_sets_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_WEB_WORKERS", "3")
    argv = web_argv(up.web_workers())
    assert argv[argv.index("--workers") + 1] == "3"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_a_clear_error(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MESH_WEB_WORKERS", value)
    assert up.main(["--data-dir", str(tmp_path)]) == 2
    assert "MESH_WEB_WORKERS" in capsys.readouterr().out
