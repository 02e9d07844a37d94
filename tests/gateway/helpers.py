"""Builders shared by the gateway tests."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from agents.enrollment import enrollment_token_create
from registry import services as registry_services
from registry.models import Service

HS_SECRET = "s3cret-" + "x" * 40  # >= 32 bytes


def service(name: str) -> Service:
    return registry_services.service_create(user=None, data={"name": name, "check_type": "none"})


def enroll(
    node: str,
    *,
    gateway: str | None = None,
    upstreams: list[dict[str, Any]] | None = None,
    allow: list[str] | None = None,
) -> tuple[APIClient, dict[str, Any]]:
    """An enrolled agent (a gateway agent when GATEWAY names one) and its client;
    its enrollment token allows the gateways ALLOW (default: GATEWAY)."""
    if allow is None:
        allow = [gateway] if gateway else []
    body: dict[str, Any] = {
        "token": enrollment_token_create(gateways=allow),
        "node": node,
        "zone": "zone-1",
        "version": "0.1.0",
        "upstreams": upstreams or [],
    }
    if gateway is not None:
        body["gateway"] = {"name": gateway}
    client = APIClient()
    response = client.post("/api/v1/agents/enroll/", body, format="json")
    assert response.status_code == 201, response.content
    answer = response.json()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {answer['agent_token']}")
    return client, answer


def config(client: APIClient, agent_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/agents/{agent_id}/config/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def route(name: str = "orders-api", **extra: Any) -> dict[str, Any]:
    return {"name": name, "path": {"prefix": "/orders"}, "service": "orders", **extra}
