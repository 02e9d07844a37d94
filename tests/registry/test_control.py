"""Operators' control of instances through the API: maintenance, drain,
enable/disable, weight, one at a time and in bulk by selector."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from monitoring.health import checks_claim_due
from registry.control import drains_finish
from registry.models import AdminState, Health, Instance, MeshRevision

pytestmark = pytest.mark.django_db

BASE = "/api/v1/services/payments/instances/"


@pytest.fixture
def ids(api: APIClient) -> dict[str, str]:
    """Four passing instances: a, b (v1, zone a/b), c (v2, zone a), d (v1+canary, zone a)."""
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"},
                                   "drain_timeout": "10s"}, format="json")
    spec = {"a": (["v1"], "a"), "b": (["v1"], "b"), "c": (["v2"], "a"), "d": (["v1", "canary"], "a")}
    out = {}
    for port, (name, (tags, zone)) in enumerate(spec.items(), start=8001):
        body = api.post(BASE, {"address": "10.0.0.1", "port": port, "tags": tags,
                               "metadata": {"zone": zone}}, format="json").json()
        out[name] = body["id"]
    return out


def discovery_ids(api: APIClient) -> set[str]:
    return {e["id"] for e in api.get("/api/v1/discovery/payments/").json()["endpoints"]}


def test_drain_leaves_discovery_at_once_and_is_maintenance_after_the_timeout(
    api: APIClient, ids: dict[str, str]
) -> None:
    revision = MeshRevision.current()
    body = api.post(f"{BASE}{ids['a']}/drain/").json()
    assert body["status"] == "draining"
    assert "receives no new traffic" in body["explanation"] and "by alice" in body["explanation"]
    assert MeshRevision.current() == revision + 1
    assert ids["a"] not in discovery_ids(api)
    instance = Instance.objects.get(pk=ids["a"])
    assert instance.drain_started_at is not None

    assert drains_finish(now=instance.drain_started_at + timedelta(seconds=9.9)) == []
    assert drains_finish(now=instance.drain_started_at + timedelta(seconds=10)) == [ids["a"]]
    instance.refresh_from_db()
    assert instance.admin_state == AdminState.MAINTENANCE and instance.drain_started_at is None
    event = Event.objects.filter(instance=ids["a"]).first()
    assert event is not None and "draining -> maintenance (drain timeout" in event.message
    assert drains_finish(now=timezone.now() + timedelta(hours=1)) == []  # once


def test_enable_ends_a_drain_before_its_timeout(api: APIClient, ids: dict[str, str]) -> None:
    api.post(f"{BASE}{ids['a']}/drain/")
    assert api.post(f"{BASE}{ids['a']}/enable/").json()["status"] == "passing"
    assert drains_finish(now=timezone.now() + timedelta(hours=1)) == []
    assert ids["a"] in discovery_ids(api)


def test_drain_of_an_instance_out_of_rotation_changes_nothing(
    api: APIClient, ids: dict[str, str]
) -> None:
    api.post(f"{BASE}{ids['a']}/maintenance/")
    revision = MeshRevision.current()
    assert api.post(f"{BASE}{ids['a']}/drain/").json()["status"] == "maintenance"
    assert MeshRevision.current() == revision


def test_disabled_instance_is_out_of_rotation_and_not_checked(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "http"}}, format="json")
    instance_id = api.post(BASE, {"address": "127.0.0.1", "port": 1}, format="json").json()["id"]
    Instance.objects.filter(pk=instance_id).update(health=Health.PASSING)
    body = api.post(f"{BASE}{instance_id}/disable/").json()
    assert body["status"] == "disabled" and "not checked" in body["explanation"]
    later = timezone.now() + timedelta(hours=1)
    assert checks_claim_due(now=later, limit=10) == []
    assert instance_id not in discovery_ids(api)

    # Enabled again, its old verdict is stale: critical until its first check.
    body = api.post(f"{BASE}{instance_id}/enable/").json()
    assert body["status"] == "critical" and "awaiting first check" in body["explanation"]
    assert [s.instance_id for s in checks_claim_due(now=later, limit=10)] == [instance_id]


def test_weight_command_validates_and_audits(api: APIClient, ids: dict[str, str]) -> None:
    assert api.post(f"{BASE}{ids['a']}/weight/", {"weight": -1}, format="json").status_code == 400
    assert api.post(f"{BASE}{ids['a']}/weight/", {}, format="json").status_code == 400
    body = api.post(f"{BASE}{ids['a']}/weight/", {"weight": 0}, format="json").json()
    assert body["weight"] == 0 and body["explanation"].endswith("receives no traffic: weight 0")
    entry = AuditEntry.objects.get(action="weight", object_id=ids["a"])
    assert (entry.before["weight"], entry.after["weight"], entry.actor) == (100, 0, "alice")


def test_bulk_by_tags_and_metadata_in_one_revision(api: APIClient, ids: dict[str, str]) -> None:
    revision = MeshRevision.current()
    response = api.post(f"{BASE}bulk/", {"selector": {"tags": ["v1"], "metadata": {"zone": "a"}},
                                         "action": "maintenance"}, format="json")
    assert response.status_code == 200, response.content
    assert sorted(response.json()["affected"]) == sorted([ids["a"], ids["d"]])
    assert MeshRevision.current() == revision + 1
    assert AuditEntry.objects.filter(action="maintenance").count() == 2
    states = dict(Instance.objects.values_list("pk", "admin_state"))
    assert states[ids["b"]] == states[ids["c"]] == AdminState.ENABLED
    assert states[ids["a"]] == states[ids["d"]] == AdminState.MAINTENANCE

    # Again: nothing changes, no revision, no audit.
    again = api.post(f"{BASE}bulk/", {"selector": {"tags": ["v1"], "metadata": {"zone": "a"}},
                                      "action": "maintenance"}, format="json").json()
    assert again == {"affected": []} and MeshRevision.current() == revision + 1


def test_bulk_weight_and_all(api: APIClient, ids: dict[str, str]) -> None:
    body = api.post(f"{BASE}bulk/", {"all": True, "action": "weight", "weight": 7},
                    format="json").json()
    assert len(body["affected"]) == 4
    assert set(Instance.objects.values_list("weight", flat=True)) == {7}


@pytest.mark.parametrize("payload", [
    {"action": "disable"},
    {"selector": {}, "action": "disable"},
    {"selector": {"tags": [], "metadata": {}}, "action": "drain"},
    {"selector": {"tags": ["v1"]}, "action": "explode"},
    {"selector": {"tags": ["v1"]}, "action": "weight"},
    {"selector": {"tags": "v1"}, "action": "drain"},
])
def test_bulk_rejects_bad_or_empty_selectors(
    api: APIClient, ids: dict[str, str], payload: dict[str, object]
) -> None:
    revision = MeshRevision.current()
    assert api.post(f"{BASE}bulk/", payload, format="json").status_code == 400
    assert MeshRevision.current() == revision
    assert not Instance.objects.exclude(admin_state=AdminState.ENABLED).exists()


def test_commands_need_credentials_and_a_real_instance(
    anon: APIClient, api: APIClient, ids: dict[str, str]
) -> None:
    assert anon.post(f"{BASE}{ids['a']}/drain/").status_code == 401
    assert anon.post(f"{BASE}bulk/", {"all": True, "action": "drain"}, format="json").status_code == 401
    assert api.post(f"{BASE}nope/drain/").status_code == 404
    assert api.post("/api/v1/services/nope/instances/bulk/", {"all": True, "action": "drain"},
                    format="json").status_code == 404
    assert api.put(f"{BASE}{ids['a']}/", {"weight": 1}, format="json").status_code == 405


def test_control_survives_in_the_database(api: APIClient, ids: dict[str, str]) -> None:
    api.post(f"{BASE}{ids['b']}/drain/")
    api.post(f"{BASE}{ids['c']}/disable/")
    # Another process (a restarted one) sees the same state: it is rows, not memory.
    states = dict(Instance.objects.values_list("pk", "admin_state"))
    assert states[ids["b"]] == AdminState.DRAINING and states[ids["c"]] == AdminState.DISABLED


def test_patch_out_of_disabled_restarts_checks(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "tcp"}}, format="json")
    instance_id = api.post(BASE, {"address": "127.0.0.1", "port": 1}, format="json").json()["id"]
    Instance.objects.filter(pk=instance_id).update(health=Health.PASSING, consecutive_ok=5)
    api.post(f"{BASE}{instance_id}/disable/")
    body = api.patch(f"{BASE}{instance_id}/", {"maintenance": False}, format="json").json()
    assert body["status"] == "critical" and "awaiting first check" in body["explanation"]
    assert Instance.objects.get(pk=instance_id).consecutive_ok == 0
