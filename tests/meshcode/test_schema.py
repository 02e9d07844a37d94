"""The published JSON Schema: served, written to docs/, and true to the documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from meshcode.schema import mesh_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mesh.schema.json"
pytestmark = pytest.mark.django_db


def test_docs_copy_is_the_served_schema(api: APIClient) -> None:
    # Regenerate: python -c "…json.dumps(mesh_schema(), indent=2)" > docs/mesh.schema.json
    assert json.loads(DOCS.read_text()) == mesh_schema()
    assert api.get("/api/v1/mesh/schema/").json() == mesh_schema()


def test_the_schema_is_valid_and_accepts_an_export(api: APIClient) -> None:
    Draft202012Validator.check_schema(mesh_schema())
    validator = Draft202012Validator(mesh_schema())
    mesh = [
        {"kind": "Service", "name": "payments", "check": {"type": "http", "headers": {"a": "b"}}},
        {"kind": "Service", "name": "dr"},
        {
            "kind": "TrafficPolicy",
            "name": "payments",
            "load_balancer": "ring_hash",
            "rate_limit": {"rps": 5},
            "failover": {"targets": ["dr"]},
        },
    ]
    assert api.post("/api/v1/mesh/apply/", {"documents": mesh}, format="json").status_code == 200
    documents = api.get("/api/v1/mesh/export/").json()["documents"]
    assert len(documents) == 3
    for document in documents:
        assert list(validator.iter_errors(document)) == []


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "Service"},
        {"kind": "Gateway", "name": "edge"},
        {"kind": "Service", "name": "Bad_Name"},
        {"kind": "Service", "name": "a", "colour": "blue"},
        {"kind": "Service", "name": "a", "check": {"interval": "soon"}},
        {"kind": "TrafficPolicy", "name": "a", "load_balancer": "fastest"},
        {"kind": "TrafficPolicy", "name": "a", "retries": {"on": []}},
    ],
)
def test_the_schema_refuses_what_the_server_refuses(document: dict[str, object]) -> None:
    assert not Draft202012Validator(mesh_schema()).is_valid(document)
