"""A steady report (nothing changed) is a few reads and one write transaction;
a report that changes something still changes it (agents.reports)."""

from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.api.views import EnrollThrottle
from agents.models import Agent
from registry.models import Instance, MeshRevision, Service
from tests.agents.test_api_agents import SERVICES, enroll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enroll_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not about throttling: these enrollments must not count against the 60/min
    # that the other modules' enrollments (same address, same Redis) use up.
    monkeypatch.setattr(EnrollThrottle, "allow_request", lambda self, request, view: True)


def _writes(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]


def test_a_steady_report_is_one_write_transaction_and_few_queries() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    assert client.post(url, {"services": SERVICES}, format="json").status_code == 200
    before = Instance.objects.get().last_heartbeat
    seen_before = Agent.objects.get().last_seen
    revision = MeshRevision.current()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, {"services": SERVICES, "applied_revision": revision},
                               format="json")
    assert response.status_code == 200, response.content
    writes = _writes(queries.captured_queries)
    # The agent row and the heartbeats, inside one transaction (a savepoint here).
    assert len(writes) == 2, writes
    assert sum(1 for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")) == 1
    # auth, the instance, the node's instances, the revision (+ the two writes, savepoint)
    assert len(queries.captured_queries) <= 8, [q["sql"] for q in queries.captured_queries]
    instance = Instance.objects.get()
    assert instance.last_heartbeat is not None and before is not None
    assert instance.last_heartbeat > before
    assert Agent.objects.get().last_seen > seen_before
    assert Agent.objects.get().applied_revision == revision
    assert MeshRevision.current() == revision  # nothing agents consume changed


def test_a_changed_tag_still_reaches_the_instance_and_the_mesh() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    revision = MeshRevision.current()
    changed = copy.deepcopy(SERVICES)
    changed[0]["tags"] = ["v2"]
    assert client.post(url, {"services": changed}, format="json").status_code == 200
    assert Instance.objects.get().tags == ["v2"]
    assert MeshRevision.current() > revision


def test_a_changed_check_still_reaches_the_service() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    changed = copy.deepcopy(SERVICES)
    changed[0]["check"]["interval"] = "7s"
    assert client.post(url, {"services": changed}, format="json").status_code == 200
    assert Service.objects.get(name="orders").check_interval_ms == 7000


def test_an_instance_another_node_holds_is_not_taken_by_the_fast_path() -> None:
    client_a, body_a = enroll("host-a")
    client_a.post(f"/api/v1/agents/{body_a['agent_id']}/report/", {"services": SERVICES},
                  format="json")
    client_b, body_b = enroll("host-b")
    response = client_b.post(f"/api/v1/agents/{body_b['agent_id']}/report/",
                             {"services": SERVICES}, format="json")
    assert response.status_code == 200
    assert response.json()["instances"] == {}
    assert Instance.objects.get().node.name == "host-a"


def test_the_agent_that_loses_the_race_to_create_its_service_still_registers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two first reports of one new service at once: the second sees no service,
    then fails to create it (the first just did); it takes the existing row."""
    from agents import reports

    client_a, body_a = enroll("host-a")
    client_a.post(f"/api/v1/agents/{body_a['agent_id']}/report/", {"services": SERVICES},
                  format="json")
    real_filter = Service.objects.filter
    calls = {"n": 0}

    def filter_missing_once(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:  # the lookup before the creation: as if not yet committed
            return Service.objects.none()
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(reports.Service.objects, "filter", filter_missing_once)
    client_b, body_b = enroll("host-b")
    other = copy.deepcopy(SERVICES)
    other[0]["address"] = "127.0.0.2"
    response = client_b.post(f"/api/v1/agents/{body_b['agent_id']}/report/",
                             {"services": other}, format="json")
    assert response.status_code == 200, response.content
    assert Instance.objects.filter(service__name="orders").count() == 2
    assert Service.objects.count() == 1
