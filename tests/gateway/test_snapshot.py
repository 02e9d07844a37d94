"""Gateway agents: declared at enroll and in every report, their snapshot
carries the `gateway` section (routes in match order, consumers' key hashes,
providers with secrets) and `route_target` upstreams; no other agent's does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from agents.runtime.snapshot import parse_snapshot
from agents.snapshot import agent_snapshot
from gateway.models import Gateway
from registry import services as registry_services
from tests.gateway.helpers import HS_SECRET, config, enroll, route, service

pytestmark = pytest.mark.django_db

PAYMENTS = [{"service": "payments", "protocol": "http", "listen": "127.0.0.1:9101"}]


@pytest.fixture
def mesh(api: APIClient) -> dict[str, Any]:
    """orders (one instance) and payments; alice with a key; an HS provider;
    a gateway `edge` with routes in an order the snapshot must change."""
    orders = service("orders")
    service("payments")
    registry_services.instance_register(
        user=None, service=orders, data={"address": "10.0.0.7", "port": 8080}
    )
    api.post(
        "/api/v1/gateway/consumers/", {"name": "alice", "jwt_subjects": ["a@corp"]}, format="json"
    )
    key = api.post("/api/v1/gateway/consumers/alice/keys/", {}, format="json").json()
    provider = {
        "name": "corp",
        "algorithms": ["HS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "secret": HS_SECRET,
    }
    assert api.post("/api/v1/gateway/jwt-providers/", provider, format="json").status_code == 201
    table = [
        route("any-host-long-path", path={"prefix": "/orders/v1/items"}),
        route("wild", hosts=["*.example.org"], path={"prefix": "/"}),
        route(
            "exact-short",
            hosts=["api.example.com"],
            path={"prefix": "/o"},
            auth={"type": "key", "consumers": ["alice"]},
            strip_prefix=True,
        ),
        route(
            "exact-long",
            hosts=["api.example.com"],
            path={"exact": "/orders/list"},
            auth={"type": "jwt", "jwt": {"provider": "corp"}},
            rate_limits=[
                {"scope": "consumer", "mode": "global", "requests": 10, "per": "minute", "burst": 5}
            ],
            cors={"origins": ["https://app.example.com"]},
            max_body_bytes=1024,
        ),
    ]
    return {"key": key, "table": table}


def _put_routes(api: APIClient, table: list[dict[str, Any]]) -> None:
    response = api.put("/api/v1/gateway/edge/routes/", {"routes": table}, format="json")
    assert response.status_code == 200, response.content


def test_a_gateway_agent_gets_its_section_and_route_targets(
    api: APIClient, mesh: dict[str, Any]
) -> None:
    client, body = enroll("gw-1", gateway="edge")
    assert Gateway.objects.filter(name="edge").exists()  # declared: the gateway exists
    assert Agent.objects.get(pk=body["agent_id"]).gateway == "edge"
    _put_routes(api, mesh["table"])
    snapshot = config(client, body["agent_id"])
    section = snapshot["gateway"]
    assert section["name"] == "edge"
    assert [r["name"] for r in section["routes"]] == [
        "exact-long",
        "exact-short",
        "wild",
        "any-host-long-path",
    ]
    long = section["routes"][0]
    assert long["rate_limits"] == [
        {"scope": "consumer", "mode": "global", "requests": 10, "per": "minute", "burst": 5}
    ]
    assert long["cors"]["origins"] == ["https://app.example.com"]
    assert long["max_body_bytes"] == 1024 and long["subset"] == ""
    assert section["consumers"] == [
        {"name": "alice", "key_hashes": [mesh["key"]["key_hash"]], "jwt_subjects": ["a@corp"]}
    ]
    assert section["jwt_providers"]["corp"]["secret"] == HS_SECRET
    assert section["jwt_providers"]["corp"]["algorithms"] == ["HS256"]
    assert mesh["key"]["key"] not in json.dumps(snapshot)
    orders = snapshot["upstreams"]["orders"]
    assert orders["route_target"] is True
    assert [(e["address"], e["port"]) for e in orders["endpoints"]] == [("10.0.0.7", 8080)]
    # The agent's own parser still takes the snapshot (it ignores what it does not know).
    parse_snapshot(snapshot)


def test_a_declared_upstream_is_not_a_route_target(api: APIClient, mesh: dict[str, Any]) -> None:
    client, body = enroll(
        "gw-1",
        gateway="edge",
        upstreams=[{"service": "orders", "protocol": "http", "listen": "127.0.0.1:9102"}],
    )
    _put_routes(api, mesh["table"])
    assert "route_target" not in config(client, body["agent_id"])["upstreams"]["orders"]


def test_other_agents_never_see_the_section_nor_a_secret(
    api: APIClient, mesh: dict[str, Any]
) -> None:
    enroll("gw-1", gateway="edge")
    _put_routes(api, mesh["table"])
    client, body = enroll("host-a", upstreams=PAYMENTS)
    text = json.dumps(config(client, body["agent_id"]))
    assert '"gateway"' not in text and HS_SECRET not in text
    assert mesh["key"]["key_hash"] not in text and "route_target" not in text
    # A gateway agent of another gateway gets its own (empty) routes, not edge's.
    other, other_body = enroll("gw-2", gateway="other")
    section = config(other, other_body["agent_id"])["gateway"]
    assert section["name"] == "other" and section["routes"] == []


def test_reports_declare_and_undeclare_a_gateway(api: APIClient, mesh: dict[str, Any]) -> None:
    client, body = enroll("host-a", upstreams=PAYMENTS, allow=["edge"])
    agent_id = body["agent_id"]
    before = config(client, agent_id)["revision"]
    report = f"/api/v1/agents/{agent_id}/report/"
    assert client.post(report, {"gateway": {"name": "edge"}}, format="json").status_code == 200
    assert Gateway.objects.filter(name="edge").exists()
    _put_routes(api, mesh["table"])
    snapshot = config(client, agent_id)
    assert snapshot["revision"] > before and snapshot["gateway"]["name"] == "edge"
    # A report without the section: not a gateway any more.
    assert client.post(report, {}, format="json").status_code == 200
    assert "gateway" not in config(client, agent_id)
    assert Agent.objects.get(pk=agent_id).gateway == ""


@pytest.mark.parametrize(
    "gateway",
    [
        {"name": "Edge"},
        {"name": ""},
        "edge",
        {"name": "x" * 64},
        {"nom": "edge"},
        {"name": "consumers"},
        {"name": "-edge"},
    ],
)
def test_a_bad_gateway_declaration_is_a_400(gateway: Any) -> None:
    from agents.enrollment import enrollment_token_create

    response = APIClient().post(
        "/api/v1/agents/enroll/",
        {"token": enrollment_token_create(), "node": "gw-1", "gateway": gateway},
        format="json",
    )
    assert response.status_code == 400
    assert not Agent.objects.exists() and not Gateway.objects.exists()
    client, body = enroll("gw-1")
    response = client.post(
        f"/api/v1/agents/{body['agent_id']}/report/", {"gateway": gateway}, format="json"
    )
    assert response.status_code == 400
    assert Agent.objects.get().gateway == "" and not Gateway.objects.exists()


def test_the_snapshot_function_matches_the_endpoint(api: APIClient, mesh: dict[str, Any]) -> None:
    client, body = enroll("gw-1", gateway="edge")
    _put_routes(api, mesh["table"])
    agent = Agent.objects.select_related("node").get(pk=body["agent_id"])
    assert json.loads(json.dumps(agent_snapshot(agent=agent))) == config(client, body["agent_id"])


def test_only_a_token_that_allows_the_gateway_makes_a_gateway_agent(
    api: APIClient, mesh: dict[str, Any]
) -> None:
    """A gateway agent's snapshot holds JWT secrets: an ordinary enrollment token
    cannot make one (403, nothing stored, no use of the token taken)."""
    from agents.enrollment import enrollment_token_create
    from agents.models import EnrollmentToken

    token = enrollment_token_create()
    response = APIClient().post(
        "/api/v1/agents/enroll/",
        {"token": token, "node": "gw-1", "gateway": {"name": "edge"}},
        format="json",
    )
    assert response.status_code == 403 and "--gateways edge" in response.json()["detail"]
    assert not Agent.objects.exists() and not Gateway.objects.exists()
    assert EnrollmentToken.objects.get().uses == 0
    # Allowed another gateway only: refused the same way.
    client, body = enroll("gw-1", allow=["other"])
    report = f"/api/v1/agents/{body['agent_id']}/report/"
    response = client.post(report, {"gateway": {"name": "edge"}}, format="json")
    assert response.status_code == 403
    assert Agent.objects.get().gateway == "" and not Gateway.objects.filter(name="edge").exists()
    assert "gateway" not in config(client, body["agent_id"])
    assert HS_SECRET not in json.dumps(config(client, body["agent_id"]))
    assert client.post(report, {"gateway": {"name": "other"}}, format="json").status_code == 200
    assert config(client, body["agent_id"])["gateway"]["name"] == "other"


def test_tokens_list_their_gateways(api: APIClient) -> None:
    response = api.post("/api/v1/agents/enrollment-tokens/", {"gateways": ["edge"]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["gateways"] == ["edge"]
    bad = api.post("/api/v1/agents/enrollment-tokens/", {"gateways": ["Edge"]}, format="json")
    assert bad.status_code == 400
