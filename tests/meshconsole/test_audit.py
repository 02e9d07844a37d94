"""The audit trail: the API's filters, the streamed CSV/JSON export, the page's
diff and the mesh versions listed on it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from meshcode.models import MeshVersion
from meshconsole.console.audit import audit_diff
from meshconsole.models import Role
from meshconsole.roles import user_role_set

pytestmark = pytest.mark.django_db


def _service(api: APIClient, name: str, **extra: Any) -> None:
    answer = api.post("/api/v1/services/", {"name": name, **extra}, format="json")
    assert answer.status_code == 201, answer.content


def _body(response: Any) -> bytes:
    # Iterating consumes the async stream as a WSGI server would (the test
    # client is synchronous; the ASGI server streams it chunk by chunk).
    return b"".join(response)


def test_the_diff_names_changed_added_and_removed_fields() -> None:
    changes = audit_diff({"a": 1, "b": {"c": 2}, "gone": 1}, {"a": 1, "b": {"c": 3}, "new": 2})
    assert [(c.field, c.kind) for c in changes] == [
        ("b.c", "changed"),
        ("gone", "removed"),
        ("new", "added"),
    ]


def test_api_filters_by_person_and_object(api: APIClient, admin_user: User) -> None:
    _service(api, "payments")
    _service(api, "orders")
    api.patch("/api/v1/services/orders/", {"description": "new"}, format="json")
    rows = api.get("/api/v1/audit/", {"object_id": "orders"}).json()["results"]
    assert [r["action"] for r in rows] == ["update", "create"]
    assert api.get("/api/v1/audit/", {"actor": "nobody"}).json()["results"] == []
    assert api.get("/api/v1/audit/", {"since": "not a date"}).status_code == 400


def test_export_streams_csv_and_json_of_the_filtered_entries(api: APIClient) -> None:
    _service(api, "payments")
    _service(api, "orders")
    answer = api.get("/api/v1/audit/export/", {"format": "csv", "object_id": "orders"})
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(_body(answer).decode())))
    assert [(r["object_type"], r["object_id"], r["action"]) for r in rows] == [
        ("service", "orders", "create")
    ]
    assert json.loads(rows[0]["after"])["name"] == "orders"
    answer = api.get("/api/v1/audit/export/", {"format": "json"})
    assert sorted(r["object_id"] for r in json.loads(_body(answer))) == ["orders", "payments"]


def test_audit_page_shows_the_change_as_a_diff_and_the_mesh_versions(
    api: APIClient, admin_user: User
) -> None:
    _service(api, "payments", description="old words")
    api.patch("/api/v1/services/payments/", {"description": "new words"}, format="json")
    MeshVersion.objects.create(number=1, author="alice", message="first apply", managed=[])
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get("/audit/", {"object_id": "payments"}).content.decode()
    assert "old words" in page and "new words" in page
    assert "first apply" in page and 'href="/audit/versions/1/"' in page
    assert browser.get("/audit/versions/1/").status_code == 200
    assert browser.get("/audit/versions/9/").status_code == 404
    assert browser.get("/audit/", {"since": "garbage"}).status_code == 200


def test_role_changes_are_audited(admin_user: User) -> None:
    bob = User.objects.create_user("bob")
    user_role_set(user=bob, role=Role.OPERATOR, scope="team=payments", by=admin_user)
    client = APIClient()
    client.force_authenticate(admin_user)
    rows = client.get("/api/v1/audit/", {"object_type": "role"}).json()["results"]
    assert rows[0]["object_id"] == "bob"
    assert rows[0]["actor"] == "alice"
    assert rows[0]["after"] == {"role": "operator", "scope": "team=payments"}


# Valid ISO 8601 to Python, but out of the calendar once in UTC (and past PostgreSQL's
# ±15:59 offsets): the events filter's cases (tests/registry/test_bad_input_never_500.py).
OUT_OF_RANGE = ["since=9999-12-31T23:59:59-23:00", "until=0001-01-01T00:00:00+23:00"]


@pytest.mark.parametrize("query", OUT_OF_RANGE)
@pytest.mark.parametrize("path", ["/api/v1/audit/", "/api/v1/audit/export/"])
def test_a_time_outside_the_calendar_in_utc_is_400_not_500(
    api: APIClient, path: str, query: str
) -> None:
    response = api.get(f"{path}?{query}")
    assert response.status_code == 400, response.content[:300]
    assert query.split("=")[0] in response.json()


@pytest.mark.parametrize("query", OUT_OF_RANGE)
def test_the_audit_page_shows_such_a_time_as_a_filter_error(
    admin_user: User, query: str
) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 200
    assert f'id="audit-errors">{query.split("=")[0]}: '.encode() in response.content


def test_a_wide_offset_is_compared_in_utc(api: APIClient) -> None:
    _service(api, "payments")
    found = api.get("/api/v1/audit/?since=2000-01-01T00:00:00-22:26").json()["results"]
    assert [e["object_id"] for e in found] == ["payments"]
    assert api.get("/api/v1/audit/?since=9000-01-01T00:00:00-22:26").json()["results"] == []
