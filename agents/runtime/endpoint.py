"""One endpoint of an upstream: its identity, its health and the counters kept on it.

Balancers, outlier detection, locality and the proxies all read and update
these objects; keeping the counters here keeps stats cheap.
"""

from __future__ import annotations

import math
import time

from agents.runtime.dial import TlsRoute
from agents.runtime.histogram import NBUCKETS, bucket_index

EWMA_DECAY_S = 10.0  # Finagle's default time constant for peak EWMA


def endpoint_key(id: str, address: str, port: int, tls: TlsRoute | None) -> str:
    """An endpoint's identity: the TLS route is part of it, so plaintext and mTLS
    connections are pooled apart and a mode change is a new endpoint."""
    key = f"{id}@{address}:{port}"
    return key if tls is None else f"{key}+mtls@{tls.host}:{tls.port}"


class Endpoint:
    """One instance we may send traffic to; counters live here so stats are cheap."""

    __slots__ = ("key", "id", "address", "port", "weight", "zone", "status", "priority",
                 "active", "requests", "errors", "removed", "latency_sum_ms", "buckets",
                 "ewma_ms", "ewma_at", "ejected", "times_ejected", "consecutive_5xx",
                 "consecutive_gateway", "ejections", "return_timer", "returned_at", "tls")

    def __init__(self, id: str, address: str, port: int, weight: int = 100, zone: str = "",
                 status: str = "passing", priority: int = 0, tls: TlsRoute | None = None) -> None:
        self.id = id
        self.address = address
        self.port = port
        self.tls = tls  # dial the node agent's inbound with mTLS (agents.runtime.dial)
        self.key = endpoint_key(id, address, port, tls)
        self.weight = weight
        self.zone = zone
        self.status = status
        self.active = 0  # in-flight requests, what least_request compares
        self.requests = 0
        self.errors = 0
        self.removed = False  # set when a snapshot drops it: no new requests, no pooling
        self.priority = priority
        self.latency_sum_ms = 0.0
        self.buckets = [0] * NBUCKETS
        self.ewma_ms = 0.0
        self.ewma_at = 0.0
        # Outlier detection (agents.runtime.outlier) keeps its state here.
        self.ejected = False
        self.times_ejected = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejections = 0
        self.return_timer: object | None = None
        self.returned_at = 0.0  # when the last ejection ended (the multiplier decays from then)

    @property
    def healthy(self) -> bool:
        return not self.ejected and self.status in ("passing", "warning")

    def observe(self, latency_ms: float, error: bool, now: float | None = None) -> None:
        """One finished request: counters, histogram, and the peak EWMA of its latency.
        now: time.monotonic(), if the caller has it."""
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_sum_ms += latency_ms
        self.buckets[bucket_index(latency_ms)] += 1
        if now is None:
            now = time.monotonic()
        if latency_ms > self.ewma_ms:
            self.ewma_ms = latency_ms  # peak sensitivity: a slow answer counts at once
        else:
            decay = math.exp(-(now - self.ewma_at) / EWMA_DECAY_S)
            self.ewma_ms = self.ewma_ms * decay + latency_ms * (1.0 - decay)
        self.ewma_at = now

    def __repr__(self) -> str:
        return f"Endpoint({self.address}:{self.port} w={self.weight})"
