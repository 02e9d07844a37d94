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
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Protocol

from agents.runtime import response
from agents.runtime.endpoint import Endpoint
from agents.runtime.heads import RequestHeaders, request_hash_key, request_headers
from agents.runtime.httpwire import (
    LAST_CHUNK,
    chunk,
    new_request_id,
    simple_response,
)
from agents.runtime.pool import UpstreamConnection
from agents.runtime.ratelimit import retry_after
from agents.runtime.retrying import DONE, REPLAY_LIMIT, RetryState, attempts, may_retry
from agents.runtime.splits import route_request
from agents.runtime.upstream import IDEMPOTENT, Destination, RouteState

if TYPE_CHECKING:
    from agents.runtime.listener import ListenerContext
    from agents.runtime.splits import Route

log = logging.getLogger("meshagent.proxy")

BUFFER_HIGH_WATER = 256 * 1024


class ClientSide(Protocol):
    """What an Exchange uses of its client connection (proxy_http.ClientConnection)."""

    ctx: ListenerContext
    loop: asyncio.AbstractEventLoop
    peer: bytes
    edge: tuple[str, ...]
    authorize: Callable[[Exchange], str | None] | None

    def write(self, data: bytes) -> None: ...
    def pause_reading(self, reason: str) -> None: ...
    def resume_reading(self, reason: str) -> None: ...
    def close(self) -> None: ...
    def start_tunnel(self, exchange: Exchange) -> None: ...
    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None: ...


class Exchange:
    # Slots: an exchange is made per request and its fields are read many times each;
    # slot access is the interpreter's fastest attribute path.
    __slots__ = (
        "client", "ctx", "loop", "method", "url", "headers", "forwarded", "http11",
        "keep_alive", "chunked_in", "content_length", "has_body", "is_head", "body_buffer",
        "out", "state", "upgrade", "replay", "buffered", "request_complete", "conn",
        "endpoint", "head_sent", "response_started", "status", "mode", "until_close",
        "finished", "request_id", "done", "task", "tunnel", "replay_size", "deadline",
        "started", "per_try", "try_started", "trying", "sync", "tried", "hash_key",
        "continue_sent", "extra", "head", "retry", "target", "route", "edge",
    )

    def __init__(self, client: ClientSide, method: bytes, url: bytes,
                 headers: list[tuple[bytes, bytes]], forwarded: RequestHeaders, http11: bool,
                 keep_alive: bool, content_length: int | None, upgrade: bool = False) -> None:
        self.client = client
        self.ctx = client.ctx
        self.loop = client.loop
        self.method = method
        self.url = url
        self.headers = headers
        self.forwarded = forwarded
        self.http11 = http11
        self.keep_alive = keep_alive
        self.chunked_in = chunked = forwarded.encodings is not None
        self.content_length = content_length
        self.has_body = has_body = chunked or bool(content_length)
        self.is_head = method == b"HEAD"
        self.body_buffer: list[bytes] = []
        self.out: list[bytes] = []  # response bytes for the client, written once per read
        self.state: RouteState = client.ctx.upstream.state
        self.upgrade = upgrade  # an Upgrade request: after a 101, a tunnel
        self.replay: list[bytes] | None = [] if has_body else None
        self.buffered: int = 0
        self.request_complete: bool = False
        self.conn: UpstreamConnection | None = None
        self.endpoint: Endpoint | None = None
        self.head_sent: bool = False
        self.response_started: bool = False
        self.status: int = 0
        self.mode: bytes = b""
        self.until_close: bool = False  # the upstream's body ends when it closes the connection
        self.finished: bool = False
        self.request_id: bytes | None = None
        self.done: asyncio.Future[object] | None = None  # set while a routing task awaits a try
        self.task: asyncio.Task[None] | None = None
        self.tunnel: bool = False
        self.replay_size: int = 0
        self.retry: RetryState | None = None  # made at the first retryable failure
        self.deadline: float = 0.0
        self.started: float = 0.0  # time.monotonic() at start()
        self.per_try: bool = False
        self.try_started: float = 0.0
        self.trying: bool = False  # endpoint.active counts this exchange's current try
        self.sync: bool = False  # the first try runs without a task; its outcome goes to _resolve
        self.tried: set[str] | None = None
        self.hash_key: int | None = None
        self.continue_sent: bool = False
        self.extra: list[tuple[bytes, bytes]] | None = None
        self.head: bytes | None = None  # request line + headers for upstreams, less Host
        # Where it goes (the listener's upstream, or a route's target: splits.py), the route
        # it matched, and the metrics key it is counted under.
        self.target: Destination = client.ctx.upstream
        self.route: Route | None = None
        self.edge: tuple[str, ...] = client.edge

    # lifecycle
    def start(self) -> None:
        loop = self.loop
        # Latencies on time.monotonic: uvloop's loop.time() has millisecond steps, cached per
        # loop iteration, too coarse for sub-millisecond answers. Deadlines stay on the loop's.
        self.started = started = monotonic()
        ctx = self.ctx
        # The listener's upstream (a gateway sets the view of its route's service first).
        target = self.target
        state = self.state = target.state  # this request's view, whatever snapshot follows
        authorize = self.client.authorize
        if authorize is not None:
            rule = authorize(self)
            if rule is not None:
                self.ctx.metrics.deny(self.client.edge)
                self.refuse(403, f"denied-by-policy ({rule})")
                return
        bucket = state.bucket
        if bucket is not None:
            wait = bucket.take()
            if wait > 0:
                target.rate_limited_total += 1
                self.refuse(429, "rate-limited", [(b"retry-after", retry_after(wait))])
                return
        routes = state.routes
        if routes is not None:  # L7 routes: the matched route's target (splits.py)
            try:
                routed = route_request(self, routes)
            except Exception:
                log.exception("route error")
                self.fail(502, "proxy-error")
                return
            if routed is None:
                self.refuse(503, "no-healthy-subset")
                return
            target = self.target = routed
            state = self.state = routed.state
        if state.max_requests and target.active >= state.max_requests:
            self.refuse(503, "circuit-open (max_requests)")
            return
        ctx.inflight += 1
        target.active += 1
        try:
            self.deadline = loop.time() + state.request_timeout
            if state.hashing:
                assert state.hash_on is not None  # state.hashing says so
                self.hash_key = request_hash_key(state.hash_on, self.client.peer, self.headers)
            # The common case, a warm pooled connection to the chosen endpoint, is forwarded
            # right here, without a task; anything else (connecting, retrying) runs in one.
            endpoint = target.pick(state, (), self.hash_key)
            conn = target.pool.take(endpoint) if endpoint is not None else None
            if conn is None or endpoint is None:
                self.task = loop.create_task(self._route(picked=endpoint))
                return
            self.sync = True
            self._begin_try(conn, endpoint, state, started)
        except Exception:
            log.exception("proxy error")
            self.sync = True  # so that finishing releases the counters taken above
            self.fail(502, "proxy-error")

    def reread_headers(self) -> RequestHeaders:
        """The forwarded head again, after a route changed the request's headers."""
        return request_headers(self.headers, self.client.peer)

    def refuse(self, status: int, reason: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer locally without touching an upstream (rate limit, circuit breaker)."""
        if reason.startswith("circuit-open"):
            self.target.circuit_open(reason[14:-1])
        if not self.has_body:
            self.request_complete = True  # nothing more to read: the connection stays usable
        self.extra = extra
        self.fail(status, reason)

    async def _route(self, outcome: object = None, picked: Endpoint | None = None) -> None:
        try:
            await attempts(self, outcome, picked)
        except asyncio.CancelledError:
            self.client_gone()
            raise
        except Exception:
            log.exception("proxy error")
            self.fail(502, "proxy-error")
        finally:
            self._route_finished()

    def _route_finished(self) -> None:
        self.ctx.inflight -= 1
        self.target.active -= 1
        if self.retry is not None:
            self.retry.release()

    async def forward(self, conn: UpstreamConnection, endpoint: Endpoint,
                       state: RouteState) -> object:
        self.done = self.loop.create_future()
        try:
            self._begin_try(conn, endpoint, state)
            return await self.done
        finally:
            self._end_try()

    def _begin_try(self, conn: UpstreamConnection, endpoint: Endpoint, state: RouteState,
                   started: float = 0.0) -> None:
        """started: time.monotonic() if the caller just took it."""
        self.conn, self.endpoint = conn, endpoint
        self.try_started = started or monotonic()
        now = self.loop.time()
        endpoint.active += 1
        self.trying = True
        conn.attach(self)
        self._send_head(conn)
        timeout = self.deadline - now
        per_try = self.per_try = 0 < state.per_try_timeout < timeout
        if per_try:
            timeout = state.per_try_timeout
        conn.set_deadline(now + max(timeout, 0.0))

    def _end_try(self) -> None:
        if self.trying and self.endpoint is not None:
            self.trying = False
            self.endpoint.active -= 1

    def _send_head(self, conn: UpstreamConnection) -> None:
        forwarded = self.forwarded
        head = self.head
        if head is None:  # once per request: a retry sends the same, X-Request-Id included
            request_id = self.request_id = forwarded.request_id or new_request_id()
            head = b"%s %s HTTP/1.1\r\n%sx-request-id: %s\r\n" % (
                self.method, self.url, forwarded.block, request_id)
            if self.upgrade:
                head += b"connection: upgrade\r\n" + b"".join(
                    b"upgrade: %s\r\n" % v for n, v in self.headers if n.lower() == b"upgrade")
            if self.chunked_in:
                head += b"transfer-encoding: chunked\r\n"
            elif self.content_length is not None:
                head += b"content-length: %d\r\n" % self.content_length
            self.head = head
        if forwarded.has_host:
            head += b"\r\n"
        else:  # HTTP/1.0 clients may omit it; HTTP/1.1 upstreams require it
            endpoint = conn.endpoint
            head += b"host: %s:%d\r\n\r\n" % (endpoint.address.encode(), endpoint.port)
        if self.body_buffer:
            parts = [head]
            for data in self.body_buffer:
                parts.extend(chunk(data) if self.chunked_in else (data,))
            if self.request_complete and self.chunked_in:
                parts.append(LAST_CHUNK)
            self.body_buffer, self.buffered = [], 0
            conn.writelines(parts)
        elif self.request_complete and self.chunked_in:
            conn.write(head + LAST_CHUNK)
        else:
            conn.write(head)
        self.head_sent = True
        if (forwarded.expect and self.http11 and not self.continue_sent
                and not self.request_complete):
            # Committed to forwarding: let the client send its body now (an upstream that
            # says 100 itself is not echoed twice), so servers that wait silently still work.
            self.continue_sent = True
            self.client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.client.resume_reading("buffer")

    # request side, called by the client connection's parser
    def request_body(self, data: bytes) -> None:
        if self.finished:
            return  # answered already (e.g. an early error); the rest is discarded
        if self.tunnel:
            if self.conn is not None:
                self.conn.write(data)
            return
        replay = self.replay
        if replay is not None:
            self.replay_size += len(data)
            if self.replay_size <= REPLAY_LIMIT:
                replay.append(data)
            else:
                self.replay = None  # too big to keep: this request will not be retried
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
        self._close_conn()
        self._resolve(DONE)

    # response side, called by the upstream connection (pool.ResponseHandler): response.py
    upstream_write_paused = response.upstream_write_paused
    response_head = response.response_head
    response_body = response.response_body
    response_done = response.response_done
    flush = response.flush
    upstream_lost = response.upstream_lost

    # endings
    def _finish_ok(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.request_complete and self.head_sent:
                self.target.pool.give(conn)
            else:
                conn.close()  # the upstream did not read our whole request: unusable
        self._complete(self.status >= 500, keep=self.keep_alive and self.request_complete)

    def fail(self, status: int, reason: str) -> None:
        """Answer with a proxy error (or cut the client if a response was already under way)."""
        if self.finished:
            return
        self._close_conn()
        if self.response_started:
            self.flush()
            self.client.close()
            self._complete(True, keep=False)
            return
        self.status = status
        # The connection stays usable only if we read the whole request and it was well formed.
        keep = (self.keep_alive and self.request_complete and status != 400
                and not self.ctx.draining)
        body = f"{status} {reason}\n".encode()
        extra = [(b"x-mesh-error", reason.encode()), *(self.extra or ())]
        self.client.write(simple_response(status, body, close=not keep, head_only=self.is_head,
                                          extra=extra))
        self._complete(status >= 500, keep=keep)

    def _complete(self, error: bool, *, keep: bool) -> None:
        self.flush()
        self.finished = True
        self._cancel_timer()
        now = monotonic()
        self.ctx.metrics.record_edge(self.edge, (now - self.started) * 1000.0, error,
                                     self.status)
        self._observe(error, now)
        self._resolve(DONE)
        self.client.exchange_finished(self, keep)

    def _close_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def rewind(self) -> None:
        """Send the kept body again on the next try."""
        self.body_buffer = list(self.replay or ())
        self.buffered = sum(len(b) for b in self.body_buffer)
        self.head_sent = False

    def replayable(self) -> bool:
        return self.method in IDEMPOTENT and not self.upgrade and (
            not self.has_body or self.replay is not None)

    def deadline_passed(self) -> None:
        """The current try's connection timer: per-try timeout, else the request's."""
        if self.per_try and self.loop.time() < self.deadline:
            self._close_conn()
            if self.endpoint is not None:
                self.target.outlier.record(self.endpoint, 504)
                self._observe(True)
            # (a client told 100 Continue has sent its body to this try: not replayable)
            if not self.continue_sent and may_retry(self, "gateway-error"):
                self._resolve((504, "per-try-timeout"))
                return
            self.fail(504, "per-try-timeout")
            return
        self.fail(504, "request-timeout")

    def _observe(self, error: bool, now: float = 0.0) -> None:
        """Per-endpoint counters and latency of the current try (once per try).
        now: time.monotonic(), if the caller just took it."""
        endpoint = self.endpoint
        if endpoint is not None and self.try_started:
            now = now or monotonic()
            endpoint.observe((now - self.try_started) * 1000.0, error, now)
            self.try_started = 0.0

    def _resolve(self, outcome: object) -> None:
        """The current try's outcome: DONE, RETRY or (status, reason) to maybe retry."""
        done = self.done
        if done is not None:  # a routing task awaits it
            if not done.done():
                done.set_result(outcome)
            return
        if not self.sync:
            return
        self.sync = False  # the task-less first try is over
        self._end_try()
        if outcome is DONE or self.finished:
            self._route_finished()
            return
        self.tried = {self.endpoint.key} if self.endpoint is not None else set()
        self.task = self.loop.create_task(self._route(outcome))

    def _cancel_timer(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.deadline = 0.0
