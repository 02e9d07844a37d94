"""The HTTP proxy against real backends on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from agents.runtime.config import Upstream
from agents.runtime.listener import ListenerContext
from agents.runtime.metrics import Metrics
from agents.runtime.proxy_http import start_http_listener
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.upstream import UpstreamRuntime
from tests.agents.backends import (
    Backend,
    HttpClient,
    backends,
    fetch,
    free_port,
    raw_exchange,
    upstream_entry,
)

pytestmark = pytest.mark.timeout(60)


@dataclass
class Proxy:
    port: int
    runtime: UpstreamRuntime
    metrics: Metrics
    ctx: ListenerContext

    def route(self, *backends: Backend | int, **policy: Any) -> None:
        raw = {"revision": 1, "upstreams": {"payments": upstream_entry(*backends, **policy)}}
        self.runtime.apply(parse_snapshot(raw).upstreams["payments"])


@contextlib.asynccontextmanager
async def running_proxy(*backends: Backend | int, **policy: Any) -> AsyncIterator[Proxy]:
    runtime = UpstreamRuntime(Upstream("payments", "127.0.0.1", 0, "http", "orders"))
    metrics = Metrics()
    ctx = ListenerContext(runtime, metrics)
    server = await start_http_listener(ctx, "127.0.0.1", 0)
    proxy = Proxy(server.sockets[0].getsockname()[1], runtime, metrics, ctx)
    proxy.route(*backends, **policy)
    try:
        yield proxy
    finally:
        server.close()
        for conn in list(ctx.connections):
            conn.close()
        runtime.pool.close_all()
        await asyncio.wait_for(server.wait_closed(), 2)


async def test_get_is_forwarded_to_the_backend() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        response = await fetch(proxy.port, "GET", "/orders/1?x=2")
    assert response.status == 200
    assert response.json()["path"] == "/orders/1"
    assert a.requests[0].target == "/orders/1?x=2"


async def test_post_body_reaches_the_backend_and_comes_back() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        response = await fetch(proxy.port, "POST", "/echo", body=b"hello mesh")
    assert response.status == 200
    assert response.body == b"hello mesh"
    assert a.requests[0].header("content-length") == "10"


async def test_keep_alive_reuses_one_upstream_connection() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        async with HttpClient(proxy.port) as client:
            for _ in range(5):
                assert (await client.request("GET", "/")).status == 200
        # A new client connection still reuses the pooled upstream connection.
        assert (await fetch(proxy.port, "GET", "/")).status == 200
    assert len(a.requests) == 6
    assert a.connections == 1


async def test_chunked_request_body_is_streamed_rechunked() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"first ", b"second ", b"third"):
            await c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            await asyncio.sleep(0.02)
        await c.send(b"0\r\n\r\n")
        response = await c.read_response()
    assert response.status == 200
    assert response.body == b"first second third"
    assert a.requests[0].header("transfer-encoding") == "chunked"
    assert a.requests[0].header("content-length") is None


async def test_chunked_response_is_relayed_chunked() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        response = await fetch(proxy.port, "GET", "/chunked")
    assert response.body == b"hello chunked world"
    assert response.header("transfer-encoding") == "chunked"


async def test_close_delimited_response_is_reframed_for_a_keep_alive_client() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        first = await c.request("GET", "/close")
        second = await c.request("GET", "/")
    assert first.body == b"until-close"
    assert second.status == 200


async def test_large_bodies_stream_without_the_proxy_holding_them() -> None:
    size = 50 * 1024 * 1024
    async with backends("a") as (a,), running_proxy(a) as proxy:
        gc.collect()
        tracemalloc.start()
        try:
            async with HttpClient(proxy.port) as c:
                await c.send(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
                piece = b"y" * 65536
                for _ in range(size // len(piece)):
                    await c.send(piece)
                upload = await c.read_response()
                received = 0

                def count(data: bytes) -> None:
                    nonlocal received
                    received += len(data)

                await c.send(b"GET /big?bytes=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
                download = await c.read_response(stream_to=count)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert upload.status == 200 and a.requests[0].body_len == size
    assert download.status == 200 and received == size
    # Client, backend and proxy share this process: all of them together stay far below 50 MB.
    assert peak < 12 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"


async def test_refused_endpoint_fails_over_without_a_client_error() -> None:
    dead = await free_port()
    async with backends("a") as (a,), running_proxy(dead, a) as proxy:
        statuses = [(await fetch(proxy.port, "GET", "/")).status for _ in range(10)]
        dead_endpoint = next(e for e in proxy.runtime.state.endpoints if e.port == dead)
    assert statuses == [200] * 10
    assert len(a.requests) == 10
    assert dead_endpoint.errors >= 1


async def test_killed_backend_mid_run_causes_no_client_error() -> None:
    async with backends("a", "b") as (a, b), running_proxy(a, b) as proxy:
        for _ in range(4):
            assert (await fetch(proxy.port, "GET", "/")).status == 200
        await b.stop()
        statuses = [(await fetch(proxy.port, "GET", "/")).status for _ in range(10)]
    assert statuses == [200] * 10


async def test_no_endpoints_answers_503_no_healthy_endpoints() -> None:
    async with running_proxy() as proxy:
        response = await fetch(proxy.port, "GET", "/")
    assert response.status == 503
    assert response.header("x-mesh-error") == "no-healthy-endpoints"


async def test_all_endpoints_refused_answers_502() -> None:
    async with running_proxy(await free_port(), await free_port()) as proxy:
        response = await fetch(proxy.port, "GET", "/")
    assert response.status == 502
    assert response.header("x-mesh-error") == "connect-failed"
    assert response.body.startswith(b"502")


SMUGGLING = {
    "cl-and-te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate-cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                    b"Content-Length: 5\r\n\r\nabcde",
    "bad-chunk-size": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhello\r\n0\r\n\r\n",
    "te-not-chunked": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "garbage": b"HELLO\r\n\r\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
async def test_smuggling_and_malformed_requests_get_400_and_never_reach_a_backend(
    case: str,
) -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        answer = await raw_exchange(proxy.port, SMUGGLING[case])
        await asyncio.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert a.requests == []
    assert a.connections == 0


VERSION_CASES = {
    # llhttp reads a request line without a version as HTTP/0.9, which HTTP/1.1 has not.
    "no-version": (b"GET /\r\n\r\n", 400, "bad-request-line"),
    "http-0.9": (b"GET / HTTP/0.9\r\n\r\n", 400, "bad-request-line"),
    "http-2.0": (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http-version-not-supported"),
}


@pytest.mark.parametrize("case", sorted(VERSION_CASES))
async def test_a_request_in_another_http_version_is_refused_and_never_reaches_a_backend(
    case: str,
) -> None:
    """They were forwarded to the backend as HTTP/1.1 and answered 200."""
    raw, status, reason = VERSION_CASES[case]
    async with backends("a") as (a,), running_proxy(a) as proxy:
        answer = await raw_exchange(proxy.port, raw)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    assert f"x-mesh-error: {reason}\r\n".encode() in answer.lower(), answer
    assert a.requests == [] and a.connections == 0


HOST_CASES = {
    "missing-host": b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "duplicate-host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "duplicate-host-same-value": b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    "duplicate-host-http10": b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-host-space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "bad-host-userinfo": b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
    "bad-host-path": b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "bad-host-port": b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(HOST_CASES))
async def test_a_request_without_one_valid_host_gets_400_and_never_reaches_a_backend(
    case: str,
) -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        answer = await raw_exchange(proxy.port, HOST_CASES[case])
        await asyncio.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    reason = case.split("-host")[0] + "-host"
    assert f"x-mesh-error: {reason}\r\n".encode() in answer.lower(), answer
    assert a.requests == [] and a.connections == 0


async def test_a_keep_alive_request_without_host_is_refused_after_a_good_one() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        assert (await c.request("GET", "/one")).status == 200
        await c.send(b"GET /two HTTP/1.1\r\n\r\n")
        answer = await c.read_response()
        await asyncio.sleep(0.05)
    assert answer.status == 400 and answer.header("x-mesh-error") == "missing-host"
    assert [r.path for r in a.requests] == ["/one"]


async def test_hosts_the_rfc_allows_are_forwarded() -> None:
    # HTTP/1.0 may omit Host (the proxy adds the endpoint's); an empty Host, an IP literal
    # and a port are valid values.
    requests = [b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: svc.mesh:80\r\nConnection: close\r\n\r\n"]
    async with backends("a") as (a,), running_proxy(a) as proxy:
        for request in requests:
            answer = await raw_exchange(proxy.port, request, timeout=1.0)
            assert answer.startswith(b"HTTP/1.1 200 "), (request, answer)
    hosts = [r.header("host") for r in a.requests]
    assert hosts == [f"127.0.0.1:{a.port}", "", "[::1]:8080", "svc.mesh:80"]


def test_host_strictness_is_the_same_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def tour() -> None:
        for case in sorted(HOST_CASES):
            await test_a_request_without_one_valid_host_gets_400_and_never_reaches_a_backend(
                case)
        await test_a_keep_alive_request_without_host_is_refused_after_a_good_one()
        await test_hosts_the_rfc_allows_are_forwarded()

    uvloop.run(tour())


async def test_head_gets_headers_only_and_the_connection_stays_usable() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        head = await c.request("HEAD", "/")
        after = await c.request("GET", "/")
    assert head.status == 200 and head.body == b""
    assert int(head.header("content-length") or 0) > 0  # GET's length, body withheld
    assert a.requests[0].method == "HEAD"
    assert after.json()["method"] == "GET"


async def test_forwarding_headers_are_added_and_request_id_kept() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        await fetch(proxy.port, "GET", "/")
        await fetch(proxy.port, "GET", "/", headers=[("X-Request-Id", "abc-123"),
                                                     ("X-Forwarded-For", "10.1.1.1")])
    first, second = a.requests
    assert first.header("x-forwarded-for") == "127.0.0.1"
    assert first.header("x-forwarded-proto") == "http"
    assert len(first.header("x-request-id") or "") == 32
    assert second.header("x-request-id") == "abc-123"
    assert second.header("x-forwarded-for") == "10.1.1.1, 127.0.0.1"


async def test_hop_by_hop_headers_are_removed_both_ways() -> None:
    hop = [("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "300"),
           ("TE", "trailers"), ("Proxy-Connection", "keep-alive"), ("Upgrade", "websocket"),
           ("X-Kept", "yes")]
    async with backends("a") as (a,), running_proxy(a) as proxy:
        response = await fetch(proxy.port, "GET", "/hop", headers=hop)
    seen = {n.lower() for n, _ in a.requests[0].headers}
    assert seen.isdisjoint({"x-secret", "keep-alive", "te", "proxy-connection", "upgrade"})
    assert "x-kept" in seen
    got = {n.lower() for n, _ in response.headers}
    assert got.isdisjoint({"x-hop", "keep-alive", "proxy-connection", "trailer", "upgrade"})
    assert response.header("x-kept") == "yes" and response.body == b"ok"


async def test_slow_backend_past_the_request_timeout_answers_504() -> None:
    async with backends("a") as (a,), running_proxy(a, request_timeout_ms=200) as proxy:
        response = await fetch(proxy.port, "GET", "/slow?ms=2000")
    assert response.status == 504
    assert response.header("x-mesh-error") == "request-timeout"


async def test_request_timeout_holds_on_a_reused_upstream_connection() -> None:
    # One timer per upstream connection, re-armed lazily: a second request on the same
    # pooled connection, and one whose deadline is earlier than the timer's, still time out.
    loop = asyncio.get_running_loop()
    async with backends("a") as (a,), running_proxy(a, request_timeout_ms=5000) as proxy:
        assert (await fetch(proxy.port, "GET", "/")).status == 200  # arms the timer at +5 s
        proxy.route(a, request_timeout_ms=200)  # same endpoint: the pooled connection stays
        assert proxy.runtime.pool.idle_count() == 1 and a.connections == 1
        started = loop.time()
        response = await fetch(proxy.port, "GET", "/slow?ms=3000")
        elapsed = loop.time() - started
        assert response.status == 504
        assert response.header("x-mesh-error") == "request-timeout"
        assert 0.15 <= elapsed < 2.0, elapsed
        assert a.connections == 1  # that request went over the reused connection
        assert (await fetch(proxy.port, "GET", "/")).status == 200
        started = loop.time()
        response = await fetch(proxy.port, "GET", "/slow?ms=3000")
        assert response.status == 504 and loop.time() - started < 2.0
    assert a.connections >= 2  # the timed-out try's connection is not reused


async def test_backend_dying_mid_response_cuts_the_client() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy:
        with pytest.raises(ConnectionError):
            await fetch(proxy.port, "GET", "/die")
        assert (await fetch(proxy.port, "GET", "/")).status == 200
        errors = proxy.metrics.totals[("orders", "payments")].errors
    assert errors == 1


async def test_metrics_count_requests_and_errors_per_edge() -> None:
    async with backends("a") as (a,), running_proxy(a, retries={"attempts": 0}) as proxy:
        for path in ("/", "/", "/?status=404", "/?status=500", "/?status=503"):
            await fetch(proxy.port, "GET", path)
        window = proxy.metrics.drain()
        endpoint = proxy.runtime.state.endpoints[0]
    assert len(window) == 1
    edge = window[0]
    assert (edge["source"], edge["destination"]) == ("orders", "payments")
    assert edge["requests"] == 5 and edge["errors"] == 2
    assert sum(edge["buckets"]) == 5 and edge["latency_sum_ms"] > 0
    assert endpoint.requests == 5 and endpoint.errors == 2


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        await c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n")
        first = await c.read_response()
        second = await c.read_response()
    assert first.json()["path"] == "/one" and second.json()["path"] == "/two"


async def test_a_bad_request_behind_pipelined_ones_is_answered_after_them() -> None:
    # Was: the connection closed at once and the earlier requests' answers were lost.
    async with backends("a") as (a,), running_proxy(a) as proxy:
        raw = await raw_exchange(proxy.port, (
            b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /three HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            b"GET /four HTTP/1.1\r\nHost: t\r\n\r\n"), timeout=5)
    answers = raw.split(b"HTTP/1.1 ")[1:]
    assert [a.split(b" ", 1)[0] for a in answers] == [b"200", b"200", b"400"], raw
    assert b'"/slow"' in answers[0] and b'"/two"' in answers[1]
    assert b"connection: close" in answers[2].lower()
    assert [r.path for r in a.requests] == ["/slow", "/two"]  # never /three nor /four


async def test_new_snapshot_swaps_endpoints_without_dropping_in_flight_requests() -> None:
    async with backends("a", "b") as (a, b), running_proxy(a) as proxy:
        slow = asyncio.create_task(fetch(proxy.port, "GET", "/slow?ms=300"))
        await asyncio.sleep(0.1)
        proxy.route(b)  # a removed while its request is in flight
        later = [(await fetch(proxy.port, "GET", "/")).json()["backend"] for _ in range(4)]
        finished = await slow
    assert finished.status == 200 and finished.json()["backend"] == "a"
    assert later == ["b"] * 4
    assert [r.path for r in a.requests] == ["/slow"]


def test_the_proxy_behaves_the_same_on_uvloop() -> None:
    """`meshagent run` uses uvloop, whose transports differ from asyncio's: run a tour on it."""
    uvloop = pytest.importorskip("uvloop")

    async def tour() -> None:
        dead = await free_port()
        async with backends("a") as (a,), running_proxy(dead, a) as proxy:
            async with HttpClient(proxy.port) as c:
                assert (await c.request("GET", "/")).status == 200
                assert (await c.request("POST", "/echo", body=b"x" * 300_000)).body == b"x" * 300_000
                assert (await c.request("GET", "/chunked")).body == b"hello chunked world"
                assert (await c.request("HEAD", "/")).status == 200
            answer = await raw_exchange(proxy.port, SMUGGLING["cl-and-te"])
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert a.connections == 1 and len(a.requests) == 4

    uvloop.run(tour())
