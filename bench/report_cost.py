"""What one steady agent report costs the control plane, in process (issue 10).

    python bench/report_cost.py [--agents 50] [--reports 500] [--backend sqlite pg] [--json]

Enrolls AGENTS agents through the API (Django's test client, the real view,
middleware and serializer; no server, no sockets), each with one or two local
services, sends each a first report (its registrations) and a second one, then
REPORTS steady reports (round robin over the agents; nothing changed since the
last one: the same services, the applied revision, one traffic window as the
fleet's simulated agents send) and prints per steady report:

- SQL statements (django.test.utils.CaptureQueriesContext, SAVEPOINTs included),
  of which writes (INSERT/UPDATE/DELETE);
- commits: outermost transaction commits plus writes run in autocommit (each
  its own transaction) — the round trips that wait for the disk;
- median and p95 milliseconds per report (a second pass, without the capture),
  and the median CPU milliseconds of this process per report (its Python and
  SQLite's work; PostgreSQL's own is in another process).

Each backend runs in a child process of its own (Django's settings are per
process): `sqlite`, a fresh file in a temporary data dir (the embedded
default: WAL, IMMEDIATE writers); `pg`, a fresh database on the server of
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), dropped
afterwards. Redis (the cache, the metrics stream): REDIS_URL, default
redis://127.0.0.1:6379/13. Figures are of one process on a shared machine:
compare runs of the same machine and load, not with other hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
UPSTREAM = "cost-upstream"
# A write: INSERT/UPDATE/DELETE, or a WITH whose statements write (after any SET LOCAL).
WRITE = re.compile(r"\s*(SET\b[^;]*;\s*)?(INSERT|UPDATE|DELETE|WITH\b.*\b(INSERT|UPDATE|DELETE)\b)",
                   re.IGNORECASE | re.DOTALL)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _services(index: int) -> list[dict[str, Any]]:
    """One or two local services (every third agent runs two)."""
    count = 2 if index % 3 == 0 else 1
    return [
        {"name": f"cost-svc-{(index + k) % 20:02d}", "protocol": "http",
         "address": f"10.{index // 250}.{index % 250}.{k + 1}", "port": 8080 + k,
         "tags": ["v1"], "metadata": {}, "weight": 100,
         "check": {"type": "tcp", "path": "/health", "interval": "5s", "timeout": "2s",
                   "rise": 2, "fall": 3}}
        for k in range(count)
    ]


def _child(agents: int, reports: int, profile: str = "") -> dict[str, Any]:
    """Runs with the backend's environment: migrate, enroll, measure."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from rest_framework.test import APIClient

    from agents.api.views import EnrollThrottle
    from agents.enrollment import enrollment_token_create
    from agents.runtime import __version__
    from registry.models import MeshRevision

    setup_test_environment()  # ALLOWED_HOSTS for the test client's "testserver"
    call_command("migrate", verbosity=0)
    # Not about throttling: 60 enrollments a minute from one address is the real limit.
    EnrollThrottle.allow_request = lambda self, request, view: True  # type: ignore[method-assign]

    token = enrollment_token_create()
    fleet: list[tuple[APIClient, str, list[dict[str, Any]]]] = []
    for i in range(agents):
        client = APIClient()
        upstreams = [{"service": UPSTREAM, "protocol": "http", "listen": "127.0.0.1:9101",
                      "source": f"cost-svc-{i % 20:02d}"}]
        response = client.post("/api/v1/agents/enroll/", {
            "token": token, "agent_token": secrets.token_urlsafe(32),
            "node": f"cost-node-{i:05d}", "zone": "zone-1", "version": __version__,
            "upstreams": upstreams}, format="json")
        assert response.status_code in (200, 201), response.content
        body = response.json()
        client.credentials(HTTP_AUTHORIZATION=f"Agent {body['agent_token']}")
        fleet.append((client, body["agent_id"], upstreams))

    def report(i: int) -> Any:
        client, agent_id, upstreams = fleet[i % len(fleet)]
        payload = {
            "version": __version__, "applied_revision": MeshRevision.current(), "nack": None,
            "upstreams": upstreams, "services": _services(i % len(fleet)),
            "metrics": [{"source": upstreams[0]["source"], "destination": UPSTREAM,
                         "window_end": time.time(), "seconds": 2.0, "requests": 20,
                         "errors": 0, "latency_sum_ms": 40.0, "buckets": []}],
            "ejections": [],
        }
        response = client.post(f"/api/v1/agents/{agent_id}/report/", payload, format="json")
        assert response.status_code == 200, response.content
        return response

    for _ in range(2):  # registrations, then one more: every later report is steady
        for i in range(agents):
            report(i)

    # Counting pass. The applied revision is read before the capture (the agent knows it).
    commits = {"n": 0}
    real_commit = connection.commit

    def counting_commit() -> None:
        commits["n"] += 1
        real_commit()

    autocommit_writes = {"n": 0}

    def outside_atomic(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not connection.in_atomic_block and WRITE.match(sql):
            autocommit_writes["n"] += 1
        return execute(sql, params, many, context)

    statements: list[int] = []
    writes: list[int] = []
    per_commit: list[int] = []
    sample: list[str] = []
    revision = MeshRevision.current()
    connection.commit = counting_commit  # type: ignore[method-assign]
    try:
        for i in range(min(reports, 4 * agents)):
            commits["n"] = autocommit_writes["n"] = 0
            with connection.execute_wrapper(outside_atomic), \
                    CaptureQueriesContext(connection) as captured:
                report(i)
            sql = [q["sql"] for q in captured.captured_queries]
            sql = sql[1:]  # the payload's MeshRevision.current(): the agent's, not the report's
            statements.append(len(sql))
            writes.append(sum(1 for s in sql if WRITE.match(s)))
            per_commit.append(commits["n"] + autocommit_writes["n"])
            if not sample:
                sample = sql
    finally:
        del connection.commit
    if MeshRevision.current() != revision:
        raise SystemExit("a steady report moved the mesh revision: not steady")

    # Timing pass: the report's request alone (the payload is built before).
    times: list[float] = []
    cpu: list[float] = []
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    for i in range(reports):
        client, agent_id, upstreams = fleet[i % len(fleet)]
        payload = {
            "version": __version__, "applied_revision": revision, "nack": None,
            "upstreams": upstreams, "services": _services(i % len(fleet)),
            "metrics": [{"source": upstreams[0]["source"], "destination": UPSTREAM,
                         "window_end": time.time(), "seconds": 2.0, "requests": 20,
                         "errors": 0, "latency_sum_ms": 40.0, "buckets": []}],
            "ejections": [],
        }
        if profiler is not None:
            profiler.enable()
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.post(f"/api/v1/agents/{agent_id}/report/", payload, format="json")
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        if profiler is not None:
            profiler.disable()
        assert response.status_code == 200, response.content
    if profiler is not None:
        profiler.dump_stats(f"{profile}.{connection.vendor}")
    return {
        "vendor": connection.vendor,
        "agents": agents,
        "reports": reports,
        "statements": statistics.mean(statements),
        "statements_max": max(statements),
        "writes": statistics.mean(writes),
        "commits": statistics.mean(per_commit),
        "commits_max": max(per_commit),
        "median_ms": statistics.median(times),
        "p95_ms": _percentile(times, 0.95),
        "cpu_ms": statistics.median(cpu),
        "sample_sql": [s[:160] for s in sample],
    }


@contextmanager
def _pg_database(base: str) -> Any:
    import psycopg

    name = f"report_cost_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="report-cost-") as data_dir:
        env = {**os.environ, "MESH_DATA_DIR": data_dir,
               "REDIS_URL": os.environ.get("REDIS_URL", DEFAULT_REDIS),
               "MESH_CELERY_QUEUE": f"report-cost-{os.getpid()}"}
        env.pop("DATABASE_URL", None)
        command = [sys.executable, __file__, "--child", "--agents", str(args.agents),
                   "--reports", str(args.reports)]
        if args.profile:
            command += ["--profile", str(Path(args.profile).resolve())]
        if backend == "sqlite":
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        else:
            with _pg_database(os.environ.get("DATABASE_URL", DEFAULT_PG)) as url:
                out = subprocess.run(command, env={**env, "DATABASE_URL": url},
                                     capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{backend}: the measurement failed\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--reports", type=int, default=500)
    parser.add_argument("--backend", nargs="+", choices=["sqlite", "pg"], default=["sqlite", "pg"])
    parser.add_argument("--sql", action="store_true", help="print one steady report's SQL")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the timed reports into FILE.<vendor> (times include it)")
    parser.add_argument("--json", action="store_true", help="also write bench/results/")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.agents, args.reports, args.profile or "")))
        return
    results = {}
    print(f"steady report cost: {args.agents} agents (1-2 local services each), "
          f"{args.reports} steady reports, load {os.getloadavg()[0]:.1f}")
    print(f"{'backend':<10} {'statements':>10} {'writes':>7} {'commits':>8} "
          f"{'median ms':>10} {'p95 ms':>8} {'CPU ms':>7}")
    for backend in args.backend:
        r = results[backend] = _run(backend, args)
        print(f"{backend:<10} {r['statements']:>10.2f} {r['writes']:>7.2f} {r['commits']:>8.2f} "
              f"{r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['cpu_ms']:>7.2f}")
        if args.sql:
            for line in r["sample_sql"]:
                print(f"    {line}")
    if args.json:
        sys.path.insert(0, str(ROOT / "bench"))
        from benchlib import save_results

        print(f"written: {save_results('report_cost', results)}")


if __name__ == "__main__":
    main()
