"""A role scoped to a tag sends its service's traffic (failover targets, split
services) only to services in its scope; what an unscoped admin set stays."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshconsole.models import Role
from meshconsole.roles import user_role_set
from policies.models import ServiceRoutes, TrafficPolicy

pytestmark = pytest.mark.django_db


def _as(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def mesh(admin_user: User) -> dict[str, APIClient]:
    root = _as(admin_user)
    for name, tags in (("payments", ["team=payments"]), ("payments-dr", ["team=payments"]),
                       ("billing", ["team=billing"])):
        created = root.post("/api/v1/services/", {"name": name, "tags": tags,
                                                  "check": {"type": "none"}}, format="json")
        assert created.status_code == 201, created.content
    sam = User.objects.create_user("sam")
    user_role_set(user=sam, role=Role.ADMIN, scope="team=payments")
    return {"root": root, "sam": _as(sam)}


def split_to(service: str) -> dict[str, object]:
    return {"subsets": {}, "routes": [{"name": "all", "match": {"path": {"prefix": "/"}},
                                       "split": [{"service": service, "weight": 1}]}]}


def test_failover_only_to_services_in_scope(mesh: dict[str, APIClient]) -> None:
    url = "/api/v1/services/payments/policy/"
    inside = mesh["sam"].patch(url, {"failover": {"targets": ["payments-dr"]}}, format="json")
    assert inside.status_code == 200, inside.content
    outside = mesh["sam"].patch(url, {"failover": {"targets": ["billing"]}}, format="json")
    assert outside.status_code == 403, outside.content
    assert "billing" in outside.json()["detail"]
    put = mesh["sam"].put(url, {"failover": {"targets": ["payments-dr", "billing"]}},
                          format="json")
    assert put.status_code == 403, put.content
    assert TrafficPolicy.objects.get(service__name="payments").failover_targets == ["payments-dr"]
    # An unscoped admin may; the scoped one then still edits other fields.
    root = mesh["root"].patch(url, {"failover": {"targets": ["billing"]}}, format="json")
    assert root.status_code == 200, root.content
    other = mesh["sam"].patch(url, {"retries": {"attempts": 3}}, format="json")
    assert other.status_code == 200, other.content
    assert TrafficPolicy.objects.get(service__name="payments").failover_targets == ["billing"]


def test_a_split_only_to_services_in_scope(mesh: dict[str, APIClient]) -> None:
    url = "/api/v1/services/payments/routes/"
    inside = mesh["sam"].put(url, split_to("payments-dr"), format="json")
    assert inside.status_code == 200, inside.content
    outside = mesh["sam"].put(url, split_to("billing"), format="json")
    assert outside.status_code == 403, outside.content
    assert "billing" in outside.json()["detail"]
    stored = ServiceRoutes.objects.get(service__name="payments")
    assert stored.document["routes"][0]["split"][0]["service"] == "payments-dr"
    # Rolling back to a version an unscoped admin wrote out of scope is refused too.
    root = mesh["root"].put(url, split_to("billing"), format="json")
    assert root.status_code == 200, root.content
    back = mesh["sam"].put(url, split_to("payments-dr"), format="json")
    assert back.status_code == 200, back.content
    version = root.json()["version"]
    rollback = mesh["sam"].post(f"{url}versions/{version}/rollback/")
    assert rollback.status_code == 403, rollback.content
