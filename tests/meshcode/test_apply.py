"""Apply, diff, export, versions and rollback through the REST API."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from meshcode.models import MeshVersion
from policies.models import PolicyVersion, TrafficPolicy
from registry.models import ManagedResource, MeshIndex, MeshRevision, Service

pytestmark = pytest.mark.django_db

MESH: list[dict[str, Any]] = [
    {"kind": "Service", "name": "payments", "tags": ["pci"], "check": {"type": "http"}},
    {"kind": "Service", "name": "payments-dr", "check": {"type": "none"}},
    {
        "kind": "TrafficPolicy",
        "name": "payments",
        "load_balancer": "least_request",
        "retries": {"attempts": 3},
        "failover": {"targets": ["payments-dr"], "hold_down": "1m"},
    },
]


def apply(api: APIClient, documents: list[Any], **options: Any) -> Any:
    return api.post("/api/v1/mesh/apply/", {"documents": documents, **options}, format="json")


def diff(api: APIClient, documents: list[Any], **options: Any) -> dict[str, Any]:
    response = api.post("/api/v1/mesh/diff/", {"documents": documents, **options}, format="json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def export(api: APIClient) -> list[dict[str, Any]]:
    return list(api.get("/api/v1/mesh/export/").json()["documents"])


def state() -> tuple[Any, ...]:
    """Everything an apply may write."""
    return (
        MeshRevision.current(),
        list(Service.objects.values()),
        list(TrafficPolicy.objects.values()),
        list(PolicyVersion.objects.values()),
        list(MeshIndex.objects.values()),
        Event.objects.count(),
        AuditEntry.objects.count(),
        list(MeshVersion.objects.values()),
        list(ManagedResource.objects.values()),
    )


def test_an_apply_is_one_revision_and_one_version(api: APIClient) -> None:
    before = MeshRevision.current()
    response = apply(api, MESH, message="first cut")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 1 and body["summary"]["added"] == 3
    assert body["revision"] == before + 1 == MeshRevision.current()
    assert set(Event.objects.exclude(revision=None).values_list("revision", flat=True)) == {
        before + 1
    }
    version = MeshVersion.objects.get()
    assert (version.author, version.message, version.revision) == ("alice", "first cut", before + 1)
    assert Service.objects.get(name="payments").check_type == "http"
    policy = TrafficPolicy.objects.get(service__name="payments")
    assert policy.failover_targets == ["payments-dr"] and policy.failback_hold_down_ms == 60_000
    assert AuditEntry.objects.filter(object_type="mesh", action="apply").count() == 1


def test_a_policy_may_fail_over_to_a_service_created_later_in_the_same_apply(
    api: APIClient,
) -> None:
    # Kinds apply in order (services first), whatever the order of the documents.
    response = apply(api, [MESH[2], MESH[0], MESH[1]])
    assert response.status_code == 200, response.content


def test_apply_of_the_export_is_a_no_op_diff(api: APIClient) -> None:
    assert apply(api, MESH).status_code == 200
    documents = export(api)
    assert [d["kind"] for d in documents] == ["Service", "Service", "TrafficPolicy"]
    assert diff(api, documents, prune=True)["summary"] == {
        "added": 0,
        "changed": 0,
        "deleted": 0,
        "unchanged": 3,
    }
    before = state()
    response = apply(api, documents)
    assert response.json()["version"] is None  # nothing changed: no version, no revision
    assert state() == before


def test_one_bad_document_changes_nothing_and_is_named(api: APIClient) -> None:
    assert apply(api, MESH[:2]).status_code == 200
    before = state()
    bad = [
        {**MESH[0], "description": "changed"},
        {"kind": "Service", "name": "orders"},
        {**MESH[2], "retries": {"backoff_base": "2s", "backoff_max": "1s"}},
    ]
    response = apply(api, bad)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "index": 2,
                "document": "TrafficPolicy/payments",
                "field": "retries.backoff_base",
                "message": "must not exceed backoff_max",
            }
        ]
    }
    assert state() == before


def test_envelope_errors_name_every_bad_document(api: APIClient) -> None:
    response = apply(
        api,
        [
            {"kind": "Gateway", "name": "edge"},
            {"kind": "Service", "name": "Bad_Name"},
            {"kind": "Service", "name": "ok", "colour": "blue", "check": {"intervall": "5s"}},
            "text",
            {"kind": "Service", "name": "ok"},
        ],
    )
    assert response.status_code == 400
    errors = [(e["index"], e["field"]) for e in response.json()["errors"]]
    assert errors == [(0, "kind"), (1, "name"), (3, ""), (4, "name")]
    response = apply(api, [{"kind": "Service", "name": "ok", "colour": "x", "check": {"a": 1}}])
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == [
        ("colour", "unknown field"),
        ("check.a", "unknown field"),
    ]
    assert not Service.objects.exists()


def test_a_policy_for_a_service_nowhere_is_an_error_on_its_name(api: APIClient) -> None:
    response = apply(api, [{"kind": "TrafficPolicy", "name": "ghost"}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"


def test_dry_run_diffs_without_writing(api: APIClient) -> None:
    assert apply(api, MESH).status_code == 200
    before = state()
    changed = [{**MESH[0], "check": {"type": "http", "interval": "10s"}}, MESH[1]]
    response = apply(api, changed, dry_run=True, prune=True)
    assert response.status_code == 200
    body = response.json()
    assert body["dry_run"] and body["version"] is None
    [change] = body["diff"]["changed"]
    assert change["name"] == "payments" and not change["drift"]
    assert change["fields"] == [{"field": "check.interval", "from": "5s", "to": "10s"}]
    assert body["diff"]["deleted"] == [{"kind": "TrafficPolicy", "name": "payments"}]
    assert state() == before


def test_deleted_only_with_prune_and_only_what_yaml_manages(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "by-hand"}, format="json")
    assert apply(api, MESH).status_code == 200
    assert diff(api, [])["diff"]["deleted"] == []
    deleted = diff(api, [], prune=True)["diff"]["deleted"]
    assert deleted == [
        {"kind": "TrafficPolicy", "name": "payments"},
        {"kind": "Service", "name": "payments"},
        {"kind": "Service", "name": "payments-dr"},
    ]
    # payments-dr is a failover target of a policy that stays: refused.
    response = apply(api, [MESH[0], MESH[2]], prune=True)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "failover.targets"
    # A policy whose service prune would delete: refused, not cascaded away.
    response = apply(api, [MESH[2], MESH[1]], prune=True)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "index": 0,
            "document": "TrafficPolicy/payments",
            "field": "name",
            "message": "needs Service/payments, which prune deletes (no document names it)",
        }
    ]
    assert apply(api, [MESH[0]], prune=True).status_code == 200
    assert sorted(Service.objects.values_list("name", flat=True)) == ["by-hand", "payments"]
    assert not TrafficPolicy.objects.exists()  # a removed policy is the defaults again


def test_an_api_edit_of_a_managed_resource_warns_and_diff_shows_the_drift(
    api: APIClient,
) -> None:
    assert apply(api, MESH).status_code == 200
    response = api.patch("/api/v1/services/payments/", {"description": "hot fix"}, format="json")
    assert response.status_code == 200
    assert response["X-Mesh-Managed"] == "Service/payments"
    assert "managed by mesh version 1" in response["Warning"]
    response = api.patch(
        "/api/v1/services/payments/policy/", {"load_balancer": "random"}, format="json"
    )
    assert response["X-Mesh-Managed"] == "TrafficPolicy/payments"
    api.post("/api/v1/services/", {"name": "free"}, format="json")
    assert "X-Mesh-Managed" not in api.patch(
        "/api/v1/services/free/", {"description": "x"}, format="json"
    )
    changed = {(c["kind"], c["name"]): c for c in diff(api, MESH)["diff"]["changed"]}
    assert changed[("Service", "payments")]["drift"] is True
    assert changed[("Service", "payments")]["fields"] == [
        {"field": "description", "from": "hot fix", "to": ""}
    ]
    assert changed[("TrafficPolicy", "payments")]["drift"] is True
    # payments fails over to payments-dr: its delete is refused until that is cleared.
    assert api.delete("/api/v1/services/payments-dr/").status_code == 409
    api.patch("/api/v1/services/payments/policy/", {"failover": {"targets": []}}, format="json")
    assert api.delete("/api/v1/services/payments-dr/")["X-Mesh-Managed"] == "Service/payments-dr"
    [added] = diff(api, MESH)["diff"]["added"]
    assert (added["name"], added["drift"]) == ("payments-dr", True)


def test_rollback_restores_the_exact_previous_state(api: APIClient) -> None:
    assert apply(api, MESH).status_code == 200
    first = export(api)
    second = [
        {**MESH[0], "description": "v2", "tags": []},
        {"kind": "Service", "name": "orders", "protocol": "tcp"},
        {
            **MESH[2],
            "load_balancer": "maglev",
            "hash_on": {"type": "header", "name": "x-user"},
            "failover": {"targets": []},
        },
    ]  # and payments-dr is pruned
    assert apply(api, second, prune=True).status_code == 200
    assert export(api) != first
    response = api.post("/api/v1/mesh/rollback/", {"version": 1}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 3
    assert export(api) == first
    versions = api.get("/api/v1/mesh/versions/").json()
    assert [(v["number"], v["rollback_of"]) for v in versions] == [(3, 1), (2, None), (1, None)]
    assert AuditEntry.objects.filter(object_type="mesh", action="rollback").count() == 1
    response = api.post("/api/v1/mesh/rollback/", {"version": 9}, format="json")
    assert response.status_code == 400


def test_the_endpoints_need_credentials(anon: APIClient) -> None:
    assert anon.get("/api/v1/mesh/export/").status_code in (401, 403)
    assert anon.post("/api/v1/mesh/apply/", {"documents": []}, format="json").status_code in (
        401,
        403,
    )


@pytest.mark.parametrize(
    "documents",
    [
        [{"kind": ["Service"], "name": "a"}],
        [{"kind": "Service", "name": {"a": 1}}],
        [{"kind": "Service", "name": "a", "check": "http"}],
        [{"kind": "Service", "name": "a", "check": None, "tags": "pci"}],
        [{"kind": "Service", "name": "a"}, {"kind": "TrafficPolicy", "name": "a", "retries": None}],
        [{"kind": "Service", "name": "a"}, {"kind": "TrafficPolicy", "name": "a", "version": 3}],
        [{"kind": "Service", "name": "a"}, {"kind": "TrafficPolicy", "name": "a", "hash_on": 7}],
        [
            {"kind": "Service", "name": "a"},
            {"kind": "TrafficPolicy", "name": "a", "failover": {"targets": ["a"]}},
        ],
    ],
)
def test_bad_input_is_a_400_never_a_500(api: APIClient, documents: list[Any]) -> None:
    response = apply(api, documents)
    assert response.status_code == 400, response.content
    assert response.json()["errors"]
    assert not Service.objects.exists()


def test_documents_must_be_a_list(api: APIClient) -> None:
    response = api.post("/api/v1/mesh/apply/", {"documents": {"kind": "Service"}}, format="json")
    assert response.status_code == 400 and "documents" in response.json()


def test_a_misspelt_option_is_refused_not_ignored(api: APIClient) -> None:
    response = apply(api, MESH, dryrun=True)
    assert response.status_code == 400 and "dryrun" in response.json()
    assert not Service.objects.exists()
