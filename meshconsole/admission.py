"""Admission control for the agent protocol's writes (enroll, report, certificates).

Under a fleet's load the web process used to take every request at once: each
ran in a thread of its own (Django runs a request's sync view so) and waited for
one of the few pooled database connections; past the agents' 10 s timeout they
gave up and retried while the abandoned requests still ran, and the process
ended with ~1,850 threads and almost nothing answered (1,000 simulated agents on
PostgreSQL, docs/benchmarks.md). Here, per web process (per event loop):

- at most `MESH_AGENT_CONCURRENCY` (default 8, the pool's size) such requests run
  at once;
- up to `MESH_AGENT_QUEUE` (default 64) more wait their turn, without a thread,
  for at most QUEUE_WAIT_S;
- the rest, and those that waited too long, are answered at once `503` with
  `Retry-After` (1-3 s, jittered): the agents back off and come again, and the
  requests that are taken finish well within their timeout.

The config long poll is not counted here: its database steps have their own bound
(`meshconsole.longpoll.db_step`) and it holds no thread while it waits. Neither is
anything else (console, API, discovery).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

QUEUE_WAIT_S = 5.0
ADMITTED = re.compile(r"^/api/v1/agents/(enroll|[0-9a-f-]{36}/(report|certificates))/$")


class _Gate:
    def __init__(self, running: int) -> None:
        self.slots = asyncio.Semaphore(running)
        self.waiting = 0
        self.refused = 0


_gates: dict[int, _Gate] = {}


def _gate() -> _Gate:
    loop_id = id(asyncio.get_running_loop())
    gate = _gates.get(loop_id)
    if gate is None:
        gate = _gates[loop_id] = _Gate(max(1, settings.MESH_AGENT_CONCURRENCY))
    return gate


def busy_response() -> HttpResponse:
    body = json.dumps({"detail": "the control plane is busy; retry after the given seconds"})
    response = HttpResponse(body, status=503, content_type="application/json")
    response["Retry-After"] = str(random.randint(1, 3))
    return response


class AgentAdmissionMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if not self.is_async:  # the sync chain (tests' Client): no event loop to queue on
            response: HttpResponseBase = self.get_response(request)
            return response
        return self._acall(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.method != "POST" or not ADMITTED.match(request.path_info):
            response: HttpResponseBase = await self.get_response(request)
            return response
        gate = _gate()
        if gate.slots.locked():
            if gate.waiting >= settings.MESH_AGENT_QUEUE:
                gate.refused += 1
                return busy_response()
            gate.waiting += 1
            try:
                await asyncio.wait_for(gate.slots.acquire(), QUEUE_WAIT_S)
            except TimeoutError:
                gate.refused += 1
                return busy_response()
            finally:
                gate.waiting -= 1
        else:
            await gate.slots.acquire()
        try:
            response = await self.get_response(request)
            return response
        finally:
            gate.slots.release()
