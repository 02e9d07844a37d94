"""How often agents report, and how long a silent agent is trusted.

Every report is a request the control plane must take; a fleet of N agents
reporting every REPORT_INTERVAL_MS asks N / 2 per second, which outgrows what one
host's web processes take long before 2,000 agents. So the interval stretches
with the fleet, keeping the fleet's reports within `MESH_REPORT_BUDGET` per
second (default 100; 0 = never stretch): 2 s up to 200 agents, then
N / budget seconds, in half-second steps, at most MAX_REPORT_INTERVAL_MS —
as Consul's anti-entropy interval scales with the cluster's size. Agents are
told in every snapshot and in every report's answer (`report_interval_ms`), so
a growing fleet slows down within one report.

The heartbeat TTL follows: an agent (and the instances its reports heartbeat)
is silent after `MESH_HEARTBEAT_TTL` seconds at the 2 s interval, and after as
many more as the interval is stretched (15 s at 2 s, 75 s at 10 s). Config
changes do not wait for reports: they reach agents through their long polls,
whatever the interval.

The fleet's size is counted once per FLEET_CACHE_S per process.
"""

from __future__ import annotations

import math
import threading
import time

from django.conf import settings

from registry.models import Node

REPORT_INTERVAL_MS = 2000
MAX_REPORT_INTERVAL_MS = 60_000
FLEET_CACHE_S = 5.0

_lock = threading.Lock()
_counted: tuple[float, int] | None = None


def fleet_size() -> int:
    """Hosts with an agent, counted at most once per FLEET_CACHE_S."""
    global _counted
    now = time.monotonic()
    counted = _counted
    if counted is not None and now - counted[0] < FLEET_CACHE_S:
        return counted[1]
    with _lock:
        size = Node.objects.filter(agent__isnull=False).count()
        _counted = (now, size)
    return size


def forget_fleet_size() -> None:
    """Count again on the next call (tests)."""
    global _counted
    _counted = None


def report_interval_ms(agents: int | None = None) -> int:
    """The report interval for a fleet of AGENTS (default: the fleet's size)."""
    budget = settings.MESH_REPORT_BUDGET
    if budget <= 0:
        return REPORT_INTERVAL_MS
    size = fleet_size() if agents is None else agents
    stretched = math.ceil(size / budget * 2) * 500  # size / budget s, in 0.5 s steps
    return min(MAX_REPORT_INTERVAL_MS, max(REPORT_INTERVAL_MS, stretched))


def heartbeat_ttl_s(agents: int | None = None) -> int:
    """Seconds without a report after which an agent is silent: MESH_HEARTBEAT_TTL
    at the 2 s interval, stretched as the interval is (15 s -> 75 s at 10 s)."""
    ttl: int = settings.MESH_HEARTBEAT_TTL
    interval = report_interval_ms(agents)
    if interval <= REPORT_INTERVAL_MS:
        return ttl
    return math.ceil(ttl * interval / REPORT_INTERVAL_MS)
