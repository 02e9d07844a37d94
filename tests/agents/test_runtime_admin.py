"""The admin endpoint's routes over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

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


async def _answer_then_close(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send DATA and read to the server's close; a hang past TIMEOUT fails (the admin
    endpoint's own read timeout is 5 s, so a head it never finishes is caught here)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()  # to EOF: the server answered and closed
    finally:
        writer.close()


@pytest.mark.parametrize("head", [
    b"GET /ready HTTP/1.1\n\n",
    b"GET /ready HTTP/1.1\nHost: a\n\n",
    b"GET /ready HTTP/1.1\r\nHost: a\n\r\n",
    b"GET /ready HTTP/1.1\r\nHost: a\n\n",
    b"GET /ready HTTP/1.1\r\r\n\r\n",
])
async def test_a_head_with_bare_lf_is_a_400_and_closed_as_the_proxy_listener_does(
        head: bytes) -> None:
    async with admin(Source()) as port:
        answer = await _answer_then_close(port, head)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
        assert answer.endswith(b"\r\n\r\nbad request: header lines must end in CRLF\n"), answer
        assert (await fetch(port, "GET", "/ready")).status == 503  # still serving


async def test_a_head_of_many_short_lines_over_the_limit_gets_431() -> None:
    async with admin(Source()) as port:
        lines = b"".join(b"X-%d: a\r\n" % i for i in range(3000))
        answer = await _answer_then_close(port, b"GET /stats HTTP/1.1\r\n" + lines + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
