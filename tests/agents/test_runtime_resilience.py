"""Retries, budget, outlier ejection, circuit breaking, rate limit, upgrade: real backends."""

from __future__ import annotations

import asyncio

import pytest

from agents.runtime.metrics import render_resilience
from tests.agents.backends import (
    Backend,
    HttpClient,
    HttpServer,
    Request,
    fetch,
    head,
    raw_exchange,
    upgrade_echo,
)
from tests.agents.test_runtime_proxy_http import backends, running_proxy

pytestmark = pytest.mark.timeout(30)

FAST_RETRY = {"attempts": 2, "on": ["gateway-error", "connect-failure", "reset"],
              "backoff_base_ms": 1, "backoff_max_ms": 5}


async def test_a_503_is_retried_on_another_endpoint() -> None:
    async with backends("a", "b") as (a, b), running_proxy(a, b, retries=FAST_RETRY) as proxy:
        answers = [await fetch(proxy.port, "GET", "/?status=503" if i == 0 else "/")
                   for i in range(1)]
    assert answers[0].status == 503  # both said 503: the last answer is relayed
    assert len(a.requests) + len(b.requests) == 3
    assert proxy.runtime.retries_total == 2


async def test_a_post_is_not_retried_after_it_left() -> None:
    async with backends("a", "b") as (a, b), running_proxy(a, b, retries=FAST_RETRY) as proxy:
        answer = await fetch(proxy.port, "POST", "/?status=503", body=b"x")
    assert answer.status == 503
    assert len(a.requests) + len(b.requests) == 1


async def test_retries_never_exceed_the_budget_under_an_all_503_upstream() -> None:
    retries = {**FAST_RETRY, "attempts": 3, "budget_percent": 10, "min_per_second": 2}
    async with backends("a") as (a,), running_proxy(a, retries=retries,
                                                    outlier={"consecutive_5xx": 0,
                                                             "consecutive_gateway": 0}) as proxy:
        answers = await asyncio.gather(*[fetch(proxy.port, "GET", "/slow?ms=30&status=503")
                                         for _ in range(20)])
    assert all(r.status == 503 for r in answers)
    assert proxy.runtime.retries_peak <= 2
    assert len(a.requests) < 20 * 4


async def test_an_endpoint_answering_503_is_ejected_and_comes_back() -> None:
    outlier = {"consecutive_5xx": 3, "consecutive_gateway": 3, "base_ejection_ms": 300,
               "max_ejection_percent": 50}
    async with backends("a", "b") as (a, b), running_proxy(
            a, b, retries={"attempts": 0}, outlier=outlier, panic_threshold_percent=0) as proxy:
        bad = next(e for e in proxy.runtime.state.endpoints if e.port == a.port)
        while not bad.ejected:
            await fetch(proxy.port, "GET", "/?status=503")
        before = len(a.requests)
        for _ in range(6):
            assert (await fetch(proxy.port, "GET", "/")).json()["backend"] == "b"
        assert len(a.requests) == before
        await asyncio.sleep(0.4)
        assert not bad.ejected
        events = proxy.runtime.drain_events()
    assert [e["event"] for e in events] == ["ejected", "returned"]
    assert events[0]["port"] == a.port and events[0]["duration_ms"] == 300


async def test_max_requests_opens_the_circuit_without_touching_the_upstream() -> None:
    async with backends("a") as (a,), running_proxy(
            a, circuit_breaker={"max_requests": 1}) as proxy:
        slow = asyncio.create_task(fetch(proxy.port, "GET", "/slow?ms=300"))
        await asyncio.sleep(0.1)
        refused = await fetch(proxy.port, "GET", "/")
        await slow
    assert refused.status == 503
    assert refused.header("x-mesh-error") == "circuit-open (max_requests)"
    assert len(a.requests) == 1 and a.connections == 1


async def test_max_connections_opens_the_circuit() -> None:
    async with backends("a") as (a,), running_proxy(
            a, circuit_breaker={"max_connections": 1}) as proxy:
        slow = asyncio.create_task(fetch(proxy.port, "GET", "/slow?ms=300"))
        await asyncio.sleep(0.1)
        refused = await fetch(proxy.port, "GET", "/")
        await slow
    assert refused.header("x-mesh-error") == "circuit-open (max_connections)"
    assert a.connections == 1


async def test_the_rate_limit_answers_429_with_retry_after() -> None:
    async with backends("a") as (a,), running_proxy(a, rate_limit={"rps": 1, "burst": 2}) as proxy:
        answers = [await fetch(proxy.port, "GET", "/") for _ in range(3)]
    assert [r.status for r in answers] == [200, 200, 429]
    assert answers[2].header("retry-after") == "1"
    assert answers[2].header("x-mesh-error") == "rate-limited"
    assert len(a.requests) == 2


async def test_a_local_429_keeps_the_client_connection_and_a_refused_body_closes_it() -> None:
    # A bodiless request answered locally was read whole: the client's connection
    # stays usable (it was closed, so a limited client reconnected for every try).
    async with backends("a") as (a,), running_proxy(a, rate_limit={"rps": 1, "burst": 1}) as proxy:
        async with HttpClient(proxy.port) as client:
            answers = [await client.request("GET", "/") for _ in range(3)]
            assert [r.status for r in answers] == [200, 429, 429]
            assert all(r.header("connection") != "close" for r in answers)
        async with HttpClient(proxy.port) as client:
            # A body not read yet cannot be skipped safely: that answer closes.
            refused = await client.request("POST", "/", body=b"x" * 10)
            assert refused.status == 429 and refused.header("connection") == "close"
    assert len(a.requests) == 1 and a.connections == 1


async def test_a_per_try_timeout_moves_to_another_endpoint() -> None:
    retries = {**FAST_RETRY, "per_try_timeout_ms": 100}
    async with backends("a", "b") as (a, b), running_proxy(a, b, retries=retries) as proxy:
        answer = await fetch(proxy.port, "GET", "/slow?ms=2000")
    assert answer.status == 504
    assert answer.header("x-mesh-error") == "per-try-timeout"
    assert len(a.requests) + len(b.requests) == 3


async def test_idle_upstream_connections_are_closed_after_idle_timeout() -> None:
    async with backends("a") as (a,), running_proxy(a, idle_timeout_ms=200) as proxy:
        await fetch(proxy.port, "GET", "/")
        assert proxy.runtime.pool.idle_count() == 1
        await asyncio.sleep(0.4)
        assert proxy.runtime.pool.idle_count() == 0


async def test_expect_100_continue_is_relayed_from_the_upstream() -> None:
    async with backends("a") as (a,), running_proxy(a) as proxy, HttpClient(proxy.port) as c:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert c.reader is not None
        interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 3)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await c.send(b"hello")
        answer = await c.read_response()
    assert answer.body == b"hello"
    assert a.requests[0].header("expect") == "100-continue"


async def test_a_websocket_upgrade_is_tunnelled_both_ways() -> None:
    server = await asyncio.start_server(upgrade_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_proxy(port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"upgrade: websocket" in head.lower()
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.read(100), 3) == b"echo:ping"
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


SMUGGLING = {
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
    "invalid-header-name": b"GET / HTTP/1.1\r\nHost: t\r\nX(A): 1\r\n\r\n",
    "control-byte-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rX-B: b\r\n\r\n",
    "cl-and-te-mixed-case": b"POST / HTTP/1.1\r\nHost: t\r\ncontent-length: 3\r\n"
                            b"transfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
    "negative-cl": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffff1\r\nx\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
async def test_more_smuggling_cases_get_400_and_never_reach_a_backend(case: str) -> None:
    backend = await Backend("a").start()
    try:
        async with running_proxy(backend) as proxy:
            answer = await raw_exchange(proxy.port, SMUGGLING[case], timeout=1.0)
    finally:
        await backend.stop()
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert backend.connections == 0


def metric(text: str, line_start: str) -> float:
    """The value of the one sample whose line starts with line_start."""
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    assert len(values) == 1, (line_start, values)
    return float(values[0])


async def test_prometheus_counts_requests_retries_ejections_and_refusals() -> None:
    outlier = {"consecutive_5xx": 0, "consecutive_gateway": 2, "base_ejection_ms": 30000,
               "max_ejection_percent": 50}
    async with backends("a", "b") as (a, b), running_proxy(
            a, b, retries=FAST_RETRY, outlier=outlier, rate_limit={"rps": 0.001, "burst": 6},
            circuit_breaker={"max_requests": 1}, panic_threshold_percent=0) as proxy:
        for _ in range(4):  # each: a 503 from one, a retry to the other (or two 503s)
            await fetch(proxy.port, "GET", "/?status=503")
        slow = asyncio.create_task(fetch(proxy.port, "GET", "/slow?ms=300"))
        await asyncio.sleep(0.1)
        assert (await fetch(proxy.port, "GET", "/")).status == 503  # circuit open
        await slow
        assert (await fetch(proxy.port, "GET", "/")).status == 429  # 6 tokens spent
        text = render_resilience([proxy.runtime])
    runtime = proxy.runtime
    assert sum(e.requests for e in runtime.state.endpoints) == len(a.requests) + len(b.requests)
    for e in runtime.state.endpoints:
        labels = f'{{destination="payments",endpoint="127.0.0.1:{e.port}"}}'
        assert metric(text, f"meshagent_upstream_rq_total{labels}") == e.requests > 0
    assert runtime.retries_total > 0 and runtime.outlier.ejections_total == 1
    dest = '{destination="payments"}'
    assert metric(text, f"meshagent_upstream_retries_total{dest}") == runtime.retries_total
    assert metric(text, f"meshagent_upstream_ejections_total{dest}") == 1
    assert metric(text, f"meshagent_upstream_rate_limited_total{dest}") == 1
    assert metric(text, 'meshagent_upstream_circuit_open_total{destination="payments",'
                        'limit="max_requests"}') == 1
    assert metric(text, 'meshagent_upstream_circuit_open_total{destination="payments",'
                        'limit="max_pending"}') == 0


async def test_ring_hash_sends_one_header_value_to_one_backend_and_spreads_values() -> None:
    async with backends("a", "b", "c") as servers, running_proxy(
            *servers, load_balancer="ring_hash",
            hash_on={"type": "header", "name": "x-user"}) as proxy:
        chosen: dict[str, set[str]] = {}
        for user in [f"user-{i}" for i in range(30)] * 3:
            answer = await fetch(proxy.port, "GET", "/", headers=[("X-User", user)])
            chosen.setdefault(user, set()).add(answer.json()["backend"])
    assert all(len(names) == 1 for names in chosen.values())
    assert len(set().union(*chosen.values())) == 3


async def test_forwarded_for_and_request_id_are_the_same_on_every_try() -> None:
    async def always_503(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(head(503, [("Content-Length", "0")]))
        return True

    bad = await HttpServer(always_503).start()
    try:
        async with backends("good") as (good,), running_proxy(
                bad.port, good, retries=FAST_RETRY, outlier={"consecutive_5xx": 0,
                                                        "consecutive_gateway": 0}) as proxy:
            for i, given in enumerate(["", "given-id", "", "given-id-2"]):
                headers = [("X-Forwarded-For", "10.0.0.1")]
                headers += [("X-Request-Id", given)] if given else []
                assert (await fetch(proxy.port, "GET", f"/r{i}", headers=headers)).status == 200
    finally:
        await bad.stop()
    retried = {r.path for r in bad.requests}
    assert retried  # round robin sent at least one request to the bad one first
    for request in bad.requests:
        retry = next(r for r in good.requests if r.path == request.path)
        for name in ("x-forwarded-for", "x-request-id"):
            assert request.header(name) == retry.header(name), name
        assert request.header("x-forwarded-for") == "10.0.0.1, 127.0.0.1"
        if request.path in ("/r1", "/r3"):
            assert request.header("x-request-id") == f"given-id{'-2' if request.path == '/r3' else ''}"


def test_retry_circuit_breaker_and_rate_limit_behave_the_same_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def tour() -> None:
        async with backends("a", "b") as (a, b), running_proxy(
                a, b, retries=FAST_RETRY) as proxy:
            assert (await fetch(proxy.port, "GET", "/?status=503")).status == 503
            assert len(a.requests) + len(b.requests) == 3 and proxy.runtime.retries_total == 2
        async with backends("a") as (a,), running_proxy(
                a, circuit_breaker={"max_requests": 1}) as proxy:
            slow = asyncio.create_task(fetch(proxy.port, "GET", "/slow?ms=300"))
            await asyncio.sleep(0.1)
            refused = await fetch(proxy.port, "GET", "/")
            await slow
            assert refused.header("x-mesh-error") == "circuit-open (max_requests)"
            assert len(a.requests) == 1
        async with backends("a") as (a,), running_proxy(
                a, rate_limit={"rps": 1, "burst": 2}) as proxy:
            answers = [await fetch(proxy.port, "GET", "/") for _ in range(3)]
            assert [r.status for r in answers] == [200, 200, 429]
            assert answers[2].header("retry-after") == "1"

    uvloop.run(tour())
