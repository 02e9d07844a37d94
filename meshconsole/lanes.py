"""Long-lived threads for the agents' frequent requests (reports, enrollment).

Django runs each ASGI request's sync code (the MiddlewareMixin chain, DRF
views) in a single-thread executor made for that request and shut down after
it: a thread started and joined per request. At 200 agents reporting every 2 s
that was 7 % of the web process's samples in thread start-up, and the event
loop itself waited for each new thread to start. Here a matching request runs
its sync code on one of a few lanes, each a ThreadPoolExecutor of one thread
kept for the process's life (asgiref's ThreadSensitiveContext with a
caller-owned executor; Django's own per-request context then nests inside it
and does nothing). A request still runs all its sync code on one thread, as
Django expects; it is sent to the least busy lane, so a slow one (a writer
waiting for SQLite's lock) does not hold the others back.

The lanes also bound how many of these requests run sync code at once (the
rest queue in the event loop, not in threads).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

# The agent endpoints that are neither a long-poll nor rare: the report.
LANE_PATHS = re.compile(r"^/api/v1/agents/(?:[^/]+/report|enroll)/$")


class Lane:
    def __init__(self, n: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mesh-lane-{n}")
        self.busy = 0


_owned: set[ThreadPoolExecutor] = set()


def owned(executor: object) -> bool:
    """Whether EXECUTOR is a lane's (never to be shut down by a request)."""
    return executor in _owned


class AgentLanes:
    """ASGI middleware: HTTP requests whose path matches LANE_PATHS run their sync
    code on LANES long-lived threads; everything else passes through untouched."""

    def __init__(self, app: Any, *, lanes: int) -> None:
        self.app = app
        self.lanes = [Lane(n) for n in range(lanes)]
        _owned.update(lane.executor for lane in self.lanes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.lanes or scope.get("type") != "http" or not LANE_PATHS.match(
            scope.get("path", "")
        ):
            await self.app(scope, receive, send)
            return
        lane = min(self.lanes, key=lambda candidate: candidate.busy)
        lane.busy += 1
        try:
            async with ThreadSensitiveContext(executor=lane.executor):
                await self.app(scope, receive, send)
        finally:
            lane.busy -= 1
