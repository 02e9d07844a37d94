"""Gateway route tables: validation (each bad case a 400 naming the field,
nothing stored), the ordered table with its version (409 when stale), one route
at a time, audit."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.models import Gateway, GatewayRoute
from journal.models import AuditEntry
from tests.gateway.helpers import HS_SECRET, route, service

pytestmark = pytest.mark.django_db

ROUTES = "/api/v1/gateway/edge/routes/"


@pytest.fixture
def edge(api: APIClient) -> APIClient:
    service("orders")
    assert api.post("/api/v1/gateway/", {"name": "edge"}, format="json").status_code == 201
    return api


def _put(api: APIClient, routes: list[dict[str, Any]], version: int | None = None) -> Any:
    body: dict[str, Any] = {"routes": routes}
    if version is not None:
        body["version"] = version
    return api.put(ROUTES, body, format="json")


def test_a_table_is_stored_in_order_with_defaults_and_versioned(edge: APIClient) -> None:
    service("payments")
    table = [
        route("a", hosts=["API.example.com", "*.example.org"], methods=["get"]),
        route("b", path={"regex": r"/pay/\d+"}, service="payments", timeout_ms=500),
    ]
    response = _put(edge, table, version=0)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 1
    first, second = body["routes"]
    assert first["hosts"] == ["api.example.com", "*.example.org"] and first["methods"] == ["GET"]
    assert first["auth"] == {"type": "none", "consumers": []} and first["strip_prefix"] is False
    assert "cors" not in first and "timeout_ms" not in first
    assert second["timeout_ms"] == 500 and second["path"] == {"regex": r"/pay/\d+"}
    assert edge.get(ROUTES).json() == body
    assert AuditEntry.objects.filter(object_type="gateway-routes", object_id="edge").count() == 1


def test_a_stale_version_is_a_409_and_changes_nothing(edge: APIClient) -> None:
    assert _put(edge, [route("a")], version=0).status_code == 200
    response = _put(edge, [route("b")], version=0)
    assert response.status_code == 409
    assert list(GatewayRoute.objects.values_list("name", flat=True)) == ["a"]
    assert Gateway.objects.get(name="edge").version == 1


def test_an_unchanged_table_makes_no_version(edge: APIClient) -> None:
    table = [route("a", auth={"type": "key"}, cors={"origins": ["https://a.example"]})]
    assert _put(edge, table).json()["version"] == 1
    assert _put(edge, table).json()["version"] == 1
    # What a GET shows is accepted back as is (read, edit, send back).
    shown = edge.get(ROUTES).json()
    assert _put(edge, shown["routes"], version=shown["version"]).json()["version"] == 1


BAD_ROUTES: list[tuple[dict[str, Any], list[str]]] = [
    ({"name": "Bad_Name"}, ["name"]),
    ({"hosts": ["api.example.com:8080"]}, ["hosts"]),
    ({"hosts": ["http://api.example.com"]}, ["hosts"]),
    ({"hosts": ["a.*.example.com"]}, ["hosts"]),
    ({"path": {"prefix": "orders"}}, ["path", "prefix"]),
    ({"path": {"exact": "/a", "prefix": "/b"}}, ["path"]),
    ({"path": {"regex": "/(unclosed"}}, ["path", "regex"]),
    ({"path": {"regex": r"/api/(\w+/?)+$"}}, ["path", "regex"]),  # exponential backtracking
    ({"path": {"glob": "/x/*"}}, ["path", "glob"]),
    ({"methods": ["FETCH"]}, ["methods"]),
    ({"service": "nowhere"}, ["service"]),
    ({"subset": "Not A Subset"}, ["subset"]),
    ({"strip_prefix": True, "path": {"exact": "/orders"}}, ["strip_prefix"]),
    ({"auth": {"type": "basic"}}, ["auth", "type"]),
    ({"auth": {"type": "key", "consumers": ["ghost"]}}, ["auth", "consumers"]),
    ({"auth": {"type": "jwt"}}, ["auth", "jwt"]),
    ({"auth": {"type": "jwt", "jwt": {"provider": "ghost"}}}, ["auth", "jwt", "provider"]),
    ({"rate_limits": [{"requests": 0, "per": "second"}]}, ["rate_limits", "0", "requests"]),
    ({"rate_limits": [{"requests": 5, "per": "hour"}]}, ["rate_limits", "0", "per"]),
    (
        {"rate_limits": [{"requests": 5, "per": "second", "burst": -1}]},
        ["rate_limits", "0", "burst"],
    ),
    (
        {"rate_limits": [{"requests": 5, "per": "second", "mode": "cluster"}]},
        ["rate_limits", "0", "mode"],
    ),
    (
        {"rate_limits": [{"requests": 5, "per": "second", "scope": "ip"}]},
        ["rate_limits", "0", "scope"],
    ),
    ({"cors": {"origins": ["app.example.com"]}}, ["cors", "origins"]),
    ({"cors": {"origins": ["https://app.example.com/path"]}}, ["cors", "origins"]),
    ({"cors": {"origins": ["*"], "credentials": True}}, ["cors", "origins"]),
    ({"max_body_bytes": -1}, ["max_body_bytes"]),
    ({"max_body_bytes": 2 << 30}, ["max_body_bytes"]),
    ({"timeout_ms": 0}, ["timeout_ms"]),
    ({"surprise": 1}, ["surprise"]),
]


def _path_of(errors: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(errors, list) and part.isdigit():
            errors = errors[int(part)]
        else:
            assert isinstance(errors, dict) and part in errors, (path, errors)
            errors = errors[part]
    return errors


@pytest.mark.parametrize(("change", "path"), BAD_ROUTES, ids=[str(c) for c, _ in BAD_ROUTES])
def test_a_bad_route_is_a_400_naming_its_field_and_stores_nothing(
    edge: APIClient, change: dict[str, Any], path: list[str]
) -> None:
    table = [route("good"), {**route("bad"), **change}]
    response = _put(edge, table)
    assert response.status_code == 400, response.content
    assert _path_of(
        response.json()["routes"]["1"]
        if isinstance(response.json()["routes"], dict)
        else response.json()["routes"][1],
        path,
    )
    assert not GatewayRoute.objects.exists()
    assert Gateway.objects.get(name="edge").version == 0
    # One route alone, appended: the same 400, nothing stored.
    response = edge.post(ROUTES, {**route("bad"), **change}, format="json")
    assert response.status_code == 400
    assert _path_of(response.json(), path)
    assert not GatewayRoute.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        [],
        "routes",
        {"routes": [route("a"), route("a")]},
        {"routes": [route("a")], "version": "one"},
        {"routes": {"a": route("a")}},
    ],
)
def test_a_bad_table_is_a_400(edge: APIClient, body: Any) -> None:
    assert edge.put(ROUTES, body, format="json").status_code == 400
    assert not GatewayRoute.objects.exists()


def test_one_route_at_a_time_keeps_its_place(edge: APIClient, api: APIClient) -> None:
    api.post("/api/v1/gateway/consumers/", {"name": "alice"}, format="json")
    assert edge.post(ROUTES, route("a"), format="json").status_code == 201
    assert edge.post(ROUTES, route("b"), format="json").status_code == 201
    assert edge.post(ROUTES, route("a"), format="json").status_code == 409
    changed = route("a", auth={"type": "key", "consumers": ["alice"]})
    response = edge.put(ROUTES + "a/", changed, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["auth"] == {
        "type": "key",
        "key": {"header": "apikey", "query": ""},
        "consumers": ["alice"],
    }
    assert [r["name"] for r in edge.get(ROUTES).json()["routes"]] == ["a", "b"]
    assert edge.put(ROUTES + "a/", route("z"), format="json").status_code == 400
    assert edge.put(ROUTES + "zz/", route("zz"), format="json").status_code == 404
    assert edge.delete(ROUTES + "a/").status_code == 204
    assert edge.delete(ROUTES + "a/").status_code == 404
    assert edge.get(ROUTES + "b/").json()["name"] == "b"
    assert Gateway.objects.get(name="edge").version == 4
    # The consumer is named by no route now: it may go.
    assert api.delete("/api/v1/gateway/consumers/alice/").status_code == 204


def test_a_named_consumer_or_provider_cannot_be_deleted(edge: APIClient) -> None:
    edge.post("/api/v1/gateway/consumers/", {"name": "alice"}, format="json")
    provider = {
        "name": "corp",
        "algorithms": ["HS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "secret": HS_SECRET,
    }
    assert edge.post("/api/v1/gateway/jwt-providers/", provider, format="json").status_code == 201
    table = [
        route("k", auth={"type": "key", "consumers": ["alice"]}),
        route("j", auth={"type": "jwt", "jwt": {"provider": "corp"}}),
    ]
    assert _put(edge, table).status_code == 200
    assert edge.delete("/api/v1/gateway/consumers/alice/").status_code == 409
    assert edge.delete("/api/v1/gateway/jwt-providers/corp/").status_code == 409


def test_gateways_unknown_reserved_or_twice(edge: APIClient) -> None:
    assert edge.get("/api/v1/gateway/nowhere/routes/").status_code == 404
    assert (
        edge.put("/api/v1/gateway/nowhere/routes/", {"routes": []}, format="json").status_code
        == 404
    )
    assert edge.post("/api/v1/gateway/", {"name": "edge"}, format="json").status_code == 409
    assert edge.post("/api/v1/gateway/", {"name": "consumers"}, format="json").status_code == 400
    assert edge.post("/api/v1/gateway/", {"name": "Edge!"}, format="json").status_code == 400
    listed = edge.get("/api/v1/gateway/").json()["results"]
    assert [g["name"] for g in listed] == ["edge"]
    assert edge.delete("/api/v1/gateway/edge/").status_code == 204
    assert not Gateway.objects.exists()


def test_a_service_a_gateway_route_sends_to_is_not_deleted(edge: APIClient) -> None:
    assert _put(edge, [route("a")]).status_code == 200
    response = edge.delete("/api/v1/services/orders/")
    assert response.status_code == 409
    assert response.json()["gateway_referrers"] == ["edge/a"]
    assert _put(edge, []).status_code == 200
    assert edge.delete("/api/v1/services/orders/").status_code == 204


# A number in a list of text was made its string: host 5 became "5", a CORS header -1 "-1".
@pytest.mark.parametrize(("extra", "error"), [
    ({"hosts": [5]}, {"hosts": {"0": ["expected a string, got a number"]}}),
    ({"hosts": ["api.example.com", 1e30]}, {"hosts": {"1": ["expected a string, got a number"]}}),
    ({"hosts": [True]}, {"hosts": {"0": ["expected a string, got a boolean"]}}),
    ({"cors": {"origins": ["https://a.example"], "headers": [-1]}},
     {"cors": {"headers": {"0": ["expected a string, got a number"]}}}),
    ({"cors": {"origins": [7]}}, {"cors": {"origins": {"0": ["expected a string, got a number"]}}}),
])
def test_a_number_in_a_list_of_text_is_a_400_not_its_string(
    edge: APIClient, extra: dict[str, Any], error: dict[str, Any]
) -> None:
    for response, expected in (
        (edge.post(ROUTES, route("a", **extra), format="json"), error),
        (_put(edge, [route("a", **extra)]), {"routes": {"0": error}}),
        (edge.put(ROUTES + "a/", route("a", **extra), format="json"), error),
    ):
        assert response.status_code == 400, response.content
        assert response.json() == expected
    assert not GatewayRoute.objects.exists()
    assert Gateway.objects.get(name="edge").version == 0
