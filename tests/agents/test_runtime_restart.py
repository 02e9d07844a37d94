"""Restarting `meshagent run` under 200 requests/s loses no request (issue 9, item 12)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.runtime.agent import Agent
from agents.runtime.client import Backoff
from tests.agents.backends import HttpClient, fetch, upstream_entry
from tests.agents.restarts import Load, kill, mesh, restart, terminate
from tests.agents.test_runtime_agent import eventually, make_config, proxy_port, world

pytestmark = pytest.mark.timeout(120)


async def test_a_new_agent_takes_the_listeners_over_and_the_old_one_drains_losing_nothing(
    tmp_path: Path,
) -> None:
    async with mesh(tmp_path) as m:
        load = Load(m.listen_port)
        new = await restart(m, load, "handover")
        try:
            assert new is not None, "the new agent could not start beside the old one"
            assert load.failed == 0, load.reasons
            assert load.ok >= 600
            stats = (await fetch(m.admin_port, "GET", "/stats")).json()  # the new agent's now
            assert [e["requests"] for e in stats["edges"]][0] > 0  # it served part of the load
            assert await terminate(new) == 0
        finally:
            await kill(*([new] if new else []))


async def test_a_socket_activated_agent_stopped_then_started_loses_nothing(
    tmp_path: Path,
) -> None:
    async with mesh(tmp_path) as m:
        load = Load(m.listen_port)
        new = await restart(m, load, "socket-activation")
        try:
            assert new is not None
            assert load.failed == 0, load.reasons
            assert load.ok >= 500
            assert await terminate(new) == 0
        finally:
            await kill(*([new] if new else []))


async def test_stopping_answers_the_request_in_flight_with_connection_close_and_closes_idle_ones(
    tmp_path: Path,
) -> None:
    async with world() as (cp, a, _):
        await cp.publish({"payments": upstream_entry(a)})
        agent = Agent(make_config(cp.url, tmp_path), backoff=Backoff(0.05, 0.2))
        await agent.start()
        try:
            await eventually(agent.ready)
            port = proxy_port(agent)
            async with HttpClient(port) as busy, HttpClient(port) as idle:
                assert (await idle.request("GET", "/")).status == 200
                assert (await busy.request("GET", "/")).header("connection") is None
                await busy.send(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
                await eventually(lambda: agent.contexts[0].inflight == 1)
                stopping = asyncio.create_task(agent.stop(grace_s=10.0))
                answer = await busy.read_response()
                assert answer.status == 200 and answer.header("connection") == "close"
                assert busy.reader is not None and idle.reader is not None
                assert await busy.reader.read() == b""  # closed once answered
                assert await idle.reader.read() == b""  # closed, having been idle
                await stopping
            with pytest.raises(OSError):
                await fetch(port, "GET", "/")
        finally:
            await agent.stop(grace_s=0.0)


async def test_a_second_agent_on_the_same_data_dir_takes_over_the_listeners(
    tmp_path: Path,
) -> None:
    async with world() as (cp, a, _):
        await cp.publish({"payments": upstream_entry(a)})
        config = make_config(cp.url, tmp_path)  # listen and admin on port 0
        old = Agent(config, backoff=Backoff(0.05, 0.2))
        await old.start()
        new = Agent(config, backoff=Backoff(0.05, 0.2))
        try:
            await eventually(old.ready)
            await new.start()
            # The same sockets, so the same ports even though the config says port 0.
            assert new.upstreams[0].bound == old.upstreams[0].bound
            assert new.admin_address == old.admin_address
            await old.stop(grace_s=5.0)
            await eventually(new.ready)
            for _ in range(5):
                assert (await fetch(proxy_port(new), "GET", "/")).status == 200
            assert sum(c.requests for c in new.metrics.totals.values()) >= 5
            # ... and hands them on in turn.
            third = Agent(config, backoff=Backoff(0.05, 0.2))
            await third.start()
            assert third.upstreams[0].bound == new.upstreams[0].bound
            await third.stop(grace_s=0.0)
        finally:
            await old.stop(grace_s=0.0)
            await new.stop(grace_s=0.0)
