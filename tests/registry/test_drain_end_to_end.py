"""Drain with real processes: control plane (web, Celery worker and beat), two
slow backends and one agent. A drained instance finishes its in-flight request
and gets no new one; it becomes maintenance after the drain timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until
from tests.e2e.test_mesh_end_to_end import agent_endpoint_ports, start_agent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DRAIN_TIMEOUT_S = 4
BEAT_PERIOD_S = 2  # registry.tasks.finish_drains


def in_flight(port: int) -> int:
    status, stats = http("GET", f"http://127.0.0.1:{port}/stats", timeout=2)
    return int(stats[str(port)]["in_flight"]) if status == 200 else 0


def test_drained_instance_finishes_in_flight_request_and_gets_no_new_one(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {"b1": free_port(), "b2": free_port()}
            for name, port in ports.items():
                procs.start(name, [python(), "-m", "tests.registry.slow_backend", name, str(port)],
                            cp.env)
            ids = cp.register({
                "name": "payments", "drain_timeout": f"{DRAIN_TIMEOUT_S}s",
                "check": {"type": "http", "path": "/health", "interval": "1s",
                          "timeout": "500ms", "rise": 1, "fall": 2},
            }, ports.values())
            cp.wait_all_passing("payments")
            listen, admin = free_port(), free_port()
            start_agent(procs, cp, tmp_path, listen, admin)
            wait_until(lambda: agent_endpoint_ports(admin) == set(ports.values()), 30,
                       what="agent snapshot with both endpoints")

            # A slow request through the agent; find which backend holds it.
            slow: dict[str, Any] = {}

            def call_slow() -> None:
                slow["result"] = http("GET", f"http://127.0.0.1:{listen}/slow?s=4", timeout=20)

            thread = threading.Thread(target=call_slow)
            thread.start()
            busy = wait_until(
                lambda: next((p for p in ports.values() if in_flight(p)), None), 5,
                interval=0.05, what="the slow request to reach a backend")
            other = next(p for p in ports.values() if p != busy)

            status, body = cp.api("POST", f"/api/v1/services/payments/instances/{ids[busy]}/drain/")
            assert status == 200 and body["status"] == "draining", body  # type: ignore[index]
            drained_at = time.monotonic()
            wait_until(lambda: agent_endpoint_ports(admin) == {other}, 3, interval=0.05,
                       what="the drained instance out of the agent's snapshot")
            assert in_flight(busy) == 1  # still being served

            # New requests go to the other instance only, while the slow one runs.
            served = [http("GET", f"http://127.0.0.1:{listen}/fast", timeout=5) for _ in range(20)]
            other_name = next(n for n, p in ports.items() if p == other)
            assert served == [(200, other_name)] * 20

            thread.join(20)
            busy_name = next(n for n, p in ports.items() if p == busy)
            assert slow["result"] == (200, busy_name)

            # Maintenance after the drain timeout (plus one beat period), with an event.
            def maintenance() -> bool:
                _, inst = cp.api("GET", f"/api/v1/services/payments/instances/{ids[busy]}/")
                return inst["status"] == "maintenance"  # type: ignore[index]

            wait_until(maintenance, DRAIN_TIMEOUT_S + BEAT_PERIOD_S + 5,
                       what="drained instance in maintenance")
            took = time.monotonic() - drained_at
            assert took >= DRAIN_TIMEOUT_S - 0.5, f"maintenance after {took:.1f}s"
            _, explained = cp.api("GET", f"/api/v1/services/payments/instances/{ids[busy]}/explain/")
            messages = [e["message"] for e in explained["timeline"]]  # type: ignore[index]
            assert any("passing -> draining" in m for m in messages)
            assert any("draining -> maintenance (drain timeout" in m for m in messages)
            assert explained["receives_traffic"] is False  # type: ignore[index]
    except BaseException:
        print(f"----- agent log -----\n{procs.log('agent')[-6000:]}")
        raise
    finally:
        procs.stop_all()
