"""One data-plane worker of `meshagent run --workers N`, started by the supervisor.

A worker binds every upstream listener with SO_REUSEPORT at the address the
parent reserved, applies the snapshots the parent sends, and sends back every
STATUS_INTERVAL_S its drained metrics windows, ejection events and counters.
It never talks to the control plane and has no admin endpoint. It stops on
SIGTERM, and when the parent goes away (PR_SET_PDEATHSIG, or EOF on the channel).

The channel is a unix socketpair carrying one JSON object per line:
parent → worker `init` {parent, listen, snapshot} then `snapshot` {raw};
worker → parent `status` {index, pid, ready, applied_revision, requests,
metrics, ejections, upstreams}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from agents.runtime.agent import Agent
from agents.runtime.config import AgentConfig, load_config
from agents.runtime.eventloop import event_loop_runner
from agents.runtime.snapshot import Snapshot, parse_snapshot
from agents.runtime.upstream import UpstreamRuntime

log = logging.getLogger("meshagent.worker")

CERT_RELOAD_S = 2.0  # how soon a worker uses a certificate the parent renewed
CHANNEL_LIMIT = 64 * 1024 * 1024  # one line carries a whole snapshot
STATUS_INTERVAL_S = 0.5
PR_SET_PDEATHSIG = 1


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the parent dies; elsewhere the channel's EOF does it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def upstream_counters(runtime: UpstreamRuntime) -> dict[str, Any]:
    """Cumulative counters of one upstream, which the parent sums over its workers."""
    return {
        "service": runtime.service,
        "active": runtime.active,
        "retries_total": runtime.retries_total,
        "rate_limited_total": runtime.rate_limited_total,
        "ejections_total": runtime.outlier.ejections_total,
        "circuit_open_total": dict(runtime.circuit_open_total),
        "endpoints": [{"key": e.key, "requests": e.requests, "errors": e.errors,
                       "latency_sum_ms": e.latency_sum_ms, "buckets": list(e.buckets),
                       "active": e.active, "ejected": e.ejected}
                      for e in runtime.state.endpoints],
    }


class Worker(Agent):
    """An Agent without admin endpoint or control plane: listeners and routing only."""

    def __init__(self, config: AgentConfig, index: int) -> None:
        super().__init__(config)
        self.index = index

    async def start(self) -> None:
        self.certs.load()
        for runtime in self.upstreams:
            await self._listen(runtime, reuse_port=True)
        self.listening = True
        self._reload_certs()

    def _reload_certs(self) -> None:
        """The parent renews the certificates; a worker reads the files it writes."""
        self.certs.reload()
        asyncio.get_running_loop().call_later(CERT_RELOAD_S, self._reload_certs)

    def _apply(self, snapshot: Snapshot, *, persist: bool) -> None:
        self.certs.reload()
        super()._apply(snapshot, persist=False)  # the parent owns snapshot.json

    def status(self) -> dict[str, Any]:
        return {
            "type": "status",
            "index": self.index,
            "pid": os.getpid(),
            "ready": self.ready(),
            "applied_revision": self.snapshot.revision if self.snapshot else None,
            "requests": sum(c.requests for c in self.metrics.totals.values()),
            "metrics": self.metrics.drain(),
            "ejections": [event for u in self.upstreams for event in u.drain_events()],
            "upstreams": [upstream_counters(u) for u in self.upstreams],
        }


def with_listen(config: AgentConfig, listen: Sequence[Sequence[Any]]) -> AgentConfig:
    """The config with each upstream's port replaced by the one the parent reserved (and
    no gateway: its listeners run in the parent, agents.runtime.gateway)."""
    upstreams = tuple(dataclasses.replace(u, host=str(host), port=int(port))
                      for u, (host, port) in zip(config.upstreams, listen, strict=True))
    return dataclasses.replace(config, upstreams=upstreams, gateway=None)


async def _read_parent(worker: Worker, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        message = json.loads(line)
        if message.get("type") == "snapshot":
            # Validated by the parent already; parsed again because that is how it is applied.
            worker._apply(parse_snapshot(message["raw"]), persist=False)
            writer.write(encode(worker.status()))  # the parent learns the revision at once
    worker.request_stop()  # EOF: the parent is gone


async def _report_to_parent(worker: Worker, writer: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(STATUS_INTERVAL_S)
        writer.write(encode(worker.status()))
        await writer.drain()


async def run_worker(config_path: str, channel_fd: int, index: int) -> int:
    die_with_parent()
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=channel_fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=CHANNEL_LIMIT)
    init = json.loads(await reader.readline() or b"null")
    if not isinstance(init, dict) or os.getppid() != init.get("parent"):
        return 1  # the parent died before we could ask to die with it
    worker = Worker(with_listen(load_config(config_path), init["listen"]), index)
    if init.get("snapshot") is not None:
        worker._apply(parse_snapshot(init["snapshot"]), persist=False)
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
    await worker.start()
    writer.write(encode(worker.status()))
    tasks = [loop.create_task(_read_parent(worker, reader, writer)),
             loop.create_task(_report_to_parent(worker, writer))]
    try:
        await worker.wait_stopped()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.stop()
        with contextlib.suppress(Exception):  # the last window, if the parent still listens
            writer.write(encode(worker.status()))
            async with asyncio.timeout(1.0):
                await writer.drain()
        writer.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshagent-worker")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[w{args.index}]: %(message)s")
    with event_loop_runner() as runner:
        return runner.run(run_worker(args.config, args.channel_fd, args.index))


if __name__ == "__main__":
    sys.exit(main())
