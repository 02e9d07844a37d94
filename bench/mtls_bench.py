"""Two hops with mTLS between them: meshagent against HAProxy, and against itself in plaintext.

    python bench/mtls_bench.py [--duration 10] [--quick] [--json] [--profile]

Paths (nginx backend, `return 200 "ok"`, 1 worker):
- direct:            wrk -> backend (the baseline "added latency" is measured against)
- meshagent mTLS:    wrk -> agent A (outbound) -mTLS-> agent B (inbound) -> backend
- meshagent plain:   wrk -> agent A (outbound) -> agent B (outbound listener) -> backend
- HAProxy TLS:       wrk -> haproxy A -TLS, client cert-> haproxy B (verify required) -> backend

Each proxy runs one process with one thread (`nbthread 1`); the two hops of one path
are pinned together on CPU 0, wrk and the backend on CPU 1. The agents serve from a
snapshot and certificates written into their data dirs (a test CA made here with
`cryptography`; the control plane is a closed port), so no control plane competes for
the CPU. Targets (issue 11): meshagent mTLS >= 0.5x HAProxy TLS throughput at 64
connections; added p50 at one connection <= 2x HAProxy's; mTLS on vs off costs <= 30 %
throughput; agent RSS <= 40 MB idle with certificates loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.runtime.certs import CertStore  # noqa: E402
from agents.runtime.pki import key_pem, new_key  # noqa: E402
from agents.runtime.security import service_identity  # noqa: E402
from bench.benchlib import (  # noqa: E402
    PYTHON,
    Procs,
    WrkResult,
    agent_ready,
    closed_port,
    free_port,
    haproxy_common,
    policy,
    rss_mb,
    run_wrk,
    save_results,
    verdict,
    wait_for,
    wait_port,
    write_standalone_agent,
)
from bench.proxy_bench import profile_agent, start_nginx  # noqa: E402
from tests.agents.testca import TD, TestCA, security_doc  # noqa: E402

PROXY_CPU = "0"
LOAD_CPU = "1"
SATURATION = 64


def write_mtls_agent(workdir: Path, name: str, *, services: list[dict[str, Any]],
                     upstreams: dict[str, Any], listens: dict[str, int], admin: int,
                     inbound: int | None, ca: TestCA) -> Path:
    """agent.yaml + data_dir (snapshot with `security`, agent.json, certs/*.pem)."""
    data_dir = workdir / name / "data"
    data_dir.mkdir(parents=True)
    names = [s["name"] for s in services] or [""]
    store = CertStore(data_dir, names)
    for service in names:
        key = new_key()
        store.install(service, key_pem(key), ca.issue(key.public_key(), service_identity(TD, service),
                                             valid_s=86400))
    store.set_roots([ca.pem])
    control_plane = f"http://127.0.0.1:{closed_port()}"
    snapshot = {"revision": 1, "agent_id": name, "node": name, "report_interval_ms": 3_600_000,
                "security": security_doc([ca.pem]), "upstreams": upstreams}
    (data_dir / "snapshot.json").write_text(json.dumps(snapshot))
    (data_dir / "agent.json").write_text(json.dumps({
        "agent_id": name, "agent_token": "bench-token", "control_plane": control_plane,
        "node": name}))
    os.chmod(data_dir / "agent.json", 0o600)
    config: dict[str, Any] = {
        "control_plane": control_plane, "token": "bench", "node": name,
        "data_dir": str(data_dir), "admin": f"127.0.0.1:{admin}", "dns": "off",
        "services": services,
        "upstreams": [{"service": s, "listen": f"127.0.0.1:{port}", "protocol": "http"}
                      for s, port in listens.items()]}
    if inbound is not None:
        config["inbound"] = {"listen": f"127.0.0.1:{inbound}"}
    path = workdir / name / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(procs: Procs, name: str, config: Path, admin: int) -> int:
    proc = procs.start(name, [PYTHON, "-m", "agents.runtime.cli", "run", "-c", str(config),
                              "--log-level", "WARNING"], cpus=PROXY_CPU)
    try:
        wait_for(lambda: agent_ready(admin), 20, what=f"{name} /ready")
    except AssertionError:
        print(procs.log(name)[-3000:], file=sys.stderr)
        raise
    return proc.pid


def meshagent_mtls(procs: Procs, workdir: Path, backend: int, ca: TestCA) -> tuple[int, list[int]]:
    inbound, listen = free_port(), free_port()
    admin_b, admin_a = free_port(), free_port()
    b = write_mtls_agent(workdir, "mtls-b", services=[
        {"name": "web", "address": "127.0.0.1", "port": backend}], upstreams={}, listens={},
        admin=admin_b, inbound=inbound, ca=ca)
    a = write_mtls_agent(workdir, "mtls-a", services=[
        {"name": "bench", "address": "127.0.0.1", "port": closed_port()}], upstreams={"web": {
            "protocol": "http", "mtls": "strict", "policy": policy(resilience=None),
            "endpoints": [{"id": "web-1", "address": "127.0.0.1", "port": backend,
                           "status": "passing",
                           "inbound": {"address": "127.0.0.1", "port": inbound}}]}},
        listens={"web": listen}, admin=admin_a, inbound=None, ca=ca)
    pids = [start_agent(procs, "mtls-b", b, admin_b), start_agent(procs, "mtls-a", a, admin_a)]
    wait_port(listen)
    return listen, pids


def meshagent_plain(procs: Procs, workdir: Path, backend: int) -> tuple[int, list[int]]:
    pids: list[int] = []
    target = backend
    listen = 0
    for name in ("plain-b", "plain-a"):  # b in front of the backend, a in front of b
        listen, admin = free_port(), free_port()
        (workdir / name).mkdir()
        config = write_standalone_agent(
            workdir / name, upstreams={"web": {"protocol": "http",
                                               "policy": policy(resilience=None)}},
            listens={"web": listen}, admin_port=admin, backends={"web": [target]})
        pids.append(start_agent(procs, name, config, admin))
        wait_port(listen)
        target = listen
    return listen, pids


def haproxy_tls(procs: Procs, workdir: Path, backend: int, ca: TestCA) -> tuple[int, list[int]]:
    """haproxy A (http in, TLS with a client certificate out) -> haproxy B (TLS in, client
    certificate verified against the CA) -> backend."""
    def pem(name: str) -> Path:
        key = new_key()
        from cryptography.hazmat.primitives import serialization
        body = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
        body += ca.issue(key.public_key(), service_identity(TD, name), valid_s=86400)
        path = workdir / f"haproxy-{name}.pem"
        path.write_text(body)
        return path

    ca_file = workdir / "haproxy-ca.pem"
    ca_file.write_text(ca.pem)
    front, middle = free_port(), free_port()
    server_pem, client_pem = pem("web"), pem("bench")
    common = haproxy_common("    ssl-default-bind-options ssl-min-ver TLSv1.2")
    b = workdir / "haproxy-b.cfg"
    b.write_text(common + f"""
frontend fe
    bind 127.0.0.1:{middle} ssl crt {server_pem} ca-file {ca_file} verify required
    default_backend be
backend be
    server s1 127.0.0.1:{backend}
""")
    a = workdir / "haproxy-a.cfg"
    a.write_text(common + f"""
frontend fe
    bind 127.0.0.1:{front}
    default_backend be
backend be
    server s1 127.0.0.1:{middle} ssl crt {client_pem} ca-file {ca_file} verify required
""")
    pids = [procs.start("haproxy-b", ["haproxy", "-db", "-f", str(b)], cpus=PROXY_CPU).pid]
    wait_port(middle)
    pids.append(procs.start("haproxy-a", ["haproxy", "-db", "-f", str(a)], cpus=PROXY_CPU).pid)
    wait_port(front)
    return front, pids


def measure(port: int, duration: float) -> dict[str, WrkResult]:
    url = f"http://127.0.0.1:{port}/"
    return {"c64": run_wrk(url, connections=SATURATION, duration=duration, cpus=LOAD_CPU),
            "c1": run_wrk(url, connections=1, duration=duration, cpus=LOAD_CPU)}


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="2 s runs (a smoke run)")
    parser.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    parser.add_argument("--profile", action="store_true",
                        help="then py-spy each mTLS agent under saturation (hottest functions)")
    args = parser.parse_args()
    duration = 2.0 if args.quick else args.duration
    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install -y nginx haproxy wrk)", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="meshbench-mtls-"))
    procs = Procs(workdir)
    ca = TestCA("bench root")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "duration_s": duration, "load": os.getloadavg()}
    try:
        backend = free_port()
        start_nginx(procs, workdir, "backend", f"""
    server {{
        listen 127.0.0.1:{backend} reuseport backlog=4096;
        location / {{ return 200 "ok"; }}
    }}""", backend, LOAD_CPU)
        paths: dict[str, dict[str, WrkResult]] = {"direct": measure(backend, duration)}
        rss: dict[str, float] = {}
        profiles: dict[str, list[tuple[str, float, float]]] = {}
        for name, start in (("meshagent-mtls", lambda: meshagent_mtls(procs, workdir, backend, ca)),
                            ("meshagent-plain", lambda: meshagent_plain(procs, workdir, backend)),
                            ("haproxy-tls", lambda: haproxy_tls(procs, workdir, backend, ca))):
            port, pids = start()
            if name.startswith("meshagent"):
                time.sleep(0.5)
                rss[name] = max(rss_mb(pid) for pid in pids)  # idle, certificates loaded
            paths[name] = measure(port, duration)
            if args.profile and name == "meshagent-mtls":
                profiles = {side: profile_agent(pid, f"http://127.0.0.1:{port}/",
                                                min(duration, 10), f"mtls-{side}")
                            for side, pid in (("inbound", pids[0]), ("outbound", pids[1]))}
            for proc in list(procs.procs):
                if proc != "backend":
                    procs.stop(proc)
    finally:
        procs.stop_all()
    direct = paths["direct"]
    print(f"{'path':<18}{'rps@64':>12}{'p50@1 ms':>11}{'added p50':>11}{'p99@64 ms':>11}"
          f"{'errors':>8}")
    for name, r in paths.items():
        added = r["c1"].p50_ms - direct["c1"].p50_ms
        print(f"{name:<18}{r['c64'].rps:>12.0f}{r['c1'].p50_ms:>11.3f}{added:>11.3f}"
              f"{r['c64'].p99_ms:>11.3f}{r['c64'].errors + r['c1'].errors:>8}")
    mtls, plain, hap = paths["meshagent-mtls"], paths["meshagent-plain"], paths["haproxy-tls"]
    ratio = mtls["c64"].rps / hap["c64"].rps
    added_mesh = mtls["c1"].p50_ms - direct["c1"].p50_ms
    added_hap = max(hap["c1"].p50_ms - direct["c1"].p50_ms, 1e-6)
    cost = 1 - mtls["c64"].rps / plain["c64"].rps
    targets = [
        (f"mTLS rps / HAProxy TLS rps at 64 conns = {ratio:.2f} (>= 0.5)", ratio >= 0.5),
        (f"added p50 at 1 conn: {added_mesh:.3f} ms vs HAProxy {added_hap:.3f} ms = "
         f"{added_mesh / added_hap:.2f}x (<= 2x)", added_mesh <= 2 * added_hap),
        (f"mTLS on vs off throughput cost = {cost * 100:.1f} % (<= 30 %)", cost <= 0.30),
        (f"agent RSS idle with certificates = {rss['meshagent-mtls']:.1f} MB (<= 40 MB)",
         rss["meshagent-mtls"] <= 40),
    ]
    for text, ok in targets:
        print(f"  {verdict(ok):<7} {text}")
    for side, hot in profiles.items():
        print(f"profile, mTLS agent {side} (self %, total %, function):")
        for function, own, total in hot:
            print(f"  {own:5.1f} {total:5.1f}  {function}")
    results.update({"paths": {n: {k: v.as_dict() for k, v in r.items()} for n, r in paths.items()},
                    "rss_mb": rss, "targets": [{"text": t, "met": ok} for t, ok in targets]})
    if args.json:
        print(f"saved {save_results('mtls', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
