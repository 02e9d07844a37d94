"""Many live consoles and a burst of changes: each console gets at most one
topology message a second, none gets an error, and each ends on the final state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from registry import services
from tests.monitoring.test_consumers import connect, session_key, topology_names

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
__all__ = ["session_key"]  # the fixture, shared with test_consumers

CONSOLES = 100
BURST = 20


@database_sync_to_async
def burst() -> None:
    user = User.objects.get(username="victor")
    for i in range(BURST):
        services.service_create(user=user, data={"name": f"burst-{i:02d}"})


FINAL = {f"burst-{i:02d}" for i in range(BURST)}


async def collect(ws: Any, until: float, into: list[tuple[float, dict[str, Any]]]) -> None:
    """Until the console has the final state (or UNTIL: a loaded machine is slow)."""
    while time.monotonic() < until:
        # receive_nothing peeks; a receive that times out would cancel the app.
        if not await ws.receive_nothing(timeout=0.05):
            into.append((time.monotonic(), await ws.receive_json_from()))
            if into[-1][1].get("type") == "topology" and topology_names(into[-1][1]) == FINAL:
                return


async def test_a_burst_reaches_every_console_coalesced(session_key: str) -> None:
    consoles = [connect(session_key) for _ in range(CONSOLES)]
    for ws in consoles:
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    for ws in consoles:
        assert (await ws.receive_json_from(timeout=10))["type"] == "topology"
    received: list[list[tuple[float, dict[str, Any]]]] = [[] for _ in consoles]
    started = time.monotonic()
    until = started + 60
    await asyncio.gather(
        burst(), *(collect(ws, until, got) for ws, got in zip(consoles, received, strict=True))
    )
    for got in received:
        assert [m for _, m in got if m["type"] != "topology"] == []  # no error, nothing else
        early = [t for t, _ in got if t - started < 1.5]
        assert len(early) <= 2
        times = [t for t, _ in got]
        # Consecutive pushes at least ~a second apart (a little slack for the event loop).
        assert all(b - a > 0.9 for a, b in zip(times, times[1:], strict=False)), times
        assert got and topology_names(got[-1][1]) == FINAL
    for ws in consoles:
        await ws.disconnect()
