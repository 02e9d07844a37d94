"""What the connections of one upstream listener share, HTTP or TCP alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agents.runtime.metrics import Metrics
from agents.runtime.upstream import UpstreamRuntime


class Connection(Protocol):
    """A client connection of a listener: closed when the agent stops."""

    def close(self) -> None: ...


@dataclass(eq=False)
class ListenerContext:
    upstream: UpstreamRuntime
    metrics: Metrics
    connections: set[Connection] = field(default_factory=set)
    inflight: int = 0  # requests (HTTP) or connections (TCP) the stop grace waits for
