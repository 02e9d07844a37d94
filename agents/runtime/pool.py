"""Keep-alive connections to upstream endpoints, parsed with httptools.

An UpstreamConnection only parses responses and hands the pieces to whichever
exchange currently owns it (its `handler`); the pool keeps idle ones per
endpoint, newest first, so a warm connection is reused and a stale one ages out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

import httptools

from agents.runtime.dial import OutboundTls, dial
from agents.runtime.endpoint import Endpoint

WRITE_HIGH_WATER = 256 * 1024
IDLE_TIMEOUT_S = 30.0
MAX_IDLE_PER_ENDPOINT = 64


class ResponseHandler(Protocol):
    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        ...

    def response_body(self, data: bytes) -> None:
        ...

    def response_done(self) -> None:
        ...

    def upstream_lost(self, error: str) -> None:
        ...

    def upstream_write_paused(self, paused: bool) -> None:
        ...

    def flush(self) -> None:
        ...

    def deadline_passed(self) -> None:
        ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("endpoint", "pool", "tunnel", "transport", "loop", "handler", "parser", "closed",
                 "uses", "got_bytes", "idle_since", "deadline", "paused", "armed_until",
                 "keep_alive", "_timer", "_status", "_reason", "_headers")

    def __init__(self, endpoint: Endpoint, pool: Pool | None = None) -> None:
        self.deadline = 0.0  # when the current exchange times out (loop time); 0: no timeout
        self.paused = False  # reading paused (a slow client)
        self._timer: asyncio.TimerHandle | None = None
        self.armed_until = 0.0  # when the timer fires; 0: not armed
        self.keep_alive = False  # the last response allows reuse (read at its head)
        self.loop = asyncio.get_running_loop()  # made by the loop's create_connection
        self.endpoint = endpoint
        self.pool = pool
        self.tunnel: ResponseHandler | None = None  # after a 101: raw bytes to the client
        self.transport: asyncio.Transport | None = None
        self.handler: ResponseHandler | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.uses = 0  # >0 once reused: a failure then may be a stale keep-alive, worth one retry
        self.got_bytes = False
        self.idle_since = 0.0
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self.pool is not None:
            self.pool.open += 1

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.response_body(data)
            return
        handler = self.handler
        if handler is None:
            self.close()  # an idle connection has nothing to say; whatever this is, drop it
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
            handler.flush()  # what this read produced goes to the client in one write
        except httptools.HttpParserUpgrade as exc:
            # A 101: what follows the head is the new protocol's, for the client as is.
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            if self.tunnel is not None and offset < len(data):
                self.tunnel.response_body(data[offset:])
        except httptools.HttpParserError:
            handler, self.handler = self.handler, None
            self.close()
            if handler is not None:
                handler.upstream_lost("bad-upstream-response")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self.pool is not None:
            self.pool.open -= 1
            self.pool = None
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.upstream_lost("upstream-closed")
            return
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.upstream_lost("upstream-reset")

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_write_paused(False)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # (a HEAD resets the parser)
        headers, reason = self._headers, self._reason
        self._headers, self._reason = [], b""
        if self.handler is None:
            self.close()
            return
        if self._status == 101:
            self.tunnel = self.handler  # set before the head is relayed: bytes may follow at once
        self.handler.response_head(self._status, reason, headers)

    def on_body(self, body: bytes) -> None:
        if self.handler is None:
            self.close()
            return
        self.handler.response_body(body)

    def on_message_complete(self) -> None:
        if self._headers:  # a chunked body's trailers: never the next response's headers
            self._headers = []
        if 100 <= self._status < 200:
            return  # an interim response; the final one follows on this connection
        if self.handler is None:
            return
        self.handler.response_done()

    # ours
    def attach(self, handler: ResponseHandler) -> None:
        self.handler = handler
        self.got_bytes = False
        self.deadline = 0.0
        self.uses += 1

    def set_deadline(self, when: float) -> None:
        """Time the current exchange out at `when` (loop time). One timer per connection,
        not one per request: it is re-armed only if it fires before the deadline it finds
        then, or if this deadline is earlier than the one it is armed for."""
        self.deadline = when
        timer = self._timer
        if timer is None or when < self.armed_until:
            if timer is not None:
                timer.cancel()
            self.armed_until = when
            self._timer = self.loop.call_at(when, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        self.armed_until = 0.0
        deadline = self.deadline
        handler = self.handler
        if not deadline or handler is None or self.closed:
            return
        if self.loop.time() >= deadline:
            self.deadline = 0.0
            handler.deadline_passed()
        else:
            self.armed_until = deadline
            self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.armed_until = 0.0

    def reset_parser(self) -> None:
        """After a HEAD the parser would wait for a body that never comes; start fresh."""
        self.parser = httptools.HttpResponseParser(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def reusable(self) -> bool:
        return (not self.closed and self.tunnel is None and self.keep_alive
                and not self.endpoint.removed)

    def close(self) -> None:
        self.handler = None
        self._stop_timer()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


class Pool:
    def __init__(self, max_idle: int = MAX_IDLE_PER_ENDPOINT,
                 idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.opened = 0
        self.open = 0  # connections open now, idle or busy (circuit breaking's max_connections)
        self._sweep: asyncio.TimerHandle | None = None
        self.tls: OutboundTls | None = None  # set when the agent has certificates

    def take(self, endpoint: Endpoint) -> UpstreamConnection | None:
        idle = self._idle.get(endpoint.key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_timeout:
                if conn.paused:
                    conn.resume_reading()
                return conn
            conn.close()
        return None

    async def connect(self, endpoint: Endpoint, timeout: float) -> UpstreamConnection:
        async with asyncio.timeout(timeout):
            _, conn = await dial(lambda: UpstreamConnection(endpoint, self), endpoint.address,
                                 endpoint.port, endpoint.tls, self.tls)
        self.opened += 1
        return conn

    def give(self, conn: UpstreamConnection) -> None:
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(conn.endpoint.key, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.handler = None
        conn.idle_since = time.monotonic()
        if conn.paused:  # for a slow client; an idle connection reads, to see the upstream close
            conn.resume_reading()
        idle.append(conn)
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self.idle_timeout, self._close_idle)

    def _close_idle(self) -> None:
        """Close connections idle longer than idle_timeout, so upstreams are not held open."""
        self._sweep = None
        now = time.monotonic()
        oldest = now
        for key in list(self._idle):
            idle = self._idle[key]
            keep = [c for c in idle if not c.closed and now - c.idle_since < self.idle_timeout]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[key] = keep
                oldest = min(oldest, keep[0].idle_since)
            else:
                del self._idle[key]
        if self._idle:
            delay = max(oldest + self.idle_timeout - now, 0.05)
            self._sweep = asyncio.get_running_loop().call_later(delay, self._close_idle)

    def retain(self, keys: set[str]) -> None:
        """Close idle connections to endpoints a new snapshot no longer lists."""
        for key in list(self._idle):
            if key not in keys:
                for conn in self._idle.pop(key):
                    conn.close()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close_all(self) -> None:
        self.retain(set())
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
