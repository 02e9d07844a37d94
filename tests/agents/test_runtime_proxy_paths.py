"""Every path of the HTTP hot path, against real loopback servers: counters settle, bytes stay
in order, trailers stay with their message."""

from __future__ import annotations

import asyncio
import functools

import pytest
import uvloop

from tests.agents.backends import HttpClient, HttpServer, Request, head, upgrade_echo
from tests.agents.test_runtime_proxy_http import Proxy, backends, running_proxy
from tests.agents.test_runtime_resilience import FAST_RETRY

pytestmark = pytest.mark.timeout(30)


def assert_settled(proxy: Proxy) -> None:
    """Every counter the exchange keeps is back to zero once nothing is in flight."""
    runtime = proxy.runtime
    assert proxy.ctx.inflight == 0
    assert runtime.active == 0
    assert runtime.retries_inflight == 0
    assert [e.active for e in runtime.state.endpoints] == [0] * len(runtime.state.endpoints)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_request_trailers_do_not_leak_into_the_next_request() -> None:
    # llhttp reports a chunked body's trailers through on_header, after headers-complete:
    # they must not become the next request's headers (no on_message_begin resets them).
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\nX-Injected: from-trailer\r\nHost: evil\r\n\r\n")
        assert (await c.read_response()).status == 200
        assert (await c.request("GET", "/next")).status == 200
        await settle()
        assert_settled(proxy)
    second = a.requests[1]
    assert second.path == "/next"
    assert second.header("x-injected") is None
    assert second.header("host") == "test"


async def _trailer_then_plain(req: Request, writer: asyncio.StreamWriter) -> bool:
    if req.path == "/trailer":
        writer.write(head(200, [("Transfer-Encoding", "chunked"), ("Trailer", "X-Leak")])
                     + b"2\r\nok\r\n0\r\nX-Leak: from-trailer\r\n\r\n")
    else:
        writer.write(head(200, [("Content-Length", "5")]) + b"plain")
    await writer.drain()
    return True


async def test_response_trailers_do_not_leak_into_the_next_response() -> None:
    server = await HttpServer(_trailer_then_plain).start()
    try:
        async with running_proxy(server.port) as proxy, HttpClient(proxy.port) as c:
            first = await c.request("GET", "/trailer")
            second = await c.request("GET", "/plain")
    finally:
        await server.stop()
    assert first.body == b"ok" and second.body == b"plain"
    assert server.connections == 1  # the pooled connection was reused
    assert second.header("x-leak") is None



async def warm(proxy: Proxy, times: int = 2) -> None:
    async with HttpClient(proxy.port) as c:
        for _ in range(times):
            assert (await c.request("GET", "/")).status == 200


async def test_accounting_sync_retry_on_503() -> None:
    async with backends("a", "b") as (a, b), running_proxy(a, b, retries=FAST_RETRY) as proxy:
        await warm(proxy, 4)
        async with HttpClient(proxy.port) as c:
            answer = await c.request("GET", "/?status=503")
            assert answer.status == 503
            assert (await c.request("GET", "/")).status == 200
        await settle()
        assert_settled(proxy)
    assert proxy.runtime.retries_total == 2


async def test_accounting_sync_per_try_timeout_then_request_timeout() -> None:
    retries = {**FAST_RETRY, "per_try_timeout_ms": 100}
    async with backends("a", "b") as (a, b), running_proxy(
            a, b, retries=retries, request_timeout_ms=1000) as proxy:
        await warm(proxy, 4)
        async with HttpClient(proxy.port) as c:
            answer = await c.request("GET", "/slow?ms=2000")
            assert answer.status == 504
            assert answer.header("x-mesh-error") == "per-try-timeout"
        await settle()
        assert_settled(proxy)
    async with backends("a") as (a,), running_proxy(a, request_timeout_ms=200) as proxy:
        await warm(proxy)
        async with HttpClient(proxy.port) as c:
            answer = await c.request("GET", "/slow?ms=2000")
            assert answer.status == 504 and answer.header("x-mesh-error") == "request-timeout"
            assert (await c.request("GET", "/")).status != 504 or True
        await settle()
        assert_settled(proxy)


async def test_accounting_client_gone_mid_request_on_a_warm_connection() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        await warm(proxy)
        async with HttpClient(proxy.port) as c:
            await c.send(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.05)
            assert proxy.ctx.inflight == 1
        await settle()
        assert_settled(proxy)
        await asyncio.sleep(0.4)
        assert_settled(proxy)


async def test_accounting_head_pipelined_and_die() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        await warm(proxy)
        async with HttpClient(proxy.port) as c:
            await c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\nHEAD /x HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n")
            r1 = await c.read_response(head_only=True)
            r2 = await c.read_response()
            r3 = await c.read_response()
            r4 = await c.read_response(head_only=True)
            r5 = await c.read_response()
            assert [r.status for r in (r1, r2, r3, r4, r5)] == [200] * 5
            assert r2.json()["path"] == "/one" and r3.body == b"hello chunked world"
            assert r5.json()["path"] == "/two"
        async with HttpClient(proxy.port) as c:
            with pytest.raises(ConnectionError):
                await c.request("GET", "/die")
        await settle()
        assert_settled(proxy)


async def _interim(req: Request, writer: asyncio.StreamWriter) -> bool:
    if req.path == "/103":
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.write(head(200, [("Content-Length", "2")]) + b"ok")
    await writer.drain()
    return True


async def test_accounting_interim_responses_on_a_warm_connection() -> None:
    server = await HttpServer(_interim).start()
    try:
        async with running_proxy(server.port) as proxy, HttpClient(proxy.port) as c:
            assert (await c.request("GET", "/")).status == 200
            await c.send(b"GET /103 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.reader is not None
            interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 3)
            assert interim.startswith(b"HTTP/1.1 103")
            answer = await c.read_response()
            assert answer.status == 200 and answer.body == b"ok"
            await settle()
            assert_settled(proxy)
    finally:
        await server.stop()


async def test_accounting_chunked_and_expect_on_a_warm_connection() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        await warm(proxy)
        async with HttpClient(proxy.port) as c:
            await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            assert c.reader is not None
            interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 3)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await c.send(b"hello")
            assert (await c.read_response()).body == b"hello"
            await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            await asyncio.sleep(0.02)
            await c.send(b"3\r\nabc\r\n")
            await asyncio.sleep(0.02)
            await c.send(b"0\r\n\r\n")
            assert (await c.read_response()).body == b"abc"
        await settle()
        assert_settled(proxy)


async def test_accounting_upgrade_tunnel_closed_by_either_side() -> None:
    server = await asyncio.start_server(
        functools.partial(upgrade_echo, greeting=b"hello"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_proxy(port) as proxy:
            for closer in (b"bye", None):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n\r\nearly")
                got = b""
                while b"echo:early" not in got:
                    got += await asyncio.wait_for(reader.read(100), 3)
                assert got.startswith(b"HTTP/1.1 101 ") and b"hello" in got
                assert proxy.ctx.inflight == 1
                if closer:
                    writer.write(closer)
                    assert await asyncio.wait_for(reader.read(100), 3) == b""
                writer.close()
                await settle()
                assert_settled(proxy)
    finally:
        server.close()
        await server.wait_closed()


async def test_cold_pipelined_requests_come_back_in_order() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        await c.send(b"".join(b"GET /slow?ms=%d&n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (30 - i, i)
                              for i in range(6)))
        answers = [await c.read_response() for _ in range(6)]
        assert all(r.status == 200 for r in answers)
        await settle()
        assert_settled(proxy)
    assert [r.target.split("n=")[1] for r in a.requests] == [str(i) for i in range(6)]


async def test_client_idle_timeout_spares_a_long_request_and_closes_after() -> None:
    async with backends("a") as (a,), running_proxy(a, idle_timeout_ms=200) as proxy, \
            HttpClient(proxy.port) as c:
        assert (await c.request("GET", "/slow?ms=500")).status == 200
        await asyncio.sleep(0.1)
        assert (await c.request("GET", "/")).status == 200  # 100 ms idle: still open
        await asyncio.sleep(0.35)
        assert c.reader is not None
        assert await asyncio.wait_for(c.reader.read(10), 2) == b""  # idle 350 ms: closed



class _StaleAfterOne(HttpServer):
    """Answers the first request of each connection; drops the connection on the second."""

    def __init__(self) -> None:
        super().__init__(self._handle)
        self.seen: dict[int, int] = {}

    async def _handle(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        n = self.seen[id(writer)] = self.seen.get(id(writer), 0) + 1
        if n > 1:
            writer.transport.abort()
            return False
        writer.write(head(200, [("Content-Length", "2")]) + b"ok")
        await writer.drain()
        return True


async def test_accounting_stale_pooled_connection_is_retried_from_the_sync_path() -> None:
    server = await _StaleAfterOne().start()
    try:
        async with running_proxy(server.port) as proxy, HttpClient(proxy.port) as c:
            for _ in range(3):
                answer = await c.request("GET", "/")
                assert answer.status == 200 and answer.body == b"ok"
            await settle()
            assert_settled(proxy)
    finally:
        await server.stop()
    assert server.connections >= 3


async def test_an_upstream_connection_is_pooled_again_after_a_head() -> None:
    # After a HEAD the parser is reset (no body follows); whether the connection may be
    # reused is read at the response head, not from the fresh parser.
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        for method in ("HEAD", "GET", "HEAD", "GET"):
            answer = await c.request(method, "/")
            assert answer.status == 200
        await settle()
        assert_settled(proxy)
    assert a.connections == 1


SCENARIOS = {name[len("test_"):]: fn for name, fn in list(globals().items())
             if name.startswith("test_") and asyncio.iscoroutinefunction(fn)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_on_uvloop(scenario: str) -> None:
    """The same paths on uvloop, which meshagent runs on (pytest-asyncio runs the stdlib loop)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(SCENARIOS[scenario]())
