"""Instances API: registration, maintenance, validation, conflicts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry
from registry.models import Instance, MeshRevision

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(api: APIClient) -> str:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    return "payments"


def test_register_instance_shape(api: APIClient, service: str) -> None:
    response = api.post(
        f"/api/v1/services/{service}/instances/",
        {"address": "10.0.0.5", "port": 8080, "zone": "zone-1", "weight": 50, "tags": ["v2"],
         "metadata": {"build": "42"}, "node": "host-b"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    for key in ("id", "service", "address", "port", "zone", "weight", "tags", "metadata",
                "status", "status_reason", "node", "last_heartbeat"):
        assert key in body
    assert body["service"] == "payments"
    assert body["node"] == "host-b"
    assert body["status"] == "passing"  # check type none: routable at once


def test_instance_of_checked_service_starts_critical_awaiting_check(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "orders", "check": {"type": "http"}}, format="json")
    body = api.post("/api/v1/services/orders/instances/", {"address": "127.0.0.1", "port": 1}, format="json").json()
    assert body["status"] == "critical"
    assert body["status_reason"] == "awaiting first check"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"port": 80}, "address"),
        ({"address": "10.0.0.1"}, "port"),
        ({"address": "10.0.0.1", "port": 0}, "port"),
        ({"address": "10.0.0.1", "port": 70000}, "port"),
        ({"address": "10.0.0.1", "port": "http"}, "port"),
        ({"address": "bad host", "port": 80}, "address"),
        ({"address": "10.0.0.1", "port": 80, "weight": -1}, "weight"),
        ({"address": "10.0.0.1", "port": 80, "metadata": ["x"]}, "metadata"),
    ],
)
def test_bad_instance_is_400(api: APIClient, service: str, payload: dict, field: str) -> None:
    response = api.post(f"/api/v1/services/{service}/instances/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Instance.objects.exists()


def test_same_endpoint_twice_is_409(api: APIClient, service: str) -> None:
    url = f"/api/v1/services/{service}/instances/"
    assert api.post(url, {"address": "10.0.0.1", "port": 80}, format="json").status_code == 201
    assert api.post(url, {"address": "10.0.0.1", "port": 80}, format="json").status_code == 409
    assert Instance.objects.count() == 1


def test_maintenance_toggle_is_audited_and_bumps_revision(api: APIClient, service: str) -> None:
    instance = api.post(f"/api/v1/services/{service}/instances/", {"address": "10.0.0.1", "port": 80}, format="json").json()
    url = f"/api/v1/services/{service}/instances/{instance['id']}/"
    revision = MeshRevision.current()
    response = api.patch(url, {"maintenance": True}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "maintenance"
    assert MeshRevision.current() == revision + 1
    discovery = api.get(f"/api/v1/discovery/{service}/").json()
    assert discovery["endpoints"] == []
    entry = AuditEntry.objects.get(object_type="instance", action="update")
    assert entry.before["status"] == "passing" and entry.after["status"] == "maintenance"
    assert api.patch(url, {"maintenance": False}, format="json").json()["status"] == "passing"


def test_patch_weight_and_reject_address_change(api: APIClient, service: str) -> None:
    instance = api.post(f"/api/v1/services/{service}/instances/", {"address": "10.0.0.1", "port": 80}, format="json").json()
    url = f"/api/v1/services/{service}/instances/{instance['id']}/"
    assert api.patch(url, {"weight": 5}, format="json").json()["weight"] == 5
    assert api.patch(url, {"weight": "heavy"}, format="json").status_code == 400
    api.patch(url, {"address": "10.9.9.9"}, format="json")
    assert Instance.objects.get().address == "10.0.0.1"


def test_instance_of_other_service_is_404(api: APIClient, service: str) -> None:
    api.post("/api/v1/services/", {"name": "other"}, format="json")
    instance = api.post(f"/api/v1/services/{service}/instances/", {"address": "10.0.0.1", "port": 80}, format="json").json()
    assert api.get(f"/api/v1/services/other/instances/{instance['id']}/").status_code == 404
    assert api.get("/api/v1/services/nope/instances/").status_code == 404


def test_deregister_instance(api: APIClient, service: str) -> None:
    instance = api.post(f"/api/v1/services/{service}/instances/", {"address": "10.0.0.1", "port": 80}, format="json").json()
    assert api.delete(f"/api/v1/services/{service}/instances/{instance['id']}/").status_code == 204
    assert not Instance.objects.exists()


def test_viewer_without_token_cannot_write(anon: APIClient, service: str) -> None:
    response = anon.post(f"/api/v1/services/{service}/instances/", {"address": "10.0.0.1", "port": 80}, format="json")
    assert response.status_code == 401
