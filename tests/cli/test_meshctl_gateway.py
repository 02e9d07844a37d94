"""meshctl gateway against a real server process (uvicorn on loopback, its own
database): a table from a YAML file, consumers, a key printed once, providers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshconsole import meshctl
from tests.e2e.controlplane import control_plane

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with control_plane(tmp_path_factory.mktemp("meshctl-gateway"), workers=False) as cp:
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


ROUTES = """
- name: orders-api
  hosts: [api.example.com]
  path: {prefix: /orders}
  service: orders
  strip_prefix: true
  auth: {type: key, consumers: [alice]}
  rate_limits: [{requests: 100, per: second, burst: 20}]
"""


def test_routes_consumers_keys_providers(ctl, tmp_path: Path) -> None:
    code, _, err = ctl("services", "register", "orders", "--check-type", "none")
    assert code == 0, err
    assert ctl("gateway", "create", "edge")[0] == 0
    code, out, err = ctl("gateway", "consumers", "add", "alice", "--subject", "alice@corp")
    assert code == 0, err
    code, out, err = ctl("--json", "gateway", "keys", "add", "alice")
    assert code == 0, err
    created = json.loads(out)
    assert created["key_hash"] == "sha256:" + hashlib.sha256(created["key"].encode()).hexdigest()
    code, out, _ = ctl("gateway", "keys", "list", "alice")
    assert code == 0 and created["prefix"] in out and created["key"] not in out
    code, out, _ = ctl("gateway", "consumers", "list")
    assert code == 0 and "alice" in out and "alice@corp" in out and created["key"] not in out
    (tmp_path / "routes.yaml").write_text(ROUTES)
    code, out, err = ctl("gateway", "routes", "set", "edge", "-f", str(tmp_path / "routes.yaml"),
                         "--version", "0")
    assert code == 0, err
    assert "1 routes, version 1" in out
    code, _, err = ctl("gateway", "routes", "set", "edge", "-f", str(tmp_path / "routes.yaml"),
                       "--version", "0")
    assert code == 1 and "409" in err
    code, out, _ = ctl("gateway", "routes", "list", "edge")
    assert code == 0 and "orders-api" in out and "/orders*" in out and "key" in out
    (tmp_path / "bad.yaml").write_text("- name: x\n  service: nowhere\n")
    code, _, err = ctl("gateway", "routes", "set", "edge", "-f", str(tmp_path / "bad.yaml"))
    assert code == 1 and "service" in err
    (tmp_path / "broken.yaml").write_text("- name: [\n")
    assert ctl("gateway", "routes", "set", "edge", "-f", str(tmp_path / "broken.yaml"))[0] == 2
    secret = "z" * 40
    (tmp_path / "corp.yaml").write_text(
        f"algorithms: [HS256]\nissuer: https://idp\naudience: orders\nsecret: {secret}\n"
    )
    code, out, err = ctl("gateway", "providers", "set", "corp", "-f", str(tmp_path / "corp.yaml"))
    assert code == 0 and "created" in out, err
    code, out, err = ctl("gateway", "providers", "set", "corp", "-f", str(tmp_path / "corp.yaml"))
    assert code == 0 and "replaced" in out, err
    code, out, _ = ctl("--json", "gateway", "providers", "list")
    assert code == 0 and secret not in out and json.loads(out)[0]["secret_set"] is True
    code, _, err = ctl("gateway", "consumers", "rm", "alice")
    assert code == 1 and "409" in err  # edge/orders-api names alice
    assert ctl("gateway", "keys", "rm", "alice", created["prefix"])[0] == 0
    assert ctl("gateway", "keys", "rm", "alice", created["prefix"])[0] == 1
    code, out, _ = ctl("gateway", "list")
    assert code == 0 and "edge" in out
    assert ctl("gateway", "routes", "rm", "edge", "orders-api")[0] == 0
    assert ctl("gateway", "consumers", "rm", "alice")[0] == 0
    assert ctl("gateway", "providers", "rm", "corp")[0] == 0
    assert ctl("gateway", "rm", "edge")[0] == 0
