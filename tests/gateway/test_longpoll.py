"""A write to a gateway's routes wakes that gateway's agents' long-polls within
a second, and only theirs; a consumer change wakes every gateway agent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.test import AsyncClient

from gateway import services
from gateway.api.serializers import RouteSerializer
from gateway.models import Gateway
from tests.gateway.helpers import config, enroll, route, service

pytestmark = pytest.mark.django_db(transaction=True)


def _setup() -> dict[str, Any]:
    service("orders")
    edge, edge_body = enroll("gw-1", gateway="edge")
    other, other_body = enroll("gw-2", gateway="other")
    plain, plain_body = enroll("host-a")
    return {
        name: (body["agent_id"], body["agent_token"], config(client, body["agent_id"])["revision"])
        for name, (client, body) in {
            "edge": (edge, edge_body),
            "other": (other, other_body),
            "plain": (plain, plain_body),
        }.items()
    }


def _poll(client: AsyncClient, agent: tuple[str, str, int], wait: str) -> Any:
    agent_id, token, revision = agent
    return client.get(
        f"/api/v1/agents/{agent_id}/config/?revision={revision}&wait={wait}",
        headers={"Authorization": f"Agent {token}"},
    )


def _validated(document: dict[str, Any]) -> dict[str, Any]:
    serializer = RouteSerializer(data=document)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _in_thread(write: Any) -> float:
    # Another writer with its own connection, like another process.
    try:
        write()
        return time.monotonic()
    finally:
        connection.close()


async def test_a_route_write_wakes_exactly_that_gateways_agents(admin_user: User) -> None:
    agents = await sync_to_async(_setup)()
    client = AsyncClient()
    edge = asyncio.ensure_future(_poll(client, agents["edge"], "20s"))
    other = asyncio.ensure_future(_poll(client, agents["other"], "2s"))
    plain = asyncio.ensure_future(_poll(client, agents["plain"], "2s"))
    await asyncio.sleep(0.5)

    def write() -> None:
        services.routes_write(
            user=admin_user,
            gateway=Gateway.objects.get(name="edge"),
            edit=lambda _: [_validated(route("a"))],
        )

    changed_at = await asyncio.to_thread(_in_thread, write)
    response = await asyncio.wait_for(edge, 10)
    assert time.monotonic() - changed_at < 1.0
    assert response.status_code == 200
    body = response.json()
    assert body["revision"] > agents["edge"][2]
    assert [r["name"] for r in body["gateway"]["routes"]] == ["a"]
    assert "orders" in body["upstreams"]
    for unaffected, name in ((other, "other"), (plain, "plain")):
        answer = (await asyncio.wait_for(unaffected, 10)).json()
        assert answer["revision"] == agents[name][2], name  # timed out, not woken


async def test_a_consumer_change_wakes_every_gateway_agent_but_no_other(admin_user: User) -> None:
    agents = await sync_to_async(_setup)()
    client = AsyncClient()
    polls = {
        n: asyncio.ensure_future(_poll(client, agents[n], "20s" if n != "plain" else "2s"))
        for n in agents
    }
    await asyncio.sleep(0.5)
    changed_at = await asyncio.to_thread(
        _in_thread, lambda: services.consumer_create(user=admin_user, data={"name": "alice"})
    )
    for name in ("edge", "other"):
        body = (await asyncio.wait_for(polls[name], 10)).json()
        assert body["gateway"]["consumers"][0]["name"] == "alice"
    assert time.monotonic() - changed_at < 1.0
    assert (await asyncio.wait_for(polls["plain"], 10)).json()["revision"] == agents["plain"][2]
