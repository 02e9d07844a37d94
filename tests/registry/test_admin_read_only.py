"""The Django admin shows mesh objects but never writes them: a save there used
to change discovery under the same X-Mesh-Index, reach no agent, leave no event
or audit row, and accept policies the API refuses."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from journal.models import AuditEntry, Event
from policies.models import TrafficPolicy
from registry import services as registry_services
from registry.models import Instance, MeshRevision, Service

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_instance_and_service_change_pages_refuse_writes(staff: Client) -> None:
    service = registry_services.service_create(user=None, data={"name": "payments"})
    instance = registry_services.instance_register(
        user=None, service=service, data={"address": "10.0.0.1", "port": 80}
    )
    revision, events = MeshRevision.current(), Event.objects.count()
    page = staff.get(f"/admin/registry/instance/{instance.pk}/change/")
    assert page.status_code == 200  # still viewable
    response = staff.post(
        f"/admin/registry/instance/{instance.pk}/change/",
        {"service": service.pk, "address": "10.0.0.1", "port": 80, "weight": 5},
    )
    assert response.status_code == 403
    response = staff.post(
        f"/admin/registry/service/{service.pk}/change/", {"name": "payments", "description": "x"}
    )
    assert response.status_code == 403
    assert staff.post(f"/admin/registry/instance/{instance.pk}/delete/", {"post": "yes"}).status_code == 403
    assert staff.get("/admin/registry/service/add/").status_code == 403
    instance.refresh_from_db()
    assert instance.weight == 100 and Service.objects.get().description == ""
    assert (MeshRevision.current(), Event.objects.count()) == (revision, events)
    assert Instance.objects.count() == 1


def test_a_policy_the_api_refuses_cannot_be_saved_in_the_admin(staff: Client) -> None:
    service = registry_services.service_create(user=None, data={"name": "payments"})
    response = staff.post(
        "/admin/policies/trafficpolicy/add/",
        {"service": service.pk, "retry_on": '["bogus-condition"]',
         "failover_targets": '["no-such-service"]'},
    )
    assert response.status_code == 403
    assert not TrafficPolicy.objects.exists()
    assert not AuditEntry.objects.exists()
