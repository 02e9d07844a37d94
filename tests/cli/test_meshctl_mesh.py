"""meshctl diff / apply / export / history / rollback against a real control plane."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshconsole import meshctl
from meshconsole.meshctl.mesh import load_text
from tests.e2e.controlplane import control_plane

MESH = textwrap.dedent(
    """\
    kind: Service
    name: payments
    tags: [pci]
    check:
      type: http
      interval: 5s
    ---
    kind: Service
    name: payments-dr
    check: {type: none}
    ---
    kind: TrafficPolicy
    name: payments
    load_balancer: least_request
    retries:
      attempts: 3
    failover:
      targets: [payments-dr]
      hold_down: 1m
    """
)


def test_fields_map_to_their_lines() -> None:
    sources = load_text(MESH, "mesh.yaml")
    assert [s.data["kind"] for s in sources] == ["Service", "Service", "TrafficPolicy"]
    assert sources[0].line_of("check.interval") == 6
    assert sources[0].line_of("") == 1
    assert sources[2].line_of("retries.backoff_base") == 15  # absent: its group's line
    assert sources[2].line_of("failover.targets.0") == 18
    assert sources[2].line_of("nothing.here") == 12


def test_a_yaml_syntax_error_is_bad_usage_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: Service\nname: [a\n")
    code = meshctl.main(["diff", "-f", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"meshctl: {path}:3:")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("kind: Service\nname: qa1\nname: qa2\n", 3),
        ("kind: Service\nname: qa1\ncheck:\n  type: http\n  type: tcp\n", 5),
    ],
)
def test_a_key_given_twice_is_bad_usage_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int
) -> None:
    """safe_load keeps the last one silently: `name: qa2` would have been applied unseen."""
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    code = meshctl.main(["diff", "-f", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"meshctl: {path}:{line}:")
    assert "duplicate key" in err


@pytest.mark.parametrize("command", ["routes set svc -f", "gateway providers set corp -f"])
def test_routes_and_gateway_files_refuse_a_key_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str
) -> None:
    monkeypatch.setenv("MESH_URL", "http://127.0.0.1:9")  # never reached: 3 if it were
    monkeypatch.setenv("MESH_TOKEN", "x")
    path = tmp_path / "dup.yaml"
    path.write_text("subsets: {}\nroutes: []\nroutes: []\n")
    code = meshctl.main([*command.split(), str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "duplicate key 'routes'" in err and "line 3" in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: Service\nname: qa1\ntags: &a [*a]\n", "contains itself"),
        ("kind: Service\nname: qa1\ncheck: {interval: .inf}\n", "out of range"),
        ("kind: Service\nname: qa1\ncheck: {interval: .nan}\n", "out of range"),
    ],
)
@pytest.mark.parametrize("command", ["diff -f", "routes set svc -f", "gateway providers set c -f"])
def test_values_json_cannot_carry_are_bad_usage_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    text: str, problem: str, command: str
) -> None:
    """A recursive alias was a ValueError traceback; .inf/.nan reached the server as bad JSON."""
    monkeypatch.setenv("MESH_URL", "http://127.0.0.1:9")  # never reached: 3 if it were
    monkeypatch.setenv("MESH_TOKEN", "x")
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    code = meshctl.main([*command.split(), str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"meshctl: {path}") and problem in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with control_plane(tmp_path_factory.mktemp("meshctl-mesh"), workers=False) as cp:
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


@pytest.mark.e2e
def test_diff_apply_export_history_rollback(ctl, tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    (mesh / "10-services.yaml").write_text(MESH.split("---\nkind: TrafficPolicy")[0])
    (mesh / "20-policy.yml").write_text(
        "kind: TrafficPolicy" + MESH.split("kind: TrafficPolicy")[1]
    )

    code, out, err = ctl("diff", "-f", str(mesh))
    assert code == 0, err
    assert out.splitlines() == [
        "+ Service/payments",
        "+ Service/payments-dr",
        "+ TrafficPolicy/payments",
        "3 to add, 0 to change, 0 to delete, 0 unchanged",
    ]
    code, out, err = ctl("apply", "-f", str(mesh), "--dry-run=server")
    assert code == 0 and "dry run" in out
    code, out, err = ctl("apply", "-f", str(mesh), "-m", "first cut")
    assert code == 0, err
    assert "applied as mesh version 1 (revision " in out

    exported = tmp_path / "export.yaml"
    code, out, err = ctl("export", "-o", str(exported))
    assert code == 0 and "wrote 3 document(s)" in out
    code, out, err = ctl("diff", "-f", str(exported), "--prune")
    assert code == 0, err
    assert out.strip() == "0 to add, 0 to change, 0 to delete, 3 unchanged"

    changed = exported.read_text().replace("interval: 5s", "interval: 10s")
    (tmp_path / "changed.yaml").write_text(changed)
    code, out, err = ctl("apply", "-f", str(tmp_path / "changed.yaml"), "-m", "slower checks")
    assert code == 0, err
    assert '~ Service/payments\n    check.interval: "5s" -> "10s"\n' in out

    code, out, err = ctl("history")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["VERSION", "CREATED", "AUTHOR", "REVISION"]
    assert lines[1].startswith("2 ") and lines[1].endswith("slower checks")
    assert lines[2].startswith("1 ") and lines[2].endswith("first cut")

    code, out, err = ctl("rollback", "1")
    assert code == 0, err
    assert "rolled back to version 1 as version 3" in out
    code, out, _ = ctl("export", "--json")
    payments = next(d for d in json.loads(out) if d["name"] == "payments")
    assert payments["check"]["interval"] == "5s"


@pytest.mark.e2e
def test_a_bad_document_names_file_line_and_field_and_changes_nothing(ctl, tmp_path: Path) -> None:
    code, before, _ = ctl("export")
    path = tmp_path / "bad.yaml"
    path.write_text(
        MESH.replace("check: {type: none}", "check: {type: gopher}")
        .replace("failover:\n  targets: [payments-dr]\n  hold_down: 1m\n", "")
        .replace("  attempts: 3", "  attempts: 3\n  backoff_base: 2s\n  backoff_max: 1s")
    )
    code, out, err = ctl("apply", "-f", str(path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "meshctl: 2 error(s); nothing was changed",
        f'{path}:10: check.type: "gopher" is not a valid choice. (Service/payments-dr)',
        f"{path}:17: retries.backoff_base: must not exceed backoff_max (TrafficPolicy/payments)",
    ]
    assert ctl("export")[1] == before
