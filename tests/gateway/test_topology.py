"""A gateway's traffic windows (`gateway: true`, source = its name) make it an
entry node of the topology with its edges to services; a window that claims to
be a gateway's from an agent that is not that gateway draws no such node."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from monitoring.ingest import metrics_ingest
from monitoring.models import EdgeWindow
from tests.gateway.helpers import enroll, service

pytestmark = pytest.mark.django_db


def _window(source: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": source,
        "destination": "orders",
        "window_end": time.time(),
        "seconds": 2.0,
        "requests": 40,
        "errors": 2,
        **extra,
    }


def _report(client: APIClient, agent_id: str, body: dict[str, Any]) -> None:
    response = client.post(f"/api/v1/agents/{agent_id}/report/", body, format="json")
    assert response.status_code == 200, response.content


def test_a_gateway_is_an_entry_node_with_its_edges(api: APIClient) -> None:
    service("orders")
    client, body = enroll("gw-1", gateway="edge")
    windows = [_window("edge", gateway=True, route="orders-api", consumer="alice")]
    _report(client, body["agent_id"], {"gateway": {"name": "edge"}, "metrics": windows})
    metrics_ingest()
    assert list(EdgeWindow.objects.values_list("source", "gateway")) == [("edge", True)]
    topology = api.get("/api/v1/topology/").json()
    nodes = {n["id"]: n for n in topology["nodes"]}
    assert nodes["edge"]["kind"] == "gateway" and nodes["orders"]["kind"] == "service"
    [edge] = [e for e in topology["edges"] if e["source"] == "edge"]
    assert edge["destination"] == "orders" and edge["requests"] == 40 and edge["errors"] == 2


def test_only_a_gateway_agent_may_report_as_its_gateway(api: APIClient) -> None:
    service("orders")
    plain, plain_body = enroll("host-a")
    _report(plain, plain_body["agent_id"], {"metrics": [_window("edge", gateway=True)]})
    gw, gw_body = enroll("gw-1", gateway="edge")
    _report(
        gw,
        gw_body["agent_id"],
        {"gateway": {"name": "edge"}, "metrics": [_window("impostor", gateway=True)]},
    )
    metrics_ingest()
    assert not EdgeWindow.objects.filter(gateway=True).exists()
    kinds = {n["id"]: n["kind"] for n in api.get("/api/v1/topology/").json()["nodes"]}
    assert "gateway" not in kinds.values()


def test_a_bad_gateway_flag_is_a_400() -> None:
    service("orders")
    client, body = enroll("gw-1", gateway="edge")
    response = client.post(
        f"/api/v1/agents/{body['agent_id']}/report/",
        {"metrics": [_window("edge", gateway="maybe")]},
        format="json",
    )
    assert response.status_code == 400


def test_the_gateway_metrics_endpoint(api: APIClient) -> None:
    from agents.runtime import histogram

    service("orders")
    service("payments")
    client, body = enroll("gw-1", gateway="edge")
    buckets = histogram.empty()
    buckets[10] = 40
    windows = [
        _window("edge", gateway=True, buckets=buckets),
        {**_window("edge", gateway=True), "destination": "payments", "requests": 10, "errors": 0},
        _window("orders"),  # not the gateway's: a service's own call
    ]
    _report(client, body["agent_id"], {"gateway": {"name": "edge"}, "metrics": windows})
    metrics_ingest()
    response = api.get("/api/v1/gateway/edge/metrics/?window=60s")
    assert response.status_code == 200, response.content
    data = response.json()
    by_service = {row["name"]: row for row in data["by_service"]}
    assert set(by_service) == {"orders", "payments"}
    assert by_service["orders"]["requests"] == 40 and by_service["orders"]["errors"] == 2
    assert by_service["orders"]["error_rate"] == 0.05 and by_service["orders"]["p50_ms"] is not None
    assert by_service["payments"]["requests"] == 10 and by_service["payments"]["p99_ms"] is None
    assert api.get("/api/v1/gateway/edge/metrics/?window=2h").status_code == 400
    assert api.get("/api/v1/gateway/edge/metrics/?window=soon").status_code == 400
    assert api.get("/api/v1/gateway/nowhere/metrics/").status_code == 404
