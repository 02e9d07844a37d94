"""Consumer and GatewayRoute documents: apply creates the gateway and the route
(one audited table write), export has them (consumers without keys), prune
removes them, a bad document is a 400 naming its field, nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.models import Consumer, ConsumerKey, Gateway, GatewayRoute
from tests.gateway.helpers import service
from tests.meshcode.test_apply import apply, export

pytestmark = pytest.mark.django_db

DOCS: list[dict[str, Any]] = [
    {"kind": "Service", "name": "orders", "check": {"type": "none"}},
    {"kind": "Consumer", "name": "alice", "jwt_subjects": ["alice@corp"]},
    {
        "kind": "GatewayRoute",
        "name": "orders-api",
        "gateway": "edge",
        "hosts": ["api.example.com"],
        "path": {"prefix": "/orders"},
        "service": "orders",
        "strip_prefix": True,
        "auth": {"type": "key", "consumers": ["alice"]},
        "rate_limits": [{"requests": 10, "per": "second", "burst": 5}],
    },
]


def test_apply_export_and_prune(api: APIClient) -> None:
    response = apply(api, DOCS)
    assert response.status_code == 200, response.content
    route = GatewayRoute.objects.select_related("gateway").get()
    assert route.gateway.name == "edge" and route.strip_prefix and route.gateway.version == 1
    key = api.post("/api/v1/gateway/consumers/alice/keys/", {}, format="json").json()
    exported = {(d["kind"], d["name"]): d for d in export(api)}
    consumer = exported[("Consumer", "alice")]
    assert consumer == {
        "kind": "Consumer",
        "name": "alice",
        "description": "",
        "tags": [],
        "jwt_subjects": ["alice@corp"],
    }
    assert key["prefix"] not in str(exported) and key["key_hash"] not in str(exported)
    doc = exported[("GatewayRoute", "orders-api")]
    assert doc["gateway"] == "edge" and doc["auth"]["key"] == {"header": "apikey", "query": ""}
    # The export applies again as is: nothing changes.
    again = apply(api, list(exported.values()))
    assert again.status_code == 200, again.content
    assert Gateway.objects.get(name="edge").version == 1
    # Pruned: the route, then the consumer (its key with it); the gateway stays.
    response = apply(api, [DOCS[0]], prune=True)
    assert response.status_code == 200, response.content
    assert not GatewayRoute.objects.exists() and not Consumer.objects.exists()
    assert not ConsumerKey.objects.exists() and Gateway.objects.filter(name="edge").exists()


def test_a_route_moves_between_gateways(api: APIClient) -> None:
    assert apply(api, DOCS).status_code == 200
    moved = [*DOCS[:2], {**DOCS[2], "gateway": "edge-2"}]
    assert apply(api, moved).status_code == 200, apply(api, moved).content
    route = GatewayRoute.objects.select_related("gateway").get()
    assert route.gateway.name == "edge-2"
    assert Gateway.objects.get(name="edge").version == 2  # added, then removed


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gateway": "Edge"}, "gateway"),
        ({"gateway": None}, "gateway"),
        ({"service": "nowhere"}, "service"),
        ({"path": {"regex": "("}}, "path"),
        ({"auth": {"type": "key", "consumers": ["bob"]}}, "auth"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_route_document_is_a_400_and_changes_nothing(
    api: APIClient, change: dict[str, Any], field: str
) -> None:
    response = apply(api, [*DOCS[:2], {**DOCS[2], **change}])
    assert response.status_code == 400, response.content
    assert field in str(response.json())
    assert not Gateway.objects.exists() and not Consumer.objects.exists()


def test_route_names_are_unique_across_gateways(api: APIClient) -> None:
    service("orders")
    for name in ("edge", "edge-2"):
        api.post("/api/v1/gateway/", {"name": name}, format="json")
    route = {"name": "orders-api", "service": "orders"}
    assert api.post("/api/v1/gateway/edge/routes/", route, format="json").status_code == 201
    response = api.post("/api/v1/gateway/edge-2/routes/", route, format="json")
    assert response.status_code == 409 and "edge/orders-api" in response.json()["detail"]


def test_prune_keeps_no_gateway_route_without_its_service(api: APIClient) -> None:
    assert apply(api, DOCS).status_code == 200
    # The service pruned, its route kept: refused, nothing changed.
    response = apply(api, [DOCS[1], DOCS[2]], prune=True)
    assert response.status_code == 400, response.content
    assert "GatewayRoute/orders-api" in str(response.json())
    assert GatewayRoute.objects.exists()
    # Both pruned: fine.
    other = {"kind": "Service", "name": "other", "check": {"type": "none"}}
    assert apply(api, [other], prune=True).status_code == 200
    assert not GatewayRoute.objects.exists()
