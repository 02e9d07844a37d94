"""Snapshot additions of the zero-trust contract: endpoint `inbound`, upstream `mtls`,
the `security` section, and the agents' `inbound` in enroll/report."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents.models import Agent
from agents.runtime.snapshot import parse_snapshot
from agents.snapshot import agent_snapshot
from journal.models import AuditEntry
from registry.models import Service
from tests.identity.helpers import enrolled_agent

pytestmark = pytest.mark.django_db

PAYMENTS = [{"name": "payments", "address": "127.0.0.1", "port": 8080}]
CALLS_PAYMENTS = [{"service": "payments", "protocol": "http", "listen": "127.0.0.1:9101"}]


def _caller() -> Agent:
    _, agent_id = enrolled_agent(node="host-a", upstreams=CALLS_PAYMENTS)
    return Agent.objects.get(pk=agent_id)


def test_an_endpoint_on_a_host_with_an_inbound_listener_carries_it() -> None:
    server, server_id = enrolled_agent(services=PAYMENTS, inbound={"address": "10.0.0.5", "port": 15001})
    caller = _caller()
    snapshot = agent_snapshot(agent=caller)
    (endpoint,) = snapshot["upstreams"]["payments"]["endpoints"]
    assert endpoint["inbound"] == {"address": "10.0.0.5", "port": 15001}
    assert (endpoint["address"], endpoint["port"]) == ("127.0.0.1", 8080)
    assert snapshot["upstreams"]["payments"]["mtls"] == "permissive"
    # The caller's snapshot moves when the server's listener goes away.
    response = server.post(f"/api/v1/agents/{server_id}/report/", {"services": PAYMENTS}, format="json")
    assert response.status_code == 200
    after = agent_snapshot(agent=caller)
    assert after["revision"] > snapshot["revision"]
    assert after["upstreams"]["payments"]["endpoints"][0]["inbound"] is None


def test_an_endpoint_without_an_agent_listener_is_dialled_directly() -> None:
    enrolled_agent(services=PAYMENTS)
    snapshot = agent_snapshot(agent=_caller())
    assert snapshot["upstreams"]["payments"]["endpoints"][0]["inbound"] is None


def test_a_new_inbound_listener_moves_the_callers_revision() -> None:
    server, server_id = enrolled_agent(services=PAYMENTS)
    caller = _caller()
    before = agent_snapshot(agent=caller)
    inbound = {"address": "10.0.0.5", "port": 15001}
    server.post(f"/api/v1/agents/{server_id}/report/", {"services": PAYMENTS, "inbound": inbound}, format="json")
    after = agent_snapshot(agent=caller)
    assert after["revision"] > before["revision"]
    assert after["upstreams"]["payments"]["endpoints"][0]["inbound"] == inbound


@pytest.mark.parametrize(
    "inbound",
    [{"address": "not an address!", "port": 15001}, {"address": "10.0.0.5", "port": 0},
     {"address": "10.0.0.5", "port": 70000}, {"address": "10.0.0.5"}, "10.0.0.5:15001"],
)
def test_a_bad_inbound_is_400_and_stores_nothing(inbound: object) -> None:
    server, server_id = enrolled_agent(services=PAYMENTS)
    response = server.post(
        f"/api/v1/agents/{server_id}/report/", {"services": PAYMENTS, "inbound": inbound}, format="json"
    )
    assert response.status_code == 400, response.content
    agent = Agent.objects.get(pk=server_id)
    assert (agent.inbound_address, agent.inbound_port) == ("", None)


def test_mtls_mode_in_the_service_api_reaches_both_sides(api: APIClient) -> None:
    _, server_id = enrolled_agent(services=PAYMENTS)
    server, caller = Agent.objects.get(pk=server_id), _caller()
    before_server, before_caller = agent_snapshot(agent=server), agent_snapshot(agent=caller)
    response = api.patch("/api/v1/services/payments/", {"mtls_mode": "strict"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["mtls_mode"], response.json()["mtls"]) == ("strict", "strict")
    after_server, after_caller = agent_snapshot(agent=server), agent_snapshot(agent=caller)
    assert after_caller["upstreams"]["payments"]["mtls"] == "strict"
    assert after_server["security"]["inbound"] == {"payments": {"mtls": "strict"}}
    assert after_server["revision"] > before_server["revision"]
    assert after_caller["revision"] > before_caller["revision"]
    audit = AuditEntry.objects.filter(object_type="service", action="update").latest("id")
    assert (audit.before["mtls_mode"], audit.after["mtls_mode"]) == ("", "strict")


def test_a_bad_mtls_mode_is_400_and_changes_nothing(api: APIClient) -> None:
    enrolled_agent(services=PAYMENTS)
    response = api.patch("/api/v1/services/payments/", {"mtls_mode": "sometimes"}, format="json")
    assert response.status_code == 400
    assert Service.objects.get(name="payments").mtls_mode == ""


@override_settings(MESH_MTLS_DEFAULT="off")
def test_an_unset_mode_is_the_mesh_default(api: APIClient) -> None:
    enrolled_agent(services=PAYMENTS)
    snapshot = agent_snapshot(agent=_caller())
    assert snapshot["upstreams"]["payments"]["mtls"] == "off"
    assert api.get("/api/v1/services/payments/").json()["mtls"] == "off"


def test_the_security_section_has_the_contract_keys_and_the_runtime_parser_takes_it(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS, inbound={"address": "127.0.0.1", "port": 15001})
    client.post(f"/api/v1/agents/{agent_id}/certificates/", {"service": "payments", "csr": "x"}, format="json")
    api.post("/api/v1/intentions/", {"source": "*", "destination": "payments", "action": "deny",
                                     "http": {"methods": ["DELETE"]}}, format="json")
    api.get("/api/v1/ca/roots/")  # the first root
    caller = _caller()
    raw = agent_snapshot(agent=Agent.objects.get(pk=agent_id))
    security = raw["security"]
    assert set(security) == {"trust_domain", "roots", "revoked_serials", "default_action", "intentions", "inbound"}
    assert security["trust_domain"] == "mesh.local"
    assert len(security["roots"]) == 1 and security["roots"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert security["intentions"][0]["http"] == {"methods": ["DELETE"]}
    # Both sides' snapshots still parse (unknown keys are ignored by older runtimes).
    parse_snapshot(json.loads(json.dumps(raw)))
    parse_snapshot(json.loads(json.dumps(agent_snapshot(agent=caller))))


def test_meshcode_exports_and_applies_mtls_mode(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments"}, format="json")
    api.patch("/api/v1/services/payments/", {"mtls_mode": "strict"}, format="json")
    exported = api.get("/api/v1/mesh/export/").json()
    docs = exported["documents"] if isinstance(exported, dict) else exported
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["mtls_mode"] == "strict"
    service["mtls_mode"] = "off"
    response = api.post("/api/v1/mesh/apply/", {"documents": docs}, format="json")
    assert response.status_code == 200, response.content
    assert Service.objects.get(name="payments").mtls_mode == "off"
    bad = dict(service, mtls_mode="nope")
    response = api.post("/api/v1/mesh/apply/", {"documents": [bad]}, format="json")
    assert response.status_code == 400
    assert Service.objects.get(name="payments").mtls_mode == "off"


def test_denied_counts_are_stored_per_edge_and_become_one_event() -> None:
    import time

    from journal.models import Event
    from monitoring.ingest import metrics_ingest
    from monitoring.models import EdgeWindow

    server, server_id = enrolled_agent(services=PAYMENTS)
    window = {"source": "orders", "destination": "payments", "window_end": time.time(),
              "seconds": 2.0, "requests": 5, "errors": 0, "denied": 3}
    for _ in range(2):
        response = server.post(f"/api/v1/agents/{server_id}/report/",
                               {"services": PAYMENTS, "metrics": [window]}, format="json")
        assert response.status_code == 200, response.content
    metrics_ingest()  # the windows are stored off the request (monitoring.ingest)
    assert list(EdgeWindow.objects.values_list("denied", flat=True)) == [3, 3]
    events = Event.objects.filter(message__contains="denied by policy")
    assert events.count() == 1 and events.get().data["denied"] == 3
    bad = dict(window, denied=-1)
    response = server.post(f"/api/v1/agents/{server_id}/report/", {"metrics": [bad]}, format="json")
    assert response.status_code == 400


def test_a_reenrolled_agents_old_certificates_are_revoked(api: APIClient) -> None:
    from agents.enrollment import enrollment_token_create
    from tests.identity.helpers import ask

    client, agent_id = enrolled_agent(services=PAYMENTS)
    serial = ask(client, agent_id, "payments").json()["serial"]
    assert api.post(f"/api/v1/agents/{agent_id}/allow-reenroll/").status_code == 204
    response = APIClient().post("/api/v1/agents/enroll/", {"token": enrollment_token_create(),
                                                           "node": "host-b"}, format="json")
    assert response.status_code == 200 or response.status_code == 201, response.content
    snapshot = agent_snapshot(agent=Agent.objects.get(pk=response.json()["agent_id"]))
    assert serial in snapshot["security"]["revoked_serials"]


def test_inbound_given_at_enrollment_over_http_is_stored() -> None:
    from agents.enrollment import enrollment_token_create

    body = {"token": enrollment_token_create(), "node": "host-i",
            "inbound": {"address": "10.0.0.9", "port": 15001}}
    response = APIClient().post("/api/v1/agents/enroll/", body, format="json")
    assert response.status_code == 201, response.content
    agent = Agent.objects.get(pk=response.json()["agent_id"])
    assert (agent.inbound_address, agent.inbound_port) == ("10.0.0.9", 15001)
    bad = {"token": enrollment_token_create(), "node": "host-j", "inbound": {"address": "10.0.0.9", "port": 0}}
    assert APIClient().post("/api/v1/agents/enroll/", bad, format="json").status_code == 400
    assert not Agent.objects.filter(node__name="host-j").exists()


def test_the_first_snapshot_already_has_a_root() -> None:
    from identity.models import CARoot

    assert not CARoot.objects.exists()
    snapshot = agent_snapshot(agent=_caller())
    assert snapshot["security"]["roots"] == [CARoot.objects.get().certificate]


def test_the_topology_shows_denied_per_edge(api: APIClient) -> None:
    import time

    server, server_id = enrolled_agent(services=PAYMENTS)
    window = {"source": "orders", "destination": "payments", "window_end": time.time(),
              "seconds": 2.0, "requests": 0, "errors": 0, "denied": 6}
    server.post(f"/api/v1/agents/{server_id}/report/", {"services": PAYMENTS, "metrics": [window]},
                format="json")
    from monitoring.ingest import metrics_ingest

    metrics_ingest()
    from monitoring.topology import topology_snapshot

    (edge,) = topology_snapshot(window_seconds=60)["edges"]
    assert (edge["source"], edge["destination"], edge["denied"], edge["denied_rps"]) == (
        "orders", "payments", 6, 0.1)


def test_a_service_created_strict_after_its_agent_listed_it_reaches_the_cached_section(
    api: APIClient,
) -> None:
    from agents.enrollment import agent_enroll, enrollment_token_create

    enrollment = agent_enroll(token=enrollment_token_create(), node="host-k", zone="", version="",
                              upstreams=[], address="127.0.0.1", services=["ledger"])
    agent = enrollment.agent
    assert agent_snapshot(agent=agent)["security"]["inbound"] == {"ledger": {"mtls": "permissive"}}
    assert api.post("/api/v1/services/", {"name": "ledger", "mtls_mode": "strict"}, format="json").status_code == 201
    assert agent_snapshot(agent=agent)["security"]["inbound"] == {"ledger": {"mtls": "strict"}}
    assert api.delete("/api/v1/services/ledger/").status_code == 204
    assert agent_snapshot(agent=agent)["security"]["inbound"] == {"ledger": {"mtls": "permissive"}}


def test_an_inbound_window_counts_only_its_denials(api: APIClient) -> None:
    """The caller's agent reports the requests of an mTLS edge; the destination's
    inbound listener reports the same requests again (`inbound: true`): only its
    denials are stored, so the edge's rps is not doubled."""
    import time

    from monitoring.ingest import metrics_ingest
    from monitoring.topology import topology_snapshot

    server, server_id = enrolled_agent(services=PAYMENTS)
    now = time.time()
    outbound = {"source": "orders", "destination": "payments", "window_end": now,
                "seconds": 2.0, "requests": 60, "errors": 0}
    inbound = {**outbound, "requests": 66, "denied": 6, "inbound": True}
    quiet = {**outbound, "source": "web", "requests": 10, "inbound": True}  # nothing denied
    answer = server.post(f"/api/v1/agents/{server_id}/report/",
                         {"services": PAYMENTS, "metrics": [outbound, inbound, quiet]},
                         format="json")
    assert answer.status_code == 200, answer.content
    metrics_ingest()
    edges = {(e["source"], e["destination"]): e for e in topology_snapshot(60)["edges"]}
    assert set(edges) == {("orders", "payments")}
    edge = edges[("orders", "payments")]
    assert (edge["requests"], edge["denied"]) == (60, 6)
