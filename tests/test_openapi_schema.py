"""The generated schema itself: valid with no drf-spectacular warning, and what
it says about the operations a review found it wrong on."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def schema(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_schema_validates_with_no_warnings(tmp_path: Any) -> None:
    # --fail-on-warn raises on any warning or error of the generator.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"),
        stderr=StringIO(),
    )


def test_instance_node_is_nullable_in_every_answer(schema: dict[str, Any]) -> None:
    node = schema["components"]["schemas"]["Instance"]["properties"]["node"]
    assert node["type"] == "string" and node["nullable"] is True
    item = schema["paths"][f"{V1}/services/{{service_name}}/instances/{{id}}/"]
    for method in ("get", "patch"):
        answer = item[method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/Instance"}, method


def test_no_put_on_an_instance_and_it_answers_405(
    schema: dict[str, Any], api: APIClient
) -> None:
    item = schema["paths"][f"{V1}/services/{{service_name}}/instances/{{id}}/"]
    assert set(item) - {"parameters"} == {"get", "patch", "delete"}
    api.post(f"{V1}/services/", {"name": "payments"}, format="json")
    body = api.post(
        f"{V1}/services/payments/instances/", {"address": "127.0.0.1", "port": 1}, format="json"
    ).json()
    response = api.put(f"{V1}/services/payments/instances/{body['id']}/", {}, format="json")
    assert response.status_code == 405


def test_blocking_views_are_in_the_schema(schema: dict[str, Any]) -> None:
    discovery = schema["paths"][f"{V1}/discovery/{{name}}/"]["get"]
    assert {p["name"] for p in discovery["parameters"]} == {"name", "index", "wait"}
    assert {"200", "400", "401", "403", "404"} <= set(discovery["responses"])
    config = schema["paths"][f"{V1}/agents/{{agent_id}}/config/"]["get"]
    assert {p["name"] for p in config["parameters"]} == {"agent_id", "revision", "wait"}
    assert config["security"] == [{"agentToken": []}]


def test_error_responses_are_documented(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    create = paths[f"{V1}/services/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409"} <= set(create)
    detail = paths[f"{V1}/services/{{name}}/"]
    assert "404" in detail["get"]["responses"] and "409" in detail["patch"]["responses"]
    policy = paths[f"{V1}/services/{{name}}/policy/"]["put"]["responses"]
    assert {"400", "404", "409"} <= set(policy)
    enroll = paths[f"{V1}/agents/enroll/"]["post"]["responses"]
    assert {"201", "400", "403", "429"} <= set(enroll) and "401" not in enroll
    # A list without query parameters cannot be a 400.
    assert "400" not in paths[f"{V1}/agents/"]["get"]["responses"]


def test_operator_request_bodies_refuse_additional_properties(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for name in ("ServiceRequest", "PatchedServiceUpdateRequest", "InstanceRequest",
                 "PolicyDocumentRequest", "BulkRequest"):
        assert components[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in components["ReportRequest"]
