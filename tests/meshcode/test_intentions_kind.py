"""The Intentions kind: access rules as code (apply, diff, export, prune, rollback)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from identity.models import Intention
from journal.models import AuditEntry
from registry.models import SECURITY_KEY, MeshIndex
from tests.meshcode.test_apply import apply, diff, export, state

pytestmark = pytest.mark.django_db

PAYMENTS: dict[str, Any] = {
    "kind": "Intentions",
    "name": "payments",
    "sources": [
        {"source": "orders", "action": "allow",
         "http": {"methods": ["post"], "path_prefix": "/refund"}},
        {"source": "*", "action": "deny", "description": "nobody else"},
    ],
}
SERVICES = [{"kind": "Service", "name": "payments"}, {"kind": "Service", "name": "orders"}]


def rules() -> list[tuple[str, str, str, Any]]:
    return sorted((i.source, i.destination, i.action, i.http)
                  for i in Intention.objects.all())


def security_index() -> int:
    row = MeshIndex.objects.filter(key=SECURITY_KEY).first()
    return row.revision if row else 0


def test_apply_writes_the_rules_through_the_intentions_workflow(api: APIClient) -> None:
    before = security_index()
    response = apply(api, [*SERVICES, PAYMENTS])
    assert response.status_code == 200, response.content
    assert rules() == [
        ("*", "payments", "deny", None),
        ("orders", "payments", "allow", {"methods": ["POST"], "path_prefix": "/refund"}),
    ]
    assert security_index() > before  # agents' snapshots move
    assert AuditEntry.objects.filter(object_type="intention", action="create").count() == 2
    check = api.get("/api/v1/intentions/check/",
                    {"source": "orders", "destination": "payments", "method": "POST",
                     "path": "/refund/7"}).json()
    assert check["allowed"] is True


def test_the_export_round_trips_as_a_no_op(api: APIClient) -> None:
    assert apply(api, [*SERVICES, PAYMENTS]).status_code == 200
    documents = export(api)
    (exported,) = [d for d in documents if d["kind"] == "Intentions"]
    assert exported["sources"][1]["http"]["methods"] == ["POST"]  # normalized
    assert diff(api, documents)["summary"]["changed"] == 0
    before = state()
    assert apply(api, documents).json()["summary"]["changed"] == 0
    assert state() == before


def test_a_changed_document_updates_in_place_and_deletes_what_it_no_longer_lists(
    api: APIClient,
) -> None:
    assert apply(api, [*SERVICES, PAYMENTS]).status_code == 200
    kept = Intention.objects.get(source="orders")
    changed = {**PAYMENTS, "sources": [{**PAYMENTS["sources"][0], "action": "deny"}]}
    planned = diff(api, [*SERVICES, changed])["diff"]
    assert any(c["kind"] == "Intentions" for c in planned["changed"])
    assert apply(api, [*SERVICES, changed]).status_code == 200
    again = Intention.objects.get(source="orders")
    assert (again.pk, again.action, again.version) == (kept.pk, "deny", kept.version + 1)
    assert not Intention.objects.filter(source="*").exists()


def test_one_bad_rule_changes_nothing_and_is_named_by_its_path(api: APIClient) -> None:
    assert apply(api, [*SERVICES, PAYMENTS]).status_code == 200
    before = (state(), rules())
    bad = {**PAYMENTS, "sources": [PAYMENTS["sources"][0], {"source": "orders", "action": "maybe"},
                                   {"source": "x", "action": "allow", "colour": "red"}]}
    response = apply(api, [*SERVICES, bad])
    assert response.status_code == 400
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["sources.1.action", "sources.2.colour"]
    assert (state(), rules()) == before


@pytest.mark.parametrize(
    "document, field",
    [
        ({"kind": "Intentions", "name": "payments", "sources": "all"}, "sources"),
        ({"kind": "Intentions", "name": "payments", "sources": [
            {"source": "orders", "action": "allow"}, {"source": "orders", "action": "deny"}]},
         "sources.1.source"),
        ({"kind": "Intentions", "name": "payments",
          "sources": [{"source": "payments", "action": "allow"}]}, "sources.0.destination"),
        ({"kind": "Intentions", "name": "payments", "version": 3}, "version"),
        ({"kind": "Intentions", "name": "payments"}, "sources"),
        ({"kind": "Intentions", "name": "payments", "sources": []}, "sources"),
        ({"kind": "Intentions", "name": "pay_ments"}, "name"),
    ],
)
def test_invalid_documents_are_400s(api: APIClient, document: dict[str, Any], field: str) -> None:
    response = apply(api, [*SERVICES, document])
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert not Intention.objects.exists()


def test_the_wildcard_destination_is_a_document_named_star(api: APIClient) -> None:
    everywhere = {"kind": "Intentions", "name": "*",
                  "sources": [{"source": "*", "action": "deny"}]}
    assert apply(api, [everywhere]).status_code == 200
    assert rules() == [("*", "*", "deny", None)]
    assert [d["name"] for d in export(api) if d["kind"] == "Intentions"] == ["*"]


def test_prune_and_rollback_restore_the_rules_exactly(api: APIClient) -> None:
    assert apply(api, [*SERVICES, PAYMENTS]).status_code == 200
    first = rules()
    assert apply(api, SERVICES, prune=True).status_code == 200
    assert rules() == []
    response = api.post("/api/v1/mesh/rollback/", {"version": 1}, format="json")
    assert response.status_code == 200, response.content
    assert rules() == first


def test_rules_made_in_the_api_are_left_alone_by_prune(api: APIClient) -> None:
    response = api.post("/api/v1/intentions/",
                        {"source": "orders", "destination": "users", "action": "deny"},
                        format="json")
    assert response.status_code == 201, response.content
    assert apply(api, SERVICES, prune=True).status_code == 200
    assert rules() == [("orders", "users", "deny", None)]


def test_an_api_edit_of_a_managed_rule_warns_and_diff_shows_the_drift(api: APIClient) -> None:
    assert apply(api, [*SERVICES, PAYMENTS]).status_code == 200
    rule = Intention.objects.get(source="orders")
    response = api.patch(f"/api/v1/intentions/{rule.pk}/", {"action": "deny"}, format="json")
    assert response.status_code == 200
    assert response["X-Mesh-Managed"] == "Intentions/payments"
    assert response["Warning"].startswith("299 meshconsole")
    (changed,) = diff(api, [*SERVICES, PAYMENTS])["diff"]["changed"]
    assert changed["kind"] == "Intentions" and changed.get("drift") is True
