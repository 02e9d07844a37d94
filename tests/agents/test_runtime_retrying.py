"""Retry state is an object an exchange gets at its first retryable failure, never before."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from agents.runtime.exchange import Exchange
from agents.runtime.retrying import RetryState
from tests.agents.backends import HttpClient, HttpServer, Request, head
from tests.agents.test_runtime_proxy_http import Proxy, running_proxy
from tests.agents.test_runtime_proxy_paths import settle
from tests.agents.test_runtime_resilience import FAST_RETRY

pytestmark = pytest.mark.timeout(30)


class FirstFails:
    """The first request anywhere gets a 503; later ones wait for `release`, then 200."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.seen = 0

    async def __call__(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        self.seen += 1
        if self.seen == 1 and self.fail_first:
            writer.write(head(503, [("Content-Length", "0")]))
        else:
            self.waiting.set()
            await self.release.wait()
            writer.write(head(200, [("Content-Length", "2")]) + b"ok")
        await writer.drain()
        return True

    fail_first = True


def in_flight(proxy: Proxy) -> Exchange:
    active = [c.active for c in proxy.ctx.connections if c.active is not None]  # type: ignore[attr-defined]
    assert len(active) == 1
    return active[0]


async def _answer(proxy: Proxy, behaviour: FirstFails) -> tuple[Exchange, int]:
    async with HttpClient(proxy.port) as client:
        response = asyncio.ensure_future(client.request("GET", "/"))
        await asyncio.wait_for(behaviour.waiting.wait(), 5)
        exchange = in_flight(proxy)
        behaviour.release.set()
        return exchange, (await response).status


async def test_a_request_that_never_fails_has_no_retry_state() -> None:
    behaviour = FirstFails()
    behaviour.fail_first = False
    server = await HttpServer(behaviour).start()
    try:
        async with running_proxy(server.port, retries=FAST_RETRY) as proxy:
            exchange, status = await _answer(proxy, behaviour)
    finally:
        await server.stop()
    assert status == 200
    assert exchange.retry is None


async def test_the_first_retryable_failure_makes_the_retry_state() -> None:
    behaviour = FirstFails()
    servers = [await HttpServer(behaviour).start() for _ in range(2)]
    try:
        async with running_proxy(*(s.port for s in servers), retries=FAST_RETRY) as proxy:
            exchange, status = await _answer(proxy, behaviour)
            await settle()
            retries_inflight = proxy.runtime.retries_inflight
    finally:
        for server in servers:
            await server.stop()
    assert status == 200
    assert isinstance(exchange.retry, RetryState)
    assert exchange.retry.tries == 1
    assert retries_inflight == 0 and not exchange.retry.reserved  # released at the end


SCENARIOS = {name[len("test_"):]: fn for name, fn in list(globals().items())
             if name.startswith("test_") and asyncio.iscoroutinefunction(fn)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_on_uvloop(scenario: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(SCENARIOS[scenario]())
