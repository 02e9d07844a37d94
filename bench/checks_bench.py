"""Health checks per second per worker process, against 2,000 instances on loopback.

    python bench/checks_bench.py [--instances 2000] [--duration 10] [--quick] [--no-django]

A child process (pinned to CPU 1) listens on N loopback ports (uvloop, one
listening socket per instance) and answers each HTTP check with `200 ok` and
closes. This process (pinned to CPU 0, like one Celery worker process) runs:

1. `monitoring.checks.run_batch` over N HTTP specs and over N TCP specs, in a loop,
   with `asyncio.run` per batch as `monitoring.tasks.dispatch_due_checks` does;
2. the full worker path — `health.checks_claim_due` → `checks.run_batch` →
   `health.check_results_record` on a SQLite database in a temporary data dir
   (Django set up from the environment, embedded Redis as `meshconsole up` uses) —
   and the Celery task function itself, `monitoring.tasks.dispatch_due_checks()`.

Target: >= 1,000 checks/s per worker process.
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

from bench.benchlib import PYTHON, ROOT, save_results, verdict  # noqa: E402

TARGET = 1000.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


# ---------------------------------------------------------------- the instances (child)

class _Instance(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf and self.transport is not None:
            self.transport.write(RESPONSE)
            self.transport.close()


async def _serve(count: int, portfile: Path) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_Instance, "127.0.0.1", 0, backlog=512)
               for _ in range(count)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text("\n".join(map(str, ports)))
    tmp.rename(portfile)
    await asyncio.Event().wait()


def serve(count: int, portfile: Path) -> None:
    try:
        import uvloop

        uvloop.run(_serve(count, portfile))
    except ImportError:
        asyncio.run(_serve(count, portfile))


# ---------------------------------------------------------------- measurements

def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        raise SystemExit(f"ulimit -n is {soft}; need {need}: raise it (ulimit -n {need})")


def bench_run_batch(ports: list[int], check_type: str, duration: float) -> dict[str, Any]:
    from monitoring.checks import CheckSpec, run_batch

    specs = [CheckSpec(instance_id=f"i{i}", check_type=check_type, address="127.0.0.1",
                       port=port, path="/health", timeout_ms=2000)
             for i, port in enumerate(ports)]
    asyncio.run(run_batch(specs[:50], allow_link_local=False))  # warm-up
    done = failed = rounds = 0
    started = time.perf_counter()
    while time.perf_counter() - started < duration or rounds == 0:
        results = asyncio.run(run_batch(specs, allow_link_local=False))
        done += len(results)
        failed += sum(1 for r in results if not r.ok)
        rounds += 1
    elapsed = time.perf_counter() - started
    return {"checks": done, "failed": failed, "rounds": rounds, "seconds": round(elapsed, 2),
            "per_second": round(done / elapsed, 1)}


def setup_django(data_dir: Path) -> Any:
    """Django on a fresh SQLite file and an embedded Redis; returns the Redis process."""
    from meshconsole import embedded_redis

    redis_proc = None
    if not os.environ.get("REDIS_URL"):
        redis_proc = embedded_redis.start(data_dir, new_session=True)
        os.environ["REDIS_URL"] = embedded_redis.socket_url(data_dir)
    os.environ["MESH_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    os.environ.setdefault("MESH_CHANNEL_PREFIX", f"bench{os.getpid()}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return redis_proc


def _profile(label: str, fn: Any) -> list[dict[str, Any]]:
    """cProfile FN(); print and return the hottest functions by own time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]  # type: ignore[attr-defined]
    print(f"\nprofile, {label}: hottest functions by own time (cProfile)")
    print("| function | own % | cumulative s | calls |\n|---|---|---|---|")
    out = []
    for (path, line, name), (_cc, calls, own, cum, _callers) in rows:
        where = "/".join(Path(path).parts[-2:]) if path != "~" else "builtin"
        print(f"| {name} ({where}:{line}) | {own / total * 100:.1f} | {cum:.2f} | {calls} |")
        out.append({"function": f"{name} ({where}:{line})", "own_pct": round(own / total * 100, 1),
                    "cum_s": round(cum, 2), "calls": calls})
    ours = sorted(((k, v) for k, v in stats.stats.items()  # type: ignore[attr-defined]
                   if str(ROOT) in k[0] and "/bench/" not in k[0]),
                  key=lambda kv: kv[1][3], reverse=True)[:10]
    print("| project function | cumulative s | calls |\n|---|---|---|")
    for (path, line, name), (_cc, calls, _own, cum, _callers) in ours:
        print(f"| {name} ({Path(path).relative_to(ROOT)}:{line}) | {cum:.2f} | {calls} |")
        out.append({"function": f"{name} ({Path(path).relative_to(ROOT)}:{line})",
                    "cum_s": round(cum, 2), "calls": calls})
    return out


def bench_full_path(ports: list[int], duration: float, profile: bool = False) -> dict[str, Any]:
    from django.utils import timezone

    from monitoring import checks, health, tasks
    from registry.models import Instance, Service

    service = Service.objects.create(
        name="bench", check_type="http", check_path="/health", check_interval_ms=60_000,
        check_timeout_ms=2000, check_rise=1, check_fall=2)  # the lease outlasts a round
    Instance.objects.bulk_create(
        [Instance(service=service, address="127.0.0.1", port=port) for port in ports],
        batch_size=500)

    def one_round() -> dict[str, float]:
        Instance.objects.update(next_check_at=None)
        spent = {"claim": 0.0, "run": 0.0, "record": 0.0}
        ran = moved = 0
        while ran < len(ports):  # each instance once per round
            t0 = time.perf_counter()
            specs = health.checks_claim_due(now=timezone.now(), limit=tasks.CHECK_BATCH)
            t1 = time.perf_counter()
            if not specs:
                break
            results = asyncio.run(checks.run_batch(specs))
            t2 = time.perf_counter()
            moved += len(health.check_results_record(
                results=list(zip(specs, results, strict=True)), now=timezone.now()))
            t3 = time.perf_counter()
            spent["claim"] += t1 - t0
            spent["run"] += t2 - t1
            spent["record"] += t3 - t2
            ran += len(specs)
        total = sum(spent.values())
        return {"checks": ran, "moved": moved, "seconds": total, **spent}

    first = one_round()  # every instance "awaiting first check" -> passing: a transition each
    steady: list[dict[str, float]] = []
    started = time.perf_counter()
    while time.perf_counter() - started < duration or not steady:
        steady.append(one_round())
    checks_done = sum(r["checks"] for r in steady)
    seconds = sum(r["seconds"] for r in steady)
    phases = {k: round(sum(r[k] for r in steady) / seconds * 100, 1)
              for k in ("claim", "run", "record")}

    # The Celery task function itself (what a worker runs on each beat tick).
    task_rounds = []
    for _ in range(3):
        Instance.objects.update(next_check_at=None)
        t0 = time.perf_counter()
        ran = tasks.dispatch_due_checks()
        task_rounds.append((ran, time.perf_counter() - t0))
    task_ran = sum(r for r, _ in task_rounds)
    task_s = sum(s for _, s in task_rounds)
    passing = Instance.objects.filter(health="passing").count()
    profiles: dict[str, Any] = {}
    if profile:
        profiles["steady"] = _profile("one steady round (no transitions)", one_round)
        Instance.objects.update(health="critical", status_reason="awaiting first check",
                                consecutive_ok=0, consecutive_fail=0)
        profiles["transitions"] = _profile(f"one round with {len(ports)} transitions", one_round)
    return {
        "profiles": profiles,
        "first_round": {"checks": first["checks"], "transitions": first["moved"],
                        "seconds": round(first["seconds"], 2),
                        "per_second": round(first["checks"] / first["seconds"], 1)},
        "steady": {"checks": checks_done, "rounds": len(steady), "seconds": round(seconds, 2),
                   "per_second": round(checks_done / seconds, 1), "time_share_pct": phases},
        "task": {"checks": task_ran, "seconds": round(task_s, 2),
                 "per_second": round(task_ran / task_s, 1)},
        "passing": passing,
    }


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one steady round and one round with transitions")
    parser.add_argument("--no-django", action="store_true", help="only run_batch, no database")
    parser.add_argument("--json", action="store_true", help="also write bench/results/*.json")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--portfile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        raise_nofile(args.serve + 2000)
        serve(args.serve, args.portfile)
        return 0
    duration = 3.0 if args.quick else args.duration
    raise_nofile(args.instances + 1500)
    signal.signal(signal.SIGTERM, _terminate)  # `timeout` and friends: still clean up

    workdir = Path(tempfile.mkdtemp(prefix="meshbench-checks-"))
    portfile = workdir / "ports"
    child = subprocess.Popen(
        ["taskset", "-c", "1", PYTHON, __file__, "--serve", str(args.instances),
         "--portfile", str(portfile)], start_new_session=True, stdin=subprocess.DEVNULL)
    redis_proc = None
    try:
        deadline = time.monotonic() + 60
        while not portfile.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the instance server did not start")
            time.sleep(0.1)
        ports = [int(p) for p in portfile.read_text().split()]
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {0})  # one worker process on one core
        print(f"{len(ports)} instances listening (CPU 1); checker pinned to CPU 0; "
              f"{duration:.0f} s per measurement", flush=True)
        results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                   "instances": len(ports)}
        results["run_batch_http"] = bench_run_batch(ports, "http", duration)
        results["run_batch_tcp"] = bench_run_batch(ports, "tcp", duration)
        if not args.no_django:
            redis_proc = setup_django(workdir)
            results["full_path"] = bench_full_path(ports, duration, args.profile)

        print("\n| path | checks | failed | checks/s (1 process) | target >= 1,000/s |")
        print("|---|---|---|---|---|")
        for key, label in (("run_batch_http", "checks.run_batch, HTTP"),
                           ("run_batch_tcp", "checks.run_batch, TCP")):
            r = results[key]
            print(f"| {label} | {r['checks']} | {r['failed']} | {r['per_second']:,.0f} | "
                  f"{verdict(r['per_second'] >= TARGET)} |")
        if "full_path" in results:
            f = results["full_path"]
            print(f"| claim → run → record, first round ({f['first_round']['transitions']} "
                  f"transitions) | {f['first_round']['checks']} | - | "
                  f"{f['first_round']['per_second']:,.0f} | "
                  f"{verdict(f['first_round']['per_second'] >= TARGET)} |")
            print(f"| claim → run → record, steady (HTTP) | {f['steady']['checks']} | - | "
                  f"{f['steady']['per_second']:,.0f} | "
                  f"{verdict(f['steady']['per_second'] >= TARGET)} |")
            print(f"| tasks.dispatch_due_checks() | {f['task']['checks']} | - | "
                  f"{f['task']['per_second']:,.0f} | "
                  f"{verdict(f['task']['per_second'] >= TARGET)} |")
            share = f["steady"]["time_share_pct"]
            print(f"\nsteady full path, share of time: claim {share['claim']}%, run "
                  f"{share['run']}%, record {share['record']}%; instances passing at the end: "
                  f"{f['passing']}/{len(ports)}")
        if args.json:
            print(f"\nresults: {save_results('checks', results)}")
        return 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, 9)
        child.wait(5)
        if redis_proc is not None:
            from meshconsole import embedded_redis

            embedded_redis.stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
