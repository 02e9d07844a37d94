"""Failover with real processes: control plane (web, worker, beat), a backend
for `payments` and one for `payments-dr`, one agent. When payments loses its
only instance, the agent's traffic moves to payments-dr; when payments comes
back, traffic returns only after the failback hold-down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until
from tests.e2e.test_mesh_end_to_end import Traffic, start_agent

pytestmark = pytest.mark.e2e

HOLD_DOWN_S = 4.0


def test_failover_to_dr_and_failback_after_hold_down(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {"main": free_port(), "dr": free_port()}
            check = {"type": "http", "path": "/health", "interval": "1s", "timeout": "500ms",
                     "rise": 1, "fall": 2}
            for name, service in (("main", "payments"), ("dr", "payments-dr")):
                procs.start(name, [python(), "-m", "tests.e2e.backend", str(ports[name]), name], cp.env)
                cp.register({"name": service, "check": check}, [ports[name]])
            status, body = cp.api("PATCH", "/api/v1/services/payments/policy/",
                                  {"failover": {"targets": ["payments-dr"], "hold_down": f"{HOLD_DOWN_S:g}s"},
                                   "panic_threshold_percent": 0})
            assert status == 200, body

            listen, admin = free_port(), free_port()
            start_agent(procs, cp, tmp_path, listen, admin)
            traffic = Traffic(listen)

            def served_only_by(name: str) -> bool:
                recent = traffic.served_by_after(time.monotonic() - 0.5)
                return bool(recent) and set(recent) == {name}

            # payments must be passing before traffic starts (else it fails over at once).
            cp.wait_all_passing("payments")
            wait_until(lambda: http("GET", f"http://127.0.0.1:{admin}/ready", timeout=2)[0] == 200, 30,
                       what="agent ready")
            traffic.start()
            wait_until(lambda: served_only_by("main"), 20, what="traffic on payments")

            procs.kill("main")
            killed_at = time.monotonic()
            wait_until(lambda: served_only_by("dr"), 10, interval=0.1, what="traffic on payments-dr")
            moved_after = time.monotonic() - killed_at
            _, events = cp.api("GET", "/api/v1/events/?service=payments&kind=failover")
            assert any("payments-dr" in e["message"] for e in events["results"])  # type: ignore[index]

            # payments comes back: traffic stays on the DR service for the hold-down, then returns.
            procs.start("main", [python(), "-m", "tests.e2e.backend", str(ports["main"]), "main"], cp.env)
            wait_until(lambda: cp.api("GET", "/api/v1/services/payments/")[1]["health"]["passing"] == 1,  # type: ignore[index]
                       15, interval=0.1, what="payments passing again")
            healthy_at = time.monotonic()
            time.sleep(HOLD_DOWN_S - 1.5)
            assert served_only_by("dr"), "failed back before the hold-down"
            wait_until(lambda: served_only_by("main"), HOLD_DOWN_S + 5, interval=0.1,
                       what="failback to payments")
            back_after = time.monotonic() - healthy_at
            traffic.stop()
            print(f"moved to DR {moved_after:.2f}s after the kill; failed back {back_after:.2f}s "
                  f"after payments was healthy again (hold-down {HOLD_DOWN_S}s)")
            assert back_after >= HOLD_DOWN_S - 0.5
            # The only failures allowed are those between the kill and the move (no other instance).
            assert all(t - killed_at < moved_after + 0.5 for t, o in traffic.timeline
                       if o.startswith(("HTTP", "error")))
    except BaseException:
        print(f"----- agent log -----\n{procs.log('agent')[-6000:]}")
        raise
    finally:
        procs.stop_all()
