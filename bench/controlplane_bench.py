"""The control plane at fleet scale (issue 10): simulated agents, a large registry,
live consoles, and etcd as the anchor for "one write, N watchers".

    python bench/controlplane_bench.py [--agents 100] [--pg] [--scenarios ...] [--json]

A real control plane (tests/e2e/controlplane.py: web + Celery worker + beat on
loopback; on the embedded defaults, SQLite and an embedded redis-server; with
`--pg`, a fresh PostgreSQL database and the Redis of REDIS_URL, default
redis://127.0.0.1:6379/15). Scenarios (all by default):

- fleet: AGENTS simulated agents (bench/fleetlib.py) start at once: time until
  all are enrolled and enroll errors; then steady reports for --steady seconds
  (accepted and errors per second); then --changes API writes (an instance
  weight of the service every agent calls), each timed from the write's return
  until every agent holds the new revision (p50/p99/max over agents and writes);
  with --restart, the web process is restarted and the time until every agent
  has fetched its config again is measured. The web process's CPU and threads,
  and the PostgreSQL connection count (max seen, from pg_stat_activity), are
  printed.
- consoles (while the fleet runs, when both are selected): --consoles
  browser-like websockets on ws/live/ (logged in through the login form,
  session cookie + Origin) subscribed to the topology and one service: one
  change -> the time until every console got it (from the write's start); then
  a burst of writes: topology messages per console per second.
- etcd: etcd (Debian etcd-server) on loopback, AGENTS watchers on one key over
  its JSON gateway (/v3/watch), one put -> when each saw it; the ratio to the
  fleet's propagation p99.
- registry: a second control plane (no Celery: 100,000 instances would be
  health-checked) with --services / --instances bulk-created; p50/p95 of the
  API reads at 8 concurrent clients, the topology API and the overview HTML.

Every target of the issue is printed with its figure and MET / MISSED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import save_results, verdict  # noqa: E402
from bench.fleet_registry import registry  # noqa: E402
from bench.fleetlib import (  # noqa: E402
    UPSTREAM,
    CpuMeter,
    FleetStats,
    Sampler,
    SimAgent,
    random_weight,
    summary_ms,
)
from bench.fleetprobes import (  # noqa: E402
    Console,
    Etcd,
    etcd_fanout,
    first_service_message,
    login,
    run_console,
    topology_per_second,
)

ALL = ("fleet", "consoles", "etcd", "registry")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=100, help="simulated agents (100, 200, 1000, 2000)")
    p.add_argument("--pg", action="store_true", help="PostgreSQL + Redis instead of the embedded "
                   "defaults (PG_URL, default postgres://postgres@127.0.0.1:5432/postgres)")
    p.add_argument("--scenarios", nargs="+", choices=ALL, default=list(ALL))
    p.add_argument("--enroll-timeout", type=float, default=120.0, help="s to wait for enrollment")
    p.add_argument("--steady", type=float, default=20.0, help="s of steady reports")
    p.add_argument("--changes", type=int, default=5, help="API writes timed to every agent")
    p.add_argument("--sync-timeout", type=float, default=40.0, help="s an agent may take per write")
    p.add_argument("--restart", action="store_true", help="restart web, time until back in sync")
    p.add_argument("--consoles", type=int, default=100)
    p.add_argument("--burst", type=int, default=20, help="writes in the console burst (over 2 s)")
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=2_000, help="caller->callee edges seeded")
    p.add_argument("--web-workers", type=int, default=1,
                   help="web processes (`meshconsole web --workers N`; `up` runs 2)")
    p.add_argument("--requests", type=int, default=80, help="requests per registry endpoint")
    p.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    p.add_argument("--keep", action="store_true",
                   help="keep the run's directory (the control plane's logs) and print it")
    p.add_argument("--profile", metavar="FILE", help="py-spy record the web process from the "
                   "steady phase to the end of the propagation phase into FILE (collapsed "
                   "stacks, `--format raw`; py-spy must be on PATH or beside the interpreter)")
    return p.parse_args()


class Report:
    def __init__(self) -> None:
        self.targets: list[tuple[str, str, bool | None]] = []
        self.data: dict[str, Any] = {}

    def target(self, what: str, figure: str, ok: bool | None) -> None:
        self.targets.append((what, figure, ok))
        mark = "(no target at this scale)" if ok is None else verdict(ok)
        print(f"  TARGET {what}: {figure} -> {mark}", flush=True)


def configure(args: argparse.Namespace, tmp: Path) -> Any:
    """The environment of the run; returns the embedded redis process (or None)."""
    if args.pg:
        os.environ["DATABASE_URL"] = os.environ.get(
            "PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
        return None
    os.environ.pop("DATABASE_URL", None)
    if os.environ.get("REDIS_URL"):
        return None
    from meshconsole import embedded_redis

    proc = embedded_redis.start(tmp, new_session=True)
    os.environ["REDIS_URL"] = embedded_redis.socket_url(tmp)
    return proc


# ---------------------------------------------------------------- fleet

async def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def fleet(cp: Any, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    n = args.agents
    out: dict[str, Any] = {"agents": n}
    status, body = cp.api("POST", "/api/v1/services/", {"name": UPSTREAM})
    assert status == 201, body
    instance_ids = []
    for port in (9001, 9002, 9003):
        status, body = cp.api("POST", f"/api/v1/services/{UPSTREAM}/instances/",
                              {"address": "127.0.0.1", "port": port, "zone": "zone-1"})
        assert status == 201, body
        instance_ids.append(body["id"])
    web_pid = cp.procs.procs["web"].pid
    sampler = Sampler(web_pid, cp.env["DATABASE_URL"] if args.pg else None)
    sampler.start()
    stats = FleetStats()
    agents = [SimAgent(i, "127.0.0.1", cp.port, cp.enroll_token, stats, max(10, n // 10))
              for i in range(n)]
    cpu = CpuMeter(web_pid)
    cpu.start()
    t0 = time.monotonic()
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        all_in = await wait_for(lambda: len(stats.enrolled_at) >= n, args.enroll_timeout)
        enrolled = len(stats.enrolled_at)
        took = (max(stats.enrolled_at.values()) - t0) if stats.enrolled_at else float("nan")
        out["enroll"] = {"enrolled": enrolled, "all_within_s": round(took, 1) if all_in else None,
                         "errors": dict(stats.enroll_errors), "web_cpu_percent": cpu.percent()}
        print(f"enroll: {enrolled}/{n} enrolled, last at {took:.1f}s, errors "
              f"{dict(stats.enroll_errors)}, web CPU {out['enroll']['web_cpu_percent']}%")
        report.target(f"{n} agents enroll within 60 s",
                      f"{enrolled}/{n} in {took:.1f} s" if all_in else f"{enrolled}/{n} after "
                      f"{args.enroll_timeout:.0f} s", (all_in and took <= 60) if n >= 2000 else None)
        # Steady state: let the first reports and their registrations settle for a moment.
        await asyncio.sleep(3)
        spy = start_profile(args.profile, web_pid)
        cpu.start()
        s0 = time.monotonic()
        ok0, err0 = len(stats.reports_ok), len(stats.report_errors)
        # The control plane stretches the interval with the fleet (registry/pacing.py):
        # watch long enough for every agent to report at least twice.
        interval = max(a.report_interval for a in agents)
        steady = max(args.steady, 2.5 * interval)
        await asyncio.sleep(steady)
        elapsed = time.monotonic() - s0
        ok = len(stats.reports_ok) - ok0
        silent = n - len({i for _, i in stats.reports_ok[ok0:]})
        errors = [e for t, e in stats.report_errors[err0:]]
        # At most one report per agent per report_interval_ms (as the control plane set it).
        expected = sum(1 / a.report_interval for a in agents)
        out["steady"] = {"seconds": round(elapsed, 1), "accepted_per_s": round(ok / elapsed, 1),
                         "report_interval_s": interval, "nominal_per_s": round(expected, 1), "agents_silent": silent, "errors_per_s": round(len(errors) / elapsed, 2),
                         "error_kinds": sorted(set(errors)), "web_cpu_percent": cpu.percent(),
                         "config_errors": len([1 for t, _ in stats.config_errors if t >= s0])}
        print(f"steady: {out['steady']}")
        report.target(f"reports all accepted at {n} agents (0 errors, none silent)",
                      f"{ok / elapsed:.1f}/s accepted (nominal {expected:.0f}/s, every "
                      f"{interval:g} s), {len(errors)} "
                      f"errors, {silent} agents without an accepted report",
                      not errors and not silent)
        # Propagation: write, then when does every agent hold the new revision?
        cpu.start()
        latencies: list[float] = []
        incomplete = 0
        weight = 100
        write_errors: list[str] = []
        for k in range(args.changes):
            weight = random_weight(weight)
            if not await write(cp, instance_ids[k % 3], weight, write_errors):
                continue
            t_write = time.monotonic()
            # The revision after the write (a later one, if something else bumped it too).
            try:
                revision = int(await asyncio.to_thread(cp_index, cp))
            except OSError as exc:  # an overloaded control plane: counted, not fatal
                write_errors.append(f"index read: {type(exc).__name__}")
                continue
            active = [a.index for a in agents if a.token]
            done = await wait_for(lambda r=revision, a=active: all(
                stats.first_held(i, r) is not None for i in a), args.sync_timeout)
            # Each agent's own arrival time (it may precede the X-Mesh-Index read).
            arrivals = [stats.first_held(i, revision) for i in active]
            got = [max(0.0, t - t_write) for t in arrivals if t is not None]
            latencies += got
            incomplete += 0 if done else len(active) - len(got)
            print(f"  write {k + 1}: revision {revision}, {len(got)}/{len(active)} agents, "
                  f"max {max(got) * 1000 if got else float('nan'):.0f} ms")
            await asyncio.sleep(1.0)
        stop_profile(spy)
        out["propagation"] = {**summary_ms(latencies), "missing": incomplete,
                              "write_errors": write_errors,
                              "web_cpu_percent": cpu.percent()}
        p99 = out["propagation"]["p99_ms"]
        print(f"propagation: {out['propagation']}")
        # The targets: 200 agents (embedded), 1,000 and 2,000 (PostgreSQL + Redis).
        limit = (1000 if n >= 200 else None) if not args.pg else (
            2000 if n >= 2000 else 1000 if n >= 1000 else None)
        report.target(f"propagation p99 at {n} agents ({'pg' if args.pg else 'embedded'})",
                      f"p99 {p99:.0f} ms, p50 {out['propagation']['p50_ms']:.0f} ms, "
                      f"{incomplete} agent-writes missing, {len(write_errors)} writes failed",
                      None if limit is None else (p99 <= limit and incomplete == 0
                                                  and not write_errors))
        if "consoles" in args.scenarios:
            # While the fleet runs and reports, as consoles are used in production.
            out["consoles"] = await consoles(cp, args, report)
        if args.restart:
            out["restart"] = await restart(cp, stats, agents)
            report.target("fleet back in sync after a web restart within 2 min",
                          f"{out['restart']['all_back_s']} s", out["restart"]["all_back_s"]
                          is not None and out["restart"]["all_back_s"] <= 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sampler.stop()
    out["web_threads_max"] = sampler.max_threads
    print(f"web process: max {sampler.max_threads} threads")
    if args.pg:
        out["pg_connections_max"] = sampler.max_connections
        bound = os.environ.get("MESH_DB_POOL_MAX")
        print(f"PostgreSQL connections to the database: max {sampler.max_connections} "
              f"{sampler.error}")
        # Processes with a pool each: 1 web, the Celery worker and its 2 pool
        # processes, beat (tests/e2e/controlplane.py).
        limit = int(bound) * 5 if bound else None
        report.target(f"PostgreSQL connections <= MESH_DB_POOL_MAX ({bound or 'unset'}) x 5 "
                      f"processes = {limit}", f"max {sampler.max_connections} seen",
                      None if limit is None else sampler.max_connections <= limit)
    return out


def start_profile(path: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the web process (sampling: it does not slow the process it reads)."""
    if not path:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "50",
                             "--nonblocking", "--subprocesses", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=20)
    except subprocess.TimeoutExpired:
        spy.kill()


async def write(cp: Any, instance: str, weight: int, errors: list[str]) -> bool:
    """PATCH an instance weight; a failed or slow (10 s) write is counted, not fatal."""
    try:
        status, body = await asyncio.to_thread(
            cp.api, "PATCH", f"/api/v1/services/{UPSTREAM}/instances/{instance}/",
            {"weight": weight})
    except OSError as exc:
        errors.append(type(exc).__name__)
        return False
    if status != 200:
        errors.append(f"HTTP {status}")
    return status == 200


def cp_index(cp: Any) -> str:
    import urllib.request

    request = urllib.request.Request(f"{cp.url}/api/v1/discovery/{UPSTREAM}/",
                                     headers={"Authorization": f"Token {cp.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["X-Mesh-Index"])


async def restart(cp: Any, stats: FleetStats, agents: list[SimAgent]) -> dict[str, Any]:
    await asyncio.to_thread(cp.procs.stop, "web")
    t0 = time.monotonic()
    await asyncio.to_thread(cp.start_web)
    up = time.monotonic() - t0
    ok = await wait_for(lambda: all(stats.last_config_ok.get(a.index, 0) > t0 for a in agents),
                        180)
    took = time.monotonic() - t0
    back = sum(1 for a in agents if stats.last_config_ok.get(a.index, 0) > t0)
    print(f"restart: web up in {up:.1f}s; {back}/{len(agents)} agents back after {took:.1f}s")
    return {"web_up_s": round(up, 1), "back": back, "all_back_s": round(took, 1) if ok else None}


# ---------------------------------------------------------------- consoles

async def consoles(cp: Any, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    sessionid, _ = await asyncio.to_thread(login, cp.url, "e2e", "e2e-password-1")
    status, page = await asyncio.to_thread(cp.api, "GET",
                                           f"/api/v1/services/{UPSTREAM}/instances/")
    rows = page["results"] if status == 200 else []
    if status == 404:
        await asyncio.to_thread(cp.api, "POST", "/api/v1/services/", {"name": UPSTREAM})
    if not rows or status != 200:
        status, body = await asyncio.to_thread(
            cp.api, "POST", f"/api/v1/services/{UPSTREAM}/instances/",
            {"address": "127.0.0.1", "port": 9001})
        rows = [body]
    instance = rows[0]["id"]
    stop = asyncio.Event()
    pool = [Console(i) for i in range(args.consoles)]
    tasks = [asyncio.create_task(run_console(c, cp.url, sessionid, UPSTREAM, stop)) for c in pool]
    out: dict[str, Any] = {"consoles": args.consoles}
    write_errors: list[str] = []
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(c.ready.wait() for c in pool))
        await asyncio.sleep(1)
        latencies: list[float] = []
        missing = 0
        weight = 100
        for _ in range(3):
            weight = random_weight(weight)
            t0 = time.monotonic()
            if not await write(cp, instance, weight, write_errors):
                continue
            await wait_for(lambda w=weight, t=t0: all(first_service_message(c, t, w) is not None
                                                      for c in pool), 10)
            got = [first_service_message(c, t0, weight) for c in pool]
            latencies += [t - t0 for t in got if t is not None]
            missing += sum(1 for t in got if t is None)
            await asyncio.sleep(1)
        out["one_change"] = {**summary_ms(latencies), "missing": missing}
        print(f"consoles, one change: {out['one_change']}")
        b0 = time.monotonic()
        for _ in range(args.burst):
            weight = random_weight(weight)
            await write(cp, instance, weight, write_errors)
            await asyncio.sleep(2.0 / args.burst)
        await asyncio.sleep(3)
        b1 = time.monotonic()
        per_second = [topology_per_second(c, b0, b1) for c in pool]
        out["burst"] = {"writes": args.burst, "seconds": round(b1 - b0, 1),
                        "max_topology_per_console_per_s": max(per_second),
                        "topology_messages": sum(1 for c in pool for t, k, _ in c.messages
                                                 if k == "topology" and b0 <= t <= b1)}
        print(f"consoles, burst: {out['burst']}")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [e for c in pool for e in c.errors]
    out["write_errors"] = write_errors
    out["errors"] = len(errors)
    out["error_kinds"] = sorted(set(errors))[:5]
    config = "pg" if args.pg else "embedded"
    report.target(f"{args.consoles} consoles, one change p99 < 250 ms ({config})",
                  f"p99 {out['one_change']['p99_ms']:.0f} ms, {out['one_change']['missing']} "
                  "missing", out["one_change"]["p99_ms"] < 250 and not out["one_change"]["missing"])
    report.target(f"burst coalesced: <= 1 topology message per console per second ({config})",
                  f"max {out['burst']['max_topology_per_console_per_s']}/s",
                  out["burst"]["max_topology_per_console_per_s"] <= 1)
    report.target(f"consoles: 0 errors ({config})", f"{len(errors)} {out['error_kinds']}; "
                  f"{len(write_errors)} API writes failed", not errors and not write_errors)
    return out


# ---------------------------------------------------------------- main

async def live(cp: Any, tmp: Path, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "fleet" in args.scenarios:
        out["fleet"] = await fleet(cp, args, report)
        if "consoles" in out["fleet"]:
            out["consoles"] = out["fleet"].pop("consoles")
    elif "consoles" in args.scenarios:
        out["consoles"] = await consoles(cp, args, report)
    return out


def etcd(tmp: Path, args: argparse.Namespace, report: Report, fleet_p99: float | None) -> Any:
    from bench.benchlib import Procs, free_port

    if not Etcd.available():
        print("etcd: not installed (apt-get install -y etcd-server etcd-client); skipped")
        return None
    procs = Procs(tmp)
    try:
        server = Etcd(tmp, procs, free_port(), free_port())
        server.start()
        runs = [asyncio.run(etcd_fanout(server.port, args.agents, server.put)) for _ in range(3)]
    finally:
        procs.stop_all()
    p99 = max(r["p99_ms"] for r in runs)
    out = {"runs": runs, "p99_ms": p99}
    print(f"etcd, {args.agents} watchers, one put: {runs}")
    if fleet_p99 is not None:
        out["ratio"] = round(fleet_p99 / p99, 1) if p99 else None
        report.target(f"ratio meshconsole/etcd propagation p99 at {args.agents} watchers",
                      f"{fleet_p99:.0f} ms / {p99:.1f} ms = {out['ratio']}x", None)
    return out


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(f"signal {s}")))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the control plane
    tmp = Path(tempfile.mkdtemp(prefix="meshbench-cp-"))
    redis_proc = configure(args, tmp)
    from meshconsole import embedded_redis
    from tests.e2e.controlplane import control_plane

    report = Report()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "pg": args.pg,
                               "agents": args.agents, "web_processes": args.web_workers,
                               "load_avg_at_start": os.getloadavg()}
    config = "PostgreSQL + Redis" if args.pg else "embedded defaults (SQLite + embedded redis)"
    print(f"configuration: {config}, {args.web_workers} web process(es), "
          f"load average {os.getloadavg()}", flush=True)
    try:
        if {"fleet", "consoles"} & set(args.scenarios):
            with control_plane(tmp, web_workers=args.web_workers) as cp:
                results.update(asyncio.run(live(cp, tmp, args, report)))
        if "etcd" in args.scenarios:
            fleet_p99 = results.get("fleet", {}).get("propagation", {}).get("p99_ms")
            results["etcd"] = etcd(tmp, args, report, fleet_p99)
        if "registry" in args.scenarios:
            results["registry"] = registry(tmp, args, report)
    finally:
        if redis_proc is not None:
            embedded_redis.stop(redis_proc)
        if args.keep:
            print(f"kept {tmp} (the control plane's logs)")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    print("\nTargets (issue 10):")
    for what, figure, ok in report.targets:
        print(f"  {'-' if ok is None else verdict(ok):7} {what}: {figure}")
    results["targets"] = [{"target": w, "figure": f, "met": ok} for w, f, ok in report.targets]
    if args.json:
        print(f"wrote {save_results('controlplane', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
