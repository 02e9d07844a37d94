"""L4 proxy for `protocol: tcp` upstreams: balance per connection, then pipe bytes.

Both sockets are asyncio Protocols joined back to back: what one side's
data_received gets goes straight to the other side's transport.write, with no
coroutine hop per chunk. Flow control is the transports' own (as in
proxy_http): when one side's write buffer passes WRITE_HIGH_WATER, reading from
the other side pauses until it drains. Half-close is passed through: an EOF
from one side becomes write_eof on the other, and the connection closes once
both directions are done (or either socket is lost). Only choosing and
connecting an endpoint runs in a task; what the client sends meanwhile is held,
and its reading pauses past EARLY_LIMIT.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from agents.runtime.dial import dial
from agents.runtime.endpoint import Endpoint
from agents.runtime.hashing import hash64
from agents.runtime.listener import ListenerContext
from agents.runtime.outlier import CONNECT_FAILURE

log = logging.getLogger("meshagent.tcp")

WRITE_HIGH_WATER = 256 * 1024
EARLY_LIMIT = 256 * 1024  # client bytes held while connecting; reading pauses past this

_EARLY = 1  # why the client's reading is paused (a bit each)
_UPSTREAM = 2


class _UpstreamSide(asyncio.Protocol):
    """The socket to the endpoint; its bytes go to the client's transport."""

    __slots__ = ("conn", "transport", "send", "held", "linked", "eof_in", "eof_out", "lost")

    def __init__(self, conn: TcpConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.send: Callable[[bytes], object] | None = None  # client transport.write, once linked
        self.held: list[bytes] = []  # bytes that came before the link (server speaks first)
        self.linked = False
        self.eof_in = False  # the endpoint sent EOF
        self.eof_out = False  # we sent it EOF (the client's)
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        send = self.send
        if send is not None:
            send(data)
        elif not self.linked:
            self.held.append(data)  # at most a read or two: the link is one loop turn away

    def eof_received(self) -> bool:
        if not self.eof_in:
            self.eof_in = True
            if self.linked:
                self.conn.upstream_eof()
        return True  # the other direction may still be going

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.send = None
        if self.conn.upstream is self:  # (before the link, _link sees `lost`)
            self.conn.upstream_lost()

    def pause_writing(self) -> None:
        self.conn.pause_reading(_UPSTREAM)

    def resume_writing(self) -> None:
        self.conn.resume_reading(_UPSTREAM)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.lost and not self.eof_in:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.lost and not self.eof_in:
            self.transport.resume_reading()

    def write_eof(self) -> None:
        transport = self.transport
        if transport is None or self.lost or self.eof_out:
            return
        self.eof_out = True
        if transport.can_write_eof():
            transport.write_eof()  # after what is buffered: the endpoint may still be answering
        else:
            transport.close()  # TLS (the mTLS hop) has no half-close: close after the buffer

    def close(self) -> None:
        self.send = None
        if self.transport is not None and not self.lost:
            self.transport.close()  # flushes what is buffered first


class TcpConnection(asyncio.Protocol):
    """The client's socket, and the proxied connection's lifecycle and bookkeeping."""

    __slots__ = ("ctx", "loop", "transport", "send", "upstream", "endpoint", "task", "early",
                 "early_size", "paused", "eof_in", "lost", "finished", "started", "peer", "edge")

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.send: Callable[[bytes], object] | None = None  # upstream transport.write, once linked
        self.upstream: _UpstreamSide | None = None
        self.endpoint: Endpoint | None = None
        self.task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []  # client bytes that came before the upstream
        self.early_size = 0
        self.paused = 0  # _EARLY | _UPSTREAM: reasons the client's reading is paused
        self.eof_in = False  # the client sent EOF
        self.lost = False
        self.finished = False
        self.started = 0.0
        self.peer = b""
        self.edge = ctx.upstream.edge  # the inbound listener sets the verified source's

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.started = self.loop.time()
        ctx = self.ctx
        ctx.inflight += 1
        ctx.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if isinstance(peer, tuple) else b""
        self.task = self.loop.create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        send = self.send
        if send is not None:
            send(data)
        elif not self.lost:
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size > EARLY_LIMIT:
                self.pause_reading(_EARLY)

    def eof_received(self) -> bool:
        if not self.eof_in:
            self.eof_in = True
            upstream = self.upstream
            if upstream is not None:
                upstream.write_eof()
                self._both_ended()
            # else: sent on once connected, after the bytes held until then
        return True  # the answer may still be coming

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.send = None
        self.early, self.early_size = [], 0
        upstream = self.upstream
        if upstream is not None:
            upstream.close()  # what the client sent is still delivered, then the upstream closes
        if self.task is not None and not self.task.done():
            self.task.cancel()  # gone before an endpoint answered: stop trying
        if upstream is None or upstream.lost:
            self._finish()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # flow control of the client's reading, which two things may pause
    def pause_reading(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.lost and not self.eof_in:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.lost and not self.eof_in:
            self.transport.resume_reading()

    # the upstream side's events
    def upstream_eof(self) -> None:
        transport = self.transport
        if transport is not None and not self.lost:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()  # TLS (the inbound listener): no half-close
        self._both_ended()

    def upstream_lost(self) -> None:
        self.send = None  # (uvloop raises on a write to a lost transport)
        self.close_client()
        if self.lost:
            self._finish()

    # ours
    async def _connect(self) -> None:
        try:
            connected = await _connect(self.ctx, self.peer, self)
        except asyncio.CancelledError:
            self.close_client()  # (if not gone already) its connection_lost finishes it
            raise
        except Exception:
            log.exception("tcp proxy error")
            connected = None
        if connected is None:
            self.close_client()
            self._finish()
            return
        upstream, endpoint = connected
        if self.lost:  # not reached (a lost client cancels this task), but never leak a socket
            upstream.close()
            self._finish()
            return
        self._link(upstream, endpoint)

    def _link(self, upstream: _UpstreamSide, endpoint: Endpoint) -> None:
        transport, up_transport = self.transport, upstream.transport
        assert transport is not None and up_transport is not None
        self.upstream, self.endpoint = upstream, endpoint
        endpoint.active += 1
        upstream.linked = True
        held, upstream.held = upstream.held, []
        if upstream.lost:  # it answered and went away before the link: pass that on, close
            if held:
                transport.writelines(held)
            self.upstream_lost()
            return
        self.send = up_transport.write
        upstream.send = transport.write
        early, self.early, self.early_size = self.early, [], 0
        self.resume_reading(_EARLY)  # before writing: that write may pause it again
        if early:
            up_transport.writelines(early)
        if held:
            transport.writelines(held)
        if self.eof_in:
            upstream.write_eof()
        if upstream.eof_in:
            self.upstream_eof()
        else:
            self._both_ended()

    def _both_ended(self) -> None:
        """Both sides sent EOF: nothing more will come, close once the buffers are out."""
        upstream = self.upstream
        if self.eof_in and upstream is not None and upstream.eof_in:
            self.close()

    def close_client(self) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.send = None
        if self.transport is not None and not self.lost:
            self.transport.close()  # flushes what is buffered first

    def drain(self, idle_s: float) -> None:
        """A byte stream has no point to stop at: it runs until the drain timeout."""

    def close(self) -> None:
        """Close both sockets (the agent's shutdown calls this too)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.close_client()
        self.send = None
        if self.upstream is not None:
            self.upstream.close()

    def buffered(self) -> int:
        """Bytes this connection holds in memory: both write buffers, and what is held early."""
        size = self.early_size
        for transport in (self.transport, self.upstream.transport if self.upstream else None):
            if transport is not None and not transport.is_closing():
                size += transport.get_write_buffer_size()
        return size

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        ctx = self.ctx
        ctx.inflight -= 1
        ctx.connections.discard(self)
        # For L4 the "latency" recorded is the connection's lifetime.
        lifetime_ms = (self.loop.time() - self.started) * 1000.0
        endpoint = self.endpoint
        error = endpoint is None  # no endpoint could be connected
        if endpoint is not None:
            endpoint.active -= 1
            endpoint.observe(lifetime_ms, False)
        ctx.metrics.record_edge(self.edge, lifetime_ms, error)


async def _connect(ctx: ListenerContext, peer: bytes,
                   conn: TcpConnection) -> tuple[_UpstreamSide, Endpoint] | None:
    """Same selection as HTTP (panic, zones, balancer); only the client IP can be a hash key."""
    upstream = ctx.upstream
    state = upstream.state
    hash_key = hash64(peer) if state.hash_on is not None and peer else None
    tried: set[str] = set()
    while (endpoint := upstream.pick(state, tried, hash_key)) is not None:
        if endpoint.key in tried:
            break  # every endpoint refused us once: give up rather than loop
        tried.add(endpoint.key)
        try:
            async with asyncio.timeout(state.connect_timeout):
                _, side = await dial(lambda: _UpstreamSide(conn), endpoint.address,
                                     endpoint.port, endpoint.tls, upstream.pool.tls)
        except (OSError, TimeoutError):
            endpoint.errors += 1
            upstream.outlier.record(endpoint, CONNECT_FAILURE)
            continue
        upstream.outlier.record(endpoint, 200)  # a connection made: the streak is over
        return side, endpoint
    return None


async def start_tcp_listener(ctx: ListenerContext, host: str, port: int, *,
                             reuse_port: bool = False,
                             sock: socket.socket | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    if sock is not None:  # taken over from the agent this one replaces (handover.py)
        return await loop.create_server(lambda: TcpConnection(ctx), sock=sock, backlog=1024)
    return await loop.create_server(lambda: TcpConnection(ctx), host, port, backlog=1024,
                                    reuse_address=True, reuse_port=reuse_port or None)
