"""A gateway agent's snapshot carries what the gateway needs to apply a routed service's
mesh routes (docs/gateway.md): the service's `subsets` and `routes`, the services its
splits name as `route_target` upstreams, and their keys in the agent's index; fed to the
gateway's own parser, the split's targets become runtimes (both sides of the contract)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from agents.runtime.gateway.config import GatewayConfig
from agents.runtime.gateway.listener import Gateway
from agents.runtime.snapshot import parse_snapshot
from agents.snapshot import snapshot_index, snapshot_keys
from registry import services as registry_services
from registry.models import Instance, Service, service_key
from tests.gateway.helpers import config, enroll, route, service

pytestmark = pytest.mark.django_db

ROUTES: dict[str, Any] = {
    "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}},
    "routes": [{"name": "canary", "split": [{"subset": "v1", "weight": 90},
                                            {"subset": "v2", "weight": 5},
                                            {"service": "orders-next", "weight": 5}]}],
}


@pytest.fixture
def gateway_agent(api: APIClient) -> tuple[APIClient, str]:
    client, body = enroll("gw-1", gateway="edge")
    orders = service("orders")
    for port, tag in ((8081, "v1"), (8082, "v2")):
        made = registry_services.instance_register(
            user=None, service=orders, data={"address": "10.0.0.7", "port": port})
        Instance.objects.filter(pk=made.pk).update(tags=[tag])
    nxt = service("orders-next")
    registry_services.instance_register(
        user=None, service=nxt, data={"address": "10.0.0.8", "port": 8083})
    response = api.put("/api/v1/services/orders/routes/", ROUTES, format="json")
    assert response.status_code == 200, response.content
    response = api.put("/api/v1/gateway/edge/routes/", {"routes": [
        route("shop", path={"prefix": "/"})]}, format="json")
    assert response.status_code == 200, response.content
    return client, str(body["agent_id"])


def test_the_gateway_gets_the_routed_services_mesh_routes_and_its_split_targets(
    gateway_agent: tuple[APIClient, str]
) -> None:
    client, agent_id = gateway_agent
    snapshot = config(client, agent_id)
    upstreams = snapshot["upstreams"]
    assert sorted(upstreams) == ["orders", "orders-next"]
    [canary_doc] = upstreams["orders"]["routes"]
    assert canary_doc["split"] == ROUTES["routes"][0]["split"]
    assert set(upstreams["orders"]["subsets"]) == {"v1", "v2"}
    assert upstreams["orders-next"]["route_target"] is True
    assert [e["port"] for e in upstreams["orders-next"]["endpoints"]] == [8083]
    # The split's target wakes the gateway: its key is in the index.
    agent = Agent.objects.get(pk=agent_id)
    assert service_key("orders-next") in snapshot_keys(agent)
    before = snapshot_index(agent)
    registry_services.instance_register(
        user=None, service=Service.objects.get(name="orders-next"),
        data={"address": "10.0.0.9", "port": 8084})
    assert snapshot_index(agent) > before
    # The gateway's parser takes it: the runtime of orders has the split's table, and
    # orders-next a runtime of its own.
    gateway = Gateway(GatewayConfig(name="edge", listeners=()))
    assert gateway.offer(parse_snapshot(snapshot)) is None
    assert set(gateway.services) == {"orders"} and set(gateway.split_targets) == {
        "orders-next"}
    table = gateway.services["orders"].state.routes
    assert table is not None
    [(_, canary)] = table.entries
    assert [(t.service, t.subset, len(t.state.endpoints)) for t in canary.targets] == [
        ("orders", "v1", 1), ("orders", "v2", 1), ("orders-next", "", 1)]
