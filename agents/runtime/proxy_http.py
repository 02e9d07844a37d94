"""HTTP/1.1 reverse proxy for one upstream listener.

The client side is an asyncio Protocol fed to httptools; each request becomes an
Exchange whose bytes flow through callbacks (no per-chunk coroutine hops):
request body → upstream transport, response body → client transport. Flow
control is the transports' own: when one side's write buffer passes its high
water mark, reading from the other side pauses until it drains, so a 50 MB body
never sits in memory. Only choosing and connecting an endpoint runs in a task.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable
from typing import ClassVar, cast

import httptools

from agents.runtime.exchange import Exchange
from agents.runtime.heads import BadRequest, RequestHeaders, VersionNotSupported, request_headers
from agents.runtime.httpwire import simple_response
from agents.runtime.listener import ListenerContext

log = logging.getLogger("meshagent.proxy")

WRITE_HIGH_WATER = 256 * 1024
MAX_PIPELINED = 8
KEEPALIVE_IDLE_S = 75.0
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


class ClientConnection(asyncio.Protocol):
    __slots__ = ("ctx", "loop", "transport", "parser", "peer", "closed", "write_paused", "active",
                 "parsing", "queue", "tunnel", "_pauses", "_url", "_headers", "_header_bytes",
                 "_idle", "_idle_since", "_in_message", "_early", "edge", "authorize",
                 "_rejected")
    # What a request becomes, and how its head is read: the gateway's connection
    # (agents.runtime.gateway.listener) sets its own; the framing checks stay here.
    exchange_type: ClassVar[type[Exchange]] = Exchange

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.closed = False
        self.write_paused = False
        self.active: Exchange | None = None  # the exchange being answered
        self.parsing: Exchange | None = None  # the exchange whose body is being read
        self.queue: collections.deque[Exchange] = collections.deque()
        # A bad request behind pipelined ones: answered (then closed) once they are.
        self._rejected: tuple[int, str] | None = None
        self._pauses: set[str] = set()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since = 0.0  # when the last exchange ended (keep-alive idle timeout)
        self._in_message = False  # a request's head or body is being read
        self.tunnel: Exchange | None = None  # after a 101: bytes go to the upstream as is
        self._early: list[bytes] = []  # bytes after an Upgrade request, before the 101
        self.edge = ctx.upstream.edge  # (source, destination) of the metrics
        # The inbound listener's intention check (agents.runtime.inbound): the id of the
        # rule that denies a request, or None. None here: an outbound listener.
        self.authorize: Callable[[Exchange], str | None] | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if isinstance(peer, tuple) else b""
        self.ctx.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._rejected is not None:
            return  # after a bad request nothing more is read
        if self.tunnel is not None:
            self.tunnel.request_body(data)
            return
        if self._early or self.parser is None:
            self._early.append(data)  # an upgrade is pending: held until the upstream answers
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self.parser = None  # type: ignore[assignment]  # HTTP is over on this connection
            self._early.append(data[offset:])
            self.pause_reading("upgrade")
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, BadRequest):
                self.reject(cause.status, str(cause))
            else:
                self.reject(400, "bad-request")
        except httptools.HttpParserError as exc:
            log.debug("bad request from %s: %s", self.peer, exc)
            self.reject(400, "bad-request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle()
        self.ctx.connections.discard(self)
        active, self.active = self.active, None
        self.queue.clear()
        if active is not None:
            active.client_gone()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.client_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.client_write_paused(False)

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._in_message = True
        self._url += url
        if len(self._url) > MAX_HEADER_BYTES:
            raise BadRequest("url-too-long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name, value))
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
            raise BadRequest("headers-too-large")

    def on_headers_complete(self) -> None:
        headers, url = self._headers, self._url
        self._headers, self._url, self._header_bytes = [], b"", 0
        # Names and values were checked by llhttp (see heads.py); the framing is checked
        # again below, as the one thing a smuggled request needs.
        forwarded = self.read_headers(headers)
        lengths, encodings = forwarded.lengths, forwarded.encodings
        # llhttp already refuses these; checked again because a smuggled request
        # must never reach an upstream, whatever the parser's leniency.
        if lengths is not None:
            if encodings is not None:
                raise BadRequest("content-length-with-transfer-encoding")
            if len(lengths) > 1 or not lengths[0].strip().isdigit():
                raise BadRequest("bad-content-length")
        if encodings is not None and (
                b",".join(encodings).split(b",")[-1].strip().lower() != b"chunked"):
            raise BadRequest("bad-transfer-encoding")
        if url[:1] != b"/" and url != b"*":
            raise BadRequest("absolute-form-not-supported")
        parser = self.parser
        version = parser.get_http_version()
        if version == "0.9":  # llhttp's reading of a request line without a version
            raise BadRequest("bad-request-line")
        if version not in ("1.0", "1.1"):  # never forwarded as HTTP/1.1
            raise VersionNotSupported("http-version-not-supported")
        http11 = version == "1.1"
        if not forwarded.has_host and http11:
            raise BadRequest("missing-host")  # RFC 9112 §3.2; an HTTP/1.0 request may omit it
        upgrade = parser.should_upgrade()
        if upgrade and (self.queue or self.active is not None):
            raise BadRequest("upgrade-while-pipelining")
        exchange = self.exchange_type(self, parser.get_method(), url, headers, forwarded,
                            http11, parser.should_keep_alive(),
                            int(lengths[0]) if lengths is not None else None, upgrade)
        self.parsing = exchange
        if self.active is None:
            self.active = exchange
            exchange.start()
        else:
            self.queue.append(exchange)
            if len(self.queue) >= MAX_PIPELINED:
                self.pause_reading("pipeline")

    def read_headers(self, headers: list[tuple[bytes, bytes]]) -> RequestHeaders:
        return request_headers(headers, self.peer)

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.request_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._headers:  # a chunked body's trailers: never the next request's headers
            self._headers, self._header_bytes = [], 0
        parsing, self.parsing = self.parsing, None
        if parsing is not None:
            parsing.request_end()

    # used by Exchange
    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if not self.closed and self.transport is not None:
            self.transport.writelines(data)

    def pause_reading(self, reason: str) -> None:
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pauses.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def start_tunnel(self, exchange: Exchange) -> None:
        """The upstream switched protocols: from now on, bytes flow both ways untouched."""
        self.tunnel = exchange
        early, self._early = self._early, []
        for data in early:
            if data:
                exchange.request_body(data)
        self.resume_reading("upgrade")

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()  # flushes what is buffered first

    def drain(self, idle_s: float) -> None:
        """The agent is stopping. A connection idle for IDLE_S is closed: one idle for less
        may have a request on its way, which the close would lose; any other one closes
        after its next response, which says Connection: close (ctx.draining)."""
        if (self.active is None and not self._in_message and not self.queue
                and self.tunnel is None and self.loop.time() - self._idle_since >= idle_s):
            self.close()

    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None:
        if exchange is not self.active:
            return
        self.active = None
        if self._pauses:  # those taken for that exchange end with it (else the next one hangs)
            self.resume_reading("upstream")
            self.resume_reading("buffer")
        if not keep_alive or self.closed or self.parser is None:
            self.close()  # (no parser: an upgrade was refused, what follows is not HTTP)
            return
        if self.queue:
            nxt = self.active = self.queue.popleft()
            if len(self.queue) < MAX_PIPELINED:
                self.resume_reading("pipeline")
            nxt.start()
        elif self._rejected is not None:
            self._answer_rejected(*self._rejected)
        else:
            self._idle_since = self.loop.time()

    def reject(self, status: int, reason: str) -> None:
        """A request we will not forward: answer it (after those before it), close."""
        if self.closed:
            return
        parsing = self.parsing
        if self.active is not None and self.active is parsing:
            # Its head may be on its way upstream: abort it, never let the rest through.
            self.active.abort_request(status, reason)
            return
        if self.active is not None:
            # Pipelined requests read whole before it are answered first, in order
            # (RFC 9112 §9.3.2); one whose body the bad bytes cut is never forwarded.
            if parsing is not None and self.queue and self.queue[-1] is parsing:
                self.queue.pop()
            self._rejected = (status, reason)
            self.pause_reading("rejected")
            return
        self.queue.clear()
        self._answer_rejected(status, reason)

    def _answer_rejected(self, status: int, reason: str) -> None:
        self.ctx.metrics.record_edge(self.edge, 0.0, status >= 500, status)
        body = f"{status} {reason}\n".encode()
        self.write(simple_response(status, body, extra=[(b"x-mesh-error", reason.encode())],
                                   close=True))
        self.close()

    def _arm_idle(self) -> None:
        """One timer per connection, not per request: when it fires it checks how long the
        connection has really been idle and closes it, or sleeps for the rest."""
        self._idle_since = self.loop.time()
        self._idle = self.loop.call_later(self._idle_timeout(), self._idle_check)

    def _idle_timeout(self) -> float:
        return self.ctx.upstream.state.idle_timeout or KEEPALIVE_IDLE_S

    def _idle_check(self) -> None:
        self._idle = None
        if self.closed:
            return
        timeout = self._idle_timeout()
        if self.active is not None or self._in_message or self.queue or self.tunnel is not None:
            delay = timeout  # busy: idle time starts when this exchange ends
        else:
            delay = self._idle_since + timeout - self.loop.time()
            if delay <= 0:
                self.close()
                return
        self._idle = self.loop.call_later(delay, self._idle_check)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None


async def start_http_listener(ctx: ListenerContext, host: str, port: int, *,
                              reuse_port: bool = False,
                              sock: socket.socket | None = None) -> asyncio.Server:
    """reuse_port: several worker processes bind the same address (SO_REUSEPORT);
    sock: a listening socket taken over from the agent this one replaces (handover.py)."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(lambda: ClientConnection(ctx), sock=sock, backlog=1024)
    return await loop.create_server(lambda: ClientConnection(ctx), host, port, backlog=1024,
                                    reuse_address=True, reuse_port=reuse_port or None)
