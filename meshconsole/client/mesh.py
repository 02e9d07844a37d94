"""ServiceMesh: register, discover, balance and call, over the REST API (docs/sdk.md)."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agents.runtime.policy import Policy
from meshconsole.client.balancing import FaultTolerance, LoadBalancer
from meshconsole.client.http import MeshError, MeshHTTPError, Transport
from meshconsole.client.model import Discovery, Service, ServiceEndpoint, policy_from_document
from meshconsole.client.registration import Registration
from meshconsole.client.watch import Watch

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"


class ServiceMesh:
    """The SDK's entry point. URL and TOKEN default to MESH_URL and MESH_TOKEN.
    Closing it (close(), `with`, or interpreter exit) deregisters what it registered."""

    def __init__(self, url: str | None = None, token: str | None = None, *, zone: str = "",
                 timeout: float = 10.0, wait_s: float = 30.0) -> None:
        self.transport = Transport(url or os.environ.get("MESH_URL") or DEFAULT_URL,
                                   os.environ.get("MESH_TOKEN", "") if token is None else token,
                                   timeout=timeout)
        self.zone = zone
        self.wait_s = wait_s
        self.registrations: list[Registration] = []
        self._watches: dict[str, Watch] = {}
        self._policies: dict[str, Policy] = {}
        self._balancers: dict[tuple[str, str | None], LoadBalancer] = {}
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    def register(self, service: Service) -> Registration:
        """Create the service if needed (TTL check) and the instance; heartbeat it."""
        registration = Registration(self.transport, service)
        with self._lock:
            self.registrations.append(registration)
        return registration

    def _watch(self, name: str) -> Watch:
        with self._lock:
            watch = self._watches.get(name)
        if watch is None:
            watch = Watch(self.transport, name, wait_s=self.wait_s)  # first answer, here
            with self._lock:
                if name in self._watches:
                    watch.stop()
                    watch = self._watches[name]
                else:
                    self._watches[name] = watch
        return watch

    def discover(self, name: str) -> Discovery:
        """The healthy endpoints of NAME: fetched on the first call, then kept current
        by a blocking-query watch; `stale` when the control plane stopped answering."""
        return self._watch(name).current

    def wait_for_change(self, name: str, index: int, timeout: float = 30.0) -> Discovery:
        """Block until discovery of NAME passes mesh revision INDEX (or TIMEOUT)."""
        return self._watch(name).wait_for(index, timeout)

    def policy(self, name: str) -> Policy:
        """NAME's traffic policy as the agent applies it (defaults if it cannot be read)."""
        with self._lock:
            cached = self._policies.get(name)
        if cached is not None:
            return cached
        try:
            document = self.transport.request("GET", f"/api/v1/services/{name}/policy/").body
            policy = policy_from_document(document if isinstance(document, dict) else {})
        except MeshHTTPError as exc:
            if exc.status == 404:
                raise
            policy = Policy()
        except MeshError:
            policy = Policy()
        with self._lock:
            return self._policies.setdefault(name, policy)

    def load_balancer(self, name: str, policy: str | None = None) -> LoadBalancer:
        """A balancer over NAME's discovery: POLICY names one of the agent's balancers
        (round_robin, least_request, ...); None takes the service's policy."""
        key = (name, policy)
        with self._lock:
            lb = self._balancers.get(key)
        if lb is None:
            lb = LoadBalancer(self._watch(name), self.policy(name), balancer=policy,
                              zone=self.zone)
            with self._lock:
                lb = self._balancers.setdefault(key, lb)
        return lb

    def fault_tolerance(self, name: str, *, attempts: int | None = None,
                        failures: tuple[type[BaseException], ...] = (Exception,)
                        ) -> FaultTolerance:
        """Calls to NAME with its retry and outlier policy (attempts: override retries)."""
        return FaultTolerance(self.load_balancer(name), attempts=attempts, failures=failures)

    def close(self) -> None:
        """Deregister every registration and stop every watch (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            registrations, self.registrations = self.registrations, []
            watches = list(self._watches.values())
        for registration in registrations:
            registration.close()
        for watch in watches:
            watch.stop()
        atexit.unregister(self.close)

    def __enter__(self) -> ServiceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServiceMesh:
    """ServiceMesh for asyncio code: every call that may block on the network runs
    in a worker thread; heartbeats and watches are the same background threads."""

    def __init__(self, url: str | None = None, token: str | None = None, *, zone: str = "",
                 timeout: float = 10.0, wait_s: float = 30.0) -> None:
        self.sync = ServiceMesh(url, token, zone=zone, timeout=timeout, wait_s=wait_s)

    async def register(self, service: Service) -> Registration:
        return await asyncio.to_thread(self.sync.register, service)

    async def discover(self, name: str) -> Discovery:
        return await asyncio.to_thread(self.sync.discover, name)

    async def load_balancer(self, name: str, policy: str | None = None) -> LoadBalancer:
        return await asyncio.to_thread(self.sync.load_balancer, name, policy)

    async def fault_tolerance(self, name: str, *, attempts: int | None = None,
                              failures: tuple[type[BaseException], ...] = (Exception,)
                              ) -> FaultTolerance:
        return await asyncio.to_thread(self.sync.fault_tolerance, name, attempts=attempts,
                                       failures=failures)

    async def call(self, name: str, fn: Callable[[ServiceEndpoint], Awaitable[T]]) -> T:
        """await fn(endpoint) with NAME's retry and outlier policy."""
        return await (await self.fault_tolerance(name)).arun(fn)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncServiceMesh:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
