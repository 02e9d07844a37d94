"""The registry scenario of bench/controlplane_bench.py: a control plane
without Celery, a bulk-created registry, 8 concurrent readers per endpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.benchlib import PYTHON, ROOT
from bench.fleetprobes import login, read_latencies, run_subprocess


def registry(tmp: Path, args: argparse.Namespace, report: Any) -> dict[str, Any]:
    from tests.e2e.controlplane import control_plane

    out: dict[str, Any] = {"services": args.services, "instances": args.instances,
                           "edges": args.edges, "web_workers": args.web_workers}
    reg_tmp = tmp / "registry"
    reg_tmp.mkdir()
    with control_plane(reg_tmp, workers=False, web_workers=args.web_workers) as cp:
        took = run_subprocess([PYTHON, "-m", "bench.fleet_seed", str(args.services),
                               str(args.instances), str(args.edges)], cp.env, ROOT,
                              1800).strip().splitlines()[-1]
        print(f"registry: seeded {args.services} services / {args.instances} instances / "
              f"{args.edges} edges in {took}s")
        sessionid, _ = login(cp.url, "e2e", "e2e-password-1")
        token = {"Authorization": f"Token {cp.token}"}
        name = f"reg-{args.services // 2:05d}"
        scale = f"{args.services}/{args.instances}/{args.edges} edges"
        endpoints = {
            "services list (page of 100)": "/api/v1/services/?page_size=100",
            "one service": f"/api/v1/services/{name}/",
            "its instances": f"/api/v1/services/{name}/instances/",
            "discovery": f"/api/v1/discovery/{name}/",
            "filter by tag": "/api/v1/services/?tag=t7&page_size=100",
            "filter by health": "/api/v1/services/?health=critical&page_size=100",
        }
        session = {"Cookie": f"sessionid={sessionid}"}
        heavy = {"topology API": ("/api/v1/topology/", token),
                 "overview HTML": ("/", session),
                 "services page HTML (page of 100)": ("/services/", session)}
        # One untimed request per endpoint first: the shared topology (and any
        # first-use cost) is computed once per window, not per reader; the cold
        # figure is printed apart.
        for what, (path, headers) in {**{k: (v, token) for k, v in endpoints.items()},
                                      **heavy}.items():
            cold = read_latencies(cp.port, path, headers, clients=1, requests=1)
            out[f"{what} (cold, 1 request)"] = cold["p50_ms"]
            print(f"  {what}: cold {cold['p50_ms']} ms")
        for what, path in endpoints.items():
            row = read_latencies(cp.port, path, token, requests=args.requests)
            out[what] = row
            print(f"  {what}: {row}")
            report.target(f"registry {scale}: {what} p95 < 50 ms",
                          f"p95 {row['p95_ms']} ms, p50 {row['p50_ms']} ms, {row['bytes']} B, "
                          f"{row['errors']} errors", row["n"] > 0 and row["p95_ms"] < 50
                          and not row["errors"])
        for what, (path, headers) in heavy.items():
            row = read_latencies(cp.port, path, headers, requests=max(16, args.requests // 4),
                                 max_seconds=60)
            out[what] = row
            print(f"  {what}: {row}")
            report.target(f"registry {scale}: {what} p95 < 300 ms",
                          f"p95 {row['p95_ms']} ms, p50 {row['p50_ms']} ms, {row['bytes']} B, "
                          f"{row['errors']} errors", row["n"] > 0 and row["p95_ms"] < 300
                          and not row["errors"])
    return out
