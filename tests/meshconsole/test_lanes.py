"""Agent reports run their sync code on long-lived lane threads
(meshconsole.lanes); other requests keep Django's thread per request."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from meshconsole.lanes import AgentLanes
from meshconsole.longpoll import release_for_wait


def _thread_name() -> str:
    return threading.current_thread().name


def _app(threads: list[str], *, release: bool = False) -> Any:
    """An ASGI app whose request makes two thread-sensitive calls (as Django's
    middleware and view do) and records the thread of each."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        threads.append(await sync_to_async(_thread_name)())
        if release:
            await release_for_wait()
        threads.append(await sync_to_async(_thread_name)())

    return app


def _django_like(app: Any) -> Any:
    """APP inside a ThreadSensitiveContext of its own, as Django's ASGIHandler runs a request."""

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext():
            await app(scope, receive, send)

    return inner


def test_reports_reuse_a_lane_thread_and_others_do_not() -> None:
    threads: list[str] = []
    lanes = AgentLanes(_django_like(_app(threads)), lanes=1)

    async def two(path: str) -> None:
        for _ in range(2):
            await lanes({"type": "http", "path": path}, None, None)

    asyncio.run(two("/api/v1/agents/abc/report/"))
    assert len(set(threads)) == 1  # one thread for both requests, both calls each
    assert threads[0].startswith("mesh-lane-")
    threads.clear()
    asyncio.run(two("/api/v1/services/"))
    assert threads[0] == threads[1] and threads[2] == threads[3]  # one thread per request
    assert threads[0] != threads[2]  # and a new one for the next request
    assert not threads[0].startswith("mesh-lane-")


def test_the_least_busy_lane_is_chosen() -> None:
    seen: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(await sync_to_async(_thread_name)())
            if scope["path"].startswith("/api/v1/agents/slow"):
                await gate.wait()  # the first request holds its lane

        lanes = AgentLanes(app, lanes=2)
        slow = asyncio.create_task(lanes({"type": "http", "path": "/api/v1/agents/slow/report/"},
                                         None, None))
        await asyncio.sleep(0.1)
        await lanes({"type": "http", "path": "/api/v1/agents/fast/report/"}, None, None)
        gate.set()
        await slow
        assert [lane.busy for lane in lanes.lanes] == [0, 0]

    asyncio.run(main())
    assert seen[0] != seen[1]


def test_a_long_poll_release_keeps_the_lane_thread() -> None:
    threads: list[str] = []
    lanes = AgentLanes(_django_like(_app(threads, release=True)), lanes=1)
    asyncio.run(lanes({"type": "http", "path": "/api/v1/agents/x/report/"}, None, None))
    asyncio.run(lanes({"type": "http", "path": "/api/v1/agents/x/report/"}, None, None))
    assert len(set(threads)) == 1
    assert all(not lane.executor._shutdown for lane in lanes.lanes)


def test_websockets_and_other_scopes_pass_through() -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    asyncio.run(AgentLanes(app, lanes=1)({"type": "websocket", "path": "/ws/live/"}, None, None))
    asyncio.run(AgentLanes(app, lanes=1)({"type": "lifespan"}, None, None))
    assert calls == ["websocket", "lifespan"]
