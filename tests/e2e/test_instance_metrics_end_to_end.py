"""Golden metrics per instance against reality: a real control plane (web, worker,
beat), a real meshagent and two real backends weighted 3:1. What each backend
served (counted by the clients from the answering backend's name) must be what
the API says each instance served, within a few requests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until
from tests.e2e.test_mesh_end_to_end import Traffic, start_agent

pytestmark = pytest.mark.e2e

SLACK = 3  # requests: a window still in flight at the last look


def test_per_instance_counts_match_what_each_backend_served(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {name: free_port() for name in ("a", "b")}
            for name, port in ports.items():
                procs.start(name, [python(), "-m", "tests.e2e.backend", str(port), name], cp.env)
            ids = cp.register({"name": "payments", "check": {"type": "none"}}, ports.values())
            by_name = {name: ids[port] for name, port in ports.items()}
            status, body = cp.api("PATCH", "/api/v1/services/payments/policy/",
                                  {"load_balancer": "weighted_round_robin"})
            assert status == 200, body
            status, body = cp.api("PATCH", f"/api/v1/services/payments/instances/{by_name['a']}/",
                                  {"weight": 300})
            assert status == 200, body
            listen, admin = free_port(), free_port()
            start_agent(procs, cp, tmp_path, listen, admin)

            def weighted() -> bool:
                code, snapshot = http("GET", f"http://127.0.0.1:{admin}/config", timeout=2)
                return code == 200 and {
                    e["port"]: e["weight"] for e in snapshot["upstreams"]["payments"]["endpoints"]
                } == {ports["a"]: 300, ports["b"]: 100}

            wait_until(weighted, 30, what="the agent holds both weighted endpoints")
            traffic = Traffic(listen, clients=2)
            traffic.start()
            time.sleep(8)
            traffic.stop()
            assert traffic.failures == []
            served = {by_name[name]: traffic.hits[name] for name in ports}
            assert served[by_name["a"]] > 2 * served[by_name["b"]] > 0  # the 3:1 split

            def reported() -> dict[str, int]:
                status, body = cp.api("GET", "/api/v1/services/payments/metrics/instances/?window=5m")
                assert status == 200, body
                return {row["instance"]: row["requests"] for row in body["instances"]}

            def matches() -> bool:
                got = reported()
                return all(abs(got.get(i, 0) - n) <= SLACK for i, n in served.items())

            wait_until(matches, 30, what=f"per-instance counts {served} in the API")
            print("served", served, "reported", reported())
            for name, instance in by_name.items():
                status, series = cp.api(
                    "GET", f"/api/v1/services/payments/instances/{instance}/metrics/?window=5m")
                assert status == 200, series
                total = sum(p["rps"] * series["step_seconds"] for p in series["points"])
                assert abs(total - served[instance]) <= SLACK + 1, (name, total, served[instance])
                assert all(p["error_rate"] == 0 for p in series["points"])
    except BaseException:
        print(f"----- agent log -----\n{procs.log('agent')[-4000:]}")
        raise
    finally:
        procs.stop_all()
