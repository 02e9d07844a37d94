"""The gateway reports which API keys authenticated requests (by digest), for the
control plane's ConsumerKey.last_used_at; a failed report keeps them for the next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.runtime.agent import Agent
from agents.runtime.client import ControlPlaneClient, ControlPlaneError
from agents.runtime.config import parse_config
from agents.runtime.gateway.auth import key_digest
from tests.agents.backends import Backend
from tests.agents.gateway_helpers import call, consumer, entry, route, running_gateway


class RecordingClient(ControlPlaneClient):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.payloads: list[dict[str, Any]] = []
        self.fail = False

    async def report(self, agent_id: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.payloads.append(payload)
        if self.fail:
            raise ControlPlaneError("down")
        return {}


async def test_the_keys_that_authenticated_are_reported_once_and_kept_on_failure(
        tmp_path: Path) -> None:
    config = parse_config({
        "control_plane": "http://127.0.0.1:9", "token": "t", "node": "edge-1",
        "data_dir": str(tmp_path), "admin": "127.0.0.1:0", "dns": "off",
        "gateway": {"name": "edge", "listeners": [{"listen": "127.0.0.1:0"}]}})
    client = RecordingClient(config.control_plane)
    agent = Agent(config, client=client)
    assert agent.gateway is not None
    section = {"name": "edge", "routes": [route("r", "orders", auth={"type": "key"})],
               "consumers": [consumer("alice", "alice-key"), consumer("bob", "bob-key")]}
    agent.offer({"revision": 1, "upstreams": {}, "gateway": section})
    consumers = agent.gateway.consumers
    assert consumers.by_key(b"alice-key") == "alice"
    assert consumers.by_key(b"alice-key") == "alice"
    assert consumers.by_key(b"nobody") is None  # an unknown key is no use of any
    identity = type("I", (), {"agent_id": "x", "agent_token": "t"})()
    client.fail = True
    with pytest.raises(ControlPlaneError):
        await agent._report(identity)  # type: ignore[arg-type]
    # A new table (bob's key used under it) keeps what the old one collected.
    agent.offer({"revision": 2, "upstreams": {}, "gateway": {**section, "routes": []}})
    assert agent.gateway.consumers.by_key(b"bob-key") == "bob"
    client.fail = False
    await agent._report(identity)  # type: ignore[arg-type]
    assert client.payloads[0]["gateway"] == {"name": "edge",
                                             "keys_used": [key_digest("alice-key")]}
    assert client.payloads[1]["gateway"]["keys_used"] == sorted(
        [key_digest("alice-key"), key_digest("bob-key")])
    await agent._report(identity)  # type: ignore[arg-type]
    assert client.payloads[2]["gateway"] == {"name": "edge"}  # none used: no list


async def test_a_request_with_a_key_marks_it_used() -> None:
    backend = await Backend("orders").start()
    try:
        section = {"routes": [route("r", "orders", auth={"type": "key"})],
                   "consumers": [consumer("alice", "k-1")]}
        async with running_gateway(section, {"orders": entry(backend)}) as (gateway, port):
            assert (await call(port, "GET", "/", headers=[("apikey", "wrong")])).status == 401
            assert gateway.drain_keys_used() == set()
            assert (await call(port, "GET", "/", headers=[("apikey", "k-1")])).status == 200
            assert gateway.drain_keys_used() == {key_digest("k-1")}
            assert gateway.drain_keys_used() == set()
    finally:
        await backend.stop()
