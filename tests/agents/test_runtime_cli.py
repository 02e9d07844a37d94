"""`meshagent check` and `meshagent run` as a user runs them."""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from agents.runtime.cli import main
from tests.agents.backends import Backend, fetch, free_port, upstream_entry

pytestmark = pytest.mark.timeout(60)


def write_config(tmp_path: Path, **overrides: object) -> Path:
    data = {
        "control_plane": "http://127.0.0.1:1",
        "token": "enroll-secret",
        "node": "host-a",
        "data_dir": str(tmp_path / "data"),
        "admin": "127.0.0.1:19000",
        "services": [{"name": "orders", "address": "127.0.0.1", "port": 8081}],
        "upstreams": [{"service": "payments", "listen": "127.0.0.1:9101"}],
        **overrides,
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_prints_a_summary_and_exits_0(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(write_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: node host-a, 1 service(s) [orders], 1 upstream(s)")


def test_check_of_a_bad_config_prints_the_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, upstreams=[{"service": "payments", "listen": "9101"}])
    assert main(["check", "-c", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"{path}: upstreams[0].listen: expected host:port, got '9101'"
    assert "Traceback" not in captured.err and captured.out == ""


async def test_run_serves_from_persisted_snapshot_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    backend = await Backend("a").start()
    admin_port, listen_port = await free_port(), await free_port()
    path = write_config(tmp_path, admin=f"127.0.0.1:{admin_port}",
                        upstreams=[{"service": "payments", "listen": f"127.0.0.1:{listen_port}"}])
    (tmp_path / "data").mkdir()
    snapshot = {"revision": 7, "upstreams": {"payments": upstream_entry(backend)}}
    (tmp_path / "data" / "snapshot.json").write_text(json.dumps(snapshot))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agents.runtime.cli", "run", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)  # type: ignore[union-attr]
        assert b"admin on 127.0.0.1:" in line
        assert (await fetch(admin_port, "GET", "/ready")).status == 200
        response = await fetch(listen_port, "GET", "/")
        assert response.json()["backend"] == "a"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await backend.stop()


def modules_after_import(wanted: str) -> list[str]:
    """The modules a fresh interpreter holds after importing the agent's CLI and
    runtime, among those the expression WANTED (over `m`, a module name) selects."""
    import subprocess

    code = ("import sys, agents.runtime.cli, agents.runtime.agent; "
            f"print(repr(sorted(m for m in sys.modules if {wanted})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(Path(__file__).resolve().parents[2]), timeout=30)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = ast.literal_eval(result.stdout)
    return loaded


def test_the_runtime_never_imports_django() -> None:
    assert modules_after_import(
        "m.split('.')[0] in "
        "('django', 'rest_framework', 'registry', 'policies', 'monitoring', 'meshconsole')") == []


def test_dns_and_gateway_mode_are_imported_only_by_agents_that_use_them() -> None:
    """An agent with `dns: off` and no `gateway:` section does not carry dnspython
    (~4 MB) or gateway mode (PyJWT, its listener) in memory."""
    assert modules_after_import(
        "m.split('.')[0] in ('dns', 'jwt') or m.startswith('agents.runtime.gateway.listener')"
        " or m == 'agents.runtime.dns'") == []


def test_the_agent_does_not_carry_cryptography() -> None:
    """`cryptography`'s bindings are ~8 MB resident: keys, CSRs and reading certificates
    run in the certificate tool (agents.runtime.pki) as a child process instead."""
    assert modules_after_import(
        "m.split('.')[0] == 'cryptography' or m == 'agents.runtime.pki'") == []


def test_the_certificate_tool_runs_as_a_child_of_a_process_without_cryptography(
        tmp_path: Path) -> None:
    """pkicall out of process: a key and CSR, the facts of the signed leaf, a root's
    subject; a certificate for another key is refused; cryptography never loaded here."""
    import subprocess

    from tests.agents.testca import TestCA

    ca = TestCA("child")
    (tmp_path / "root.pem").write_text(ca.pem)
    code = """
import json, sys
from pathlib import Path
from agents.runtime import pkicall
from agents.runtime.certs import leaf_body
key, csr = pkicall.new_key_and_csr("spiffe://t/ns/default/svc/orders")
Path(sys.argv[1], "csr.pem").write_text(csr)
Path(sys.argv[1], "key.pem").write_bytes(key)
print(json.dumps({"csr": csr.startswith("-----BEGIN CERTIFICATE REQUEST-----"),
                  "subjects": pkicall.subjects([Path(sys.argv[1], "root.pem").read_text(),
                                                "not a certificate"]),
                  "loaded": sorted(m for m in sys.modules if m.startswith("cryptography"))}))
"""
    root = str(Path(__file__).resolve().parents[2])
    first = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                           text=True, cwd=root, timeout=60)
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer["csr"] and answer["loaded"] == []
    from cryptography import x509

    assert answer["subjects"][0] == x509.load_pem_x509_certificate(
        ca.pem.encode()).subject.public_bytes().hex()
    assert answer["subjects"][1] is None
    csr = (tmp_path / "csr.pem").read_text()
    signed = ca.sign_csr(csr, "spiffe://t/ns/default/svc/orders", 600)
    other = ca.sign_csr(ca_csr_of_another_key(), "spiffe://t/ns/default/svc/orders", 600)
    check = """
import json, sys
from pathlib import Path
from agents.runtime import pkicall
from agents.runtime.certs import leaf_body
key = Path(sys.argv[1], "key.pem").read_bytes()
facts = pkicall.leaf_facts([leaf_body(key, sys.argv[2]), leaf_body(key, sys.argv[3])])
print(json.dumps({"facts": facts,
                  "loaded": sorted(m for m in sys.modules if m.startswith("cryptography"))}))
"""
    second = subprocess.run([sys.executable, "-c", check, str(tmp_path), signed, other],
                            capture_output=True, text=True, cwd=root, timeout=60)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    mine, foreign = result["facts"]
    cert = x509.load_pem_x509_certificate(signed.encode())
    assert mine["serial"] == cert.serial_number
    assert mine["uris"] == ["spiffe://t/ns/default/svc/orders"]
    assert mine["not_after"] == cert.not_valid_after_utc.isoformat()
    assert foreign is None and result["loaded"] == []


def ca_csr_of_another_key() -> str:
    from agents.runtime.pki import make_csr, new_key

    return make_csr(new_key(), "spiffe://t/ns/default/svc/orders")
