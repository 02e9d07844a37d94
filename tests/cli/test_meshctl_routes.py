"""meshctl routes against a real server process (uvicorn on loopback, its own database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshconsole import meshctl
from tests.e2e.controlplane import control_plane

pytestmark = pytest.mark.e2e

ROUTES = """
subsets:
  v1: {tags: [v1]}
  v2: {tags: [v2]}
routes:
  - name: canary
    match: {path: {prefix: /api}}
    split: [{subset: v1, weight: 95}, {subset: v2, weight: 5}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with control_plane(tmp_path_factory.mktemp("meshctl-routes"), workers=False) as cp:
        yield cp.url, cp.token


@pytest.fixture
def ctl(server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    url, token = server
    monkeypatch.setenv("MESH_URL", url)
    monkeypatch.setenv("MESH_TOKEN", token)

    def run(*args: str) -> tuple[int, str, str]:
        code = meshctl.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_set_get_history_rollback(ctl, tmp_path: Path) -> None:
    assert ctl("services", "register", "payments", "--check-type", "none")[0] == 0
    code, out, _ = ctl("routes", "get", "payments")
    assert code == 0 and yaml.safe_load(out) == {"version": 0, "subsets": {}, "routes": []}
    file = tmp_path / "routes.yaml"
    file.write_text(ROUTES)
    code, out, err = ctl("routes", "set", "-f", str(file), "payments")
    assert code == 0, err
    assert "v1: 2 subset(s), 1 route(s)" in out
    # get | edit | set: the version it printed guards the write (409 when stale).
    code, out, _ = ctl("routes", "get", "payments")
    got = yaml.safe_load(out)
    assert got["version"] == 1 and got["routes"][0]["fallback"] == "next"
    got["routes"][0]["split"][1]["weight"] = 50
    file.write_text(yaml.safe_dump(got))
    assert ctl("routes", "set", "-f", str(file), "payments")[0] == 0
    code, _, err = ctl("routes", "set", "-f", str(file), "payments")
    assert code == 1 and "409" in err
    code, out, _ = ctl("routes", "history", "payments")
    assert code == 0 and out.splitlines()[1].split()[0] == "2"
    code, out, err = ctl("routes", "rollback", "1", "payments")
    assert code == 0, err
    assert "rolled back to v1" in out
    code, out, _ = ctl("--json", "routes", "get", "payments")
    assert json.loads(out)["version"] == 3
    assert json.loads(out)["routes"][0]["split"][1]["weight"] == 5


def test_bad_input_is_a_clear_error(ctl, tmp_path: Path) -> None:
    ctl("services", "register", "orders", "--check-type", "none")
    file = tmp_path / "bad.yaml"
    file.write_text("routes: [{name: x, split: [{subset: nope, weight: 1}]}]\n")
    code, _, err = ctl("routes", "set", "-f", str(file), "orders")
    assert code == 1 and "routes.0.split.0.subset" in err
    file.write_text("routes: [unclosed\n")
    assert ctl("routes", "set", "-f", str(file), "orders")[0] == 2
    assert ctl("routes", "set", "-f", str(tmp_path / "missing.yaml"), "orders")[0] == 2
    assert ctl("routes", "rollback", "orders", "x")[0] == 2
    assert ctl("routes", "get", "ghost")[0] == 1
