"""Listener handover between an agent and the one replacing it (zero-loss restarts).

A starting agent asks the running one (same data dir) for its listening
sockets; the old agent sends them (SCM_RIGHTS) and both accept from the same
kernel queue until the old one is told to stop. The old one then only closes
its copies: the sockets live on in the new process, so no connection waiting
in a queue is reset (separate SO_REUSEPORT sockets would each have their own
queue, and closing one resets what waits in it; the kernel's
tcp_migrate_req, which would move them, is off by default).

The rendezvous is an abstract unix socket named after the data dir (Linux;
nothing on disk to go stale, no path length limit); only a peer with our uid
gets the sockets (SO_PEERCRED). Exchange on one connection:
old → new `{"pid", "keys"}` + one fd per key; new → old `ok`; the old one
closes its rendezvous and the connection, and the new one binds the name for
its own successor. Without a predecessor every step is skipped and the agent
binds its listeners itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Protocol

from agents.runtime.config import join_host_port

log = logging.getLogger("meshagent.handover")

DRAIN_TIMEOUT_S = 10.0  # SIGTERM: how long requests and keep-alive connections get to finish
DRAIN_IDLE_S = 1.0  # stopping: a keep-alive connection idle this long is closed
MAX_FDS = 256
SD_LISTEN_FDS_START = 3
TAKE_TIMEOUT_S = 2.0
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class Listening(Protocol):
    """A listening socket as asyncio and uvloop servers expose it."""

    def fileno(self) -> int: ...


def rendezvous(data_dir: Path) -> str:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0meshagent-handover-{digest}"


def listener_key(kind: str, listen: str) -> str:
    """What a listener is known by across a restart: kind (http, tcp, admin) and the
    configured address (so a port 0 listener keeps the port its predecessor got)."""
    return f"{kind} {listen}"


def activated_sockets() -> dict[str, socket.socket]:
    """Listening sockets systemd passed to this process (socket activation: LISTEN_PID,
    LISTEN_FDS, fds from 3 on), by the address they are bound to ("127.0.0.1:9101",
    "[::1]:9101"), which a listener's `listen:` must spell the same way to use one.
    systemd keeps them open across a stop and start, so connections wait in their
    queues while no agent runs instead of being refused."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return {}
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # they are ours, not for processes we start
    found: dict[str, socket.socket] = {}
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + min(count, MAX_FDS)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or (
                sock.type != socket.SOCK_STREAM):
            sock.detach()  # not one we can serve on; left to whoever passed it
            continue
        host, port = sock.getsockname()[:2]
        found[join_host_port(str(host), int(port))] = sock
    if found:
        log.info("socket activation: %s", ", ".join(sorted(found)))
    return found


def take_over(data_dir: Path) -> dict[str, socket.socket]:
    """The listening sockets of the agent running on DATA_DIR, by key; {} if there is none."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "recv_fds"):
        return {}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TAKE_TIMEOUT_S)
    try:
        sock.connect(rendezvous(data_dir))
    except OSError:
        sock.close()
        return {}  # nobody to take over from: the usual start
    received: list[int] = []
    try:
        data, received, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS)
        message = json.loads(data)
        keys = message["keys"]
        if not isinstance(keys, list) or len(keys) != len(received):
            raise ValueError(f"{len(received)} sockets for {keys!r}")
        taken = {str(k): socket.socket(fileno=fd) for k, fd in zip(keys, received, strict=True)}
        received = []
        sock.sendall(b"ok")
        with contextlib.suppress(OSError):
            sock.recv(1)  # EOF once the old agent has let go of the rendezvous name
        log.info("took over %d listener(s) from agent pid %s", len(taken), message.get("pid"))
        return taken
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("listener handover failed (%s); binding the listeners anew", exc)
        for fd in received:
            os.close(fd)
        return {}
    finally:
        sock.close()


class HandoverServer:
    """Gives this agent's listening sockets to the next agent on the same data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.name = rendezvous(data_dir)
        self.sockets: dict[str, Listening] = {}
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "send_fds"):
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKE_TIMEOUT_S
        while True:
            try:
                sock.bind(self.name)
                break
            except OSError as exc:  # a predecessor still letting go, or another agent
                if loop.time() >= deadline:
                    sock.close()
                    log.warning("no listener handover for the next agent: %s", exc)
                    return False
                await asyncio.sleep(0.05)
        sock.listen(4)
        sock.setblocking(False)
        self._sock = sock
        self._task = loop.create_task(self._serve(sock), name="meshagent-handover")
        return True

    async def _serve(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                conn, _ = await loop.sock_accept(server)
                with conn:
                    if await self._give(conn):
                        # Let go of the name before the connection closes: the next agent
                        # binds it for its own successor when it sees the EOF.
                        server.close()
                        return
        finally:
            server.close()
            self._sock = None

    async def _give(self, conn: socket.socket) -> bool:
        loop = asyncio.get_running_loop()
        _, uid, _ = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid != os.geteuid():
            log.warning("listener handover refused to uid %d", uid)
            return False
        keys = list(self.sockets)
        message = json.dumps({"pid": os.getpid(), "keys": keys}).encode()
        conn.setblocking(True)  # one small message; the peer is waiting for it
        conn.settimeout(TAKE_TIMEOUT_S)
        try:
            socket.send_fds(conn, [message], [self.sockets[k].fileno() for k in keys])
            conn.setblocking(False)
            async with asyncio.timeout(TAKE_TIMEOUT_S):
                ack = await loop.sock_recv(conn, 2)
        except (OSError, TimeoutError) as exc:
            log.warning("listener handover failed: %s", exc)
            return False
        if ack != b"ok":
            return False
        log.info("handed %d listener(s) over to the next agent", len(keys))
        return True

    def close(self) -> None:
        """Stop offering the listeners (the serving task closes the rendezvous socket)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        elif self._sock is not None:
            self._sock.close()
            self._sock = None
