"""kill -9 of a worker in the middle of an ingest batch (rows written, not
committed): the next worker stores every window once — nothing lost, nothing
doubled (monitoring/ingest.py: XACK after commit, XAUTOCLAIM, unique ingest_key)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import ROOT, python, wait_until

pytestmark = pytest.mark.timeout(180)
REPORTS = 10


def child(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([python(), "-m", "tests.e2e.ingest_child", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(tmp_path: Path) -> None:
    with control_plane(tmp_path, workers=False) as cp:
        child(cp.env, "accept", str(REPORTS))
        log = tmp_path / "worker-a.out"
        with log.open("w") as out:
            worker = subprocess.Popen(  # noqa: S603
                [python(), "-m", "tests.e2e.ingest_child", "ingest-and-hang"],
                env=cp.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )
            try:
                wait_until(lambda: "hanging" in log.read_text(), 60, what="a batch in flight")
                worker.kill()
                worker.wait(10)
            finally:
                if worker.poll() is None:
                    worker.kill()
        state = json.loads(child(cp.env, "rows"))
        assert len(state["rows"]) == 3 * 4  # the first batch (4 reports) committed, no more
        child(cp.env, "ingest")
        state = json.loads(child(cp.env, "rows"))
        expected = sorted([f"host-{r}", f"caller-{r}", 10 * r + k]
                          for r in range(REPORTS) for k in range(3))
        assert state["rows"] == expected
        assert state["backlog"] == 0
