"""A gateway route's `subset` must be one its service's routes document defines
(a 400 at the field, nothing stored); a subset a gateway route sends to cannot be
removed or renamed from under it (a 409 naming the route, as deleting its service
is), through the routes API, its rollback, or a mesh apply."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.models import Gateway, GatewayRoute
from policies.models import RoutesVersion, ServiceRoutes
from tests.gateway.helpers import route, service
from tests.meshcode.test_apply import apply

pytestmark = pytest.mark.django_db

ROUTES = "/api/v1/gateway/edge/routes/"
SUBSETS = "/api/v1/services/orders/routes/"
TWO = {"subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}}, "routes": []}
ONLY_V1 = {"subsets": {"v1": {"tags": ["v1"]}}, "routes": []}


@pytest.fixture
def edge(api: APIClient) -> APIClient:
    service("orders")
    assert api.put(SUBSETS, TWO, format="json").status_code == 200
    assert api.post("/api/v1/gateway/", {"name": "edge"}, format="json").status_code == 201
    return api


def _subsets() -> dict[str, Any]:
    return dict(ServiceRoutes.objects.get(service__name="orders").document["subsets"])


def test_a_route_to_an_unknown_subset_is_a_400_at_the_field(edge: APIClient) -> None:
    response = edge.post(ROUTES, route(subset="v9"), format="json")
    assert response.status_code == 400, response.content
    assert "no subset 'v9'" in response.json()["subset"][0]
    assert "v1, v2" in response.json()["subset"][0]
    table = edge.put(ROUTES, {"routes": [route("a"), route("b", subset="v9")]}, format="json")
    assert table.status_code == 400
    assert "subset" in table.json()["routes"]["1"]
    assert not GatewayRoute.objects.exists() and Gateway.objects.get(name="edge").version == 0


def test_a_subset_of_a_service_without_routes_is_a_400(edge: APIClient) -> None:
    service("billing")
    response = edge.post(ROUTES, route(service="billing", subset="v1"), format="json")
    assert response.status_code == 400
    assert "(its subsets: none)" in response.json()["subset"][0]


def test_a_route_to_a_defined_subset_is_stored(edge: APIClient) -> None:
    response = edge.post(ROUTES, route(subset="v2"), format="json")
    assert response.status_code == 201, response.content
    assert GatewayRoute.objects.get().subset == "v2"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(ONLY_V1, id="deleted"),
        pytest.param({"subsets": {"v1": {"tags": ["v1"]}, "v3": {"tags": ["v2"]}},
                      "routes": []}, id="renamed"),
        pytest.param({"subsets": {}, "routes": []}, id="all-removed"),
    ],
)
def test_a_subset_a_gateway_route_uses_is_not_removed(
    edge: APIClient, document: dict[str, Any]
) -> None:
    assert edge.post(ROUTES, route(subset="v2"), format="json").status_code == 201
    versions = RoutesVersion.objects.count()
    response = edge.put(SUBSETS, document, format="json")
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["gateway_referrers"] == ["edge/orders-api"]
    assert body["subsets"] == ["v2"]
    assert "edge/orders-api" in body["detail"] and "v2" in body["detail"]
    assert set(_subsets()) == {"v1", "v2"} and RoutesVersion.objects.count() == versions
    # Once the route no longer sends to v2, v2 can go.
    changed = edge.put(f"{ROUTES}orders-api/", route(subset="v1"), format="json")
    assert changed.status_code == 200, changed.content
    assert edge.put(SUBSETS, ONLY_V1, format="json").status_code == 200


def test_a_subset_unused_by_gateway_routes_is_removed_freely(edge: APIClient) -> None:
    assert edge.post(ROUTES, route(subset="v1"), format="json").status_code == 201
    assert edge.post(ROUTES, route("plain"), format="json").status_code == 201
    assert edge.put(SUBSETS, ONLY_V1, format="json").status_code == 200
    assert set(_subsets()) == {"v1"}


def test_a_rollback_that_drops_a_used_subset_is_a_409(edge: APIClient) -> None:
    first = RoutesVersion.objects.get().version  # TWO
    assert edge.put(SUBSETS, ONLY_V1, format="json").status_code == 200
    assert edge.put(SUBSETS, TWO, format="json").status_code == 200
    assert edge.post(ROUTES, route(subset="v2"), format="json").status_code == 201
    response = edge.post(f"{SUBSETS}versions/{first + 1}/rollback/")
    assert response.status_code == 409, response.content
    assert response.json()["gateway_referrers"] == ["edge/orders-api"]
    assert set(_subsets()) == {"v1", "v2"}


MESH: list[dict[str, Any]] = [
    {"kind": "Service", "name": "orders", "check": {"type": "none"}},
    {"kind": "Routes", "name": "orders", **TWO},
    {"kind": "GatewayRoute", "name": "orders-api", "gateway": "edge",
     "path": {"prefix": "/orders"}, "service": "orders", "subset": "v2"},
]


def test_a_mesh_apply_may_create_a_subset_and_the_route_to_it_together(api: APIClient) -> None:
    response = apply(api, MESH)
    assert response.status_code == 200, response.content
    assert GatewayRoute.objects.get().subset == "v2"


def test_a_mesh_apply_that_leaves_a_route_on_a_removed_subset_is_refused(
    api: APIClient,
) -> None:
    assert apply(api, MESH).status_code == 200
    dropped = [MESH[0], {"kind": "Routes", "name": "orders", **ONLY_V1}, MESH[2]]
    response = apply(api, dropped)
    assert response.status_code == 400, response.content
    assert "Routes/orders" in str(response.content) and "edge/orders-api" in str(response.content)
    assert set(_subsets()) == {"v1", "v2"}
    # Pruning the Routes document (all its subsets) while the route stays: refused too.
    pruned = apply(api, [MESH[0], MESH[2]], prune=True)
    assert pruned.status_code == 400, pruned.content
    assert set(_subsets()) == {"v1", "v2"}
    # Moving the route off v2 in the same apply that drops v2 is fine.
    moved = [MESH[0], dropped[1], {**MESH[2], "subset": "v1"}]
    response = apply(api, moved)
    assert response.status_code == 200, response.content
    assert set(_subsets()) == {"v1"} and GatewayRoute.objects.get().subset == "v1"


def test_the_table_write_checks_the_subset_again_under_the_lock(edge: APIClient) -> None:
    """What the serializer checked may be gone by the transaction (a concurrent
    routes PUT): routes_write checks new and changed routes' subsets again."""
    from gateway import services
    from gateway.api.serializers import RouteSerializer

    checked = RouteSerializer(data=route(subset="v2"))
    assert checked.is_valid(), checked.errors
    assert edge.put(SUBSETS, ONLY_V1, format="json").status_code == 200  # v2 goes meanwhile
    gateway = Gateway.objects.get(name="edge")
    with pytest.raises(services.InUse, match="no subset 'v2'"):
        services.routes_write(
            user=None, gateway=gateway, edit=services.route_appended(dict(checked.validated_data))
        )
    assert not GatewayRoute.objects.exists()
