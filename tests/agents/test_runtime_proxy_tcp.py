"""The L4 (protocol: tcp) proxy: echo through it, half-close, flow control, fail over.

Every scenario runs on the stdlib loop (pytest-asyncio) and again on uvloop,
which is what meshagent runs on: their transports differ in the details that
matter here (EOF, pausing, closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from agents.runtime.config import Upstream
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import EdgeCounters, Metrics
from agents.runtime.proxy_tcp import EARLY_LIMIT, start_tcp_listener
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.upstream import UpstreamRuntime
from tests.agents.backends import free_port, upstream_entry

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BIG = 20 * 1024 * 1024
BUFFER_BOUND = 1024 * 1024  # what one connection may hold: a write buffer's high water + a read


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler = echo) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def echo_server() -> contextlib.AbstractAsyncContextManager[int]:
    return tcp_server(echo)


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects hang: a listener with a full accept queue drops SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextlib.asynccontextmanager
async def tcp_proxy(*ports: int, **policy: Any) -> AsyncIterator[tuple[int, ListenerContext]]:
    runtime = UpstreamRuntime(Upstream("cache", "127.0.0.1", 0, "tcp", "orders"))
    raw = {"revision": 1,
           "upstreams": {"cache": upstream_entry(*ports, protocol="tcp", **policy)}}
    runtime.apply(parse_snapshot(raw).upstreams["cache"])
    ctx = ListenerContext(runtime, Metrics())
    server = await start_tcp_listener(ctx, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], ctx
    finally:
        server.close()
        for conn in list(ctx.connections):
            conn.close()
        await asyncio.wait_for(server.wait_closed(), 2)


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST rather than a FIN (which a proxy must take for a half-close)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def settled(ctx: ListenerContext, timeout: float = 2.0) -> None:
    """Wait until the proxy has finished every connection."""
    async with asyncio.timeout(timeout):
        while ctx.inflight or ctx.connections:
            await asyncio.sleep(0.01)
    assert ctx.inflight == 0 and not ctx.connections
    assert all(e.active == 0 for e in ctx.upstream.state.endpoints)


def totals(ctx: ListenerContext) -> EdgeCounters:
    return ctx.metrics.totals[("orders", "cache")]


async def test_bytes_are_piped_both_ways() -> None:
    async with echo_server() as port, tcp_proxy(port) as (proxy_port, ctx):
        payload = b"ping" * 100_000
        assert await roundtrip(proxy_port, payload) == payload
        await settled(ctx)
        endpoint = ctx.upstream.state.endpoints[0]
        assert endpoint.requests == 1 and endpoint.errors == 0
    assert totals(ctx).requests == 1
    assert totals(ctx).errors == 0


async def test_metrics_record_the_connection_lifetime() -> None:
    async with echo_server() as port, tcp_proxy(port) as (proxy_port, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        await asyncio.sleep(0.3)  # held open: the lifetime is the latency recorded
        assert ctx.inflight == 1
        writer.close()
        await settled(ctx)
        endpoint = ctx.upstream.state.endpoints[0]
        assert endpoint.requests == 1 and endpoint.latency_sum_ms >= 300
    assert totals(ctx).requests == 1 and totals(ctx).errors == 0
    assert 300 <= totals(ctx).latency_sum_ms < 5000


async def test_client_half_close_still_gets_the_answer() -> None:
    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's EOF
        writer.write(b"got %d bytes" % len(data))
        await writer.drain()
        writer.close()

    async with tcp_server(count_then_answer) as port, tcp_proxy(port) as (proxy_port, ctx):
        assert await roundtrip(proxy_port, b"x" * 300_000) == b"got 300000 bytes"
        await settled(ctx)
    assert totals(ctx).requests == 1 and totals(ctx).errors == 0


async def test_upstream_half_close_still_gets_the_request() -> None:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def banner_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")  # speaks first, and says nothing more
        writer.write_eof()
        received.set_result(await reader.read())  # still listening, until the client's EOF
        writer.close()

    async with tcp_server(banner_first) as port, tcp_proxy(port) as (proxy_port, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        assert await asyncio.wait_for(reader.read(), 5) == b"220 hello\r\n"  # EOF passed on
        assert not writer.is_closing()
        writer.write(b"QUIT after the EOF\r\n" * 1000)
        writer.write_eof()
        assert await asyncio.wait_for(received, 5) == b"QUIT after the EOF\r\n" * 1000
        await settled(ctx)
        writer.close()
    assert totals(ctx).requests == 1 and totals(ctx).errors == 0


async def test_an_upstream_that_speaks_and_hangs_up_at_once_is_heard() -> None:
    async def banner_and_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 too busy\r\n")
        writer.close()

    async with tcp_server(banner_and_bye) as port, tcp_proxy(port) as (proxy_port, ctx):
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            assert await asyncio.wait_for(reader.read(), 5) == b"421 too busy\r\n"
            writer.close()
        await settled(ctx)
    assert totals(ctx).requests == 5 and totals(ctx).errors == 0


@pytest.mark.parametrize("direction", ["download", "upload"])
async def test_large_transfer_to_a_slow_reader_keeps_the_proxy_buffers_bounded(
        direction: str) -> None:
    payload = os.urandom(BIG)
    digest: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow_read(reader: asyncio.StreamReader) -> str:
        await asyncio.sleep(0.5)  # reads nothing for a while: the proxy must stop reading
        h, n, size = hashlib.sha256(), 0, 0
        while chunk := await reader.read(65536):
            h.update(chunk)
            size += len(chunk)
            n += 1
            if n % 8 == 0:
                await asyncio.sleep(0.002)
        assert size == BIG
        return h.hexdigest()

    async def send(writer: asyncio.StreamWriter) -> None:
        view = memoryview(payload)
        for i in range(0, BIG, 65536):
            writer.write(view[i:i + 65536])
            await writer.drain()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if direction == "download":
            await reader.readexactly(2)
            await send(writer)
            writer.write_eof()
            await reader.read()
        else:
            digest.set_result(await slow_read(reader))
        writer.close()

    async with tcp_server(upstream) as port, tcp_proxy(port) as (proxy_port, ctx):
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max([most, *(conn.buffered() for conn in ctx.connections)])
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        if direction == "download":
            writer.write(b"go")
            got = await slow_read(reader)
            writer.write_eof()
        else:
            await send(writer)
            writer.write_eof()
            got = await asyncio.wait_for(digest, 20)
            assert await reader.read() == b""
        writer.close()
        await settled(ctx, 5)
        watcher.cancel()
    assert got == hashlib.sha256(payload).hexdigest()
    assert 0 < most <= BUFFER_BOUND, most
    assert totals(ctx).requests == 1 and totals(ctx).errors == 0


async def test_refused_endpoint_fails_over_to_the_next() -> None:
    dead = await free_port()
    async with echo_server() as port, tcp_proxy(dead, port) as (proxy_port, ctx):
        for _ in range(4):
            assert await roundtrip(proxy_port, b"hello") == b"hello"
        await settled(ctx)
        bad = next(e for e in ctx.upstream.state.endpoints if e.port == dead)
        good = next(e for e in ctx.upstream.state.endpoints if e.port == port)
        assert bad.errors >= 1 and bad.requests == 0
        assert good.requests == 4 and good.errors == 0
    assert totals(ctx).requests == 4 and totals(ctx).errors == 0


async def test_no_reachable_endpoint_closes_and_counts_an_error() -> None:
    async with tcp_proxy(await free_port()) as (proxy_port, ctx):
        assert await roundtrip(proxy_port, b"hello") == b""
        await settled(ctx)
    assert totals(ctx).errors == 1


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
        await settled(ctx)
    assert [(e["event"], e["port"]) for e in events] == [("ejected", dead)]
    assert events[0]["reason"] == "2 consecutive gateway failures"
    assert ctx.upstream.outlier.ejections_total == 1
    assert totals(ctx).requests == 10 and totals(ctx).errors == 0


async def test_a_connect_timeout_fails_over_and_counts_as_a_connect_failure() -> None:
    with unanswered_port() as hung:
        async with echo_server() as port, tcp_proxy(hung, port, connect_timeout_ms=200,
                                                    outlier={"consecutive_gateway": 1}) as (
                proxy_port, ctx):
            for _ in range(3):
                assert await roundtrip(proxy_port, b"hello") == b"hello"
            hanging = next(e for e in ctx.upstream.state.endpoints if e.port == hung)
            assert hanging.errors == 1 and hanging.ejected
            await settled(ctx)
    assert totals(ctx).requests == 3 and totals(ctx).errors == 0


async def test_client_gone_before_the_upstream_answers_is_cleaned_up() -> None:
    with unanswered_port() as hung:
        async with tcp_proxy(hung, connect_timeout_ms=10_000) as (proxy_port, ctx):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(b"hello")
            await asyncio.sleep(0.2)
            assert ctx.inflight == 1
            reset(writer)  # the proxy learns at once, and stops connecting
            await settled(ctx, 1.0)
            endpoint = ctx.upstream.state.endpoints[0]
            assert endpoint.errors == 0 and not endpoint.ejected  # not the endpoint's fault
    assert totals(ctx).requests == 1 and totals(ctx).errors == 1  # never connected


async def test_bytes_sent_while_connecting_are_held_up_to_a_limit() -> None:
    with unanswered_port() as hung:
        async with tcp_proxy(hung, connect_timeout_ms=10_000) as (proxy_port, ctx):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(b"x" * (128 * EARLY_LIMIT))  # far more than is held while connecting
            await asyncio.sleep(0.3)
            (conn,) = ctx.connections
            assert EARLY_LIMIT <= conn.buffered() <= BUFFER_BOUND  # reading paused past the limit
            assert writer.transport.get_write_buffer_size() > 0  # the rest waits (past the kernel)
            conn.close()
            with contextlib.suppress(ConnectionResetError):  # unread bytes: the kernel resets
                assert await asyncio.wait_for(reader.read(), 2) == b""
            await settled(ctx, 1.0)
            writer.close()
    assert totals(ctx).requests == 1 and totals(ctx).errors == 1


async def test_client_eof_before_the_upstream_answers_is_cleaned_up_after_the_timeout() -> None:
    with unanswered_port() as hung:
        async with tcp_proxy(hung, connect_timeout_ms=200) as (proxy_port, ctx):
            # Closing looks like a half-close to the proxy: it keeps trying, then gives up.
            assert await roundtrip(proxy_port, b"hello") == b""
            await settled(ctx)
    assert totals(ctx).requests == 1 and totals(ctx).errors == 1


async def test_either_side_reset_mid_stream_closes_the_other() -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))

    async def reset_after_a_while(reader: asyncio.StreamReader,
                                  writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(100_000)
        reset(writer)

    async with tcp_server(reset_after_a_while) as port, tcp_proxy(port) as (proxy_port, ctx):
        # the upstream resets while the client is still sending
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(b"x" * 65536)
                await asyncio.wait_for(writer.drain(), 2)
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await settled(ctx)

    async def echo_until_reset(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await echo(reader, writer)
        writer.close()

    async with tcp_server(echo_until_reset) as port, tcp_proxy(port) as (proxy_port, ctx2):
        # the client resets while the echo is still answering
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"y" * 2_000_000)
        await reader.readexactly(100_000)
        reset(writer)
        await settled(ctx2)
    assert not problems, problems
    assert totals(ctx).requests == 1 and totals(ctx2).requests == 1


async def test_closing_the_context_closes_both_sides() -> None:
    peer_closed = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await reader.read()
        peer_closed.set()
        writer.close()

    async with tcp_server(hold) as port, tcp_proxy(port) as (proxy_port, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        assert await reader.readexactly(2) == b"hi"
        for conn in list(ctx.connections):  # what the agent does when it stops
            conn.close()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        await asyncio.wait_for(peer_closed.wait(), 2)
        await settled(ctx)
        writer.close()
    assert totals(ctx).requests == 1 and totals(ctx).errors == 0


SCENARIOS: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "piped": test_bytes_are_piped_both_ways,
    "client-half-close": test_client_half_close_still_gets_the_answer,
    "upstream-half-close": test_upstream_half_close_still_gets_the_request,
    "banner-and-bye": test_an_upstream_that_speaks_and_hangs_up_at_once_is_heard,
    "download": lambda: test_large_transfer_to_a_slow_reader_keeps_the_proxy_buffers_bounded(
        "download"),
    "upload": lambda: test_large_transfer_to_a_slow_reader_keeps_the_proxy_buffers_bounded(
        "upload"),
    "failover": test_refused_endpoint_fails_over_to_the_next,
    "ejection": test_connect_failures_eject_a_tcp_endpoint_and_it_gets_no_more_attempts,
    "client-gone": test_client_gone_before_the_upstream_answers_is_cleaned_up,
    "early-limit": test_bytes_sent_while_connecting_are_held_up_to_a_limit,
    "resets": test_either_side_reset_mid_stream_closes_the_other,
    "close-all": test_closing_the_context_closes_both_sides,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_on_uvloop(scenario: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(SCENARIOS[scenario]())
