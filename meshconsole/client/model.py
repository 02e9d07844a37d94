"""What the SDK hands out: services to register, discovered endpoints, the policy."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from agents.runtime.config import split_host_port
from agents.runtime.durations import parse_duration_ms
from agents.runtime.policy import Policy, PolicyError, parse_policy


@dataclass(frozen=True)
class Service:
    """One instance of NAME at ADDRESS ("host:port") to register and heartbeat.

    When the service does not exist yet it is created with a TTL check of
    `ttl`: an instance whose heartbeats stop for that long turns critical."""

    name: str
    address: str
    tags: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    weight: int = 100
    zone: str = ""
    protocol: str = "http"
    ttl: str = "10s"

    @property
    def host(self) -> str:
        return self._split()[0]

    @property
    def port(self) -> int:
        return self._split()[1]

    def _split(self) -> tuple[str, int]:
        parsed = split_host_port(self.address)
        if parsed is None or not 0 < parsed[1] <= 65535:
            raise ValueError(f"{self.address!r} is not host:port")
        return parsed


@dataclass(frozen=True)
class ServiceEndpoint:
    id: str
    address: str
    port: int
    zone: str = ""
    weight: int = 100
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    status: str = "passing"

    @property
    def key(self) -> str:
        """The same key the agent's balancers use for this endpoint."""
        return f"{self.id}@{self.address}:{self.port}"

    @property
    def host_port(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ServiceEndpoint:
        return cls(id=str(data["id"]), address=str(data["address"]), port=int(data["port"]),
                   zone=str(data.get("zone") or ""), weight=int(data.get("weight", 100)),
                   tags=tuple(data.get("tags") or ()), metadata=dict(data.get("metadata") or {}),
                   status=str(data.get("status", "passing")))


@dataclass(frozen=True)
class Discovery(Sequence[ServiceEndpoint]):
    """The healthy endpoints of a service as of index `revision` (its X-Mesh-Index).

    stale: the control plane stopped answering; this is the last answer it gave."""

    service: str
    endpoints: tuple[ServiceEndpoint, ...]
    revision: int
    stale: bool = False
    fetched_at: float = field(default_factory=time.monotonic, compare=False)

    @overload
    def __getitem__(self, i: int) -> ServiceEndpoint: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[ServiceEndpoint]: ...
    def __getitem__(self, i: int | slice) -> ServiceEndpoint | Sequence[ServiceEndpoint]:
        return self.endpoints[i]

    def __len__(self) -> int:
        return len(self.endpoints)

    def __iter__(self) -> Iterator[ServiceEndpoint]:
        return iter(self.endpoints)


def policy_from_document(document: Mapping[str, Any]) -> Policy:
    """The runtime's Policy from GET /api/v1/services/{name}/policy/ (durations as
    strings there, milliseconds in the snapshot), so the SDK applies it as the
    agent does. Only what the SDK uses is carried over."""
    retries = document.get("retries") or {}
    outlier = document.get("outlier") or {}
    snapshot: dict[str, Any] = {
        "load_balancer": document.get("load_balancer", "round_robin"),
        "panic_threshold_percent": document.get("panic_threshold_percent", 50),
        "locality": {"enabled": bool((document.get("locality") or {}).get("enabled", True))},
        "retries": {k: retries[k] for k in ("attempts", "budget_percent") if k in retries},
        "outlier": {k: outlier[k] for k in ("consecutive_5xx", "consecutive_gateway",
                                            "max_ejection_percent") if k in outlier},
    }
    for name in ("backoff_base", "backoff_max"):
        if name in retries:
            snapshot["retries"][f"{name}_ms"] = parse_duration_ms(retries[name])
    if "base_ejection" in outlier:
        snapshot["outlier"]["base_ejection_ms"] = parse_duration_ms(outlier["base_ejection"])
    try:
        return parse_policy(snapshot)
    except (PolicyError, ValueError):
        return Policy()  # a newer control plane's document: the documented defaults
