"""The service page draws the routes editor only for those whose role may write
the service's routes (an admin, or an admin scoped to one of its tags); the
others get the read-only panel, and the API refuses them either way."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from meshconsole.models import Role
from meshconsole.roles import user_role_set
from registry import services

pytestmark = pytest.mark.django_db

EDITOR = ('id="routes-form"', 'id="routes-editor"', "console/routes-editor.js",
          "console/routes-form.js", "console/routes-form-routes.js", 'id="routes-vocabulary"')


@pytest.fixture
def payments(db: None) -> None:
    services.service_create(
        user=None, data={"name": "payments", "check_type": "none", "tags": ["team=pay"]}
    )


def _page(client: Client, user: User) -> str:
    client.force_login(user)
    response = client.get("/services/payments/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("role, scope", [("admin", ""), ("admin", "team=pay")])
def test_admins_of_the_service_get_the_editor(
    client: Client, viewer: User, payments: None, role: str, scope: str
) -> None:
    user_role_set(user=viewer, role=Role(role), scope=scope)
    page = _page(client, viewer)
    for control in EDITOR:
        assert control in page
    assert 'id="routes-read-only"' not in page
    body = {"subsets": {"v1": {"tags": ["v1"]}}, "routes": []}
    answer = client.put(
        "/api/v1/services/payments/routes/", body, content_type="application/json"
    )
    assert answer.status_code == 200  # the same session: the 403 below is the role's


@pytest.mark.parametrize(
    "role, scope", [("viewer", ""), ("operator", ""), ("operator", "team=pay"), ("admin", "team=x")]
)
def test_others_get_the_read_only_panel(
    client: Client, viewer: User, payments: None, role: str, scope: str
) -> None:
    user_role_set(user=viewer, role=Role(role), scope=scope)
    page = _page(client, viewer)
    assert 'id="routes-panel"' in page and 'id="routes-read-only"' in page
    for control in EDITOR:
        assert control not in page
    body = {"subsets": {}, "routes": []}
    answer = client.put(
        "/api/v1/services/payments/routes/", body, content_type="application/json"
    )
    assert answer.status_code == 403


def _vocabulary(page: str) -> dict[str, Any]:
    found = re.search(r'<script id="routes-vocabulary" type="application/json">(.*?)</script>', page)
    assert found is not None
    return dict(json.loads(found.group(1)))


@pytest.mark.parametrize(
    "field, bound",
    [("timeout_ms", "timeout_ms"), ("retries", "attempts"), ("weight", "weight_max")],
)
def test_the_forms_bounds_are_the_apis(
    client: Client, admin_user: User, payments: None, field: str, bound: str
) -> None:
    """The routes form offers exactly what the API accepts: its highest value is
    saved, one more is a 400 at that field (and its lowest, one less, too)."""
    vocabulary = _vocabulary(_page(client, admin_user))
    assert {"prefix", "exact", "regex"} == set(vocabulary["path_kinds"])
    edges = vocabulary[bound] if isinstance(vocabulary[bound], list) else [0, vocabulary[bound]]
    low, high = edges
    paths = {"timeout_ms": "routes.0.timeout_ms", "retries": "routes.0.retries.attempts",
             "weight": "routes.0.split.0.weight"}

    def put(value: int) -> Any:
        route: dict[str, Any] = {"name": "r", "split": [{"subset": "v1", "weight": 1}]}
        if field == "weight":
            route["split"] = [{"subset": "v1", "weight": value}, {"subset": "v2", "weight": 1}]
        elif field == "retries":
            route["retries"] = {"attempts": value}
        else:
            route["timeout_ms"] = value
        body = {"subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}}, "routes": [route]}
        return client.put("/api/v1/services/payments/routes/", body,
                          content_type="application/json")

    for ok in (low, high):
        assert put(ok).status_code == 200, ok
    for bad in (low - 1, high + 1):
        answer = put(bad)
        assert answer.status_code == 400 and paths[field] in answer.json(), bad
