"""The admin endpoint's routes over a real socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agents.runtime.admin import start_admin
from tests.agents.backends import fetch, raw_exchange


class Source:
    def __init__(self) -> None:
        self.is_ready = False
        self.snapshot: dict[str, Any] | None = None

    def ready(self) -> bool:
        return self.is_ready

    def stats(self) -> dict[str, Any]:
        return {"node": "host-a", "applied_revision": 3}

    def prometheus(self) -> str:
        return "meshagent_applied_revision 3\n"

    def config_json(self) -> dict[str, Any] | None:
        return self.snapshot


@contextlib.asynccontextmanager
async def admin(source: Source) -> AsyncIterator[int]:
    server = await start_admin(source, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_ready_turns_200_once_the_agent_is_ready() -> None:
    source = Source()
    async with admin(source) as port:
        assert (await fetch(port, "GET", "/ready")).status == 503
        source.is_ready = True
        assert (await fetch(port, "GET", "/ready")).status == 200


async def test_stats_metrics_and_config() -> None:
    source = Source()
    async with admin(source) as port:
        stats = await fetch(port, "GET", "/stats")
        metrics = await fetch(port, "GET", "/metrics")
        no_config = await fetch(port, "GET", "/config")
        source.snapshot = {"revision": 3}
        config = await fetch(port, "GET", "/config")
    assert stats.json() == {"node": "host-a", "applied_revision": 3}
    assert metrics.header("content-type", ).startswith("text/plain; version=0.0.4")
    assert metrics.body == b"meshagent_applied_revision 3\n"
    assert no_config.status == 404
    assert config.json() == {"revision": 3}


async def test_unknown_paths_404_and_bad_requests_400() -> None:
    async with admin(Source()) as port:
        assert (await fetch(port, "GET", "/nope")).status == 404
        assert (await fetch(port, "POST", "/ready", body=b"")).status == 405
        assert (await raw_exchange(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")


async def test_a_head_over_the_read_limit_gets_431_not_a_reset() -> None:
    async with admin(Source()) as port:
        answer = await raw_exchange(port, b"GET /stats HTTP/1.1\r\nX-A: " + b"a" * 20_000
                                    + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert (await fetch(port, "GET", "/ready")).status == 503  # still serving
