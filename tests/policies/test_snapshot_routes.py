"""Routes and subsets in the agent snapshot: the contract's exact shape
(docs/agent-protocol.md "Routes, subsets and the gateway"), the agent's parser
taking it, and the index of a snapshot following the services a split names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from agents.models import Agent
from agents.runtime.snapshot import parse_snapshot
from agents.snapshot import agent_snapshot, snapshot_index, snapshot_keys
from meshconsole import longpoll
from policies.routes import routes_validate
from policies.services import routes_update
from registry import services as registry_services
from registry.models import Instance, MeshIndex, Node, Service
from registry.revision import mesh_change
from tests.policies.helpers import instance, service

DOCUMENT: dict[str, Any] = {
    "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}},
    "routes": [
        {"name": "canary-api",
         "match": {"path": {"prefix": "/api"}, "methods": ["GET", "POST"],
                   "headers": [{"name": "x-user", "exact": "bob"}],
                   "query": [{"name": "debug", "present": True}]},
         "split": [{"subset": "v1", "weight": 95}, {"subset": "v2", "weight": 5},
                   {"service": "payments-next", "weight": 0}],
         "sticky": {"header": "x-user"},
         "fallback": "next",
         "rewrite": {"prefix": "/v2/api"},
         "request_headers": {"set": {"x-canary": "1"}, "remove": ["x-debug"]},
         "response_headers": {"set": {}, "remove": []},
         "timeout_ms": 2000,
         "retries": {"attempts": 1}},
    ],
}


def _agent(*upstreams: str) -> Agent:
    node = Node.objects.create(name="host-a", zone="zone-1")
    return Agent.objects.create(
        node=node, token_hash="x", upstreams=[{"service": name} for name in upstreams]
    )


def _routes(name: str, document: dict[str, Any]) -> None:
    svc = Service.objects.get(name=name)
    routes_update(user=None, service=svc, document=routes_validate(svc, document))


def _mesh() -> Agent:
    payments = service("payments")
    nxt = service("payments-next")
    one = instance(payments, 1)
    Instance.objects.filter(pk=one.pk).update(tags=["v1"], metadata={"track": "stable"})
    two = instance(payments, 2)
    Instance.objects.filter(pk=two.pk).update(tags=["v2"], metadata={"track": "canary"})
    instance(nxt, 3)
    _routes("payments", DOCUMENT)
    return _agent("payments")


@pytest.mark.django_db
def test_the_snapshot_carries_subsets_routes_metadata_and_route_targets_as_the_contract_says() -> None:
    snapshot = agent_snapshot(agent=_mesh())
    upstreams = snapshot["upstreams"]
    assert sorted(upstreams) == ["payments", "payments-next"]
    payments = upstreams["payments"]
    # The contract's document, exactly (docs/agent-protocol.md).
    assert payments["subsets"] == {"v1": {"tags": ["v1"], "metadata": {}},
                                   "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}}
    assert payments["routes"] == DOCUMENT["routes"]
    assert "route_target" not in payments
    assert [(e["port"], e["tags"], e["metadata"]) for e in payments["endpoints"]] == [
        (1, ["v1"], {"track": "stable"}), (2, ["v2"], {"track": "canary"}),
    ]
    target = upstreams["payments-next"]
    assert target["route_target"] is True
    assert [e["port"] for e in target["endpoints"]] == [3]
    assert set(target) >= {"protocol", "failover", "policy", "endpoints", "withheld", "mtls"}
    assert "routes" not in target and "subsets" not in target


@pytest.mark.django_db
def test_an_upstream_without_routes_carries_neither_key() -> None:
    instance(service("users"), 1)
    upstream = agent_snapshot(agent=_agent("users"))["upstreams"]["users"]
    assert "routes" not in upstream and "subsets" not in upstream
    assert "route_target" not in upstream and upstream["endpoints"][0]["metadata"] == {}


@pytest.mark.django_db
def test_a_declared_upstream_that_is_also_a_split_target_is_no_route_target() -> None:
    _mesh()
    agent = Agent.objects.create(
        node=Node.objects.create(name="host-b"), token_hash="y",
        upstreams=[{"service": "payments"}, {"service": "payments-next"}],
    )
    assert "route_target" not in agent_snapshot(agent=agent)["upstreams"]["payments-next"]


@pytest.mark.django_db
def test_the_agents_parser_takes_the_emitted_snapshot() -> None:
    # The JSON the agent gets, through its own parser: every upstream accepted.
    import json

    raw = json.loads(json.dumps(agent_snapshot(agent=_mesh())))
    parsed = parse_snapshot(raw)
    assert sorted(parsed.upstreams) == ["payments", "payments-next"]
    assert parsed.raw["upstreams"]["payments"]["routes"][0]["name"] == "canary-api"


def _change(name: str) -> int:
    with transaction.atomic():
        return mesh_change(services={name})


@pytest.mark.django_db
def test_the_index_of_a_snapshot_follows_the_services_its_splits_name() -> None:
    agent = _mesh()
    assert "service:payments-next" in snapshot_keys(agent)
    start = snapshot_index(agent)
    moved = _change("payments-next")
    assert snapshot_index(agent) == moved > start
    # The cached upstream part is rebuilt: a new instance of the target shows.
    agent_snapshot(agent=agent)
    nxt = Service.objects.get(name="payments-next")
    registry_services.instance_register(
        user=None, service=nxt, data={"address": "10.0.0.1", "port": 4, "zone": "zone-1"}
    )
    ports = [e["port"] for e in agent_snapshot(agent=agent)["upstreams"]["payments-next"]["endpoints"]]
    assert ports == [3, 4]
    # Once no split names it, the target leaves the keys and the snapshot.
    _routes("payments", {"subsets": DOCUMENT["subsets"],
                         "routes": [{"name": "all", "split": [{"subset": "v1", "weight": 1}]}]})
    assert "service:payments-next" not in snapshot_keys(agent)
    assert "payments-next" not in agent_snapshot(agent=agent)["upstreams"]
    revision = snapshot_index(agent)
    _change("payments-next")
    assert snapshot_index(agent) == revision


@pytest.mark.django_db(transaction=True)
async def test_a_change_to_a_split_target_wakes_the_agents_long_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 30.0)  # only a message can wake early
    agent = await sync_to_async(_mesh)()
    keys = await sync_to_async(snapshot_keys)(agent)
    start = await sync_to_async(snapshot_index)(agent)
    watcher = longpoll.RevisionWatcher()
    waiting = asyncio.create_task(
        watcher.wait_for(start, 5.0, keys=keys, read=lambda: MeshIndex.of(keys))
    )
    await asyncio.sleep(0.5)  # subscribed
    revision = await sync_to_async(_change)("payments-next")
    assert await asyncio.wait_for(waiting, 2.0) == revision


@pytest.mark.django_db(transaction=True)
async def test_the_config_long_poll_answers_within_a_second_of_a_split_target_change() -> None:
    # The real view: an agent declaring only payments, whose routes split to
    # payments-next, long-polls; a new payments-next instance must wake it.
    import time

    from django.db import connection
    from django.test import AsyncClient

    from tests.agents.test_api_agents import enroll

    def setup() -> tuple[str, str, int]:
        payments = service("payments")
        service("payments-next")
        instance(payments, 1)
        routes_update(user=None, service=payments, document=routes_validate(payments, {
            "subsets": {"all": {}},
            "routes": [{"name": "r", "split": [{"subset": "all", "weight": 9},
                                               {"service": "payments-next", "weight": 1}]}],
        }))
        _, body = enroll()
        agent = Agent.objects.get(pk=body["agent_id"])
        return body["agent_id"], body["agent_token"], snapshot_index(agent)

    agent_id, token, index = await sync_to_async(setup)()

    def change() -> float:
        try:
            nxt = Service.objects.get(name="payments-next")
            registry_services.instance_register(
                user=None, service=nxt, data={"address": "10.0.0.1", "port": 7, "zone": "zone-1"}
            )
            return time.monotonic()
        finally:
            connection.close()

    async def change_later() -> float:
        await asyncio.sleep(0.5)
        return await asyncio.to_thread(change)

    waiter = asyncio.ensure_future(AsyncClient().get(
        f"/api/v1/agents/{agent_id}/config/?revision={index}&wait=20s",
        headers={"Authorization": f"Agent {token}"},
    ))
    changed_at = await change_later()
    response = await asyncio.wait_for(waiter, 10)
    assert time.monotonic() - changed_at < 1.0
    assert response.status_code == 200
    upstream = response.json()["upstreams"]["payments-next"]
    assert upstream["route_target"] is True and [e["port"] for e in upstream["endpoints"]] == [7]
