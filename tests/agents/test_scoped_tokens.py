"""Enrollment tokens scoped to services (least privilege, as a Consul agent token
with service:write on named services): an agent enrolled with one may register,
report and hold the identity of those services only."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from agents.enrollment import enrollment_token_create
from agents.models import Agent, EnrollmentToken
from registry import services as registry
from registry.models import Instance, Service
from tests.agents.test_enrollment import agent_client, enroll, report
from tests.identity.helpers import csr_pem

pytestmark = pytest.mark.django_db

ORDERS = {"name": "orders", "address": "127.0.0.1", "port": 8081, "check": {"type": "none"}}
PAYMENTS = {"name": "payments", "address": "127.0.0.1", "port": 8082, "check": {"type": "none"}}


def certificate(body: dict[str, Any], service: str) -> Any:
    return agent_client(body).post(
        f"/api/v1/agents/{body['agent_id']}/certificates/",
        {"service": service, "csr": csr_pem()},
        format="json",
    )


def test_an_enrollment_declaring_another_service_is_refused_and_uses_nothing() -> None:
    token = enrollment_token_create(services=["orders"])
    response = enroll(token, services=[PAYMENTS])
    assert response.status_code == 403
    assert "payments" in response.json()["detail"]
    assert not Agent.objects.exists()
    assert EnrollmentToken.objects.get().uses == 0  # the claimed use was rolled back


def test_a_report_listing_another_service_stores_nothing() -> None:
    body = enroll(enrollment_token_create(services=["orders"]), services=[ORDERS]).json()
    assert Agent.objects.get().allowed_services == ["orders"]
    assert report(body, [ORDERS]).status_code == 200
    seen = Agent.objects.get().last_seen
    response = report(body, [ORDERS, PAYMENTS])
    assert response.status_code == 403
    assert "payments" in response.json()["detail"]
    assert not Service.objects.filter(name="payments").exists()
    assert list(Instance.objects.values_list("service__name", flat=True)) == ["orders"]
    assert Agent.objects.get().last_seen == seen  # not even a heartbeat


def test_no_certificate_for_a_service_the_token_does_not_allow(admin_user: Any) -> None:
    body = enroll(enrollment_token_create(services=["orders"]), services=[ORDERS]).json()
    assert report(body, [ORDERS]).status_code == 200
    assert certificate(body, "orders").status_code == 200
    # Even with an instance of payments registered on its node by someone else.
    agent = Agent.objects.select_related("node").get()
    payments = registry.service_create(user=admin_user, data={"name": "payments"})
    instance = registry.instance_register(
        user=admin_user, service=payments, data={"address": "127.0.0.1", "port": 9000}
    )
    Instance.objects.filter(pk=instance.pk).update(node=agent.node, agent_managed=True)
    assert certificate(body, "payments").status_code == 403
    assert certificate(body, "").status_code == 200  # its node identity


def test_an_unscoped_token_allows_any_service() -> None:
    body = enroll(enrollment_token_create(), services=[PAYMENTS]).json()
    assert Agent.objects.get().allowed_services is None
    assert report(body, [ORDERS, PAYMENTS]).status_code == 200


def test_the_api_creates_and_lists_scoped_tokens(api: APIClient) -> None:
    created = api.post("/api/v1/agents/enrollment-tokens/",
                       {"services": ["payments", "orders", "orders"]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["services"] == ["orders", "payments"]
    listed = api.get("/api/v1/agents/enrollment-tokens/").json()["results"]
    assert listed[0]["services"] == ["orders", "payments"]
    for bad in (["Pay_ments"], "orders", [""]):
        response = api.post("/api/v1/agents/enrollment-tokens/", {"services": bad}, format="json")
        assert response.status_code == 400, bad
        assert "services" in response.json()
    assert EnrollmentToken.objects.count() == 1


def test_the_command_makes_scoped_tokens() -> None:
    out = StringIO()
    call_command("enrolltoken", "--services", "orders, users", stdout=out)
    assert EnrollmentToken.objects.get().services == ["orders", "users"]
    listing = StringIO()
    call_command("enrolltoken", "--list", stdout=listing)
    assert "orders,users" in listing.getvalue()
    with pytest.raises(CommandError):
        call_command("enrolltoken", "--services", "Bad_Name")
