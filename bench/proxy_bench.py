"""meshagent's data plane against its peers, all in one run, all pinned.

    python bench/proxy_bench.py [--duration 10] [--quick] [--profile] [--json]

Backend: nginx, 1 worker, `return 200 "ok"`, access log off. Proxies in front of
it, one worker/thread each: meshagent (HTTP and TCP listeners), HAProxy
(`nbthread 1`, `http-reuse always`, mode http and mode tcp), nginx as a proxy
(1 worker, upstream keepalive). wrk (one thread) measures each at saturation
(64 connections) and at one connection.

Pinning (2-core machine): every proxy on CPU 0, alone; wrk and the nginx backend
on CPU 1 (both C, event-driven; the backend's work is tiny next to a proxy's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import (  # noqa: E402
    PYTHON,
    RESULTS,
    Procs,
    WrkResult,
    agent_ready,
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

PROXY_CPU = "0"
LOAD_CPU = "1"
BACKEND_CPU = "1"
SATURATION = 64


def nginx_conf(workdir: Path, name: str, body: str) -> Path:
    tmp = workdir / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    conf = workdir / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
master_process off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
{body}
}}
""")
    return conf


def start_nginx(procs: Procs, workdir: Path, name: str, body: str, port: int, cpus: str) -> None:
    conf = nginx_conf(workdir, name, body)
    procs.start(name, ["nginx", "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"),
                       "-c", str(conf)], cpus=cpus)
    wait_port(port)


def start_haproxy(procs: Procs, workdir: Path, http_port: int, tcp_port: int,
                  backend: int) -> None:
    conf = workdir / "haproxy.cfg"
    conf.write_text(haproxy_common() + f"""
frontend fe_http
    bind 127.0.0.1:{http_port}
    default_backend be_http

backend be_http
    server s1 127.0.0.1:{backend}

frontend fe_tcp
    mode tcp
    bind 127.0.0.1:{tcp_port}
    default_backend be_tcp

backend be_tcp
    mode tcp
    server s1 127.0.0.1:{backend}
""")
    procs.start("haproxy", ["haproxy", "-db", "-f", str(conf)], cpus=PROXY_CPU)
    wait_port(http_port)
    wait_port(tcp_port)


def start_agent(procs: Procs, workdir: Path, name: str, upstreams: dict[str, dict[str, Any]],
                backend: int) -> tuple[int, dict[str, int]]:
    """A standalone meshagent serving from a snapshot we wrote; returns (pid, listen ports)."""
    agent_dir = workdir / name
    agent_dir.mkdir()
    listens = {service: free_port() for service in upstreams}
    admin = free_port()
    config = write_standalone_agent(agent_dir, upstreams=upstreams, listens=listens,
                                    admin_port=admin,
                                    backends={service: [backend] for service in upstreams})
    proc = procs.start(name, [PYTHON, "-m", "agents.runtime.cli", "run", "-c", str(config),
                              "--log-level", "WARNING"], cpus=PROXY_CPU)
    try:
        wait_for(lambda: agent_ready(admin), 20, what=f"{name} /ready")
    except AssertionError:
        print(procs.log(name)[-3000:], file=sys.stderr)
        raise
    for port in listens.values():
        wait_port(port)
    return proc.pid, listens


def get_once(sock: socket.socket) -> None:
    """One keep-alive GET / on SOCK, response read whole (Content-Length framed)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected answer {head[:40]!r}")


def rss_with_connections(pid: int, port: int, count: int) -> tuple[float, int]:
    """RSS (MB) of the agent holding COUNT keep-alive client connections that each did a request."""
    socks: list[socket.socket] = []
    failed = 0
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                get_once(sock)
            except OSError:
                failed += 1
            socks.append(sock)
        time.sleep(1.0)
        # every connection still open and usable: ask once more on a sample
        for sock in socks[:: max(1, count // 20)]:
            get_once(sock)
        return rss_mb(pid), failed
    finally:
        for sock in socks:
            sock.close()


def profile_agent(pid: int, url: str, duration: float, name: str = "agent"
                  ) -> list[tuple[str, float, float]]:
    """py-spy while wrk saturates URL (through the agent PID); returns (function, self %,
    total %) hottest first; the raw stacks and a flame graph go to results/profile-NAME.*."""
    pyspy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not installed (/work/venv/bin/pip install py-spy): no profile")
        return []
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-{name}.txt"
    svg = RESULTS / f"profile-{name}.svg"
    secs = str(max(2, round(duration)))
    rec = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", secs, "--rate", "250",
                            "--format", "raw", "-o", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec_svg = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", secs,
                                "--rate", "100", "-o", str(svg), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_wrk(url, connections=SATURATION, duration=duration + 1, cpus=LOAD_CPU, warmup=0)
    finally:
        for p in (rec, rec_svg):
            try:
                p.wait(duration + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    if not raw.exists():
        return []
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[_frame(frames[-1])] += count
        for name in {_frame(f) for f in frames}:
            total[name] += count
    if not samples:
        return []
    print(f"profile: {samples} samples -> {raw} and {svg}")
    return [(name, 100 * n / samples, 100 * total[name] / samples)
            for name, n in own.most_common(15)]


def _frame(frame: str) -> str:
    # py-spy raw frames look like "data_received (agents/runtime/proxy_http.py:81)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    short = "/".join(Path(path).parts[-2:]) if path else where
    return f"{name} ({short})"


def resilience_support() -> str:
    """Whether the agent's snapshot parser knows the resilience keys (else they are ignored)."""
    try:
        import dataclasses

        from agents.runtime import snapshot

        names = {f.name for f in dataclasses.fields(snapshot.Policy)}
    except Exception as exc:  # the runtime is being edited: say so, do not crash
        return f"unknown ({type(exc).__name__})"
    keys = [k for k in ("retries", "outlier", "circuit_breaker") if k in names]
    return ", ".join(keys) if keys else "none (policy keys ignored by this agent build)"


def row(name: str, r: WrkResult | None, direct: WrkResult | None = None,
        ref: WrkResult | None = None) -> str:
    if r is None:
        return f"| {name:<26} | {'n/a':>10} | {'':>9} | {'':>9} | {'':>9} | {'':>10} | {'':>6} |"
    added = f"{r.p50_ms - direct.p50_ms:+.3f}" if direct is not None else ""
    ratio = f"{r.rps / ref.rps:.2f}x" if ref is not None and ref.rps else ""
    return (f"| {name:<26} | {r.rps:>10,.0f} | {r.p50_ms:>9.3f} | {r.p99_ms:>9.3f} | "
            f"{added:>9} | {ratio:>10} | {r.errors:>6} |")


HEADER = (f"| {'target':<26} | {'req/s':>10} | {'p50 ms':>9} | {'p99 ms':>9} | "
          f"{'+p50 ms':>9} | {'vs HAProxy':>10} | {'errors':>6} |\n"
          f"|{'-' * 28}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 12}|{'-' * 8}|")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 200 connections for RSS")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the agent under saturation (always done when a target is missed)")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    args = parser.parse_args()
    duration = 3.0 if args.quick else args.duration
    rss_conns = 200 if args.quick else 1000
    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install -y nginx haproxy wrk)", file=sys.stderr)
            return 2

    load0 = os.getloadavg()
    signal.signal(signal.SIGTERM, _terminate)  # `timeout` and friends: still clean up
    workdir = Path(tempfile.mkdtemp(prefix="meshbench-proxy-"))
    procs = Procs(workdir)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "duration_s": duration, "pinning": {
                                   "proxy": PROXY_CPU, "wrk": LOAD_CPU, "backend": BACKEND_CPU}}
    try:
        backend = free_port()
        start_nginx(procs, workdir, "backend", f"""
    server {{
        listen 127.0.0.1:{backend} reuseport backlog=4096;
        location / {{ return 200 "ok"; }}
    }}""", backend, BACKEND_CPU)
        nginx_proxy = free_port()
        start_nginx(procs, workdir, "nginx-proxy", f"""
    upstream be {{
        server 127.0.0.1:{backend};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{nginx_proxy} backlog=4096;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""", nginx_proxy, PROXY_CPU)
        hap_http, hap_tcp = free_port(), free_port()
        start_haproxy(procs, workdir, hap_http, hap_tcp, backend)
        agent_pid, listens = start_agent(procs, workdir, "agent", {
            "web": {"protocol": "http", "policy": policy(resilience=None)},
            "webtcp": {"protocol": "tcp", "policy": policy(resilience=None)},
        }, backend)

        # memory first, on a fresh agent
        time.sleep(1.0)
        rss_idle = rss_mb(agent_pid)
        rss_loaded, rss_failed = rss_with_connections(agent_pid, listens["web"], rss_conns)
        results["rss"] = {"idle_mb": round(rss_idle, 1), "connections": rss_conns,
                          "with_connections_mb": round(rss_loaded, 1), "failed": rss_failed}

        urls = {
            "direct (nginx backend)": f"http://127.0.0.1:{backend}/",
            "meshagent http": f"http://127.0.0.1:{listens['web']}/",
            "HAProxy http": f"http://127.0.0.1:{hap_http}/",
            "nginx proxy": f"http://127.0.0.1:{nginx_proxy}/",
        }
        runs: dict[str, dict[int, WrkResult]] = {}
        for conns in (SATURATION, 1):
            for name, url in urls.items():
                print(f"wrk -c{conns} {name} ...", flush=True)
                runs.setdefault(name, {})[conns] = run_wrk(
                    url, connections=conns, duration=duration, cpus=LOAD_CPU)
        tcp: dict[str, WrkResult] = {}
        for name, url in (("meshagent tcp", f"http://127.0.0.1:{listens['webtcp']}/"),
                          ("HAProxy tcp", f"http://127.0.0.1:{hap_tcp}/")):
            print(f"wrk -c{SATURATION} {name} ...", flush=True)
            tcp[name] = run_wrk(url, connections=SATURATION, duration=duration, cpus=LOAD_CPU)
        procs.stop("agent")

        # Alternated off/on/off/on, fresh agent each: background load drifts, so the
        # cost compares the means of interleaved runs rather than one run each.
        resilience: dict[str, WrkResult] = {}
        for i, (label, flag) in enumerate((("off #1", False), ("on #1", True),
                                           ("off #2", False), ("on #2", True))):
            pid, ls = start_agent(procs, workdir, f"agent-res-{i}",
                                  {"web": {"protocol": "http", "policy": policy(resilience=flag)}},
                                  backend)
            print(f"wrk -c{SATURATION} meshagent resilience {label} ...", flush=True)
            resilience[label] = run_wrk(f"http://127.0.0.1:{ls['web']}/", connections=SATURATION,
                                        duration=duration, cpus=LOAD_CPU)
            procs.stop(f"agent-res-{i}")
        res_off = sum(r.rps for k, r in resilience.items() if k.startswith("off")) / 2
        res_on = sum(r.rps for k, r in resilience.items() if k.startswith("on")) / 2
        res_cost = 1 - res_on / res_off if res_off else 1.0

        # ---- report
        direct, hap = runs["direct (nginx backend)"], runs["HAProxy http"]
        agent = runs["meshagent http"]
        for conns in (SATURATION, 1):
            print(f"\nHTTP, {conns} connection{'s' if conns > 1 else ''}, {duration:.0f} s each "
                  f"(proxy on CPU {PROXY_CPU}; wrk -t1 and backend on CPU {LOAD_CPU})")
            print(HEADER)
            for name in urls:
                print(row(name, runs[name][conns], direct[conns] if name != "direct (nginx backend)"
                          else None, hap[conns]))
        print(f"\nTCP (L4), {SATURATION} connections")
        print(HEADER)
        for name, r in tcp.items():
            print(row(name, r, direct[SATURATION], tcp["HAProxy tcp"]))
        print(f"\nResilience, meshagent http, {SATURATION} connections "
              f"(agent understands: {resilience_support()})")
        print(HEADER)
        for label, r in resilience.items():
            print(row(f"resilience {label}", r, None, hap[SATURATION]))
        load1 = os.getloadavg()
        print(f"\nload average at start {load0[0]:.2f}, at end {load1[0]:.2f} (other work on "
              "the machine skews every figure)")
        results["loadavg"] = [round(load0[0], 2), round(load1[0], 2)]
        print(f"\nmeshagent RSS: idle {rss_idle:.1f} MB; with {rss_conns} open keep-alive "
              f"connections {rss_loaded:.1f} MB ({rss_failed} failed requests)")

        thr_ratio = agent[SATURATION].rps / hap[SATURATION].rps
        tcp_ratio = tcp["meshagent tcp"].rps / tcp["HAProxy tcp"].rps
        agent_added = agent[1].p50_ms - direct[1].p50_ms
        hap_added = hap[1].p50_ms - direct[1].p50_ms
        targets = [
            ("HTTP throughput >= 0.5x HAProxy (1 worker each)", f"{thr_ratio:.2f}x",
             thr_ratio >= 0.5),
            ("TCP throughput >= 0.8x HAProxy", f"{tcp_ratio:.2f}x", tcp_ratio >= 0.8),
            ("added p50 @1 conn <= 2x HAProxy's",
             f"{agent_added * 1000:.0f} us vs {hap_added * 1000:.0f} us "
             f"({agent_added / hap_added if hap_added > 0 else float('inf'):.1f}x)",
             agent_added <= 2 * max(hap_added, 0.0)),
            ("RSS idle <= 30 MB", f"{rss_idle:.1f} MB", rss_idle <= 30),
            (f"RSS with {rss_conns} conns <= 60 MB", f"{rss_loaded:.1f} MB", rss_loaded <= 60),
            ("resilience on costs <= 10%",
             f"{res_cost * 100:.1f}% (mean on {res_on:,.0f} vs mean off {res_off:,.0f} req/s)",
             res_cost <= 0.10),
        ]
        print("\n| target | measured | verdict |\n|---|---|---|")
        for name, measured, ok in targets:
            print(f"| {name} | {measured} | {verdict(ok)} |")

        results["http"] = {name: {str(c): r.as_dict() for c, r in byc.items()}
                           for name, byc in runs.items()}
        results["tcp"] = {name: r.as_dict() for name, r in tcp.items()}
        results["resilience"] = {k: r.as_dict() for k, r in resilience.items()}
        results["resilience_support"] = resilience_support()
        results["targets"] = [{"target": n, "measured": m, "met": ok} for n, m, ok in targets]

        missed = not all(ok for _, _, ok in targets[:3] + targets[5:])
        if not args.no_profile and (args.profile or missed):
            pid, ls = start_agent(procs, workdir, "agent-profile",
                                  {"web": {"protocol": "http", "policy": policy(resilience=None)}},
                                  backend)
            print(f"\nprofiling meshagent (pid {pid}) under wrk -c{SATURATION} ...", flush=True)
            hot = profile_agent(pid, f"http://127.0.0.1:{ls['web']}/", min(duration, 10))
            procs.stop("agent-profile")
            if hot:
                print("\n| function | self % | total % |\n|---|---|---|")
                for name, self_pct, total_pct in hot:
                    print(f"| {name} | {self_pct:.1f} | {total_pct:.1f} |")
            results["profile"] = [{"function": n, "self_pct": round(s, 1),
                                   "total_pct": round(t, 1)} for n, s, t in hot]
        if args.json:
            print(f"\nresults: {save_results('proxy', results)}")
        return 0
    except BaseException:
        for name in list(procs.procs):
            tail = procs.log(name)[-2000:]
            if tail.strip():
                print(f"----- {name} log -----\n{tail}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


if __name__ == "__main__":
    sys.exit(main())
