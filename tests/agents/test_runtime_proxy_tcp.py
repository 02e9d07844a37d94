"""The L4 (protocol: tcp) proxy: echo through it, fail over on refused endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.runtime.config import Upstream
from agents.runtime.metrics import Metrics
from agents.runtime.proxy_tcp import TcpContext, start_tcp_listener
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.upstream import UpstreamRuntime
from tests.agents.backends import free_port, upstream_entry

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def tcp_proxy(*ports: int, **policy: Any) -> AsyncIterator[tuple[int, TcpContext]]:
    runtime = UpstreamRuntime(Upstream("cache", "127.0.0.1", 0, "tcp", "orders"))
    raw = {"revision": 1,
           "upstreams": {"cache": upstream_entry(*ports, protocol="tcp", **policy)}}
    runtime.apply(parse_snapshot(raw).upstreams["cache"])
    ctx = TcpContext(runtime, Metrics())
    server = await start_tcp_listener(ctx, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], ctx
    finally:
        server.close()
        for writer in list(ctx.writers):
            writer.close()
        await asyncio.wait_for(server.wait_closed(), 2)


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_bytes_are_piped_both_ways() -> None:
    async with echo_server() as port, tcp_proxy(port) as (proxy_port, ctx):
        payload = b"ping" * 100_000
        assert await roundtrip(proxy_port, payload) == payload
        await asyncio.sleep(0.05)
    assert ctx.metrics.totals[("orders", "cache")].requests == 1
    assert ctx.metrics.totals[("orders", "cache")].errors == 0


async def test_refused_endpoint_fails_over_to_the_next() -> None:
    dead = await free_port()
    async with echo_server() as port, tcp_proxy(dead, port) as (proxy_port, ctx):
        for _ in range(4):
            assert await roundtrip(proxy_port, b"hello") == b"hello"


async def test_no_reachable_endpoint_closes_and_counts_an_error() -> None:
    async with tcp_proxy(await free_port()) as (proxy_port, ctx):
        assert await roundtrip(proxy_port, b"hello") == b""
        await asyncio.sleep(0.05)
    assert ctx.metrics.totals[("orders", "cache")].errors == 1


async def test_connect_failures_eject_a_tcp_endpoint_and_it_gets_no_more_attempts() -> None:
    dead = await free_port()
    outlier = {"consecutive_gateway": 2, "base_ejection_ms": 30000, "max_ejection_percent": 50}
    async with echo_server() as port, tcp_proxy(dead, port, outlier=outlier,
                                                panic_threshold_percent=0) as (proxy_port, ctx):
        bad = next(e for e in ctx.upstream.state.endpoints if e.port == dead)
        for _ in range(6):
            assert await roundtrip(proxy_port, b"hello") == b"hello"
        assert bad.ejected and bad.errors == 2  # round robin tried it twice, then never again
        for _ in range(4):
            assert await roundtrip(proxy_port, b"hello") == b"hello"
        assert bad.errors == 2
        events = ctx.upstream.drain_events()
    assert [(e["event"], e["port"]) for e in events] == [("ejected", dead)]
    assert events[0]["reason"] == "2 consecutive gateway failures"
    assert ctx.upstream.outlier.ejections_total == 1
