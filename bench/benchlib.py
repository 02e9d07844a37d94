"""Shared helpers for the benchmarks: ports, pinned child processes, wrk, a standalone agent.

Every child runs in its own session (process group) and is killed by its pid at
the end; nothing listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.procs import Processes as Procs  # noqa: F401  (re-exported for the benches)
from tests.e2e.procs import free_port
from tests.e2e.procs import wait_until as wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable


def haproxy_common(global_extra: str = "") -> str:
    """The `global` and `defaults` sections every bench's HAProxy runs with: one
    thread (as each proxy compared gets one core), HTTP mode, connection reuse."""
    return f"""
global
    nbthread 1
    maxconn 8000
{global_extra}
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
"""


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    return free_port()


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


# ---------------------------------------------------------------- wrk

@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int

    def as_dict(self) -> dict[str, float]:
        return {"rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 3),
                "p99_ms": round(self.p99_ms, 3), "errors": self.errors, "requests": self.requests}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"cannot parse wrk duration {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return WrkResult(rps, p50, p99, errors, total)


def run_wrk(url: str, *, connections: int, duration: float, cpus: str = "1",
            warmup: float = 1.0) -> WrkResult:
    """wrk with one thread pinned to CPUS; a short warm-up first (fills pools, JITs nothing)."""
    base = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", "--latency", "--timeout", "5s"]
    if warmup > 0:
        subprocess.run([*base, f"-d{max(1, round(warmup))}s", url], capture_output=True,
                       text=True, timeout=warmup + 30, check=False)
    out = subprocess.run([*base, f"-d{max(1, round(duration))}s", url], capture_output=True,
                         text=True, timeout=duration + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    return parse_wrk(out.stdout)


# ---------------------------------------------------------------- meshagent, standalone

def policy(*, resilience: bool | None) -> dict[str, Any]:
    """The snapshot policy: None = the defaults (no resilience keys), True = on, False = off."""
    base: dict[str, Any] = {"load_balancer": "round_robin", "connect_timeout_ms": 1000,
                            "request_timeout_ms": 15000}
    if resilience is None:
        return base
    if resilience:
        base.update(
            retries={"attempts": 2, "per_try_timeout_ms": 0,
                     "on": ["connect-failure", "reset", "gateway-error"],
                     "backoff_base_ms": 25, "backoff_max_ms": 250, "budget_percent": 20,
                     "min_per_second": 3},
            outlier={"consecutive_5xx": 5, "consecutive_gateway": 3, "base_ejection_ms": 30000,
                     "max_ejection_percent": 50},
            circuit_breaker={"max_connections": 100000, "max_pending": 100000,
                             "max_requests": 100000},
        )
    else:
        base.update(
            retries={"attempts": 0, "per_try_timeout_ms": 0, "on": [],
                     "backoff_base_ms": 25, "backoff_max_ms": 250, "budget_percent": 20,
                     "min_per_second": 3},
            outlier={"consecutive_5xx": 0, "consecutive_gateway": 0, "base_ejection_ms": 30000,
                     "max_ejection_percent": 50},
            circuit_breaker={"max_connections": 0, "max_pending": 0, "max_requests": 0},
        )
    return base


def write_standalone_agent(workdir: Path, *, upstreams: dict[str, dict[str, Any]],
                           listens: dict[str, int], admin_port: int,
                           backends: dict[str, list[int]]) -> Path:
    """agent.yaml + data_dir/{snapshot,agent}.json for an agent whose control plane is a
    closed port: it serves from the snapshot we wrote. Returns the agent.yaml path.

    upstreams: service -> {"protocol": ..., "policy": {...}}; listens: service -> port;
    backends: service -> backend ports on 127.0.0.1."""
    data_dir = workdir / "agent-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    control_plane = f"http://127.0.0.1:{closed_port()}"
    snapshot = {
        "revision": 1, "agent_id": "bench-agent", "node": "bench", "zone": "zone-1",
        "report_interval_ms": 3_600_000,
        "upstreams": {
            name: {"protocol": spec["protocol"], "policy": spec["policy"],
                   "failover": {"active_target": "", "reason": ""},
                   "endpoints": [{"id": f"{name}-{i}", "address": "127.0.0.1", "port": port,
                                  "weight": 100, "zone": "zone-1", "priority": 0,
                                  "status": "passing"}
                                 for i, port in enumerate(backends[name])]}
            for name, spec in upstreams.items()
        },
    }
    (data_dir / "snapshot.json").write_text(json.dumps(snapshot))
    identity = {"agent_id": "bench-agent", "agent_token": "bench-token",
                "control_plane": control_plane, "node": "bench"}
    (data_dir / "agent.json").write_text(json.dumps(identity))
    os.chmod(data_dir / "agent.json", 0o600)
    config = {
        "control_plane": control_plane, "token": "bench", "node": "bench", "zone": "zone-1",
        "data_dir": str(data_dir), "admin": f"127.0.0.1:{admin_port}", "services": [],
        "upstreams": [{"service": name, "listen": f"127.0.0.1:{listens[name]}",
                       "protocol": spec["protocol"], "source": "bench"}
                      for name, spec in upstreams.items()],
    }
    path = workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def http_get_json(port: int, path: str, timeout: float = 2.0) -> tuple[int, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def agent_ready(admin_port: int) -> bool:
    with contextlib.suppress(OSError):
        return http_get_json(admin_port, "/ready", 1.0)[0] == 200
    return False


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


def rss_mb(pid: int) -> float:
    """VmRSS of PID and its descendants (workers, if the agent forks any), in MB."""
    total_kb = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def save_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"
