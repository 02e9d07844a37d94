"""Failover under load: a killed instance and a hung one, detected actively and passively.

    python bench/failover_bench.py [--interval 1] [--fall 2] [--clients 4]

A real control plane (web + Celery worker + beat, as tests/e2e/controlplane.py
starts it, on SQLite and an embedded Redis), one meshagent enrolled with it, and
two services of three instances each (tests/e2e/backend.py):

- `active-svc`: HTTP check every INTERVAL, fall FALL; outlier detection off.
  Only the checks (Celery) take an instance out, through a new snapshot.
- `passive-svc`: checks every 60 s (so they play no part); outlier detection on
  (3 consecutive gateway errors → ejected). Only the agent takes it out.

Both: retries on connect-failure/reset/gateway-error (2 attempts, 500 ms per try).
Steady client load (keep-alive, CLIENTS threads per service) runs throughout.
Phase 1 kills instance 0 of each service (SIGKILL); phase 2 hangs instance 1
(SIGSTOP: the kernel still accepts, nothing answers). For each, the time until
the instance is out of the agent's rotation (/stats: gone, critical or ejected)
and the client requests that failed.

Targets: killed (refused) → 0 failed client requests; a hung instance out of
rotation within interval × fall + 1 s (active detection).
Pinning: the agent on CPU 0; control plane, backends and clients unpinned.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import http_get_json, save_results, verdict  # noqa: E402

SERVICES = ("active-svc", "passive-svc")
RETRIES = {"attempts": 2, "per_try_timeout": "500ms",
           "on": ["connect-failure", "reset", "gateway-error"]}


class Load:
    """Keep-alive GETs through one agent listener; every outcome timestamped."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.events: list[tuple[float, bool, float, str]] = []  # (t, ok, latency_s, detail)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                conn.request("GET", "/work")
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                ok, detail = resp.status == 200, body if resp.status == 200 else \
                    f"HTTP {resp.status} {resp.getheader('x-mesh-error') or ''} {body[:60]}"
            except (OSError, http.client.HTTPException) as exc:
                ok, detail = False, f"error {exc!r}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            t1 = time.monotonic()
            with self._lock:
                self.events.append((t1, ok, t1 - t0, detail))
            time.sleep(0.005)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def window(self, start: float, end: float) -> dict[str, Any]:
        with self._lock:
            rows = [e for e in self.events if start <= e[0] < end]
        failed = [e for e in rows if not e[1]]
        slow = sorted(e[2] for e in rows)
        return {"requests": len(rows), "failed": len(failed),
                "failures": Counter(e[3] for e in failed).most_common(3),
                "max_latency_ms": round(slow[-1] * 1000, 1) if slow else None,
                "p99_latency_ms": round(slow[int(len(slow) * 0.99)] * 1000, 1) if slow else None,
                "served_by": Counter(e[3] for e in rows if e[1])}


def out_of_rotation(stats: dict[str, Any], service: str, port: int) -> bool:
    for upstream in stats.get("upstreams", []):
        if upstream.get("service") != service:
            continue
        for e in upstream.get("endpoints", []):
            if e.get("port") == port:
                return bool(e.get("ejected")) or e.get("status") not in ("passing", "warning")
        return True  # no longer listed
    return False


def watch_out(admin: int, service: str, port: int, since: float, timeout: float) -> float | None:
    """Seconds from SINCE until PORT is out of SERVICE's rotation in the agent, or None."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            status, stats = http_get_json(admin, "/stats", 1.0)
            if status == 200 and out_of_rotation(stats, service, port):
                return time.monotonic() - since
        time.sleep(0.02)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="active check interval, s")
    parser.add_argument("--fall", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4, help="client threads per service")
    parser.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(f"signal {s}")))

    from meshconsole import embedded_redis
    from tests.e2e.controlplane import control_plane
    from tests.e2e.procs import Processes, free_port, python, wait_until

    tmp = Path(tempfile.mkdtemp(prefix="meshbench-failover-"))
    redis_proc = None
    if not os.environ.get("REDIS_URL"):
        redis_proc = embedded_redis.start(tmp, new_session=True)
        os.environ["REDIS_URL"] = embedded_redis.socket_url(tmp)
    procs = Processes(tmp)
    loads: list[Load] = []
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "interval_s": args.interval, "fall": args.fall}
    try:
        with control_plane(tmp) as cp:
            ports: dict[str, list[int]] = {}
            for service in SERVICES:
                ports[service] = [free_port() for _ in range(3)]
                for i, port in enumerate(ports[service]):
                    procs.start(f"{service}-{i}", [python(), "-m", "tests.e2e.backend", str(port),
                                                   f"{service}-{i}"], cp.env)
                active = service == "active-svc"
                interval = f"{args.interval}s" if active else "60s"
                status, body = cp.api("POST", "/api/v1/services/", {
                    "name": service,
                    "check": {"type": "http", "path": "/health", "interval": interval,
                              "timeout": "500ms", "rise": 1, "fall": args.fall}})
                assert status == 201, body
                outlier = ({"consecutive_5xx": 0, "consecutive_gateway": 0} if active else
                           {"consecutive_5xx": 5, "consecutive_gateway": 3,
                            "base_ejection": "30s", "max_ejection_percent": 50})
                status, body = cp.api("PUT", f"/api/v1/services/{service}/policy/", {
                    "load_balancer": "round_robin", "request_timeout": "3s",
                    # No panic routing: with 2 of 3 out, Envoy-style panic (default 50 %)
                    # would route to all three again and hide what detection did.
                    "panic_threshold_percent": 0,
                    "retries": RETRIES, "outlier": outlier})
                assert status == 200, body
                for port in ports[service]:
                    status, body = cp.api("POST", f"/api/v1/services/{service}/instances/",
                                          {"address": "127.0.0.1", "port": port, "zone": "zone-1"})
                    assert status == 201, body

            listens = {s: free_port() for s in SERVICES}
            admin = free_port()
            config = {
                "control_plane": cp.url, "token": cp.enroll_token, "node": "bench-host",
                "zone": "zone-1", "data_dir": str(tmp / "agent"), "admin": f"127.0.0.1:{admin}",
                "services": [],
                "upstreams": [{"service": s, "listen": f"127.0.0.1:{listens[s]}",
                               "protocol": "http", "source": "bench"} for s in SERVICES],
            }
            (tmp / "agent.yaml").write_text(yaml.safe_dump(config))
            procs.start("agent", ["taskset", "-c", "0", python(), "-m", "agents.runtime.cli",
                                  "run", "-c", str(tmp / "agent.yaml")], cp.env)

            def all_routable() -> bool:
                status, stats = http_get_json(admin, "/stats", 1.0)
                if status != 200:
                    return False
                for s in SERVICES:
                    live = {e["port"] for u in stats["upstreams"] if u["service"] == s
                            for e in u["endpoints"] if e["status"] == "passing"}
                    if live != set(ports[s]):
                        return False
                return True

            wait_until(all_routable, 60, what="the agent routing to all six instances")
            loads = [Load(listens[s], args.clients) for s in SERVICES]
            for load in loads:
                load.start()
            time.sleep(3)  # steady state
            by_service = dict(zip(SERVICES, loads, strict=True))
            budget = args.interval * args.fall + 1
            phases: list[dict[str, Any]] = []
            for phase, index, sig in (("killed", 0, signal.SIGKILL), ("hung", 1, signal.SIGSTOP)):
                t0 = time.monotonic()
                for s in SERVICES:
                    procs.procs[f"{s}-{index}"].send_signal(sig)
                watchers: dict[str, float | None] = {}

                def watch(service: str, idx: int = index, start: float = t0,
                          found: dict[str, float | None] = watchers) -> None:
                    found[service] = watch_out(admin, service, ports[service][idx], start, 20)

                def watch_cp(idx: int = index, start: float = t0,
                             found: dict[str, float | None] = watchers) -> None:
                    port = ports["active-svc"][idx]
                    while time.monotonic() < start + 20:
                        with contextlib.suppress(Exception):
                            _, rows = cp.api("GET", "/api/v1/services/active-svc/instances/")
                            if any(r["port"] == port and r["status"] == "critical"
                                   for r in rows["results"]):  # type: ignore[index]
                                found["cp"] = time.monotonic() - start
                                return
                        time.sleep(0.05)

                threads = [threading.Thread(target=watch, args=(s,)) for s in SERVICES]
                threads.append(threading.Thread(target=watch_cp))
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                time.sleep(2)  # traffic after the instance left
                t_end = time.monotonic()
                for s in SERVICES:
                    w = by_service[s].window(t0, t_end)
                    phases.append({"phase": phase, "service": s, "out_after_s": watchers.get(s),
                                   "critical_in_cp_s": watchers.get("cp") if s == "active-svc"
                                   else None,
                                   "requests": w["requests"], "failed": w["failed"],
                                   "failures": w["failures"], "p99_ms": w["p99_latency_ms"],
                                   "max_ms": w["max_latency_ms"],
                                   "served_by": dict(by_service[s].window(
                                       t_end - 1.0, t_end)["served_by"])})
            for load in loads:
                load.stop()
            loads = []
            results["phases"] = phases

            print(f"\nFailover under load ({args.clients} keep-alive clients per service; check "
                  f"interval {args.interval:g} s, fall {args.fall}; agent pinned to CPU 0)")
            print("| instance | detection | out of rotation after | client requests | failed "
                  "| p99 / max latency ms | served in the last 1 s |")
            print("|---|---|---|---|---|---|---|")
            for p in phases:
                mode = "active (checks)" if p["service"] == "active-svc" else "passive (outlier)"
                out = f"{p['out_after_s']:.2f} s" if p["out_after_s"] is not None else "not within 20 s"
                print(f"| {p['phase']} ({p['service']}) | {mode} | {out} | {p['requests']} | "
                      f"{p['failed']} | {p['p99_ms']} / {p['max_ms']} | {p['served_by']} |")
            for p in phases:
                if p["critical_in_cp_s"] is not None:
                    print(f"  {p['phase']} active-svc: critical in the control plane after "
                          f"{p['critical_in_cp_s']:.2f} s, out of the agent's rotation after "
                          f"{p['out_after_s']:.2f} s")
            for p in phases:
                if p["failures"]:
                    print(f"  {p['phase']} {p['service']} failures: {p['failures']}")
            killed_failed = sum(p["failed"] for p in phases if p["phase"] == "killed")
            hung_active = next(p for p in phases if p["phase"] == "hung"
                               and p["service"] == "active-svc")["out_after_s"]
            hung_ok = hung_active is not None and hung_active <= budget
            print("\n| target | measured | verdict |\n|---|---|---|")
            print(f"| killed instance: 0 failed client requests | {killed_failed} | "
                  f"{verdict(killed_failed == 0)} |")
            print(f"| hung instance out of rotation <= interval x fall + 1 s = {budget:g} s "
                  f"(active) | {hung_active if hung_active is None else round(hung_active, 2)} s | "
                  f"{verdict(hung_ok)} |")
            results["targets"] = {"killed_failed": killed_failed, "hung_active_out_s": hung_active,
                                  "budget_s": budget}
            if args.json:
                print(f"\nresults: {save_results('failover', results)}")
    finally:
        for load in loads:
            load.stop()
        for name in list(procs.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(procs.procs[name].pid, signal.SIGCONT)
        procs.stop_all()
        if redis_proc is not None:
            embedded_redis.stop(redis_proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
