"""The service page draws the routes editor only for those whose role may write
the service's routes (an admin, or an admin scoped to one of its tags); the
others get the read-only panel, and the API refuses them either way."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from meshconsole.models import Role
from meshconsole.roles import user_role_set
from registry import services

pytestmark = pytest.mark.django_db

EDITOR = ('id="routes-form"', 'id="routes-editor"', "console/routes-editor.js")


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
