"""Services API: auth, validation, conflicts, filters, audit."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from registry.models import MeshRevision, Service

pytestmark = pytest.mark.django_db


def test_anonymous_cannot_list_or_write_services(anon: APIClient) -> None:
    assert anon.get("/api/v1/services/").status_code == 401
    assert anon.post("/api/v1/services/", {"name": "x"}, format="json").status_code == 401
    assert not Service.objects.exists()


def test_create_service_with_defaults_and_check(api: APIClient) -> None:
    response = api.post(
        "/api/v1/services/",
        {"name": "payments", "tags": ["pci"], "check": {"type": "http", "path": "/health", "interval": "2s"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "payments"
    assert body["protocol"] == "http"
    assert body["check"] == {
        "type": "http",
        "path": "/health",
        "interval": "2s",
        "timeout": "2s",
        "rise": 2,
        "fall": 3,
        "expect_status": "200-399",
        "body": "",
        "headers": {},
    }
    assert body["health"] == {"passing": 0, "total": 0}
    assert Service.objects.get(name="payments").check_interval_ms == 2000


def test_create_bumps_revision_records_event_and_audit(api: APIClient) -> None:
    before = MeshRevision.current()
    api.post("/api/v1/services/", {"name": "orders"}, format="json")
    assert MeshRevision.current() == before + 1
    assert Event.objects.filter(service="orders", kind="registry").count() == 1
    entry = AuditEntry.objects.get(object_type="service", object_id="orders")
    assert entry.actor == "alice" and entry.action == "create" and entry.before is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "-leading"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({}, "name"),
        ({"name": "ok", "protocol": "udp"}, "protocol"),
        ({"name": "ok", "tags": "notalist"}, "tags"),
        ({"name": "ok", "check": {"interval": "fast"}}, "check"),
        ({"name": "ok", "check": {"type": "script"}}, "check"),
        ({"name": "ok", "check": {"rise": 0}}, "check"),
        ({"name": "ok", "check": {"interval": "1s", "timeout": "5s"}}, "check"),
    ],
)
def test_bad_service_payload_is_400_with_field_error(api: APIClient, payload: dict, field: str) -> None:
    response = api.post("/api/v1/services/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Service.objects.exists()


def test_non_json_body_is_a_clear_4xx(api: APIClient) -> None:
    response = api.generic("POST", "/api/v1/services/", "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = api.generic("POST", "/api/v1/services/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_duplicate_service_is_409_and_changes_nothing(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders", "description": "first"}, format="json")
    revision = MeshRevision.current()
    response = api.post("/api/v1/services/", {"name": "orders", "description": "second"}, format="json")
    assert response.status_code == 409
    assert Service.objects.get(name="orders").description == "first"
    assert MeshRevision.current() == revision


def test_patch_service_check_records_before_and_after(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders"}, format="json")
    response = api.patch("/api/v1/services/orders/", {"check": {"interval": "10s"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["check"]["interval"] == "10s"
    entry = AuditEntry.objects.get(action="update", object_id="orders")
    assert entry.before["check_interval_ms"] == 5000
    assert entry.after["check_interval_ms"] == 10000


def test_patch_cannot_rename(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders"}, format="json")
    api.patch("/api/v1/services/orders/", {"name": "other"}, format="json")
    assert Service.objects.filter(name="orders").exists()
    assert not Service.objects.filter(name="other").exists()


def test_unknown_service_is_404(api: APIClient) -> None:
    assert api.get("/api/v1/services/nope/").status_code == 404
    assert api.patch("/api/v1/services/nope/", {}, format="json").status_code == 404
    assert api.delete("/api/v1/services/nope/").status_code == 404


def test_delete_service_removes_instances(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders"}, format="json")
    api.post("/api/v1/services/orders/instances/", {"address": "127.0.0.1", "port": 81}, format="json")
    assert api.delete("/api/v1/services/orders/").status_code == 204
    assert not Service.objects.exists()
    assert AuditEntry.objects.filter(action="delete", object_type="service").count() == 1


def test_filters_by_tag_search_and_health(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "alpha", "tags": ["blue"], "description": "the first"}, format="json")
    api.post("/api/v1/services/", {"name": "beta", "tags": ["green"], "check": {"type": "none"}}, format="json")
    api.post("/api/v1/services/beta/instances/", {"address": "10.0.0.1", "port": 80}, format="json")
    names = lambda r: [s["name"] for s in r.json()["results"]]  # noqa: E731
    assert names(api.get("/api/v1/services/?tag=blue")) == ["alpha"]
    assert names(api.get("/api/v1/services/?search=first")) == ["alpha"]
    assert names(api.get("/api/v1/services/?health=passing")) == ["beta"]
    assert names(api.get("/api/v1/services/?health=empty")) == ["alpha"]
    assert api.get("/api/v1/services/?health=purple").status_code == 400


def test_openapi_schema_and_docs_are_served(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/services/" in schema.content.decode()
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    # Every script and stylesheet is served from here: no absolute or
    # protocol-relative URL in any src/href (random tokens may spell "cdn").
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", html), html
    assert "https://" not in html


def test_health_endpoints_need_no_credentials(anon: APIClient) -> None:
    assert anon.get("/healthz").status_code == 200
    ready = anon.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["redis"] == "ok"


def test_a_failover_target_cannot_be_deleted_while_referenced(api: APIClient) -> None:
    for name in ("payments", "payments-dr", "payments-dr-2"):
        assert api.post("/api/v1/services/", {"name": name}, format="json").status_code == 201
    body = {"failover": {"targets": ["payments-dr-2", "payments-dr"]}}
    assert api.patch("/api/v1/services/payments/policy/", body, format="json").status_code == 200
    revision = MeshRevision.current()
    answer = api.delete("/api/v1/services/payments-dr/")
    assert answer.status_code == 409, answer.content
    assert answer.json()["failover_referrers"] == ["payments"]
    assert "payments fails over to payments-dr" in answer.json()["detail"]
    assert Service.objects.filter(name="payments-dr").exists()
    assert MeshRevision.current() == revision  # nothing changed
    assert api.delete("/api/v1/services/payments-dr-2/").status_code == 409
    body = {"failover": {"targets": ["payments-dr"]}}
    assert api.patch("/api/v1/services/payments/policy/", body, format="json").status_code == 200
    # "payments-dr" in a list is no reference to "payments-dr-2" (whole names only).
    assert api.delete("/api/v1/services/payments-dr-2/").status_code == 204
    assert api.patch("/api/v1/services/payments/policy/", {"failover": {"targets": []}},
                     format="json").status_code == 200
    assert api.delete("/api/v1/services/payments-dr/").status_code == 204
