"""meshctl against a real server process (uvicorn on loopback, its own database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meshconsole import meshctl
from tests.e2e.controlplane import control_plane
from tests.e2e.procs import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real control plane (web only): URL and an API token."""
    with control_plane(tmp_path_factory.mktemp("meshctl"), workers=False) as cp:
        yield cp.url, cp.token


@pytest.fixture
def ctl(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    url, token = server
    monkeypatch.setenv("MESH_URL", url)
    monkeypatch.setenv("MESH_TOKEN", token)

    def run(*args: str) -> tuple[int, str, str]:
        code = meshctl.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_register_list_get_deregister(ctl) -> None:
    code, out, err = ctl(
        "services",
        "register",
        "payments",
        "--check-type",
        "http",
        "--check-path",
        "/health",
        "--interval",
        "5s",
        "--timeout",
        "2s",
        "--rise",
        "2",
        "--fall",
        "3",
        "--tag",
        "pci",
        "--tag",
        "core",
        "--description",
        "Card payments",
    )
    assert code == 0, err
    assert "registered payments" in out

    code, out, _ = ctl("services", "list")
    assert code == 0 and "payments" in out and "0/0 passing" in out

    code, out, _ = ctl("services", "list", "--tag", "pci", "--json")
    assert code == 0
    assert [s["name"] for s in json.loads(out)] == ["payments"]
    code, out, _ = ctl("--json", "services", "list", "--tag", "nope")
    assert json.loads(out) == []

    code, out, _ = ctl("services", "get", "payments", "--json")
    service = json.loads(out)
    assert service["check"] == {
        "type": "http",
        "path": "/health",
        "interval": "5s",
        "timeout": "2s",
        "rise": 2,
        "fall": 3,
        "expect_status": "200-399",
        "body": "",
        "headers": {},
    }
    assert service["tags"] == ["pci", "core"] and service["description"] == "Card payments"

    code, out, _ = ctl("services", "get", "payments")
    assert "http /health every 5s" in out

    code, out, _ = ctl("instances", "list", "payments")
    assert code == 0 and "no instances" in out

    code, out, _ = ctl("services", "deregister", "payments")
    assert code == 0 and "deregistered payments" in out
    code, _, err = ctl("services", "get", "payments")
    assert code == 1 and "404" in err


def test_bad_input_is_a_clear_one_line_error(ctl) -> None:
    code, out, err = ctl("services", "register", "Bad_Name")
    assert code != 0 and out == ""
    assert err.startswith("meshctl: 400 Bad Request: name: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    code, out, err = ctl("services", "register", "okname", "--interval", "soon")
    assert code != 0 and out == ""
    assert err.startswith("meshctl: 400 Bad Request: check.interval: ")
    assert "'soon' is not a duration" in err
    assert ctl("services", "get", "okname")[0] == 1  # nothing was stored


def test_timeout_longer_than_interval_is_refused(ctl) -> None:
    code, _, err = ctl("services", "register", "slowpoke", "--interval", "1s", "--timeout", "5s")
    assert code == 1 and "check.timeout: must not exceed the interval" in err


def test_duplicate_register_is_a_conflict(ctl) -> None:
    assert ctl("services", "register", "dupe")[0] == 0
    code, _, err = ctl("services", "register", "dupe")
    assert code == 1 and "409" in err and "already exists" in err
    assert ctl("services", "deregister", "dupe")[0] == 0


def test_missing_token_is_a_clear_401(ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_TOKEN")
    code, out, err = ctl("services", "list")
    assert code == 1 and out == ""
    assert "401" in err and "MESH_TOKEN" in err and "meshconsole apitoken" in err


def test_wrong_token_is_a_clear_401(ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TOKEN", "not-a-token")
    code, _, err = ctl("services", "list")
    assert code == 1 and "401" in err and "Invalid token" in err


def test_unreachable_control_plane(ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = ctl("services", "list")
    assert code == 3 and "cannot reach" in err and "Traceback" not in err


def test_console_script_runs(server: tuple[str, str]) -> None:
    url, token = server
    script = Path(sys.executable).with_name("meshctl")
    if not script.exists():
        pytest.skip("console scripts not installed (pip install -e .)")
    result = subprocess.run(
        [str(script), "services", "list", "--json"],
        env={**os.environ, "MESH_URL": url, "MESH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def _api(server: tuple[str, str], method: str, path: str, body: object = None) -> object:
    url, token = server
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def test_instance_actions_bulk_and_explain(ctl, server: tuple[str, str]) -> None:
    assert ctl("services", "register", "ledger", "--check-type", "none")[0] == 0
    ids = {}
    for port, tags, zone in ((7001, ["v1"], "a"), (7002, ["v1"], "b"), (7003, ["v2"], "a")):
        body = _api(server, "POST", "/api/v1/services/ledger/instances/",
                    {"address": "127.0.0.1", "port": port, "tags": tags, "metadata": {"zone": zone}})
        ids[port] = body["id"]  # type: ignore[index]

    code, out, _ = ctl("instances", "drain", "ledger", ids[7001])
    assert code == 0 and "draining" in out and "receives no new traffic" in out
    code, out, _ = ctl("instances", "enable", "ledger", ids[7001])
    assert code == 0 and ": passing" in out
    code, out, _ = ctl("instances", "weight", "ledger", ids[7002], "5")
    assert code == 0 and "weight 5" in out
    code, out, _ = ctl("instances", "disable", "ledger", ids[7003])
    assert code == 0 and "disabled" in out
    code, out, _ = ctl("instances", "maintenance", "ledger", ids[7003])
    assert code == 0 and "maintenance since" in out

    code, out, _ = ctl("--json", "instances", "bulk", "ledger", "--tag", "v1", "--meta", "zone=a",
                       "--action", "maintenance")
    assert code == 0 and json.loads(out) == {"affected": [ids[7001]]}
    code, _, err = ctl("instances", "bulk", "ledger", "--action", "disable")
    assert code == 1 and "selector" in err
    code, out, _ = ctl("instances", "bulk", "ledger", "--all", "--action", "enable")
    assert code == 0 and "2 instance(s) changed" in out
    code, _, err = ctl("instances", "bulk", "ledger", "--meta", "zone", "--action", "enable")
    assert code == 2 and "KEY=VALUE" in err

    code, out, _ = ctl("instances", "explain", "ledger", ids[7001])
    assert code == 0
    assert out.splitlines()[0].startswith("passing since")
    assert "draining" in out and "maintenance" in out  # the timeline
    code, out, _ = ctl("instances", "list", "ledger")
    assert "receives traffic" in out


def test_register_with_http_check_options(ctl) -> None:
    code, out, err = ctl("--json", "services", "register", "probe", "--check-type", "http",
                         "--expect-status", "200-204", "--body", "ready",
                         "--header", "Host: probe.internal", "--header", "X-Probe: 1")
    assert code == 0, err
    check = json.loads(out)["check"]
    assert check["expect_status"] == "200-204" and check["body"] == "ready"
    assert check["headers"] == {"Host": "probe.internal", "X-Probe": "1"}
    code, _, err = ctl("services", "register", "probe2", "--header", "nocolon")
    assert code == 2 and "NAME: VALUE" in err
    code, _, err = ctl("services", "register", "probe3", "--expect-status", "600")
    assert code == 1 and "expect_status" in err


def test_tokens_create_list_revoke_and_agents_lifecycle(ctl, server) -> None:
    code, out, err = ctl("tokens", "create", "--ttl", "1h", "--uses", "2", "--description", "rack 9")
    assert code == 0, err
    raw = out.strip()
    assert raw.startswith("mesh-enroll-")
    code, out, _ = ctl("tokens", "list")
    assert code == 0 and "rack 9" in out and "active" in out and raw not in out
    url, _ = server
    enrolled = httpx.post(f"{url}/api/v1/agents/enroll/", json={"token": raw, "node": "ctl-host"})
    assert enrolled.status_code == 201
    code, out, _ = ctl("agents", "list")
    assert code == 0 and "ctl-host" in out
    again = httpx.post(f"{url}/api/v1/agents/enroll/", json={"token": raw, "node": "ctl-host"})
    assert again.status_code == 409
    code, out, err = ctl("agents", "allow-reenroll", "ctl-host")
    assert code == 0, err
    assert httpx.post(
        f"{url}/api/v1/agents/enroll/", json={"token": raw, "node": "ctl-host"}
    ).status_code == 200
    code, out, err = ctl("agents", "remove", "ctl-host")
    assert code == 0, err
    assert ctl("agents", "remove", "ctl-host")[0] == 1
    prefix = raw[len("mesh-enroll-"):][:6]
    code, out, err = ctl("tokens", "revoke", prefix)
    assert code == 0 and "revoked 1" in out, err
    refused = httpx.post(f"{url}/api/v1/agents/enroll/", json={"token": raw, "node": "other"})
    assert refused.status_code == 403


def test_services_list_follows_next_through_every_page(
    ctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshconsole.meshctl import http

    names = [f"paged-{i}" for i in range(5)]
    for name in names:
        assert ctl("services", "register", name, "--tag", "paged")[0] == 0
    monkeypatch.setattr(http, "PAGE_SIZE", 2)  # 5 services: three pages
    code, out, err = ctl("--json", "services", "list", "--tag", "paged")
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)] == names
    code, out, _ = ctl("services", "list", "--tag", "paged")
    assert all(name in out for name in names)
    for name in names:
        ctl("services", "deregister", name)


@pytest.mark.parametrize(
    ("url", "token", "problem"),
    [
        ("http://127.0.0.1:9", "bad\nX-Injected: 1", "MESH_TOKEN"),
        ("http://127.0.0.1:9", "t\u00f6k\u00e9n", "MESH_TOKEN"),
        ("http://127.0.0.1:9", "\u4ee4\u724c", "MESH_TOKEN"),
        ("http://127.0.0.1:9/\nx", "t", "MESH_URL"),
        ("http://[::1", "t", "MESH_URL"),
    ],
)
def test_a_malformed_url_or_token_is_bad_usage_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    url: str, token: str, problem: str
) -> None:
    """These were ValueError / InvalidURL tracebacks from urllib (port 9: never reached)."""
    monkeypatch.setenv("MESH_URL", url)
    monkeypatch.setenv("MESH_TOKEN", token)
    code = meshctl.main(["services", "list"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"meshctl: {problem}") and "Traceback" not in err, err


def test_whitespace_around_the_token_is_not_part_of_it(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = server
    monkeypatch.setenv("MESH_URL", url)
    monkeypatch.setenv("MESH_TOKEN", f" {token}\r\n")  # read from a file as is
    assert meshctl.main(["services", "list"]) == 0, capsys.readouterr().err
