"""Local rate limit: one token bucket per destination (and agent process)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp", "_clock")

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self.stamp = clock()

    def take(self) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        now = self._clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


def retry_after(wait_s: float) -> bytes:
    """Retry-After in whole seconds, rounded up (never 0: that would invite a hammering)."""
    return b"%d" % max(1, math.ceil(wait_s))
