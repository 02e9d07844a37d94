"""The demo mesh: its plan and files, its backends and traffic (without agents),
and `up --demo` end to end when the agent runtime is installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from agents.runtime.config import load_config
from meshconsole.demo import httpkit
from meshconsole.demo.plan import PLACEMENT, SERVICES, build_plan, write_files
from tests.cli.test_up import start_up  # noqa: F401  (the fixture)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_plan_files_are_valid_agent_configs(tmp_path: Path) -> None:
    plan = build_plan(
        demo_dir=tmp_path, control_plane="http://127.0.0.1:8000", token="mesh-enroll-x"
    )
    files = write_files(plan)
    assert set(files) == {"host-a", "host-b", "host-c"}
    ports: list[int] = []
    edges: set[tuple[str, str]] = set()
    for node, (agent_yaml, backends_json) in files.items():
        config = load_config(agent_yaml)  # the agent's own validation
        assert config.node == node and config.zone == PLACEMENT[node][0]
        assert config.data_dir == tmp_path / node / "agent"
        assert [s.name for s in config.services] == list(PLACEMENT[node][1])
        assert len({u.service for u in config.upstreams}) == len(config.upstreams)
        edges |= {(u.source, u.service) for u in config.upstreams}
        ports += [
            config.admin_port,
            *(s.port for s in config.services),
            *(u.port for u in config.upstreams),
        ]
        backends = json.loads(backends_json.read_text())
        listen = {u.service: u.port for u in config.upstreams}
        for spec in backends["services"]:
            for call in spec["calls"]:
                assert call["url"] == f"http://127.0.0.1:{listen[call['service']]}"
    assert len(ports) == len(set(ports)), "every port is distinct"
    assert len(SERVICES) >= 5
    assert {
        ("loadgen", "frontend"),
        ("frontend", "orders"),
        ("orders", "payments"),
        ("orders", "inventory"),
        ("frontend", "users"),
        ("orders", "shipping"),
    } <= edges


def run_backend(tmp_path: Path, name: str, services: list[dict]) -> subprocess.Popen[bytes]:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"node": name, "services": services}))
    return subprocess.Popen(
        [sys.executable, "-m", "meshconsole.demo.backend", "--config", str(config)],
        stdin=subprocess.DEVNULL,
    )


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_backends_call_downstreams_and_fail_sometimes(tmp_path: Path) -> None:
    front, pay = free_port(), free_port()
    procs = [
        run_backend(
            tmp_path,
            "b",
            [{"name": "payments", "port": pay, "latency_ms": 2, "error_rate": 0.3, "calls": []}],
        ),
        run_backend(
            tmp_path,
            "a",
            [
                {
                    "name": "frontend",
                    "port": front,
                    "latency_ms": 2,
                    "error_rate": 0.0,
                    "calls": [
                        {
                            "service": "payments",
                            "probability": 1.0,
                            "url": f"http://127.0.0.1:{pay}",
                        }
                    ],
                }
            ],
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{front}/health")
        wait_http(f"http://127.0.0.1:{pay}/health")

        async def burst() -> Counter[int]:
            results = await asyncio.gather(
                *(httpkit.get(f"http://127.0.0.1:{front}/checkout") for _ in range(100))
            )
            return Counter(status for status, _ in results)

        statuses = asyncio.run(burst())
        assert set(statuses) <= {200, 502}
        assert 10 <= statuses[502] <= 55, statuses  # 30% of payments calls fail
        # Keep-alive works (agents and health checkers reuse connections).
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(f"http://127.0.0.1:{pay}/health").json() == {"status": "ok"}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(10) == 0  # SIGTERM is a clean stop


def test_traffic_generator_sends_steady_traffic(tmp_path: Path) -> None:
    port = free_port()
    backend = run_backend(
        tmp_path,
        "a",
        [{"name": "frontend", "port": port, "latency_ms": 1, "error_rate": 0.0, "calls": []}],
    )
    traffic = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        traffic = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshconsole.demo.traffic",
                "--target",
                f"http://127.0.0.1:{port}",
                "--rps",
                "40",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        traffic.terminate()
        assert traffic.wait(10) == 0
    finally:
        if traffic and traffic.poll() is None:
            traffic.kill()
            traffic.wait()
        backend.terminate()
        backend.wait(10)


HAS_AGENT = importlib.util.find_spec("agents.runtime.cli") is not None


@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.skipif(not HAS_AGENT, reason="agent runtime (agents.runtime.cli) not there yet")
def test_up_demo_shows_live_topology(start_up) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    up = start_up("--demo")
    up.wait_ready()
    deadline = time.monotonic() + 45
    login_token = None
    topology: dict = {}
    while time.monotonic() < deadline:
        if login_token is None:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "meshconsole.cli",
                    "--data-dir",
                    str(up.data_dir),
                    "apitoken",
                    "admin",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=up.env,
            )
            login_token = out.stdout.strip()
        response = httpx.get(
            up.url + "/api/v1/topology/?window=15s",
            timeout=10,
            headers={"Authorization": f"Token {login_token}"},
        )
        assert response.status_code == 200
        topology = response.json()
        live = [e for e in topology["edges"] if e["rps"] > 0]
        if len(topology["nodes"]) >= 5 and live:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"no live topology within 45s: {topology}\n{up.output}")
    code, left = up.stop()
    assert code == 0 and left == [], up.output
