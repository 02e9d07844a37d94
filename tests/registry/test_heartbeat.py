"""TTL checks: a service heartbeats its instance through the API; a missed
heartbeat (longer than the check interval) makes it critical."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from journal.models import CheckResult, Event, EventKind
from registry.heartbeats import ttl_expire
from registry.models import Instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def url(api: APIClient) -> str:
    api.post("/api/v1/services/", {"name": "cron", "check": {"type": "ttl", "interval": "10s",
                                                            "timeout": "1s"}}, format="json")
    body = api.post("/api/v1/services/cron/instances/", {"address": "10.0.0.9", "port": 9000},
                    format="json").json()
    assert body["status"] == "critical" and "awaiting first heartbeat" in body["explanation"]
    return f"/api/v1/services/cron/instances/{body['id']}/heartbeat/"


def test_heartbeat_sets_the_reported_status_at_once(api: APIClient, url: str) -> None:
    body = api.put(url, {"status": "passing", "output": "queue empty"}, format="json").json()
    assert body["status"] == "passing" and body["last_heartbeat"]
    assert "TTL heartbeat passing: queue empty" in body["explanation"]
    assert api.put(url, {"status": "warning", "output": "lagging"}, format="json").json()[
        "status"] == "warning"
    body = api.put(url, {"status": "critical", "output": "db down"}, format="json").json()
    assert body["status"] == "critical"
    transitions = Event.objects.filter(kind=EventKind.HEALTH, instance=body["id"])
    assert [e.data["to"] for e in transitions.order_by("id")] == ["passing", "warning", "critical"]
    assert transitions.first().actor == "alice"  # type: ignore[union-attr]
    # Result rows only on a change of pass/fail, not per heartbeat.
    api.put(url, {"status": "critical", "output": "db down"}, format="json")
    assert list(CheckResult.objects.order_by("id").values_list("ok", flat=True)) == [True, False]


def test_missed_heartbeat_expires_after_the_interval(api: APIClient, url: str) -> None:
    api.put(url, {"status": "passing"}, format="json")
    instance = Instance.objects.get()
    beat = instance.last_heartbeat
    assert beat is not None
    assert ttl_expire(now=beat + timedelta(seconds=9.9)) == []
    assert ttl_expire(now=beat + timedelta(seconds=10.1)) == [instance.pk]
    instance.refresh_from_db()
    assert instance.health == "critical" and instance.status_reason == (
        "TTL expired: no heartbeat for 10s")
    assert ttl_expire(now=timezone.now() + timedelta(hours=1)) == []
    # The next heartbeat brings it back.
    assert api.put(url, {"status": "passing"}, format="json").json()["status"] == "passing"


def test_disabled_ttl_instance_does_not_expire(api: APIClient, url: str) -> None:
    api.put(url, {"status": "passing"}, format="json")
    instance = Instance.objects.get()
    api.post(f"/api/v1/services/cron/instances/{instance.pk}/disable/")
    assert ttl_expire(now=timezone.now() + timedelta(hours=1)) == []


def test_heartbeat_validation_and_auth(api: APIClient, anon: APIClient, url: str) -> None:
    assert anon.put(url, {"status": "passing"}, format="json").status_code == 401
    assert api.put(url, {"status": "fine"}, format="json").status_code == 400
    assert api.put(url, {}, format="json").status_code == 400
    assert api.put(url, {"status": "passing", "output": "x" * 401}, format="json").status_code == 400
    assert Instance.objects.get().health == "critical"


def test_heartbeat_for_a_checked_service_is_refused(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "web", "check": {"type": "http"}}, format="json")
    body = api.post("/api/v1/services/web/instances/", {"address": "10.0.0.1", "port": 80},
                    format="json").json()
    response = api.put(f"/api/v1/services/web/instances/{body['id']}/heartbeat/",
                       {"status": "passing"}, format="json")
    assert response.status_code == 400 and "not TTL" in response.content.decode()
