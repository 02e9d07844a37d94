"""One proxied HTTP request: pick an endpoint, forward, stream the answer back.

Bodies are never held whole: request bytes read before an upstream connection
exists are buffered (and the client paused past a small limit); after that
every piece goes straight to the other side's transport. Framing is redone on
each hop (Content-Length kept, chunked re-chunked) so hop-by-hop headers never
leak and a request the parser did not fully accept never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from agents.runtime.balancer import Endpoint
from agents.runtime.httpwire import (
    LAST_CHUNK,
    chunk,
    end_to_end,
    new_request_id,
    reason_phrase,
    render_headers,
    simple_response,
)
from agents.runtime.pool import UpstreamConnection
from agents.runtime.upstream import RouteState

if TYPE_CHECKING:
    from agents.runtime.proxy_http import ClientConnection

log = logging.getLogger("meshagent.proxy")

BUFFER_HIGH_WATER = 256 * 1024
RETRY = "retry"
DONE = "done"


class BadRequest(Exception):
    """Raised from a parser callback; its text becomes the X-Mesh-Error reason."""


class Exchange:
    def __init__(self, client: ClientConnection, *, method: bytes, url: bytes,
                 headers: list[tuple[bytes, bytes]], http11: bool, keep_alive: bool,
                 chunked: bool, content_length: int | None) -> None:
        self.client = client
        self.ctx = client.ctx
        self.loop = client.loop
        self.method = method
        self.url = url
        self.headers = headers
        self.http11 = http11
        self.keep_alive = keep_alive
        self.chunked_in = chunked
        self.content_length = content_length
        self.has_body = chunked or bool(content_length)
        self.is_head = method == b"HEAD"
        self.body_buffer: list[bytes] = []
        self.buffered = 0
        self.request_complete = False
        self.conn: UpstreamConnection | None = None
        self.endpoint: Endpoint | None = None
        self.head_sent = False
        self.response_started = False
        self.status = 0
        self.mode = b""
        self.until_close = False  # the upstream's body ends when it closes the connection
        self.finished = False
        self.started = self.loop.time()
        self.request_id: bytes | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[str] | None = None
        self.task: asyncio.Task[None] | None = None

    # lifecycle
    def start(self) -> None:
        self.started = self.loop.time()
        self.ctx.inflight += 1
        self.task = self.loop.create_task(self._route())

    async def _route(self) -> None:
        try:
            await self._pick_and_forward()
        except asyncio.CancelledError:
            self.client_gone()
            raise
        except Exception:
            log.exception("proxy error")
            self.fail(502, "proxy-error")
        finally:
            self.ctx.inflight -= 1

    async def _pick_and_forward(self) -> None:
        upstream = self.ctx.upstream
        state = upstream.state  # this request's view, whatever snapshot arrives meanwhile
        tried: set[str] = set()
        status, reason = 503, "no-healthy-endpoints"
        fresh_only = False
        while not self.finished:
            endpoint = state.balancer.pick(state.endpoints, tried)
            if endpoint is None:
                break
            conn = None if fresh_only else upstream.pool.take(endpoint)
            if conn is None:
                tried.add(endpoint.key)
                try:
                    conn = await upstream.pool.connect(endpoint, state.connect_timeout)
                except TimeoutError:
                    endpoint.errors += 1
                    status, reason = 504, "connect-timeout"
                    continue
                except OSError:
                    endpoint.errors += 1
                    status, reason = 502, "connect-failed"
                    continue
            if self.finished:  # the client left while we connected
                upstream.pool.give(conn)
                return
            if await self._forward(conn, endpoint, state) != RETRY:
                return
            fresh_only = True  # a reused connection had gone stale; the next is new
        self.fail(status, reason)

    async def _forward(self, conn: UpstreamConnection, endpoint: Endpoint,
                       state: RouteState) -> str:
        self.done = self.loop.create_future()
        self.conn, self.endpoint = conn, endpoint
        endpoint.active += 1
        endpoint.requests += 1
        try:
            conn.attach(self)
            self._send_head(conn)
            self.timer = self.loop.call_later(state.request_timeout, self._timed_out)
            return await self.done
        finally:
            endpoint.active -= 1

    def _send_head(self, conn: UpstreamConnection) -> None:
        out: list[tuple[bytes, bytes]] = []
        forwarded_for = b""
        has_proto = has_host = False
        for name, value in end_to_end(self.headers):
            lname = name.lower()
            if lname == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
            if lname == b"x-request-id":
                self.request_id = value
                continue
            has_proto = has_proto or lname == b"x-forwarded-proto"
            has_host = has_host or lname == b"host"
            out.append((name, value))
        if not has_host:  # HTTP/1.0 clients may omit it; HTTP/1.1 upstreams require it
            endpoint = conn.endpoint
            out.append((b"host", f"{endpoint.address}:{endpoint.port}".encode()))
        peer = self.client.peer
        out.append((b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer))
        if not has_proto:
            out.append((b"x-forwarded-proto", b"http"))
        if self.request_id is None:
            self.request_id = new_request_id()
        out.append((b"x-request-id", self.request_id))
        if self.chunked_in:
            out.append((b"transfer-encoding", b"chunked"))
        elif self.content_length is not None:
            out.append((b"content-length", b"%d" % self.content_length))
        parts = [b"%s %s HTTP/1.1\r\n%s\r\n" % (self.method, self.url, render_headers(out))]
        for data in self.body_buffer:
            parts.extend(chunk(data) if self.chunked_in else (data,))
        if self.request_complete and self.chunked_in:
            parts.append(LAST_CHUNK)
        self.body_buffer, self.buffered = [], 0
        conn.writelines(parts)
        self.head_sent = True
        self.client.resume_reading("buffer")

    # request side, called by the client connection's parser
    def request_body(self, data: bytes) -> None:
        if self.finished:
            return  # answered already (e.g. an early error); the rest is discarded
        conn = self.conn
        if conn is not None and self.head_sent:
            if self.chunked_in:
                conn.writelines(chunk(data))
            else:
                conn.write(data)
            return
        self.body_buffer.append(data)
        self.buffered += len(data)
        if self.buffered > BUFFER_HIGH_WATER:
            self.client.pause_reading("buffer")

    def request_end(self) -> None:
        self.request_complete = True
        if self.conn is not None and self.head_sent and self.chunked_in and not self.finished:
            self.conn.write(LAST_CHUNK)

    def abort_request(self, status: int, reason: str) -> None:
        """The client's request turned out malformed midway: the upstream must not get the rest."""
        self.keep_alive = False
        self.fail(status, reason)

    def client_write_paused(self, paused: bool) -> None:
        if self.conn is not None:
            if paused:
                self.conn.pause_reading()
            else:
                self.conn.resume_reading()

    def client_gone(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._cancel_timer()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        self._resolve(DONE)

    # response side, called by the upstream connection (pool.ResponseHandler)
    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause_reading("upstream")
        else:
            self.client.resume_reading("upstream")

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if self.finished:
            return
        phrase = reason or reason_phrase(status)
        if 100 <= status < 200:
            if status == 101:  # we never forward Upgrade, so a 101 means a broken upstream
                self.fail(502, "unexpected-upgrade")
            elif self.http11:
                self.client.write(b"HTTP/1.1 %d %s\r\n\r\n" % (status, phrase))
            return
        self._cancel_timer()
        self.status = status
        out = end_to_end(headers)
        length = next((v for n, v in reversed(headers) if n.lower() == b"content-length"), None)
        chunked = any(n.lower() == b"transfer-encoding" for n, _ in headers)
        self.until_close = length is None and not chunked
        if self.is_head or status in (204, 304):
            self.mode = b"none"
            if length is not None and status != 204:
                out.append((b"content-length", length))
        elif length is not None:
            self.mode = b"length"
            out.append((b"content-length", length))
        elif self.http11:
            self.mode = b"chunk"
            out.append((b"transfer-encoding", b"chunked"))
        else:
            self.mode = b"close"  # an HTTP/1.0 client learns the end from the close
            self.keep_alive = False
        if not self.keep_alive:
            out.append((b"connection", b"close"))
        elif not self.http11:
            out.append((b"connection", b"keep-alive"))
        self.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, phrase, render_headers(out)))
        self.response_started = True
        if self.is_head and self.conn is not None:
            self.conn.reset_parser()
            self._finish_ok()

    def response_body(self, data: bytes) -> None:
        if self.finished:
            return
        if self.mode == b"chunk":
            self.client.writelines(chunk(data))
        elif self.mode != b"none":
            self.client.write(data)

    def response_done(self) -> None:
        if self.finished:
            return
        if self.mode == b"chunk":
            self.client.write(LAST_CHUNK)
        self._finish_ok()

    def upstream_lost(self, error: str) -> None:
        if self.finished:
            return
        conn, self.conn = self.conn, None
        if self.response_started and self.until_close and self.mode != b"none":
            if self.mode == b"chunk":  # that close was the end of the body
                self.client.write(LAST_CHUNK)
            self._complete(self.status >= 500, keep=self.keep_alive and self.request_complete)
        elif (not self.response_started and conn is not None and conn.uses > 1
              and not conn.got_bytes and not self.has_body):
            self._cancel_timer()
            self._resolve(RETRY)  # a pooled connection the upstream had closed: try a new one
        else:
            self.fail(502, error)

    def _timed_out(self) -> None:
        self.timer = None
        self.fail(504, "request-timeout")

    # endings
    def _finish_ok(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.request_complete and self.head_sent:
                self.ctx.upstream.pool.give(conn)
            else:
                conn.close()  # the upstream did not read our whole request: unusable
        self._complete(self.status >= 500, keep=self.keep_alive and self.request_complete)

    def fail(self, status: int, reason: str) -> None:
        """Answer with a proxy error (or cut the client if a response was already under way)."""
        if self.finished:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        if self.response_started:
            self.client.close()
            self._complete(True, keep=False)
            return
        self.status = status
        # The connection stays usable only if we read the whole request and it was well formed.
        keep = self.keep_alive and self.request_complete and status != 400
        body = f"{status} {reason}\n".encode()
        self.client.write(simple_response(status, body, close=not keep, head_only=self.is_head,
                                          extra=[(b"x-mesh-error", reason.encode())]))
        self._complete(status >= 500, keep=keep)

    def _complete(self, error: bool, *, keep: bool) -> None:
        self.finished = True
        self._cancel_timer()
        latency_ms = (self.loop.time() - self.started) * 1000.0
        upstream = self.ctx.upstream
        self.ctx.metrics.record(upstream.source, upstream.service, latency_ms, error)
        if error and self.endpoint is not None:
            self.endpoint.errors += 1
        self._resolve(DONE)
        self.client.exchange_finished(self, keep)

    def _resolve(self, outcome: str) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(outcome)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
