"""Deleting a gateway, a consumer or a JWT provider: the 409 while a route names
it (its text), and the audit entry and config event a delete writes (their text)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from tests.gateway.helpers import HS_SECRET, route, service

pytestmark = pytest.mark.django_db

PROVIDER = {
    "name": "corp",
    "algorithms": ["HS256"],
    "issuer": "https://idp",
    "audience": "orders",
    "secret": HS_SECRET,
}
NAMING = [
    route("k", auth={"type": "key", "consumers": ["alice"]}),
    route("j", auth={"type": "jwt", "jwt": {"provider": "corp"}}),
]


@pytest.fixture
def named(api: APIClient) -> APIClient:
    """Gateway edge whose routes name consumer alice and JWT provider corp."""
    service("orders")
    assert api.post("/api/v1/gateway/", {"name": "edge"}, format="json").status_code == 201
    assert api.post("/api/v1/gateway/consumers/", {"name": "alice"}, format="json").status_code
    assert api.post("/api/v1/gateway/jwt-providers/", PROVIDER, format="json").status_code == 201
    response = api.put("/api/v1/gateway/edge/routes/", {"routes": NAMING}, format="json")
    assert response.status_code == 200, response.content
    return api


def _last_delete(kind: str, name: str) -> tuple[AuditEntry, Event]:
    audit = AuditEntry.objects.filter(action="delete", object_type=kind, object_id=name).get()
    event = Event.objects.filter(data={"object": kind, "name": name}).order_by("-pk").first()
    assert event is not None
    return audit, event


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("consumers/alice/", "consumer alice is named by routes edge/k"),
        ("jwt-providers/corp/", "JWT provider corp is named by routes edge/j"),
    ],
)
def test_a_named_consumer_or_provider_is_a_409_naming_the_routes(
    named: APIClient, path: str, detail: str
) -> None:
    audits = AuditEntry.objects.count()
    response = named.delete(f"/api/v1/gateway/{path}")
    assert response.status_code == 409
    assert response.json()["detail"] == detail
    assert AuditEntry.objects.count() == audits


def test_deletes_write_their_audit_and_event(named: APIClient) -> None:
    assert named.put("/api/v1/gateway/edge/routes/", {"routes": []}, format="json").status_code
    expected: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("consumers/alice/", "consumer", "alice", "consumer alice deleted", {"name": "alice"}),
        ("jwt-providers/corp/", "jwt-provider", "corp", "JWT provider corp deleted",
         {"issuer": "https://idp", "audience": "orders"}),
        ("edge/", "gateway", "edge", "gateway edge deleted",
         {"name": "edge", "version": 2, "routes": []}),
    ]  # fmt: skip
    for path, kind, name, message, before in expected:
        assert named.delete(f"/api/v1/gateway/{path}").status_code == 204
        audit, event = _last_delete(kind, name)
        assert event.message == message and event.kind == "config"
        assert audit.after is None and audit.before is not None
        assert {key: audit.before.get(key) for key in before} == before
