"""An agent restarted under load: real `meshagent run` processes, a paced keep-alive client.

Shared by tests/agents/test_runtime_restart.py (the handover restart must lose
nothing) and bench/agent_restart.py (both kinds of restart, counted, against
any checkout). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.agents.backends import (
    Backend,
    FakeControlPlane,
    HttpClient,
    fetch,
    free_port,
    upstream_entry,
)
from tests.agents.test_runtime_cli import write_config

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 8
RATE = 200.0  # requests per second over all connections
REPLY_TIMEOUT_S = 5.0


@dataclass
class Load:
    """CONNECTIONS keep-alive clients, RATE requests/s in all. A request fails when it gets
    no complete 200: refused connection, reset, EOF, timeout. Nothing is retried; a
    `Connection: close` answer (a draining agent's) is honoured by reconnecting."""

    port: int
    ok: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(CONNECTIONS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def served(self, more: int, timeout: float = 20.0) -> None:
        """Until MORE requests beyond the current count have succeeded."""
        target = self.ok + more
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ok < target:
            assert loop.time() < deadline, f"load stalled at {self.ok} ok, {self.failed} failed"
            await asyncio.sleep(0.02)

    def _fail(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    async def _run(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        interval = CONNECTIONS / RATE
        tick = loop.time() + interval * index / CONNECTIONS
        client: HttpClient | None = None
        while not self._stop.is_set():
            tick += interval
            try:
                if client is None:
                    client = HttpClient(self.port)
                    await client.__aenter__()
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    answer = await client.request("GET", "/")
                if answer.status == 200:
                    self.ok += 1
                else:
                    self._fail(f"status {answer.status}")
                if (answer.header("connection") or "").lower() == "close":
                    await client.close()
                    client = None
            except (OSError, TimeoutError) as exc:
                self._fail(type(exc).__name__)
                if client is not None:
                    await client.close()
                client = None
            await asyncio.sleep(max(0.0, tick - loop.time()))
        if client is not None:
            await client.close()


@dataclass
class Mesh:
    cp: FakeControlPlane
    backend: Backend
    config: Path
    listen_port: int
    admin_port: int
    root: Path
    activated: list[socket.socket] = field(default_factory=list)

    def activate(self) -> None:
        """Hold the listening sockets here, as systemd does for a .socket unit."""
        for port in (self.listen_port, self.admin_port):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(1024)
            # Far from 3, 4, ... so that moving them there in the child clobbers none.
            high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100)
            sock.close()
            self.activated.append(socket.socket(fileno=high))

    async def agent(self) -> asyncio.subprocess.Process:
        """A `meshagent run`, once it says it serves (listeners and admin are up); given the
        activated sockets as systemd gives them (fds 3, 4, ...; LISTEN_PID, LISTEN_FDS)."""
        command = [sys.executable, "-m", "agents.runtime.cli", "run", "-c", str(self.config),
                   "--log-level", "WARNING"]
        fds = [s.fileno() for s in self.activated]
        if fds:
            moves = " ".join(f"{3 + i}<&{fd}" for i, fd in enumerate(fds))
            command = ["bash", "-c", f'exec {moves}; LISTEN_PID=$$ LISTEN_FDS={len(fds)} '
                       f'exec "$0" "$@"', *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, cwd=str(self.root), pass_fds=fds)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        if b"admin on" not in line:
            code = await asyncio.wait_for(process.wait(), 15)
            raise RuntimeError(f"the agent did not start (exit {code})")
        return process

    async def ready(self, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(OSError):
                if (await fetch(self.admin_port, "GET", "/ready")).status == 200:
                    return
            assert loop.time() < deadline, "the agent never became ready"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def mesh(tmp_path: Path, root: Path = ROOT) -> AsyncIterator[Mesh]:
    cp, backend = FakeControlPlane(), Backend("a")
    await cp.start()
    await backend.start()
    await cp.publish({"payments": upstream_entry(backend)})
    listen_port, admin_port = await free_port(), await free_port()
    config = write_config(tmp_path, control_plane=cp.url, admin=f"127.0.0.1:{admin_port}",
                          upstreams=[{"service": "payments",
                                      "listen": f"127.0.0.1:{listen_port}"}])
    m = Mesh(cp, backend, config, listen_port, admin_port, root)
    try:
        yield m
    finally:
        for sock in m.activated:
            sock.close()
        await backend.stop()
        await cp.stop()


async def terminate(process: asyncio.subprocess.Process, timeout: float = 30.0) -> int:
    """SIGTERM, as systemd stops a unit; the exit code once it has drained."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout)


async def kill(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def restart(m: Mesh, load: Load, mode: str) -> asyncio.subprocess.Process | None:
    """Restart the agent under LOAD; the new agent (None if it could not start).

    handover: start the new agent, then SIGTERM the old one (ExecReload-style);
    stop-start: SIGTERM the old one, wait for it to exit, start the new one
    (`systemctl restart`), which serves from the snapshot on disk at once;
    socket-activation: the same, the listening sockets held by "systemd" (this
    process) throughout."""
    if mode == "socket-activation":
        m.activate()
    old = await m.agent()
    new: asyncio.subprocess.Process | None = None
    try:
        await m.ready()
        load.start()
        await load.served(200)
        if mode == "handover":
            with contextlib.suppress(RuntimeError):
                new = await m.agent()
            await load.served(100)
            await terminate(old)
        else:
            await terminate(old)
            new = await m.agent()
        with contextlib.suppress(AssertionError):
            await load.served(300, timeout=5.0 if new is None else 20.0)
        await load.stop()
        return new
    except BaseException:
        if load._tasks and not load._stop.is_set():
            await load.stop()
        await kill(*(p for p in (old, new) if p is not None))
        raise
    finally:
        await kill(old)
