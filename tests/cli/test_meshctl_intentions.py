"""meshctl intentions against a real server process (uvicorn on loopback, its own database)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from meshconsole import meshctl
from tests.e2e.controlplane import control_plane

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with control_plane(tmp_path_factory.mktemp("meshctl-intentions"), workers=False) as cp:
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


def test_add_list_check_rm(ctl) -> None:
    code, out, err = ctl("intentions", "add", "*", "payments", "deny")
    assert code == 0, err
    code, out, err = ctl(
        "--json", "intentions", "add", "orders", "payments", "allow",
        "--method", "POST", "--path-prefix", "/refund", "--header", "X-Team: a",
    )
    assert code == 0, err
    allow = json.loads(out)
    assert allow["http"] == {"methods": ["POST"], "path_prefix": "/refund", "headers": {"x-team": "a"}}
    code, out, _ = ctl("intentions", "list")
    assert code == 0 and "POST /refund* x-team=a" in out and "default: allow" in out
    code, out, _ = ctl("intentions", "check", "orders", "payments", "--method", "POST",
                       "--path", "/refund/1", "--header", "x-team: a")
    assert code == 0 and out.startswith("allowed:") and f"intention {allow['id']}" in out
    code, out, _ = ctl("intentions", "check", "orders", "payments")
    assert code == 0 and out.startswith("denied:")
    code, _, err = ctl("intentions", "add", "orders", "orders", "deny")
    assert code == 1 and "destination" in err
    code, out, err = ctl("intentions", "rm", str(allow["id"]))
    assert code == 0, err
    code, _, err = ctl("intentions", "rm", str(allow["id"]))
    assert code == 1
