"""`meshagent run --workers N`: a parent that owns the control plane, N proxying workers.

The parent enrolls, watches and reports exactly as the single-process Agent
does, and serves the admin endpoint; it proxies nothing. It reserves every
upstream address (a bound, never listening SO_REUSEPORT socket, so port 0
resolves once and a restarted worker can bind it again) and runs N workers
(agents.runtime.worker) that each bind those addresses with SO_REUSEPORT, so
the kernel spreads connections over them. Each applied snapshot goes to every
worker over its channel at once; workers send back their drained metrics
windows (merged per edge into the parent's, hence its reports and /metrics),
ejection events (into the parent's report) and counters (summed for /stats and
/metrics). A worker that exits is restarted with backoff; SIGTERM on the parent
stops them gracefully; workers die with the parent (PR_SET_PDEATHSIG, EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from agents.runtime.agent import Agent
from agents.runtime.config import AgentConfig, join_host_port
from agents.runtime.endpoint import Endpoint
from agents.runtime.histogram import NBUCKETS
from agents.runtime.snapshot import Snapshot
from agents.runtime.worker import CHANNEL_LIMIT, encode

log = logging.getLogger("meshagent.supervisor")

RESTART_BACKOFF_S = (0.1, 5.0)
MAX_RETIRED = 100  # statuses of exited workers kept so their counters still count


@dataclass
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    status: dict[str, Any] | None = None
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def summary(self) -> dict[str, Any]:
        status = self.status or {}
        process = self.process
        alive = process is not None and process.returncode is None
        return {"index": self.index, "pid": process.pid if process and alive else None,
                "ready": alive and bool(status.get("ready")),
                "applied_revision": status.get("applied_revision"),
                "requests": status.get("requests", 0), "restarts": self.restarts}


def reserve(host: str, port: int) -> socket.socket:
    """Hold host:port for the workers without accepting on it (a bound socket never listens)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor(Agent):
    def __init__(self, config: AgentConfig, *, config_path: str, workers: int,
                 log_level: str = "INFO", **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config_path = config_path
        self.log_level = log_level
        self.workers = [WorkerHandle(i) for i in range(workers)]
        self._reserved: list[socket.socket] = []
        self._addresses: list[tuple[str, int]] = []
        self._stopping = False
        self._keepers: list[asyncio.Task[None]] = []
        self._retired: list[dict[str, Any]] = []

    async def _start_data_plane(self) -> None:
        for runtime in self.upstreams:
            host = runtime.config.host
            sock = reserve(host, runtime.config.port)
            self._reserved.append(sock)
            port = int(sock.getsockname()[1])
            self._addresses.append((host, port))
            runtime.bound = join_host_port(host, port)
        self._keepers = [asyncio.create_task(self._keep_running(h), name=f"worker-{h.index}")
                         for h in self.workers]
        await self._start_inbound()  # the inbound listener runs here; workers dial out only
        self.listening = True

    async def _keep_running(self, handle: WorkerHandle) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_BACKOFF_S[0]
        while not self._stopping:
            started = loop.time()
            try:
                code = await self._run_worker(handle)
            except Exception:
                log.exception("worker %d", handle.index)
                code = None
            if self._stopping:
                return
            handle.restarts += 1
            if loop.time() - started > 10:
                delay = RESTART_BACKOFF_S[0]  # it had been running well: restart promptly
            log.warning("worker %d exited (%s); restarting in %.1fs", handle.index, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF_S[1])

    async def _run_worker(self, handle: WorkerHandle) -> int:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agents.runtime.worker", "-c", self.config_path,
                "--channel-fd", str(theirs.fileno()), "--index", str(handle.index),
                "--log-level", self.log_level, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        handle.process, handle.status = process, None
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=CHANNEL_LIMIT)
        try:
            writer.write(encode({"type": "init", "parent": os.getpid(), "listen": self._addresses,
                                 "snapshot": self.snapshot.raw if self.snapshot else None}))
            handle.writer = writer
            while line := await reader.readline():
                self._absorb(handle, json.loads(line))
        except (ConnectionError, ValueError) as exc:
            log.warning("worker %d channel: %s", handle.index, exc)
        finally:
            handle.writer = None
            writer.close()
            if process.returncode is None and not self._stopping:
                process.kill()  # a worker we cannot talk to gets no snapshots: replace it
            code = await process.wait()
            if handle.status is not None:
                self._retired = [*self._retired, handle.status][-MAX_RETIRED:]
                handle.status = None
        return code

    def _absorb(self, handle: WorkerHandle, message: dict[str, Any]) -> None:
        if message.get("type") != "status":
            return
        self.metrics.merge(message.pop("metrics", ()))
        by_service = {u.service: u for u in self.upstreams}
        for event in message.pop("ejections", ()):
            runtime = by_service.get(event.get("service"))
            if runtime is not None:
                runtime.outlier.events.append(event)  # drained into the next report
        handle.status = message

    def _apply(self, snapshot: Snapshot, *, persist: bool) -> None:
        super()._apply(snapshot, persist=persist)
        line = encode({"type": "snapshot", "raw": snapshot.raw})
        for handle in self.workers:
            if handle.writer is not None:
                handle.writer.write(line)

    async def stop(self, grace_s: float | None = None) -> None:
        grace_s = self.drain_s if grace_s is None else grace_s
        self._stopping = True
        self.listening = False
        for handle in self.workers:
            if handle.alive:
                assert handle.process is not None
                with contextlib.suppress(ProcessLookupError):
                    handle.process.terminate()  # workers drain their requests, then exit
        if self._keepers:
            _, late = await asyncio.wait(self._keepers, timeout=grace_s + 2.0)
            for handle in self.workers:
                if handle.alive:
                    assert handle.process is not None
                    with contextlib.suppress(ProcessLookupError):
                        handle.process.kill()
            if late:
                await asyncio.wait(late, timeout=2.0)
        for sock in self._reserved:
            sock.close()
        await super().stop(grace_s=0.0)

    # admin: the workers' view, summed
    def ready(self) -> bool:
        return super().ready() and all(h.summary()["ready"] for h in self.workers)

    def stats(self) -> dict[str, Any]:
        self._fold()
        return {**super().stats(), "workers": [h.summary() for h in self.workers]}

    def prometheus(self) -> str:
        self._fold()
        return super().prometheus()

    def _endpoints(self) -> list[tuple[str, tuple[Endpoint, ...]]]:
        self._fold()  # the workers' counts are the parent's endpoint counters once folded
        return super()._endpoints()

    def _fold(self) -> None:
        """Set the parent's upstream and endpoint counters to the sum over all workers."""
        statuses = [*self._retired, *(h.status for h in self.workers if h.status)]
        for runtime in self.upstreams:
            rows = [u for s in statuses for u in s.get("upstreams", ())
                    if u.get("service") == runtime.service]
            runtime.active = sum(u["active"] for u in rows)
            runtime.retries_total = sum(u["retries_total"] for u in rows)
            runtime.rate_limited_total = sum(u["rate_limited_total"] for u in rows)
            runtime.outlier.ejections_total = sum(u["ejections_total"] for u in rows)
            circuit: dict[str, int] = {}
            for u in rows:
                for which, count in u["circuit_open_total"].items():
                    circuit[which] = circuit.get(which, 0) + count
            runtime.circuit_open_total = circuit
            endpoints = {e.key: e for e in runtime.state.endpoints}
            for e in endpoints.values():
                e.requests = e.errors = e.active = 0
                e.latency_sum_ms, e.buckets, e.ejected = 0.0, [0] * NBUCKETS, False
            for u in rows:
                for row in u["endpoints"]:
                    found = endpoints.get(row["key"])
                    if found is None:
                        continue
                    e = found
                    e.requests += row["requests"]
                    e.errors += row["errors"]
                    e.active += row["active"]
                    e.latency_sum_ms += row["latency_sum_ms"]
                    e.buckets = [a + b for a, b in zip(e.buckets, row["buckets"], strict=False)]
                    e.ejected = e.ejected or row["ejected"]
