"""Bad agent.yaml input through `meshagent check` / `run`: one clear line naming the field
(and the line, where YAML knows it), a non-zero exit, never a traceback (issue 9, item 13)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.runtime.cli import main
from agents.runtime.yamlfile import MAX_DEPTH
from tests.agents.backends import free_port

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]

HEAD = """control_plane: http://127.0.0.1:1
token: enroll-secret
node: host-a
data_dir: {data}
admin: 127.0.0.1:0
"""


def listen(*addresses: str) -> str:
    return "upstreams:\n" + "".join(
        f"  - service: s{i}\n    listen: '{a}'\n" for i, a in enumerate(addresses))


def only_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def service(extra: str) -> str:
    return f"services:\n  - {{name: a, address: 127.0.0.1, port: 80, {extra}}}\n"


# name -> (document after HEAD, or a whole document; the error after "PATH: ")
CASES: dict[str, tuple[Callable[[int], str], str]] = {
    "unclosed-ipv6-control-plane": (
        lambda p: "control_plane: 'http://[::1'\n",
        "control_plane: Invalid IPv6 URL in 'http://[::1'"),
    "bad-ipv6-control-plane": (
        lambda p: "control_plane: 'http://[::::]:8000'\n",
        "control_plane: '::::' does not appear to be an IPv4 or IPv6 address in "
        "'http://[::::]:8000'"),
    "deeply-nested": (
        lambda p: "services: " + "[" * 10_000 + "]" * 10_000 + "\n",
        f"line 6, column {MAX_DEPTH + 10}: nested more than {MAX_DEPTH} levels deep"),
    "deeply-nested-mappings": (
        lambda p: "services:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 200)),
        f"line 38, column 67: nested more than {MAX_DEPTH} levels deep"),
    "duplicate-top-level-key": (
        lambda p: "node: host-b\n",
        "line 6, column 1: duplicate key 'node' (first on line 3)"),
    "duplicate-nested-key": (
        lambda p: "upstreams:\n  - service: a\n    listen: 127.0.0.1:0\n    service: b\n",
        "line 9, column 5: duplicate key 'service' (first on line 7)"),
    "control-character": (
        lambda p: "zone: 'zone\x01one'\n",
        "line 6, column 12: control character 0x0001 is not allowed "
        "(special characters are not allowed)"),
    "escape-character": (
        lambda p: "zone: zone-1\ntoken: ab\x1bc\n",
        "line 7, column 10: control character 0x001b is not allowed "
        "(special characters are not allowed)"),
    "same-port-by-ip-and-by-name": (
        lambda p: listen(f"127.0.0.1:{p}", f"localhost:{p}"),
        "upstreams[1].listen: localhost:{p} would bind 127.0.0.1:{p}, already used by "
        "upstreams[0].listen (127.0.0.1:{p})"),
    "wildcard-and-loopback": (
        lambda p: listen(f"0.0.0.0:{p}", f"127.0.0.1:{p}"),
        "upstreams[1].listen: 127.0.0.1:{p} would bind 127.0.0.1:{p}, already used by "
        "upstreams[0].listen (0.0.0.0:{p})"),
    "admin-by-name": (
        lambda p: f"admin: localhost:{p}\n" + listen(f"127.0.0.1:{p}"),
        "upstreams[0].listen: 127.0.0.1:{p} would bind 127.0.0.1:{p}, already used by "
        "admin (localhost:{p})"),
    "not-an-ipv4-address": (
        lambda p: listen("999.1.1.1:9101"),
        "upstreams[0].listen: 999.1.1.1 is not an IPv4 address"),
    "non-ascii-digits-in-a-port": (
        lambda p: listen("127.0.0.1:\u0669\u0661\u0660\u0661"),  # Arabic-Indic 9101
        "upstreams[0].listen: expected host:port, got '127.0.0.1:\u0669\u0661\u0660\u0661'"),
    "not-an-ipv6-address": (
        lambda p: listen("[::::]:9101"),
        "upstreams[0].listen: [::::] is not an IPv6 address"),
    "not-an-address-of-this-host": (
        lambda p: listen("192.0.2.1:9101"),
        "upstreams[0].listen: cannot listen on 192.0.2.1:9101: 192.0.2.1 is not an address "
        "of this host (Cannot assign requested address)"),
    # What the control plane's enrollment and report refuse (agents.api.serializers):
    # `check` said ok, then `run` retried a 400 forever.
    "zone-too-long": (
        lambda p: "zone: " + "z" * 64 + "\n",
        "zone: at most 63 characters, got 64"),
    "too-many-tags": (
        lambda p: service("tags: [" + ", ".join(f"t{i}" for i in range(65)) + "]"),
        "services[0].tags: at most 64 tags, got 65"),
    "tag-too-long": (
        lambda p: service("tags: [" + "t" * 101 + "]"),
        "services[0].tags[0]: a tag is 1-100 characters, got 101"),
    "empty-tag": (
        lambda p: service("tags: ['']"),
        "services[0].tags[0]: a tag is 1-100 characters, got 0"),
    "null-character-in-a-tag": (
        lambda p: service('tags: ["v\\0"]'),
        "services[0].tags[0]: null characters are not allowed"),
    "null-character-in-the-zone": (
        lambda p: 'zone: "a\\0b"\n',
        "zone: null characters are not allowed"),
    "metadata-value-too-long": (
        lambda p: service("metadata: {k: " + "v" * 501 + "}"),
        "services[0].metadata.k: at most 500 characters, got 501"),
}

def write(tmp_path: Path, case: str, port: int) -> Path:
    body = CASES[case][0](port)
    # A key the case sets at the top (control_plane, admin) replaces the head's line.
    head = "".join(line for line in HEAD.format(data=tmp_path / "data").splitlines(True)
                   if not body.startswith(line.split(":", 1)[0] + ":")
                   or not line.startswith(("control_plane:", "admin:")))
    path = tmp_path / "agent.yaml"
    path.write_text(head + body, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(CASES))
async def test_check_refuses_bad_input_with_one_line_naming_the_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    port = await free_port()
    path = write(tmp_path, case, port)
    assert main(["check", "-c", str(path)]) == 2
    assert only_line(capsys) == f"{path}: " + CASES[case][1].format(p=port)


async def test_run_refuses_what_check_refuses_before_binding_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    port = await free_port()
    path = write(tmp_path, "same-port-by-ip-and-by-name", port)
    assert main(["run", "-c", str(path)]) == 2
    assert only_line(capsys).startswith(f"{path}: upstreams[1].listen: localhost:{port} ")


async def test_run_on_a_port_another_process_holds_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = tmp_path / "agent.yaml"
        path.write_text(HEAD.format(data=tmp_path / "data") + listen(f"127.0.0.1:{port}"))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agents.runtime.cli", "run", "-c", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert b"Traceback" not in err and out == b""
    assert err.decode().strip().splitlines()[-1].startswith("meshagent: cannot start: [Errno 98]")


def test_a_merge_key_may_still_be_overridden(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(HEAD.format(data=tmp_path / "data") + "upstreams:\n"
                    "  - &base {service: a, listen: '127.0.0.1:0'}\n"
                    "  - <<: *base\n    service: b\n")
    assert main(["check", "-c", str(path)]) == 0
    assert "2 upstream(s) [a@127.0.0.1:0/http, b@127.0.0.1:0/http]" in capsys.readouterr().out


def test_a_config_at_every_limit_is_one_the_control_plane_takes(tmp_path: Path) -> None:
    """The other side of the limits above: what `check` accepts, enrollment and the
    report's services accept (the producer's output fed to the consumer's parser)."""
    from agents.api.serializers import EnrollSerializer, LocalServiceSerializer
    from agents.runtime.config import load_config

    tags = ", ".join(f"{i:03d}" + "t" * 97 for i in range(64))
    path = tmp_path / "agent.yaml"
    path.write_text(HEAD.format(data=tmp_path / "data") + "zone: " + "z" * 63 + "\n"
                    + service(f"tags: [{tags}], metadata: {{k: {'v' * 500}}}"))
    config = load_config(path)
    enroll = EnrollSerializer(data={"token": "t", "node": config.node, "zone": config.zone})
    assert enroll.is_valid(), enroll.errors
    body = config.services[0].as_report()
    local = LocalServiceSerializer(data=body)
    assert local.is_valid(), local.errors
