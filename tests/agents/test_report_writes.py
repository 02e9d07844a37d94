"""A steady report (nothing changed) is a few reads and one write transaction;
a report that changes something still changes it (agents.reports)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.api.views import EnrollThrottle
from agents.models import Agent
from journal.models import Event
from registry.models import Health, HealthCause, Instance, MeshIndex, MeshRevision, Service
from tests.agents.test_api_agents import SERVICES, enroll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enroll_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not about throttling: these enrollments must not count against the 60/min
    # that the other modules' enrollments (same address, same Redis) use up.
    monkeypatch.setattr(EnrollThrottle, "allow_request", lambda self, request, view: True)


def _writes(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE", "WITH"))]


# What a steady report may cost, in statements (the cost cannot silently come
# back): its authentication, the node's instances (with the mesh revision), and
# the write — on PostgreSQL one statement; on SQLite two UPDATEs in a transaction
# (a savepoint pair here, inside the test's transaction).
STEADY_STATEMENTS = {"postgresql": 3, "sqlite": 6}


def _steady_report(client: APIClient, url: str, services: list[dict[str, Any]]) -> Any:
    revision = MeshRevision.current()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, {"services": services, "applied_revision": revision,
                                     "version": "0.1.0"}, format="json")
    assert response.status_code == 200, response.content
    return response, queries.captured_queries


def test_a_steady_report_is_one_write_and_few_statements() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    two = [*SERVICES, dict(SERVICES[0], id="orders-2", port=8082)]
    assert client.post(url, {"services": two}, format="json").status_code == 200
    before = {i.id: i.last_heartbeat for i in Instance.objects.all()}
    seen_before = Agent.objects.get().last_seen
    revision = MeshRevision.current()
    response, queries = _steady_report(client, url, two)
    sql = [q["sql"] for q in queries]
    assert len(sql) <= STEADY_STATEMENTS[connection.vendor], sql
    writes = _writes(queries)
    # The agent row and both heartbeats: one statement on PostgreSQL, two UPDATEs elsewhere.
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2), writes
    # The revision is read with the instances, not on its own.
    assert not [s for s in sql if s.startswith('SELECT "registry_meshrevision"')], sql
    for instance in Instance.objects.all():
        assert instance.last_heartbeat is not None and before[instance.id] is not None
        assert instance.last_heartbeat > before[instance.id]
    agent = Agent.objects.get()
    assert agent.last_seen is not None and seen_before is not None
    assert agent.last_seen > seen_before
    assert agent.applied_revision == revision
    assert MeshRevision.current() == revision  # nothing agents consume changed
    answer = response.json()
    assert answer["revision"] == revision
    assert set(answer["instances"]) == {"orders:8081", "orders-2"}  # name:port: listed twice
    assert answer["report_interval_ms"] == 2000


def test_a_steady_report_without_services_is_one_write() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    assert client.post(url, {"services": []}, format="json").status_code == 200
    seen_before = Agent.objects.get().last_seen
    response, queries = _steady_report(client, url, [])
    # authentication, the node's instances (none: the revision is read alone), the agent row
    assert len(queries) <= 4, [q["sql"] for q in queries]
    assert len(_writes(queries)) == 1
    assert response.json()["revision"] == MeshRevision.current()
    agent = Agent.objects.get()
    assert agent.last_seen is not None and seen_before is not None
    assert agent.last_seen > seen_before


def test_a_steady_answer_carries_the_revision_of_someone_elses_change(api: APIClient) -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    before = MeshRevision.current()
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    assert MeshRevision.current() > before
    response, queries = _steady_report(client, url, SERVICES)
    assert len(queries) <= STEADY_STATEMENTS[connection.vendor]
    assert response.json()["revision"] == MeshRevision.current()


def test_a_checked_instance_failing_its_check_keeps_the_report_steady() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    Instance.objects.update(health=Health.CRITICAL, health_cause=HealthCause.CHECK)
    _, queries = _steady_report(client, url, SERVICES)
    assert len(queries) <= STEADY_STATEMENTS[connection.vendor], [q["sql"] for q in queries]
    assert Instance.objects.get().health == Health.CRITICAL  # the check decides, not the report


def test_a_ttl_instance_that_expired_comes_back_with_the_next_report() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    services = [dict(SERVICES[0], check={"type": "ttl"})]
    client.post(url, {"services": services}, format="json")
    client.post(url, {"services": services}, format="json")
    Instance.objects.update(health=Health.CRITICAL, health_cause=HealthCause.HEARTBEAT)
    response = client.post(url, {"services": services}, format="json")
    assert response.status_code == 200
    assert Instance.objects.get().health == Health.PASSING
    assert response.json()["revision"] == MeshRevision.current()  # the revival's revision


def test_a_checked_instance_its_agent_left_critical_goes_back_to_its_check() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    Instance.objects.update(health=Health.CRITICAL, health_cause=HealthCause.AGENT)
    assert client.post(url, {"services": SERVICES}, format="json").status_code == 200
    instance = Instance.objects.get()
    assert instance.health_cause == HealthCause.AWAITING and instance.next_check_at is not None


def test_a_service_dropped_after_steady_reports_is_deregistered() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    two = [*SERVICES, dict(SERVICES[0], id="orders-2", port=8082)]
    client.post(url, {"services": two}, format="json")
    _steady_report(client, url, two)
    revision = MeshRevision.current()
    response = client.post(url, {"services": SERVICES}, format="json")
    assert response.status_code == 200
    assert list(Instance.objects.values_list("port", flat=True)) == [8081]
    assert response.json()["revision"] == MeshRevision.current() > revision


def test_a_nack_after_steady_reports_is_recorded_once_and_cleared_by_an_ack() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    _steady_report(client, url, SERVICES)
    nack = {"revision": 99, "reason": "endpoint port out of range"}
    for _ in range(2):
        assert client.post(url, {"services": SERVICES, "nack": nack},
                           format="json").status_code == 200
    assert Event.objects.filter(message__contains="refused revision 99").count() == 1
    agent = Agent.objects.get()
    assert (agent.nack_revision, agent.nack_reason) == (99, "endpoint port out of range")
    _steady_report(client, url, SERVICES)  # an ack (applied_revision, no nack) clears it
    agent.refresh_from_db()
    assert (agent.nack_revision, agent.nack_reason) == (None, "")


def test_changed_upstreams_after_steady_reports_move_the_agents_index() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    _steady_report(client, url, SERVICES)
    upstreams = [{"service": "billing", "protocol": "http", "listen": "127.0.0.1:9102",
                  "source": "orders"}]
    response = client.post(url, {"services": SERVICES, "upstreams": upstreams}, format="json")
    assert response.status_code == 200
    assert Agent.objects.get().upstreams == upstreams
    key = MeshIndex.objects.get(key=f"agent:{body['agent_id']}")
    assert key.revision == MeshRevision.current() == response.json()["revision"]


def test_a_silent_agent_reporting_again_is_an_event_and_not_silent() -> None:
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    Agent.objects.update(silent=True)
    assert client.post(url, {"services": SERVICES}, format="json").status_code == 200
    assert not Agent.objects.get().silent
    assert Event.objects.filter(message__contains="is reporting again").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_commit_is_asynchronous_for_itself_alone() -> None:
    """On PostgreSQL the steady write turns synchronous_commit off for its own
    transaction only: the pooled connection's next transaction waits for the disk."""
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    client.post(url, {"services": SERVICES}, format="json")
    _, queries = _steady_report(client, url, SERVICES)
    assert [q["sql"] for q in queries if "synchronous_commit" in q["sql"]], queries
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
    assert Instance.objects.get().last_heartbeat is not None


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
