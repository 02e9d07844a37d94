"""Retries of one proxied HTTP request (docs/policies.md, "retries").

A request that never fails never meets this module's state: an Exchange gets
its RetryState at the first failure that may be retried (the try count and the
slot it holds in the upstream's retry budget). The routing task's attempts
loop (pick, connect, forward, try again) and the retry decision live here too,
written against `Routed`, the few members of an Exchange they use.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Protocol

from agents.runtime.outlier import CONNECT_FAILURE

if TYPE_CHECKING:
    from agents.runtime.endpoint import Endpoint
    from agents.runtime.listener import ListenerContext
    from agents.runtime.pool import UpstreamConnection
    from agents.runtime.upstream import Destination, RouteState

# A request body is kept for a retry only up to this size; a bigger one, once
# streamed to an upstream, cannot be sent again, so such a request is not retried.
REPLAY_LIMIT = 64 * 1024
RETRY = "retry"  # a stale pooled connection: try again on a fresh one, free of charge
DONE = "done"


class RetryState:
    """One request's retries: created at its first retryable failure, never before."""

    __slots__ = ("upstream", "tries", "reserved")

    def __init__(self, upstream: Destination) -> None:
        self.upstream = upstream
        self.tries = 0  # retries made
        self.reserved = False  # holds a slot of the upstream's retry budget

    def reserve(self, state: RouteState) -> bool:
        """This request's slot in the retry budget (taken once); False if it is spent."""
        if self.reserved:
            return True
        upstream = self.upstream
        if not upstream.retry_allowed(state):
            return False
        upstream.retries_inflight += 1
        upstream.retries_peak = max(upstream.retries_peak, upstream.retries_inflight)
        self.reserved = True
        return True

    def release(self) -> None:
        if self.reserved:
            self.reserved = False
            self.upstream.retries_inflight -= 1

    async def backoff(self, state: RouteState, loop: asyncio.AbstractEventLoop,
                      deadline: float) -> None:
        # Full jitter: uniformly up to base × 2^(n-1), capped; spreads a herd of retries.
        ceiling = min(state.backoff_max, state.backoff_base * (1 << min(self.tries - 1, 20)))
        delay = min(random.uniform(0, ceiling), max(deadline - loop.time(), 0))
        if delay > 0:
            await asyncio.sleep(delay)


class Routed(Protocol):
    """What the retry code reads and calls on an Exchange."""

    ctx: ListenerContext
    loop: asyncio.AbstractEventLoop
    state: RouteState
    target: Destination  # the upstream, or the route target, the request goes to
    finished: bool
    tried: set[str] | None
    hash_key: int | None
    endpoint: Endpoint | None
    deadline: float
    retry: RetryState | None

    def refuse(self, status: int, reason: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None: ...

    def fail(self, status: int, reason: str) -> None: ...

    def replayable(self) -> bool: ...

    def rewind(self) -> None: ...

    async def forward(self, conn: UpstreamConnection, endpoint: Endpoint,
                      state: RouteState) -> object: ...


def may_retry(ex: Routed, kind: str) -> bool:
    """Whether EX tries again after a failure of this kind; reserves a budget slot if so."""
    state = ex.state
    retry = ex.retry
    if (retry is not None and retry.tries >= state.attempts) or not state.attempts:
        return False
    if ex.finished or kind not in state.retry_on:
        return False
    if kind != "connect-failure" and not ex.replayable():
        return False  # the request left: only idempotent ones with a kept body go again
    if ex.loop.time() >= ex.deadline:
        return False
    if retry is None:
        retry = ex.retry = RetryState(ex.target)
    if not retry.reserve(state):
        return False
    ex.target.retries_total += 1
    return True


async def attempts(ex: Routed, outcome: object = None, picked: Endpoint | None = None) -> None:
    """Pick, connect, forward, and again while a retry is allowed.

    outcome: that of a try already made (the task-less first one), to carry on from;
    picked: the endpoint start() chose already (a balancer is asked once per try).
    """
    upstream = ex.target
    state = ex.state
    tried = ex.tried if ex.tried is not None else set()
    status, reason = 503, "no-healthy-endpoints"
    fresh_only = False
    hash_key = ex.hash_key
    while not ex.finished:
        if outcome is not None:
            if outcome is DONE:
                return
            if outcome is RETRY:
                fresh_only = True  # a reused connection had gone stale; the next is new
                if ex.endpoint is not None:
                    tried.discard(ex.endpoint.key)
                outcome = None
                continue
            status, reason = outcome  # type: ignore[misc]
            retry = ex.retry
            if retry is None or not retry.reserved:
                break
            retry.tries += 1
            fresh_only = False
            ex.rewind()
            await retry.backoff(state, ex.loop, ex.deadline)
            outcome = None
            continue
        endpoint, picked = picked or upstream.pick(state, tried, hash_key), None
        if endpoint is None:
            break
        tried.add(endpoint.key)
        conn = None if fresh_only else upstream.pool.take(endpoint)
        if conn is None:
            if state.max_connections and upstream.pool.open >= state.max_connections:
                ex.refuse(503, "circuit-open (max_connections)")
                return
            if state.max_pending and upstream.pending >= state.max_pending:
                ex.refuse(503, "circuit-open (max_pending)")
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
                if not may_retry(ex, "connect-failure"):
                    break
                retry = ex.retry
                assert retry is not None  # may_retry made it
                retry.tries += 1
                await retry.backoff(state, ex.loop, ex.deadline)
                continue
            finally:
                upstream.pending -= 1
        if ex.finished:  # the client left while we connected
            upstream.pool.give(conn)
            return
        outcome = await ex.forward(conn, endpoint, state)
    ex.fail(status, reason)
