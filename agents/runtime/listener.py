"""What the connections of one upstream listener share, HTTP or TCP alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agents.runtime.metrics import Metrics
from agents.runtime.upstream import UpstreamRuntime


class Connection(Protocol):
    """A client connection of a listener: drained, then closed, when the agent stops."""

    def close(self) -> None: ...

    def drain(self, idle_s: float) -> None:
        """The agent is stopping: close now if that loses nothing (idle for IDLE_S)."""


@dataclass(eq=False)
class ListenerContext:
    upstream: UpstreamRuntime
    metrics: Metrics
    connections: set[Connection] = field(default_factory=set)
    inflight: int = 0  # requests (HTTP) or connections (TCP) the stop grace waits for
    draining: bool = False  # stopping: every HTTP response says Connection: close
