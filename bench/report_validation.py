"""What validating one agent report costs: a new DRF serializer per request against
meshconsole.api.SerializerPool (built once, reused).

    python bench/report_validation.py [--reports 2000] [--rounds 3]

A fleet agent's report as bench/fleetlib.py sends it (one local service with its
check, one upstream, one metrics window); in process, no database. Prints the best
round of each, in microseconds per report, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
os.environ.setdefault("MESH_DATA_DIR", tempfile.mkdtemp(prefix="meshbench-validation-"))

import django  # noqa: E402

django.setup()

from agents.api.serializers import ReportSerializer  # noqa: E402
from meshconsole.api import SerializerPool  # noqa: E402

REPORT = {
    "version": "0.1.0", "applied_revision": 12, "nack": None,
    "upstreams": [{"service": "fleet-up", "protocol": "http", "listen": "127.0.0.1:9101",
                   "source": "fleet-svc-0001"}],
    "services": [{"name": "fleet-svc-0001", "protocol": "http", "address": "127.0.0.1",
                  "port": 8080, "tags": [], "metadata": {}, "weight": 100,
                  "check": {"type": "tcp", "path": "/health", "interval": "5s",
                            "timeout": "2s", "rise": 2, "fall": 3}}],
    "metrics": [{"source": "fleet-svc-0001", "destination": "fleet-up",
                 "window_end": time.time(), "seconds": 10.0, "requests": 20, "errors": 0,
                 "latency_sum_ms": 40.0, "buckets": []}],
    "ejections": [],
}


def per_report_us(run: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fresh = ReportSerializer(data=REPORT)
    if not fresh.is_valid():
        print(f"the bench's report is invalid: {fresh.errors}", file=sys.stderr)
        return 1
    pool: SerializerPool[ReportSerializer] = SerializerPool(ReportSerializer)

    def new_each() -> None:
        s = ReportSerializer(data=REPORT)
        s.is_valid(raise_exception=True)

    def pooled() -> None:
        pool.validate(REPORT)

    best = {"new serializer per report": float("inf"), "SerializerPool": float("inf")}
    for _ in range(args.rounds):  # interleaved rounds, the best of each
        best["new serializer per report"] = min(best["new serializer per report"],
                                                per_report_us(new_each, args.reports))
        best["SerializerPool"] = min(best["SerializerPool"], per_report_us(pooled, args.reports))
    for name, us in best.items():
        print(f"{name:28} {us:8.1f} us/report (best of {args.rounds})")
    print(f"pool / new: {best['SerializerPool'] / best['new serializer per report']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
