"""Retry decisions for one proxied HTTP request (docs/policies.md, "retries").

Exchange inherits these: the attempts loop (pick, connect, forward, try again),
whether a failure may be retried (kind, attempts, idempotency, deadline, the
upstream's retry budget), how the kept request body is replayed, the jittered
backoff, and the hash key for ring_hash/maglev.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from agents.runtime.hashing import hash64
from agents.runtime.outlier import CONNECT_FAILURE
from agents.runtime.upstream import IDEMPOTENT, RouteState

if TYPE_CHECKING:
    from agents.runtime.endpoint import Endpoint
    from agents.runtime.listener import ListenerContext
    from agents.runtime.pool import UpstreamConnection
    from agents.runtime.proxy_http import ClientConnection

# A request body is kept for a retry only up to this size; a bigger one, once
# streamed to an upstream, cannot be sent again, so such a request is not retried.
REPLAY_LIMIT = 64 * 1024
RETRY = "retry"  # a stale pooled connection: try again on a fresh one, free of charge
DONE = "done"


class RetryMixin:
    """The retry half of an Exchange; the attributes below are the Exchange's own."""

    __slots__ = ("tries", "retry_reserved")  # the rest are the Exchange's slots

    client: ClientConnection
    ctx: ListenerContext
    loop: asyncio.AbstractEventLoop
    state: RouteState
    method: bytes
    headers: list[tuple[bytes, bytes]]
    upgrade: bool
    has_body: bool
    finished: bool
    tries: int
    continue_sent: bool
    tried: set[str] | None
    hash_key: int | None
    started: float
    deadline: float
    retry_reserved: bool
    replay: list[bytes] | None
    body_buffer: list[bytes]
    buffered: int
    head_sent: bool
    per_try: bool
    conn: UpstreamConnection | None
    endpoint: Endpoint | None

    # provided by Exchange
    def refuse(self, status: int, reason: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        raise NotImplementedError

    def fail(self, status: int, reason: str) -> None:
        raise NotImplementedError

    def _observe(self, error: bool) -> None:
        raise NotImplementedError

    def _close_conn(self) -> None:
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError

    def _resolve(self, outcome: object) -> None:
        raise NotImplementedError

    async def _forward(self, conn: UpstreamConnection, endpoint: Endpoint,
                       state: RouteState) -> object:
        raise NotImplementedError

    async def _attempts(self, outcome: object = None, picked: Endpoint | None = None) -> None:
        """Pick, connect, forward, and again while a retry is allowed.

        outcome: that of a try already made (the task-less first one), to carry on from;
        picked: the endpoint start() chose already (a balancer is asked once per try).
        """
        upstream = self.ctx.upstream
        state = self.state
        tried = self.tried if self.tried is not None else set()
        status, reason = 503, "no-healthy-endpoints"
        fresh_only = False
        hash_key = self.hash_key
        while not self.finished:
            if outcome is not None:
                if outcome is DONE:
                    return
                if outcome is RETRY:
                    fresh_only = True  # a reused connection had gone stale; the next is new
                    if self.endpoint is not None:
                        tried.discard(self.endpoint.key)
                    outcome = None
                    continue
                status, reason = outcome  # type: ignore[misc]
                if not self.retry_reserved:
                    break
                self.tries += 1
                fresh_only = False
                self._rewind()
                await self._backoff(state, self.tries)
                outcome = None
                continue
            endpoint, picked = picked or upstream.pick(state, tried, hash_key), None
            if endpoint is None:
                break
            tried.add(endpoint.key)
            conn = None if fresh_only else upstream.pool.take(endpoint)
            if conn is None:
                if state.max_connections and upstream.pool.open >= state.max_connections:
                    self.refuse(503, "circuit-open (max_connections)")
                    return
                if state.max_pending and upstream.pending >= state.max_pending:
                    self.refuse(503, "circuit-open (max_pending)")
                    return
                upstream.pending += 1
                try:
                    conn = await upstream.pool.connect(endpoint, state.connect_timeout)
                except (TimeoutError, OSError) as exc:
                    endpoint.errors += 1
                    upstream.outlier.record(endpoint, CONNECT_FAILURE)
                    timed_out = isinstance(exc, TimeoutError)
                    status, reason = (504, "connect-timeout") if timed_out else (
                        502, "connect-failed")
                    if not self._may_retry("connect-failure", self.tries):
                        break
                    self.tries += 1
                    await self._backoff(state, self.tries)
                    continue
                finally:
                    upstream.pending -= 1
            if self.finished:  # the client left while we connected
                upstream.pool.give(conn)
                return
            outcome = await self._forward(conn, endpoint, state)
        self.fail(status, reason)

    def _may_retry(self, kind: str, retry: int) -> bool:
        """Whether to try again after a failure of this kind; reserves a budget slot if so."""
        state = self.state
        if retry >= state.attempts or self.finished or kind not in state.retry_on:
            return False
        if kind != "connect-failure" and not self._replayable():
            return False  # the request left: only idempotent ones with a kept body go again
        if self.loop.time() >= self.deadline:
            return False
        upstream = self.ctx.upstream
        if not self.retry_reserved:
            if not upstream.retry_allowed(state):
                return False
            upstream.retries_inflight += 1
            upstream.retries_peak = max(upstream.retries_peak, upstream.retries_inflight)
            self.retry_reserved = True
        upstream.retries_total += 1
        return True

    def _retry_status(self, kind: str) -> bool:
        return self._may_retry(kind, self.tries)

    def deadline_passed(self) -> None:
        """The current try's connection timer: per-try timeout, else the request's."""
        if self.per_try and self.loop.time() < self.deadline:
            self._close_conn()
            if self.endpoint is not None:
                self.ctx.upstream.outlier.record(self.endpoint, 504)
                self._observe(True)
            # (a client told 100 Continue has sent its body to this try: not replayable)
            if not self.continue_sent and self._retry_status("gateway-error"):
                self._resolve((504, "per-try-timeout"))
                return
            self.fail(504, "per-try-timeout")
            return
        self.fail(504, "request-timeout")

    def _replayable(self) -> bool:
        return self.method in IDEMPOTENT and not self.upgrade and (
            not self.has_body or self.replay is not None)

    def _release_retry(self) -> None:
        if self.retry_reserved:
            self.retry_reserved = False
            self.ctx.upstream.retries_inflight -= 1

    async def _backoff(self, state: RouteState, retry: int) -> None:
        # Full jitter: uniformly up to base × 2^(n-1), capped; spreads a herd of retries.
        ceiling = min(state.backoff_max, state.backoff_base * (1 << min(retry - 1, 20)))
        delay = min(random.uniform(0, ceiling), max(self.deadline - self.loop.time(), 0))
        if delay > 0:
            await asyncio.sleep(delay)

    def _hash_key(self, state: RouteState) -> int | None:
        hash_on = state.hash_on
        if hash_on is None:
            return None
        if hash_on.type == "client_ip":
            return hash64(self.client.peer) if self.client.peer else None
        wanted = hash_on.name.encode().lower() if hash_on.type == "header" else b"cookie"
        for name, value in self.headers:
            if name.lower() != wanted:
                continue
            if hash_on.type == "header":
                return hash64(value)
            prefix = hash_on.name.encode() + b"="
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return hash64(part[len(prefix):])
        return None
