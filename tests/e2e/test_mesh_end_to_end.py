"""The whole mesh with real processes: control plane (web, Celery worker and
beat), two backends, one agent. Traffic flows through the agent; a killed
backend leaves the rotation within interval x fall + 2 s with no failed client
request; the topology shows the edge; the data plane outlives the control plane."""

from __future__ import annotations

import http.client as httpclient
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until

pytestmark = pytest.mark.e2e

INTERVAL_S = 1.0
FALL = 2


class Traffic:
    """Steady client traffic through the agent's listener, on keep-alive connections."""

    def __init__(self, port: int, clients: int = 2) -> None:
        self.port = port
        self.hits: Counter[str] = Counter()
        self.failures: list[str] = []
        self.timeline: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            try:
                conn.request("GET", "/work")
                response = conn.getresponse()
                body = response.read().decode()
                outcome = body if response.status == 200 else f"HTTP {response.status}: {body[:80]}"
            except (OSError, httpclient.HTTPException) as exc:
                outcome = f"error: {exc!r}"
                conn.close()
                conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self._lock:
                self.timeline.append((time.monotonic(), outcome))
                if outcome.startswith(("HTTP", "error")):
                    self.failures.append(outcome)
                else:
                    self.hits[outcome] += 1
            time.sleep(0.01)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def served_by_after(self, since: float) -> Counter[str]:
        with self._lock:
            return Counter(o for t, o in self.timeline if t >= since)


def start_agent(procs: Processes, cp: ControlPlane, tmp_path: Path, listen: int, admin: int) -> None:
    config = {
        "control_plane": cp.url,
        "token": cp.enroll_token,
        "node": "host-a",
        "zone": "zone-1",
        "data_dir": str(tmp_path / "agent"),
        "admin": f"127.0.0.1:{admin}",
        "services": [],
        "upstreams": [
            {"service": "payments", "listen": f"127.0.0.1:{listen}", "protocol": "http", "source": "orders"}
        ],
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    procs.start("agent", [python(), "-m", "agents.runtime.cli", "run", "-c", str(path)], cp.env)


def agent_endpoint_ports(admin: int) -> set[int]:
    status, snapshot = http("GET", f"http://127.0.0.1:{admin}/config", timeout=2)
    if status != 200:  # no snapshot applied yet
        return set()
    # Critical endpoints stay in the snapshot (for panic mode); rotation = passing ones.
    return {
        e["port"]
        for e in snapshot["upstreams"]["payments"]["endpoints"]
        if e.get("status") == "passing"
    }


def test_traffic_survives_a_killed_backend_and_a_dead_control_plane(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {"b1": free_port(), "b2": free_port()}
            for name, port in ports.items():
                procs.start(name, [python(), "-m", "tests.e2e.backend", str(port), name], cp.env)
            cp.register({
                "name": "payments",
                "check": {"type": "http", "path": "/health", "interval": f"{INTERVAL_S}s",
                          "timeout": "500ms", "rise": 1, "fall": FALL},
            }, ports.values())
            cp.wait_all_passing("payments")

            listen, admin = free_port(), free_port()
            start_agent(procs, cp, tmp_path, listen, admin)
            wait_until(lambda: agent_endpoint_ports(admin) == set(ports.values()), 30,
                       what="agent snapshot with both endpoints")
            assert http("GET", f"http://127.0.0.1:{admin}/ready")[0] == 200

            traffic = Traffic(listen)
            traffic.start()
            wait_until(lambda: traffic.hits["b1"] > 20 and traffic.hits["b2"] > 20, 20,
                       what="round robin over both backends")

            # Kill b1 outright. Within interval x fall + 2 s it must be out of the agent's
            # rotation; meanwhile refused connections are retried on b2, so no client fails.
            procs.kill("b1")
            killed_at = time.monotonic()
            deadline = INTERVAL_S * FALL + 2
            wait_until(lambda: agent_endpoint_ports(admin) == {ports["b2"]}, deadline + 1,
                       interval=0.1, what="b1 out of the agent's snapshot")
            out_after = time.monotonic() - killed_at
            assert out_after <= deadline, f"b1 left the rotation after {out_after:.1f}s > {deadline}s"
            time.sleep(1)
            assert traffic.served_by_after(killed_at + deadline).keys() <= {"b2"}
            assert traffic.failures == []

            # The control plane saw the edge orders -> payments through the agent's reports.
            def edge() -> dict | None:
                _, topology = cp.api("GET", "/api/v1/topology/?window=60s")
                edges = [e for e in topology["edges"]  # type: ignore[index]
                         if (e["source"], e["destination"]) == ("orders", "payments")]
                return edges[0] if edges and edges[0]["requests"] > 0 else None

            found = wait_until(edge, 15, what="edge orders->payments in the topology")
            assert found["rps"] > 0 and found["p50_ms"] is not None
            _, events = cp.api("GET", "/api/v1/events/?service=payments&kind=health")
            assert any("passing -> critical" in e["message"] for e in events["results"])  # type: ignore[index]

            # Kill the whole control plane: the data plane keeps serving from its snapshot.
            for name in ("beat", "worker", "web"):
                cp.procs.kill(name)
            before = sum(traffic.hits.values())
            time.sleep(3)
            assert sum(traffic.hits.values()) > before + 20
            assert traffic.failures == []

            # A restarted agent with no control plane serves from its persisted snapshot.
            procs.stop("agent")
            start_agent(procs, cp, tmp_path, listen, admin)
            wait_until(lambda: http("GET", f"http://127.0.0.1:{admin}/ready", timeout=2)[0] == 200, 20,
                       what="restarted agent ready from its snapshot")
            failures_before = len(traffic.failures)
            time.sleep(2)
            ok_after = traffic.served_by_after(time.monotonic() - 1.5)
            traffic.stop()
            assert ok_after["b2"] > 10
            # The connections open while the old agent stopped may have seen one error each;
            # after the restart, none.
            assert len(traffic.failures) <= failures_before
    except BaseException:
        print(f"----- agent log -----\n{procs.log('agent')[-6000:]}")
        raise
    finally:
        procs.stop_all()
