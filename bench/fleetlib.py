"""Simulated meshagents and measuring helpers for bench/controlplane_bench.py.

A simulated agent makes exactly the requests agents/runtime/agent.py makes
(agents/runtime/client.py's wire format: one short-lived HTTP/1.1 connection per
call, `Authorization: Agent <token>`): enroll, a first report, then side by side
the config long-poll (`?revision=N&wait=30s`) and a report every
`report_interval_ms` (heartbeat of its local service, one metrics window,
applied revision). It also listens on its local service's port (accept, close),
so the control plane's TCP health checks pass, as they would on a real host.

Agents connect from addresses spread over 127.0.0.0/8 (127.0.a.b), ten agents
per address: a real fleet comes from many hosts, and the enrollment throttle
counts per address. Everything stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

from agents.runtime import __version__
from agents.runtime.client import Backoff

AGENTS_PER_ADDRESS = 10
CALL_TIMEOUT_S = 10.0
UPSTREAM = "fleet-up"


def source_address(index: int) -> str:
    """127.0.a.b for agent INDEX, AGENTS_PER_ADDRESS agents per address (never .0/.255)."""
    slot = index // AGENTS_PER_ADDRESS
    return f"127.0.{1 + slot // 250}.{1 + slot % 250}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    return {"n": len(values_s), "p50_ms": round(percentile(values_s, 50) * 1000, 1),
            "p95_ms": round(percentile(values_s, 95) * 1000, 1),
            "p99_ms": round(percentile(values_s, 99) * 1000, 1),
            "max_ms": round(max(values_s) * 1000, 1) if values_s else float("nan")}


class _Response:
    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


async def call(host: str, port: int, method: str, path: str, *, body: Any = None,
               token: str | None = None, local_addr: str | None = None,
               timeout: float = CALL_TIMEOUT_S) -> tuple[int, Any]:
    """One request on a fresh connection (Connection: close), as the agent's client does."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             f"User-Agent: meshagent/{__version__}", "Accept: application/json",
             "Connection: close"]
    if token:
        lines.append(f"Authorization: Agent {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(local_addr, 0) if local_addr else None)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            response = _Response()
            parser = httptools.HttpResponseParser(response)
            while not response.complete:
                data = await reader.read(65536)
                if not data:
                    break
                parser.feed_data(data)
        finally:
            writer.close()
    try:
        decoded = json.loads(bytes(response.body)) if response.body else None
    except ValueError:
        decoded = None
    return parser.get_status_code(), decoded


@dataclass
class FleetStats:
    enrolled_at: dict[int, float] = field(default_factory=dict)
    enroll_errors: dict[str, int] = field(default_factory=dict)
    reports_ok: list[tuple[float, int]] = field(default_factory=list)  # (time, agent index)
    report_errors: list[tuple[float, str]] = field(default_factory=list)
    config_errors: list[tuple[float, str]] = field(default_factory=list)
    revision: dict[int, int] = field(default_factory=dict)  # agent index -> revision held
    history: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # (t, revision)
    last_config_ok: dict[int, float] = field(default_factory=dict)

    def error(self, bucket: dict[str, int], what: str) -> None:
        bucket[what] = bucket.get(what, 0) + 1

    def holds(self, index: int, revision: int) -> None:
        now = time.monotonic()
        self.last_config_ok[index] = now
        if revision > self.revision.get(index, -1):
            self.revision[index] = revision
            self.history.setdefault(index, []).append((now, revision))

    def first_held(self, index: int, revision: int) -> float | None:
        """When agent INDEX first held REVISION or a later one (None: not yet)."""
        for t, held in self.history.get(index, ()):
            if held >= revision:
                return t
        return None


class SimAgent:
    def __init__(self, index: int, host: str, port: int, enroll_token: str, stats: FleetStats,
                 services: int) -> None:
        self.index = index
        self.host, self.port = host, port
        self.enroll_token = enroll_token
        self.stats = stats
        self.address = source_address(index)
        self.node = f"fleet-node-{index:05d}"
        self.service = f"fleet-svc-{index % services:04d}"
        self.backoff = Backoff()
        self.report_backoff = Backoff(base=1.0, cap=10.0)  # as meshagent's, for 429/503
        self.retry_in: float | None = None
        self.agent_id = ""
        self.token = ""
        # As agents/runtime/snapshot.py pending_agent_token: one proposal kept for every
        # retry, so a retried enrollment gets the same agent back (200), not a 409.
        self.proposed_token = secrets.token_urlsafe(32)
        self.applied: int | None = None
        self.report_interval = 2.0
        self.local_port = 0

    def _upstreams(self) -> list[dict[str, Any]]:
        return [{"service": UPSTREAM, "protocol": "http", "listen": "127.0.0.1:9101",
                 "source": self.service}]

    async def run(self) -> None:
        server = await asyncio.start_server(_close_at_once, self.address, 0)
        self.local_port = server.sockets[0].getsockname()[1]
        try:
            while True:
                try:
                    if not self.token:
                        await self._enroll()
                    await self._session()
                except PermissionError:
                    self.token = ""
                    await asyncio.sleep(self.backoff.next())
                except (OSError, TimeoutError, httptools.HttpParserError, RuntimeError):
                    await asyncio.sleep(self.backoff.next())
        finally:
            server.close()

    async def _enroll(self) -> None:
        body = {"token": self.enroll_token, "agent_token": self.proposed_token,
                "node": self.node, "zone": "zone-1",
                "version": __version__, "upstreams": self._upstreams()}
        try:
            status, data = await call(self.host, self.port, "POST", "/api/v1/agents/enroll/",
                                      body=body, local_addr=self.address)
        except (OSError, TimeoutError) as exc:
            self.stats.error(self.stats.enroll_errors, type(exc).__name__)
            raise
        if status not in (200, 201) or not isinstance(data, dict):
            self.stats.error(self.stats.enroll_errors, f"HTTP {status}")
            raise RuntimeError(f"enroll: HTTP {status}")
        self.agent_id, self.token = data["agent_id"], data["agent_token"]
        self.stats.enrolled_at.setdefault(self.index, time.monotonic())

    async def _session(self) -> None:
        # As meshagent: a 429/503 to a report is back-pressure, not the end of the session.
        if not await self._report():
            self.retry_in = self.report_backoff.next()
        self.backoff.reset()
        tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._report_loop())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        seen: int | None = None
        while True:
            path = f"/api/v1/agents/{self.agent_id}/config/"
            timeout = CALL_TIMEOUT_S
            if seen is not None:
                path += f"?revision={seen}&wait=30s"
                timeout += 30
            try:
                status, data = await call(self.host, self.port, "GET", path, token=self.token,
                                          local_addr=self.address, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                self.stats.config_errors.append((time.monotonic(), type(exc).__name__))
                raise
            if status in (401, 403):
                self.stats.config_errors.append((time.monotonic(), f"HTTP {status}"))
                raise PermissionError(status)
            if status != 200 or not isinstance(data, dict):
                self.stats.config_errors.append((time.monotonic(), f"HTTP {status}"))
                raise RuntimeError(f"config: HTTP {status}")
            revision = int(data.get("revision", 0))
            self.report_interval = int(data.get("report_interval_ms", 2000)) / 1000
            self.applied = revision
            self.stats.holds(self.index, revision)
            seen = revision

    async def _report_loop(self) -> None:
        while True:
            if self.retry_in is not None:  # a refused report: again after Retry-After/backoff
                delay, self.retry_in = self.retry_in, None
            else:
                delay = self.report_interval * random.uniform(0.9, 1.1)  # as meshagent
            await asyncio.sleep(delay)
            if await self._report():
                self.report_backoff.reset()
            else:
                self.retry_in = self.report_backoff.next()

    async def _report(self) -> bool:
        """One report; False when the control plane answered 429/503 (counted as an
        error, the session goes on as meshagent's does)."""

        payload = {
            "version": __version__, "applied_revision": self.applied, "nack": None,
            "upstreams": self._upstreams(),
            "services": [{"name": self.service, "protocol": "http", "address": self.address,
                          "port": self.local_port, "tags": [], "metadata": {}, "weight": 100,
                          "check": {"type": "tcp", "path": "/health", "interval": "5s",
                                    "timeout": "2s", "rise": 2, "fall": 3}}],
            "metrics": [{"source": self.service, "destination": UPSTREAM,
                         "window_end": time.time(), "seconds": self.report_interval,
                         "requests": 20, "errors": 0, "latency_sum_ms": 40.0,
                         "buckets": []}],
            "ejections": [],
        }
        path = f"/api/v1/agents/{self.agent_id}/report/"
        try:
            status, answer = await call(self.host, self.port, "POST", path, body=payload,
                                        token=self.token, local_addr=self.address)
        except (OSError, TimeoutError) as exc:
            self.stats.report_errors.append((time.monotonic(), type(exc).__name__))
            raise
        if status == 200:
            self.stats.reports_ok.append((time.monotonic(), self.index))
            # As meshagent: the answer's interval (the control plane stretches it).
            interval = answer.get("report_interval_ms") if isinstance(answer, dict) else None
            if isinstance(interval, int) and 100 <= interval <= 3_600_000:
                self.report_interval = interval / 1000
            return True
        # A 400 names its field (a control-plane bug or a bench bug: either way, say which).
        detail = f" {json.dumps(answer)[:160]}" if status == 400 else ""
        self.stats.report_errors.append((time.monotonic(), f"HTTP {status}{detail}"))
        if status in (429, 503):
            return False
        if status in (401, 403):
            raise PermissionError(status)
        raise RuntimeError(f"report: HTTP {status}")


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


# ---------------------------------------------------------------- process figures

def cpu_seconds(pid: int) -> float:
    """utime + stime of PID and its live descendants, in seconds."""
    from bench.benchlib import descendants

    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    """Threads of PID and its live descendants (the worker processes of `--workers N`)."""
    from bench.benchlib import descendants

    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    total += int(line.split()[1])
    return total


class CpuMeter:
    """CPU % of a process tree between start() and stop() (100 % = one core)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = self.c0 = 0.0

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid)

    def percent(self) -> float:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        return round(100 * (cpu_seconds(self.pid) - self.c0) / elapsed, 1)


class Sampler(threading.Thread):
    """Polls the PostgreSQL connection count of one database and the web threads; keeps maxima."""

    def __init__(self, web_pid: int, database_url: str | None) -> None:
        super().__init__(daemon=True)
        self.web_pid = web_pid
        self.database_url = database_url
        self.max_connections = 0
        self.max_threads = 0
        self.error = ""
        self._done = threading.Event()

    def run(self) -> None:
        conn = None
        dbname = ""
        if self.database_url:
            from urllib.parse import urlsplit, urlunsplit

            import psycopg

            parts = urlsplit(self.database_url)
            dbname = parts.path.lstrip("/")
            try:
                conn = psycopg.connect(urlunsplit(parts._replace(path="/postgres")),
                                       autocommit=True)
            except Exception as exc:
                self.error = str(exc)
        while not self._done.wait(0.25):
            self.max_threads = max(self.max_threads, threads(self.web_pid))
            if conn is not None:
                try:
                    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                       (dbname,)).fetchone()
                    self.max_connections = max(self.max_connections, int(row[0]) if row else 0)
                except Exception as exc:
                    self.error = str(exc)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def random_weight(previous: int) -> int:
    weight = random.randint(1, 1000)
    return weight if weight != previous else weight + 1
