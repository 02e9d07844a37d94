"""Subsets and routes over the REST API: validation, versions, 409, rollback,
audit, the mesh revision."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from policies.models import RoutesVersion, ServiceRoutes
from registry.models import ManagedResource, MeshIndex, MeshRevision, service_key
from tests.policies.helpers import service

pytestmark = pytest.mark.django_db

URL = "/api/v1/services/payments/routes/"

VALID: dict[str, Any] = {
    "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}},
    "routes": [
        {"name": "canary-api",
         "match": {"path": {"prefix": "/api"}, "methods": ["get", "POST"],
                   "headers": [{"name": "X-User", "exact": "bob"}],
                   "query": [{"name": "debug", "present": True}]},
         "split": [{"subset": "v1", "weight": 95}, {"subset": "v2", "weight": 5},
                   {"service": "payments-next", "weight": 0}],
         "sticky": {"header": "X-User"},
         "fallback": "fail",
         "rewrite": {"prefix": "/v2/api"},
         "request_headers": {"set": {"X-Canary": "1"}, "remove": ["X-Debug"]},
         "response_headers": {"set": {}, "remove": []},
         "timeout_ms": 2000,
         "retries": {"attempts": 1}},
        {"name": "rest", "split": [{"subset": "v1", "weight": 1}]},
    ],
}


@pytest.fixture
def payments() -> None:
    service("payments")
    service("payments-next")


def _put(api: APIClient, body: dict[str, Any]) -> Any:
    return api.put(URL, body, format="json")


def test_a_service_without_routes_reads_empty_at_version_0(api: APIClient, payments: None) -> None:
    body = api.get(URL).json()
    assert body["version"] == 0 and body["subsets"] == {} and body["routes"] == []
    assert api.get("/api/v1/services/nope/routes/").status_code == 404


def test_put_stores_the_normalized_document_audits_and_bumps_the_revision(
    api: APIClient, payments: None
) -> None:
    before = MeshRevision.current()
    response = _put(api, VALID)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 1
    route = body["routes"][0]
    assert route["match"]["methods"] == ["GET", "POST"]
    assert route["match"]["headers"] == [{"name": "x-user", "exact": "bob"}]
    assert route["sticky"] == {"header": "x-user"}
    assert route["request_headers"] == {"set": {"x-canary": "1"}, "remove": ["x-debug"]}
    assert body["routes"][1] == {"name": "rest", "match": {}, "split": [{"subset": "v1", "weight": 1}],
                                 "fallback": "next"}
    assert body["subsets"]["v1"] == {"tags": ["v1"], "metadata": {}}
    assert MeshRevision.current() == before + 1
    assert MeshIndex.of([service_key("payments")]) == before + 1
    entry = AuditEntry.objects.get(object_type="routes")
    assert entry.object_id == "payments" and entry.before == {"subsets": {}, "routes": []}
    assert entry.after == ServiceRoutes.objects.get().document
    assert Event.objects.filter(message__startswith="routes of payments v1").exists()
    assert RoutesVersion.objects.get().version == 1


def test_the_same_document_again_makes_no_version(api: APIClient, payments: None) -> None:
    _put(api, VALID)
    revision = MeshRevision.current()
    assert _put(api, VALID).json()["version"] == 1
    assert MeshRevision.current() == revision and RoutesVersion.objects.count() == 1


def test_a_stale_version_is_409_and_changes_nothing(api: APIClient, payments: None) -> None:
    _put(api, VALID)
    _put(api, {**VALID, "version": 1, "routes": VALID["routes"][1:]})
    revision = MeshRevision.current()
    response = _put(api, {**VALID, "version": 1})
    assert response.status_code == 409, response.content
    assert ServiceRoutes.objects.get().version == 2
    assert len(ServiceRoutes.objects.get().document["routes"]) == 1
    assert MeshRevision.current() == revision
    assert _put(api, {**VALID, "version": 2}).status_code == 200


def _invalid(name: str) -> tuple[dict[str, Any], str]:
    doc = copy.deepcopy(VALID)
    r0 = doc["routes"][0]
    if name == "unknown-subset":
        r0["split"][0]["subset"] = "v3"
        return doc, "routes.0.split.0.subset"
    if name == "bad-regex":
        r0["match"]["path"] = {"regex": "/(unclosed"}
        del r0["rewrite"]
        return doc, "routes.0.match.path.regex"
    if name == "nested-repeat-regex":  # exponential backtracking on /aaaa…!
        r0["match"]["path"] = {"regex": "/(a+)+$"}
        del r0["rewrite"]
        return doc, "routes.0.match.path.regex"
    if name == "long-regex":
        r0["match"]["path"] = {"regex": "a" * 2000}
        del r0["rewrite"]
        return doc, "routes.0.match.path.regex"
    if name == "header-regex":
        r0["match"]["headers"] = [{"name": "x-a", "regex": "[z-a]"}]
        return doc, "routes.0.match.headers.0.regex"
    if name == "negative-weight":
        r0["split"][0]["weight"] = -1
        return doc, "routes.0.split.0.weight"
    if name == "float-weight":
        r0["split"][0]["weight"] = 1.5
        return doc, "routes.0.split.0.weight"
    if name == "zero-weights":
        r0["split"] = [{"subset": "v1", "weight": 0}, {"subset": "v2", "weight": 0}]
        return doc, "routes.0.split"
    if name == "empty-split":
        r0["split"] = []
        return doc, "routes.0.split"
    if name == "unknown-service":
        r0["split"][2]["service"] = "ghost"
        return doc, "routes.0.split.2.service"
    if name == "self-split":
        r0["split"][2]["service"] = "payments"
        return doc, "routes.0.split.2.service"
    if name == "subset-and-service":
        r0["split"][0]["service"] = "payments-next"
        return doc, "routes.0.split.0"
    if name == "rewrite-prefix-without-prefix-match":
        r0["match"]["path"] = {"exact": "/api"}
        return doc, "routes.0.rewrite.prefix"
    if name == "duplicate-name":
        doc["routes"][1]["name"] = "canary-api"
        return doc, "routes.1.name"
    if name == "bad-route-name":
        r0["name"] = "Canary_API"
        return doc, "routes.0.name"
    if name == "bad-subset-name":
        doc["subsets"]["V_1"] = {"tags": []}
        return doc, "subsets.V_1"
    if name == "too-many-routes":
        doc["routes"] = [{"name": f"r{i}", "split": [{"subset": "v1", "weight": 1}]}
                         for i in range(101)]
        return doc, "routes"
    if name == "too-many-targets":
        r0["split"] = [{"subset": "v1", "weight": 1}] * 21
        return doc, "routes.0.split"
    if name == "bad-header-name":
        r0["match"]["headers"] = [{"name": "x user", "exact": "a"}]
        return doc, "routes.0.match.headers.0.name"
    if name == "two-header-kinds":
        r0["match"]["headers"] = [{"name": "x-a", "exact": "a", "prefix": "b"}]
        return doc, "routes.0.match.headers.0"
    if name == "framing-header":
        r0["request_headers"]["set"]["Content-Length"] = "0"
        return doc, "routes.0.request_headers.set.Content-Length"
    if name == "crlf-value":
        r0["request_headers"]["set"]["x-a"] = "1\r\nx-b: 2"
        return doc, "routes.0.request_headers.set.x-a"
    if name == "unknown-field":
        r0["mirror"] = "x"
        return doc, "routes.0.mirror"
    if name == "bad-fallback":
        r0["fallback"] = "random"
        return doc, "routes.0.fallback"
    if name == "timeout":
        r0["timeout_ms"] = 0
        return doc, "routes.0.timeout_ms"
    if name == "retries":
        r0["retries"] = {"attempts": 99}
        return doc, "routes.0.retries.attempts"
    if name == "sticky-both":
        r0["sticky"] = {"header": "x-a", "cookie": "s"}
        return doc, "routes.0.sticky"
    if name == "path-without-slash":
        r0["match"]["path"] = {"prefix": "api"}
        return doc, "routes.0.match.path.prefix"
    if name == "method":
        r0["match"]["methods"] = ["G ET"]
        return doc, "routes.0.match.methods.0"
    if name == "query-absent":
        r0["match"]["query"] = [{"name": "debug", "absent": True}]
        return doc, "routes.0.match.query.0.absent"
    if name == "present-false":
        r0["match"]["headers"] = [{"name": "x-a", "present": False}]
        return doc, "routes.0.match.headers.0.present"
    if name == "routes-not-a-list":
        doc["routes"] = {"a": 1}
        return doc, "routes"
    if name == "duplicate-target":
        r0["split"][1] = {"subset": "v1", "weight": 5}
        return doc, "routes.0.split.1"
    if name == "metadata-not-strings":
        doc["subsets"]["v2"]["metadata"] = {"track": 1}
        return doc, "subsets.v2.metadata.track"
    raise AssertionError(name)


INVALID = [
    "unknown-subset", "bad-regex", "nested-repeat-regex", "long-regex", "header-regex", "negative-weight", "float-weight",
    "zero-weights", "empty-split", "unknown-service", "self-split", "subset-and-service",
    "rewrite-prefix-without-prefix-match", "duplicate-name", "bad-route-name", "bad-subset-name",
    "too-many-routes", "too-many-targets", "bad-header-name", "two-header-kinds",
    "framing-header", "crlf-value", "unknown-field", "bad-fallback", "timeout", "retries",
    "sticky-both", "path-without-slash", "method", "query-absent", "present-false",
    "routes-not-a-list", "metadata-not-strings", "duplicate-target",
]


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_document_is_400_with_its_field_path_and_stores_nothing(
    api: APIClient, payments: None, case: str
) -> None:
    _put(api, {"subsets": {"v1": {"tags": ["v1"]}},
               "routes": [{"name": "keep", "split": [{"subset": "v1", "weight": 1}]}]})
    revision = MeshRevision.current()
    doc, path = _invalid(case)
    response = _put(api, doc)
    assert response.status_code == 400, response.content
    assert path in response.json(), response.json()
    assert ServiceRoutes.objects.get().document["routes"][0]["name"] == "keep"
    assert RoutesVersion.objects.count() == 1 and MeshRevision.current() == revision


@pytest.mark.parametrize("body", [[], "x", None])
def test_a_body_that_is_no_object_is_400(api: APIClient, payments: None, body: Any) -> None:
    assert api.put(URL, body, format="json").status_code == 400
    assert not ServiceRoutes.objects.exists()


def test_versions_and_rollback(api: APIClient, payments: None) -> None:
    _put(api, VALID)
    _put(api, {"subsets": {}, "routes": []})
    versions = api.get(URL + "versions/").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["document"]["routes"][0]["name"] == "canary-api"
    response = api.post(URL + "versions/1/rollback/")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 3
    assert response.json()["routes"][0]["name"] == "canary-api"
    assert AuditEntry.objects.filter(object_type="routes").count() == 3
    assert api.post(URL + "versions/99/rollback/").status_code == 404


def test_a_rollback_to_a_document_naming_a_deleted_service_is_400(
    api: APIClient, payments: None
) -> None:
    _put(api, VALID)
    _put(api, {"subsets": {}, "routes": []})
    assert api.delete("/api/v1/services/payments-next/").status_code in (204, 200)
    revision = MeshRevision.current()
    response = api.post(URL + "versions/1/rollback/")
    assert response.status_code == 400
    assert "routes.0.split.2.service" in response.json()
    assert ServiceRoutes.objects.get().version == 2 and MeshRevision.current() == revision


def test_viewers_read_and_cannot_write(viewer: Any, payments: None) -> None:
    client = APIClient()
    client.force_login(viewer)
    assert client.get(URL).status_code == 200
    assert client.put(URL, VALID, format="json").status_code == 403
    assert client.post(URL + "versions/1/rollback/").status_code == 403
    assert not ServiceRoutes.objects.exists()


def test_an_edit_of_a_yaml_managed_document_warns(api: APIClient, payments: None) -> None:
    ManagedResource.objects.create(kind="Routes", name="payments", version=1, document={})
    response = _put(api, VALID)
    assert response.status_code == 200
    assert response["X-Mesh-Managed"] == "Routes/payments"


def test_a_service_a_split_names_cannot_be_deleted(api: APIClient, payments: None) -> None:
    _put(api, VALID)
    response = api.delete("/api/v1/services/payments-next/")
    assert response.status_code == 409, response.content
    assert response.json()["route_referrers"] == ["payments"]
    assert "split traffic to payments-next" in response.json()["detail"]
    from registry.models import Service

    assert Service.objects.filter(name="payments-next").exists()
    _put(api, {**VALID, "routes": VALID["routes"][1:]})
    assert api.delete("/api/v1/services/payments-next/").status_code == 204


def test_routes_need_an_http_service_and_split_targets_of_its_protocol(
    api: APIClient, payments: None
) -> None:
    from registry import services as registry_services

    registry_services.service_create(
        user=None, data={"name": "ledger", "protocol": "tcp", "check_type": "none"}
    )
    response = api.put("/api/v1/services/ledger/routes/", {
        "subsets": {"v1": {"tags": ["v1"]}},
        "routes": [{"name": "all", "split": [{"subset": "v1", "weight": 1}]}],
    }, format="json")
    assert response.status_code == 400 and "routes" in response.json()
    doc = copy.deepcopy(VALID)
    doc["routes"][0]["split"][2]["service"] = "ledger"
    response = _put(api, doc)
    assert response.status_code == 400
    assert "routes.0.split.2.service" in response.json()
    assert not ServiceRoutes.objects.exists()
