"""The control-plane client against the in-test fake control plane, and its backoff."""

from __future__ import annotations

import asyncio
import random

import pytest

from agents.runtime.client import (
    Backoff,
    ControlPlaneClient,
    ControlPlaneError,
    EnrollmentRefused,
    Unauthorized,
)
from tests.agents.backends import FakeControlPlane, free_port

pytestmark = pytest.mark.timeout(30)


def test_backoff_grows_jittered_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 10.0, random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(5.0 <= d <= 10.0 for d in delays[6:])
    backoff.reset()
    assert backoff.next() <= 0.5


async def test_enroll_config_and_report_round_trip() -> None:
    cp = await FakeControlPlane().start()
    try:
        client = ControlPlaneClient(cp.url)
        answer = await client.enroll({"token": "enroll-secret", "node": "host-a"})
        agent_id, token = answer["agent_id"], answer["agent_token"]
        config = await client.get_config(agent_id, token)
        assert config["revision"] == cp.revision
        ack = await client.report(agent_id, token, {"applied_revision": config["revision"]})
        assert ack["revision"] == cp.revision
        assert cp.reports == [{"applied_revision": config["revision"]}]
        assert cp.requests[-1].header("authorization") == f"Agent {token}"
    finally:
        await cp.stop()


async def test_long_poll_returns_as_soon_as_the_revision_moves() -> None:
    cp = await FakeControlPlane().start()
    try:
        client = ControlPlaneClient(cp.url)
        answer = await client.enroll({"token": "enroll-secret", "node": "host-a"})
        since = cp.revision
        poll = asyncio.create_task(client.get_config(answer["agent_id"], answer["agent_token"],
                                                     revision=since, wait_s=10))
        await asyncio.sleep(0.2)
        assert not poll.done()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cp.publish({})
        config = await asyncio.wait_for(poll, 2)
        assert config["revision"] == since + 1
        assert loop.time() - started < 1.0
        assert "wait=10s" in cp.requests[-1].target
    finally:
        await cp.stop()


async def test_refusals_and_outages_raise_typed_errors() -> None:
    cp = await FakeControlPlane().start()
    try:
        client = ControlPlaneClient(cp.url)
        with pytest.raises(EnrollmentRefused):
            await client.enroll({"token": "wrong", "node": "host-a"})
        with pytest.raises(Unauthorized):
            await client.report(cp.agent_id, "not-a-token", {})
    finally:
        await cp.stop()
    with pytest.raises(ControlPlaneError):
        await ControlPlaneClient(f"http://127.0.0.1:{await free_port()}").enroll({})
