"""What-if against reality: real control plane, one agent, three backends and
steady traffic. The what-if for "c to weight 300, a into maintenance" is asked
first; then the edit is applied and the load each backend takes is measured.
Each instance's predicted rps must be within 20 % of the measured one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until
from tests.e2e.test_mesh_end_to_end import Traffic, start_agent

pytestmark = pytest.mark.e2e


def test_the_prediction_matches_the_load_measured_after_apply(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {name: free_port() for name in ("a", "b", "c")}
            for name, port in ports.items():
                procs.start(name, [python(), "-m", "tests.e2e.backend", str(port), name], cp.env)
            ids = cp.register({"name": "payments", "check": {"type": "none"}}, ports.values())
            status, body = cp.api("PATCH", "/api/v1/services/payments/policy/",
                                  {"load_balancer": "weighted_round_robin"})
            assert status == 200, body
            by_name = {name: ids[port] for name, port in ports.items()}
            listen, admin = free_port(), free_port()
            start_agent(procs, cp, tmp_path, listen, admin)
            wait_until(lambda: http("GET", f"http://127.0.0.1:{admin}/ready", timeout=2)[0] == 200,
                       30, what="agent ready")
            traffic = Traffic(listen, clients=2)
            traffic.start()
            time.sleep(12)  # the agent reports its windows every 2 s

            edit = {"instances": {by_name["c"]: {"weight": 300},
                                  by_name["a"]: {"state": "maintenance"}}}
            status, prediction = cp.api("POST", "/api/v1/services/payments/what-if/", edit)
            assert status == 200, prediction
            predicted = {i["id"]: i["rps"] for i in prediction["after"]["instances"]}
            assert predicted[by_name["a"]] == 0
            assert prediction["callers"][0]["source"] == "orders"

            status, body = cp.api("PATCH", f"/api/v1/services/payments/instances/{by_name['c']}/",
                                  {"weight": 300})
            assert status == 200, body
            status, body = cp.api("PATCH", f"/api/v1/services/payments/instances/{by_name['a']}/",
                                  {"maintenance": True})
            assert status == 200, body
            revision = body.get("revision") if isinstance(body, dict) else None

            def applied() -> bool:
                code, snapshot = http("GET", f"http://127.0.0.1:{admin}/config", timeout=2)
                if code != 200:
                    return False
                endpoints = snapshot["upstreams"]["payments"]["endpoints"]
                return {e["port"]: e["weight"] for e in endpoints} == {
                    ports["b"]: 100, ports["c"]: 300}

            wait_until(applied, 10, what=f"the agent holds the edit (revision {revision})")
            time.sleep(0.5)
            start = time.monotonic()
            time.sleep(10)
            served = traffic.served_by_after(start)
            seconds = time.monotonic() - start
            traffic.stop()
            assert traffic.failures == []
            measured = {by_name[name]: served.get(name, 0) / seconds for name in ports}
            print("predicted rps", {n: predicted[by_name[n]] for n in ports},
                  "measured rps", {n: round(measured[by_name[n]], 2) for n in ports})
            assert measured[by_name["a"]] == 0
            for name in ("b", "c"):
                want, got = predicted[by_name[name]], measured[by_name[name]]
                assert abs(got - want) <= 0.2 * want, (name, want, got)
    except BaseException:
        print(f"----- agent log -----\n{procs.log('agent')[-4000:]}")
        raise
    finally:
        procs.stop_all()
