"""Gateway rate limits: `local` = the runtime's token bucket (per process), `global` =
one token bucket per key in Redis, taken atomically by a Lua script on Redis' clock,
so N gateway processes on any number of hosts share it.

When Redis does not answer within `gateway.redis_timeout` (default 50ms) the
request follows `gateway.on_redis_error`: `open` (the default: an outage of the
limiter's store must not take the edge down; local limits still apply) or
`closed` (429: for limits that protect something that must never be
overrun). After a failure Redis is left alone for a second, so an outage costs
no timeout per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from agents.runtime.gateway.table import RateLimit
from agents.runtime.ratelimit import TokenBucket

log = logging.getLogger("meshagent.gateway")

DOWN_S = 1.0
_BACKGROUND: set[asyncio.Task[None]] = set()

# KEYS[1]: the bucket; ARGV: rate (tokens per second), capacity, expiry (ms).
# Returns {allowed (0/1), tokens left (floor), ms until a token, ms until full}.
TOKEN_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local cap = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(v[1])
local stamp = tonumber(v[2])
if tokens == nil or stamp == nil then
  tokens = cap
  stamp = now
end
tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, math.floor(tokens), wait, math.ceil((cap - tokens) / rate)}
"""


@dataclass
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again
    wait_s: float = 0.0  # until a token (refused)

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"ratelimit-limit", b"%d" % self.limit),
               (b"ratelimit-remaining", b"%d" % max(self.remaining, 0)),
               (b"ratelimit-reset", b"%d" % math.ceil(self.reset_s))]
        if not self.allowed:
            out.append((b"retry-after", b"%d" % max(1, math.ceil(self.wait_s))))
        return out


def local_take(bucket: TokenBucket, limit: RateLimit) -> Verdict:
    wait = bucket.take()
    tokens = bucket.tokens
    reset = (bucket.burst - tokens) / bucket.rate
    return Verdict(wait == 0.0, limit.requests, int(tokens), reset, wait)


class GlobalLimiter:
    def __init__(self, url: str, timeout_ms: int, on_error: str, prefix: str) -> None:
        self.url = url
        self.timeout = timeout_ms / 1000
        self.fail_open = on_error == "open"
        self.prefix = prefix
        self.down_until = 0.0
        self.errors_total = 0
        self._client: object = None
        self._script: object = None

    def _connect(self) -> object:
        if self._script is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                             socket_connect_timeout=self.timeout)
            self._client = client
            self._script = client.register_script(TOKEN_BUCKET_LUA)
        return self._script

    async def warm(self) -> None:
        """Import the client, load the script and open a connection before the first request
        (an import on the first request would stall the event loop for every client)."""
        if not self.url:
            return
        try:
            script = self._connect()
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await script(keys=[f"{self.prefix}warm"],  # type: ignore[operator]
                             args=["1.0", 1, 1000])
        except Exception as exc:
            log.warning("gateway: redis %s not reachable at start (%s); global limits fail %s "
                        "until it is", self.url, type(exc).__name__,
                        "open" if self.fail_open else "closed")
            self._script = None

    def unavailable(self, limit: RateLimit) -> Verdict:
        """The verdict when Redis cannot be asked (on_redis_error)."""
        if self.fail_open:
            return Verdict(True, limit.requests, limit.capacity, 0.0)
        return Verdict(False, limit.requests, 0, 1.0, 1.0)

    async def take(self, key: str, limit: RateLimit) -> Verdict:
        if not self.url or time.monotonic() < self.down_until:
            return self.unavailable(limit)
        expiry = int(math.ceil(limit.capacity / limit.rate * 1000)) + 1000
        try:
            script = self._connect()
            async with asyncio.timeout(self.timeout):
                result = await script(keys=[f"{self.prefix}{key}"],  # type: ignore[operator]
                                      args=[repr(limit.rate), limit.capacity, expiry])
            allowed, remaining, wait_ms, full_ms = (int(x) for x in result)
        except Exception as exc:  # timeout, refused, a Redis error: the documented choice
            self.errors_total += 1
            if time.monotonic() >= self.down_until:
                log.warning("gateway: redis %s unavailable (%s); failing %s for %.0fs",
                            self.url, type(exc).__name__,
                            "open" if self.fail_open else "closed", DOWN_S)
            self.down_until = time.monotonic() + DOWN_S
            self._script = None  # a new connection next time
            client, self._client = self._client, None
            if client is not None:
                task = asyncio.get_running_loop().create_task(_close(client))
                _BACKGROUND.add(task)  # held until done (the loop keeps only weak references)
                task.add_done_callback(_BACKGROUND.discard)
            return self.unavailable(limit)
        return Verdict(bool(allowed), limit.requests, remaining, full_ms / 1000, wait_ms / 1000)

    async def close(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await _close(client)


async def _close(client: object) -> None:
    try:
        await client.aclose()  # type: ignore[attr-defined]
    except Exception:
        pass
