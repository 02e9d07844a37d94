"""Agent endpoints: enrollment, config snapshot, reports, and their auth."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import yaml
from django.utils import timezone
from rest_framework.test import APIClient

from agents.enrollment import enrollment_token_create
from agents.expiry import agents_expire
from agents.models import Agent
from agents.runtime import histogram
from agents.runtime.config import parse_config
from journal.models import Event
from monitoring import ingest
from monitoring.models import EdgeWindow
from registry.models import Instance, MeshRevision, Service

pytestmark = pytest.mark.django_db

UPSTREAMS = [{"service": "payments", "protocol": "http", "listen": "127.0.0.1:9101", "source": "orders"}]
SERVICES = [
    {
        "name": "orders",
        "address": "127.0.0.1",
        "port": 8081,
        "tags": ["v1"],
        "check": {"type": "http", "path": "/health", "interval": "2s", "timeout": "1s", "rise": 2, "fall": 2},
    }
]


AGENT_YAML = """
control_plane: http://127.0.0.1:8000
token: t
data_dir: /tmp/unused
node: host-a
services:
  - {name: payments, address: 127.0.0.1, port: 8081}
  - {name: payments, address: 127.0.0.1, port: 8082}
"""


def enroll(node: str = "host-a", token: str | None = None) -> tuple[APIClient, dict[str, Any]]:
    token = token or enrollment_token_create()
    client = APIClient()
    response = client.post(
        "/api/v1/agents/enroll/",
        {"token": token, "node": node, "zone": "zone-1", "version": "0.1.0", "upstreams": UPSTREAMS},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {body['agent_token']}")
    return client, body


def test_enroll_with_bad_token_is_refused_and_stores_nothing() -> None:
    response = APIClient().post(
        "/api/v1/agents/enroll/", {"token": "nope", "node": "host-a"}, format="json"
    )
    assert response.status_code == 403
    assert not Agent.objects.exists()


def test_enroll_validates_node_name() -> None:
    token = enrollment_token_create()
    response = APIClient().post("/api/v1/agents/enroll/", {"token": token, "node": "bad node!"}, format="json")
    assert response.status_code == 400
    assert "node" in response.json()


def test_enrolling_under_a_taken_node_name_is_refused_and_the_real_agent_keeps_working() -> None:
    # Was: a second enrollment under host-a took the node over (same agent id,
    # the real agent's token invalidated). Now it is a 409 until an operator
    # removes the agent or allows the re-enrollment (tests/agents/test_enrollment.py).
    token = enrollment_token_create()
    first, body1 = enroll(token=token)
    response = APIClient().post(
        "/api/v1/agents/enroll/", {"token": token, "node": "host-a"}, format="json"
    )
    assert response.status_code == 409, response.content
    assert "host-a" in response.json()["detail"]
    assert first.get(f"/api/v1/agents/{body1['agent_id']}/config/").status_code == 200


def test_config_snapshot_lists_enabled_endpoints_of_declared_upstreams_with_status(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    api.post("/api/v1/services/payments/instances/", {"address": "10.0.0.1", "port": 80}, format="json")
    down = api.post("/api/v1/services/payments/instances/", {"address": "10.0.0.2", "port": 80}, format="json").json()
    api.patch(f"/api/v1/services/payments/instances/{down['id']}/", {"maintenance": True}, format="json")
    sick = api.post("/api/v1/services/payments/instances/", {"address": "10.0.0.3", "port": 80}, format="json").json()
    Instance.objects.filter(pk=sick["id"]).update(health="critical")
    client, body = enroll()
    response = client.get(f"/api/v1/agents/{body['agent_id']}/config/")
    assert response.status_code == 200
    snapshot = response.json()
    assert snapshot["revision"] == MeshRevision.current()
    assert response["X-Mesh-Index"] == str(snapshot["revision"])
    payments = snapshot["upstreams"]["payments"]
    assert payments["policy"]["load_balancer"] == "round_robin"
    assert payments["failover"] == {"active_target": "", "reason": ""}
    # Every enabled endpoint, with its health: the agent routes to passing/warning
    # ones and to all of them in panic (docs/policies.md). Maintenance is left out.
    assert [(e["address"], e["status"], e["priority"]) for e in payments["endpoints"]] == [
        ("10.0.0.1", "passing", 0),
        ("10.0.0.3", "critical", 0),
    ]


def test_refused_addresses_are_never_routed_to_even_in_panic(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    for address in ("10.0.0.1", "169.254.169.254", "::169.254.169.254", "64:ff9b::a9fe:a9fe", "168.63.129.16"):
        response = api.post("/api/v1/services/payments/instances/", {"address": address, "port": 80}, format="json")
        assert response.status_code == 201, response.content
    # Every other instance critical: the agent would route to all endpoints (panic).
    Instance.objects.exclude(address="10.0.0.1").update(health="passing")
    Instance.objects.filter(address="10.0.0.1").update(health="critical")
    client, body = enroll()
    snapshot = client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()
    assert [e["address"] for e in snapshot["upstreams"]["payments"]["endpoints"]] == ["10.0.0.1"]


@pytest.mark.parametrize(("allowed", "routed"), [(False, []), (True, ["169.254.10.1"])])
def test_link_local_endpoints_are_routed_only_with_the_setting(
    api: APIClient, settings: Any, allowed: bool, routed: list[str]
) -> None:
    settings.MESH_CHECK_ALLOW_LINK_LOCAL = allowed
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    for address in ("169.254.10.1", "169.254.169.254"):
        api.post("/api/v1/services/payments/instances/", {"address": address, "port": 80}, format="json")
    client, body = enroll()
    endpoints = client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()["upstreams"]["payments"]["endpoints"]
    assert [e["address"] for e in endpoints] == routed


def test_a_refused_address_says_why_in_status_reason(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    body = api.post(
        "/api/v1/services/payments/instances/", {"address": "100.100.100.200", "port": 80}, format="json"
    ).json()
    assert body["status_reason"] == "refused address: cloud metadata address; never routed to"


def test_config_snapshot_carries_a_policy_saved_through_the_api(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    response = api.patch("/api/v1/services/payments/policy/",
                         {"load_balancer": "least_request", "retries": {"attempts": 0}}, format="json")
    assert response.status_code == 200, response.content
    client, body = enroll()
    policy = client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()["upstreams"]["payments"]["policy"]
    assert policy["load_balancer"] == "least_request" and policy["retries"]["attempts"] == 0


def test_two_instances_of_one_service_on_one_agent_both_register_and_heartbeat() -> None:
    data = yaml.safe_load(AGENT_YAML)
    services = [s.as_report() for s in parse_config(data).services]  # what the agent sends
    client, body = enroll()
    url = f"/api/v1/agents/{body['agent_id']}/report/"
    response = client.post(url, {"services": services}, format="json")
    assert response.status_code == 200, response.content
    instances = {(i.port, i.id) for i in Instance.objects.filter(service__name="payments")}
    assert response.json()["instances"] == {f"payments:{port}": id for port, id in instances}
    assert {port for port, _ in instances} == {8081, 8082}
    assert all(i.last_heartbeat for i in Instance.objects.all())
    long_ago = timezone.now() - timedelta(hours=1)
    Instance.objects.update(last_heartbeat=long_ago)
    assert client.post(url, {"services": services}, format="json").status_code == 200
    beats = {i.port: i.last_heartbeat for i in Instance.objects.all()}
    assert beats.keys() == {8081, 8082} and all(b and b > long_ago for b in beats.values())


def test_one_service_twice_on_one_port_is_refused_by_the_report() -> None:
    client, body = enroll()
    twice = [dict(SERVICES[0]), dict(SERVICES[0], address="127.0.0.2")]
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": twice},
                           format="json")
    assert response.status_code == 400
    assert "twice" in str(response.json()["services"])
    assert not Instance.objects.exists()


def test_config_of_another_agent_is_forbidden() -> None:
    client_a, _ = enroll("host-a")
    _, body_b = enroll("host-b")
    assert client_a.get(f"/api/v1/agents/{body_b['agent_id']}/config/").status_code == 403
    assert APIClient().get(f"/api/v1/agents/{body_b['agent_id']}/config/").status_code == 401


def test_user_token_cannot_act_as_agent(api: APIClient) -> None:
    _, body = enroll()
    assert api.get(f"/api/v1/agents/{body['agent_id']}/config/").status_code == 401
    assert api.post(f"/api/v1/agents/{body['agent_id']}/report/", {}, format="json").status_code == 401


def test_report_registers_local_services_and_heartbeats() -> None:
    client, body = enroll()
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": SERVICES}, format="json")
    assert response.status_code == 200, response.content
    instance = Instance.objects.get()
    assert response.json()["instances"] == {"orders": instance.id}
    assert instance.node.name == "host-a" and instance.zone == "zone-1" and instance.agent_managed
    assert instance.last_heartbeat is not None
    service = Service.objects.get(name="orders")
    assert (service.check_type, service.check_interval_ms, service.check_fall) == ("http", 2000, 2)
    # The same report again changes nothing.
    revision = MeshRevision.current()
    client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": SERVICES}, format="json")
    assert MeshRevision.current() == revision
    # A service no longer listed is deregistered.
    client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": []}, format="json")
    assert not Instance.objects.exists()


def test_report_stores_metrics_and_topology_shows_edge(api: APIClient) -> None:
    client, body = enroll()
    buckets = histogram.empty()
    buckets[histogram.bucket_index(3.0)] = 90
    buckets[histogram.bucket_index(40.0)] = 10
    window = {"source": "orders", "destination": "payments", "window_end": time.time(), "seconds": 2.0,
              "requests": 100, "errors": 5, "latency_sum_ms": 670.0, "buckets": buckets}
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"metrics": [window]}, format="json")
    assert response.status_code == 200, response.content
    assert EdgeWindow.objects.count() == 0  # on the ingest stream, off the request path
    assert ingest.metrics_ingest() == 1
    assert EdgeWindow.objects.count() == 1
    topology = api.get("/api/v1/topology/?window=60s").json()
    edge = topology["edges"][0]
    assert (edge["source"], edge["destination"], edge["requests"], edge["errors"]) == ("orders", "payments", 100, 5)
    assert edge["error_rate"] == 0.05
    assert 2.0 <= edge["p50_ms"] <= 3.5
    # The true value (40 ms) lies in the bucket (36.2, 51.2]; the estimate must too.
    assert 36.2 <= edge["p99_ms"] <= 51.2
    assert api.get("/api/v1/topology/?window=forever").status_code == 400


@pytest.mark.parametrize(
    "report",
    [
        {"services": [{"name": "Bad Name", "address": "x", "port": 1}]},
        {"services": [{"name": "ok", "address": "x", "port": 0}]},
        {"services": [{"name": "ok", "address": "x", "port": 1}, {"name": "ok", "address": "y", "port": 1}]},
        {"metrics": [{"source": "a", "destination": "b", "window_end": 1, "seconds": 1, "requests": 1, "errors": 2}]},
        {"metrics": [{"source": "a", "destination": "b", "window_end": 1, "seconds": 1, "requests": 1, "errors": 0,
                      "buckets": [1] * (histogram.NBUCKETS + 1)}]},
        {"applied_revision": "latest"},
        {"nack": {"revision": 3}},
    ],
)
def test_bad_report_is_400_and_stores_nothing(report: dict[str, Any]) -> None:
    client, body = enroll()
    revision = MeshRevision.current()
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/", report, format="json")
    assert response.status_code == 400
    assert not Instance.objects.exists() and not EdgeWindow.objects.exists()
    assert MeshRevision.current() == revision


def test_nack_is_recorded_and_visible_in_agents_api(api: APIClient) -> None:
    client, body = enroll()
    client.post(f"/api/v1/agents/{body['agent_id']}/report/",
                {"applied_revision": 3, "nack": {"revision": 4, "reason": "endpoint port out of range"}}, format="json")
    agent = api.get("/api/v1/agents/").json()["results"][0]
    assert agent["status"] == "nack"
    assert agent["nack_revision"] == 4 and "out of range" in agent["nack_reason"]
    assert agent["applied_revision"] == 3
    assert Event.objects.filter(kind="agent", severity="warning").exists()


def test_silent_agent_instances_go_critical_and_come_back(settings: Any) -> None:
    settings.MESH_HEARTBEAT_TTL = 5
    client, body = enroll()
    services = [dict(SERVICES[0], check={"type": "ttl"})]
    client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": services}, format="json")
    instance = Instance.objects.get()
    assert instance.health == "passing"  # the report is its heartbeat
    Agent.objects.update(last_seen=instance.created_at.replace(year=2000))
    assert agents_expire() == ["host-a"]
    instance.refresh_from_db()
    assert instance.health == "critical" and instance.status_reason.startswith("agent host-a silent")
    assert agents_expire() == []  # handled once
    client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": services}, format="json")
    instance.refresh_from_db()
    assert instance.health == "passing"


def test_config_snapshot_carries_instance_tags_that_the_runtime_parses(api: APIClient) -> None:
    # The producer's output fed to the agent's parser: DNS subsets (v2.payments.service.mesh)
    # select on these tags.
    from agents.runtime.snapshot import parse_snapshot

    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    api.post("/api/v1/services/payments/instances/",
             {"address": "10.0.0.1", "port": 80, "tags": ["v2", "canary"]}, format="json")
    client, body = enroll()
    raw = client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()
    assert raw["upstreams"]["payments"]["endpoints"][0]["tags"] == ["v2", "canary"]
    spec = parse_snapshot(raw).upstreams["payments"].endpoints[0]
    assert spec.tags == ("v2", "canary")
