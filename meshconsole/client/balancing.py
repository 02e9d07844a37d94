"""Client-side balancing and fault tolerance with the agent's own code.

A LoadBalancer feeds discovery answers to an agents.runtime UpstreamRuntime,
exactly as a snapshot reaches the agent's proxy: the same balancers (the
policy's `load_balancer` or the one asked for), the same panic / priority /
zone plan, the same pick with retries moving to endpoints not yet tried.

Ejection follows the policy's `outlier` rule (consecutive failures, base
ejection × times ejected, at most max_ejection_percent ejected), kept here
because agents.runtime.outlier returns endpoints with event-loop timers and
the sync SDK has no loop: an ejected endpoint comes back on the first pick
after its time is over.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from types import TracebackType
from typing import TypeVar

from agents.runtime.balancers import BALANCERS
from agents.runtime.config import Upstream
from agents.runtime.endpoint import Endpoint
from agents.runtime.policy import Policy
from agents.runtime.snapshot import EndpointSpec, UpstreamSnapshot
from agents.runtime.upstream import UpstreamRuntime
from meshconsole.client.http import MeshError
from meshconsole.client.model import Discovery, ServiceEndpoint
from meshconsole.client.watch import Watch

T = TypeVar("T")


class NoEndpoint(MeshError):
    """Discovery has no endpoint to offer."""


class LoadBalancer:
    def __init__(self, watch: Watch, policy: Policy, *, balancer: str | None = None,
                 zone: str = "") -> None:
        if balancer is not None:
            if balancer not in BALANCERS:
                raise ValueError(f"unknown load balancer {balancer!r}; one of "
                                 f"{', '.join(BALANCERS)}")
            policy = replace(policy, load_balancer=balancer)
        self.service = watch.service
        self.policy = policy
        self._watch = watch
        self._runtime = UpstreamRuntime(Upstream(watch.service, "127.0.0.1", 0), zone)
        self._lock = threading.Lock()
        self._applied: Discovery | None = None
        self._public: dict[str, ServiceEndpoint] = {}
        self._ejected_until: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self.policy.load_balancer

    def pick(self, tried: Collection[str] = (), hash_key: int | None = None
             ) -> ServiceEndpoint | None:
        """An endpoint (None if discovery has none); TRIED: keys to avoid, for a retry."""
        with self._lock:
            endpoint = self._pick(tried, hash_key)
            return self._public[endpoint.key] if endpoint else None

    def _pick(self, tried: Collection[str], hash_key: int | None) -> Endpoint | None:
        self._sync()
        return self._runtime.pick(self._runtime.state, tried, hash_key)

    def _sync(self) -> None:
        current = self._watch.current
        if current is not self._applied:
            self._applied = current
            specs = tuple(EndpointSpec(e.id, e.address, e.port, e.weight, e.zone, e.status)
                          for e in current.endpoints)
            self._runtime.apply(UpstreamSnapshot("http", self.policy, specs))
            self._public = {e.key: e for e in current.endpoints}
        if self._ejected_until:
            now = time.monotonic()
            back = [k for k, until in self._ejected_until.items() if until <= now]
            for endpoint in self._runtime.state.endpoints:
                if endpoint.key in back:
                    endpoint.ejected = False
                    endpoint.consecutive_gateway = 0
                    endpoint.returned_at = now
            for key in back:
                del self._ejected_until[key]
            if back:
                self._runtime.rebuild()

    def begin(self, tried: Collection[str]) -> tuple[Endpoint, ServiceEndpoint]:
        with self._lock:
            endpoint = self._pick(tried, None)
            if endpoint is None:
                raise NoEndpoint(f"no endpoint of {self.service} to call")
            endpoint.active += 1
            return endpoint, self._public[endpoint.key]

    def finish(self, endpoint: Endpoint, started: float, failed: bool) -> None:
        with self._lock:
            endpoint.active -= 1
            now = time.monotonic()
            endpoint.observe((now - started) * 1000, failed, now)
            if not failed:
                endpoint.consecutive_gateway = 0
                return
            endpoint.consecutive_gateway += 1
            rule = self.policy.outlier
            if (rule.consecutive_gateway and endpoint.consecutive_gateway
                    >= rule.consecutive_gateway and not endpoint.ejected):
                self._eject(endpoint, now)

    def _eject(self, endpoint: Endpoint, now: float) -> None:
        endpoints = self._runtime.state.endpoints
        ejected = sum(e.ejected for e in endpoints)
        if endpoint.removed or ejected * 100 >= self.policy.outlier.max_ejection_percent * len(
                endpoints):
            return
        endpoint.ejected = True
        endpoint.times_ejected += 1
        endpoint.ejections += 1
        self._ejected_until[endpoint.key] = now + (
            self.policy.outlier.base_ejection_ms / 1000 * endpoint.times_ejected)
        self._runtime.rebuild()

    def ejected(self) -> list[ServiceEndpoint]:
        with self._lock:
            self._sync()
            return [self._public[e.key] for e in self._runtime.state.endpoints if e.ejected]


class Try:
    """One call to one endpoint: `with` (or `async with`) yields it; an exception
    inside counts as a failure of that endpoint and propagates."""

    def __init__(self, lb: LoadBalancer, tried: set[str], failures: tuple[type[BaseException],
                 ...]) -> None:
        self._lb, self._tried, self._failures = lb, tried, failures
        self._endpoint: Endpoint | None = None
        self._started = 0.0

    def __enter__(self) -> ServiceEndpoint:
        self._endpoint, public = self._lb.begin(self._tried)
        self._tried.add(public.key)
        self._started = time.monotonic()
        return public

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._endpoint is not None
        failed = kind is not None and issubclass(kind, self._failures)
        self._lb.finish(self._endpoint, self._started, failed)

    async def __aenter__(self) -> ServiceEndpoint:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, exc, tb)


class FaultTolerance:
    """The service's retry and outlier policy around calls to its endpoints.

    `with ft.call() as ep:` is one try (a `with` body runs once in Python): a
    failure is counted against ep (ejection) and raised. `ft.run(fn)` retries:
    fn(ep) on another endpoint after each failure, up to the policy's
    `retries.attempts` retries, with its jittered exponential backoff."""

    def __init__(self, lb: LoadBalancer, *, attempts: int | None = None,
                 failures: tuple[type[BaseException], ...] = (Exception,)) -> None:
        self.lb = lb
        retries = lb.policy.retries
        self.attempts = retries.attempts if attempts is None else attempts
        self.failures = failures
        self._rng = random.Random()

    def call(self, tried: set[str] | None = None) -> Try:
        return Try(self.lb, set() if tried is None else tried, self.failures)

    def backoff_s(self, retry: int) -> float:
        retries = self.lb.policy.retries
        ceiling = min(retries.backoff_max_ms, retries.backoff_base_ms * 2 ** retry) / 1000
        return self._rng.uniform(0, ceiling)

    def run(self, fn: Callable[[ServiceEndpoint], T]) -> T:
        tried: set[str] = set()
        for retry in range(self.attempts + 1):
            try:
                with self.call(tried) as endpoint:
                    return fn(endpoint)
            except self.failures:
                if retry >= self.attempts or isinstance(_current(), NoEndpoint):
                    raise
            time.sleep(self.backoff_s(retry))
        raise AssertionError("unreachable")

    async def arun(self, fn: Callable[[ServiceEndpoint], Awaitable[T]]) -> T:
        import asyncio

        tried: set[str] = set()
        for retry in range(self.attempts + 1):
            try:
                async with self.call(tried) as endpoint:
                    return await fn(endpoint)
            except self.failures:
                if retry >= self.attempts or isinstance(_current(), NoEndpoint):
                    raise
            await asyncio.sleep(self.backoff_s(retry))
        raise AssertionError("unreachable")


def _current() -> BaseException | None:
    import sys

    return sys.exc_info()[1]
