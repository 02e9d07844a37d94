"""The Routes kind of mesh as code: apply, export round trip, prune, schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from jsonschema import Draft202012Validator

from meshcode.apply import InvalidDocuments, mesh_apply, mesh_export
from meshcode.schema import mesh_schema
from policies.models import ServiceRoutes
from registry.models import MeshRevision, Service

pytestmark = pytest.mark.django_db

MESH: list[dict[str, Any]] = [
    {"kind": "Service", "name": "payments"},
    {"kind": "Service", "name": "payments-next"},
    {"kind": "Routes", "name": "payments",
     "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}},
     "routes": [
         {"name": "canary", "match": {"path": {"prefix": "/api"}, "headers": [{"name": "X-User", "exact": "bob"}]},
          "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10},
                    {"service": "payments-next", "weight": 0}],
          "rewrite": {"prefix": "/v2"}, "timeout_ms": 1500},
         {"name": "rest", "split": [{"subset": "v1", "weight": 1}]},
     ]},
]


def test_apply_stores_routes_in_one_revision_and_the_export_round_trips() -> None:
    before = MeshRevision.current()
    result = mesh_apply(user=None, documents=MESH)
    assert len(result.plan.added) == 3
    assert MeshRevision.current() == before + 1  # one apply, one revision
    row = ServiceRoutes.objects.get()
    assert row.document["routes"][0]["match"]["headers"] == [{"name": "x-user", "exact": "bob"}]
    exported = mesh_export()
    routes = [d for d in exported if d["kind"] == "Routes"]
    assert routes == [{"kind": "Routes", "name": "payments", **row.document}]
    validator = Draft202012Validator(mesh_schema())
    for document in exported:
        assert list(validator.iter_errors(document)) == []
    assert mesh_apply(user=None, documents=exported, prune=True, dry_run=True).plan.empty
    assert mesh_apply(user=None, documents=MESH, dry_run=True).plan.empty
    with transaction.atomic():
        Service.objects.all().delete()
        mesh_apply(user=None, documents=exported)
        assert mesh_export() == exported
        transaction.set_rollback(True)


def test_a_change_shows_in_the_diff_and_prune_removes_the_routes() -> None:
    mesh_apply(user=None, documents=MESH)
    changed = [*MESH[:2], {**MESH[2], "routes": MESH[2]["routes"][1:]}]
    plan = mesh_apply(user=None, documents=changed, dry_run=True).plan
    assert [(c["kind"], c["name"]) for c in plan.changed] == [("Routes", "payments")]
    mesh_apply(user=None, documents=MESH[:2], prune=True)
    assert not ServiceRoutes.objects.exists()


def test_an_invalid_routes_document_fails_the_whole_apply() -> None:
    bad = {**MESH[2], "routes": [{"name": "x", "split": [{"subset": "v9", "weight": 1}]}]}
    with pytest.raises(InvalidDocuments) as info:
        mesh_apply(user=None, documents=[*MESH[:2], bad])
    assert "routes.0.split.0.subset" in str(info.value.errors)
    assert not Service.objects.exists() and not ServiceRoutes.objects.exists()


def test_prune_of_a_service_a_split_still_names_is_refused() -> None:
    mesh_apply(user=None, documents=MESH)
    with pytest.raises(InvalidDocuments) as info:
        mesh_apply(user=None, documents=[MESH[0], MESH[2]], prune=True)
    assert "payments-next" in str(info.value.errors)
    assert Service.objects.filter(name="payments-next").exists()


def test_routes_of_an_unknown_service_are_refused() -> None:
    with pytest.raises(InvalidDocuments):
        mesh_apply(user=None, documents=[{"kind": "Routes", "name": "ghost", "routes": []}])


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "Routes", "name": "a", "routes": [{"name": "x"}]},
        {"kind": "Routes", "name": "a", "routes": [{"name": "x", "split": []}]},
        {"kind": "Routes", "name": "a", "routes": [{"name": "x", "split": [{"subset": "v1"}]}]},
        {"kind": "Routes", "name": "a", "subsets": {"V1": {}}},
        {"kind": "Routes", "name": "a", "routes": [{"name": "x", "mirror": True,
                                                    "split": [{"subset": "v", "weight": 1}]}]},
        {"kind": "Routes", "name": "a", "routes": [{"name": "x", "fallback": "random",
                                                    "split": [{"subset": "v", "weight": 1}]}]},
    ],
)
def test_the_schema_refuses_bad_routes(document: dict[str, Any]) -> None:
    assert not Draft202012Validator(mesh_schema()).is_valid(document)
