"""The gateway page: gateways with their routes in match order, consumers by key
prefix, providers; never a key, a key hash or a secret."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from meshconsole.models import Role
from meshconsole.roles import user_role_set
from tests.gateway.helpers import HS_SECRET, enroll, route, service

pytestmark = pytest.mark.django_db


def test_the_page_lists_gateways_routes_consumers_without_secrets(
    api: APIClient, viewer: User
) -> None:
    service("orders")
    enroll("gw-1", gateway="edge")
    api.post("/api/v1/gateway/consumers/", {"name": "alice"}, format="json")
    key = api.post("/api/v1/gateway/consumers/alice/keys/", {}, format="json").json()
    provider = {
        "name": "corp",
        "algorithms": ["HS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "secret": HS_SECRET,
    }
    api.post("/api/v1/gateway/jwt-providers/", provider, format="json")
    table = [
        route("catch-all", path={"prefix": "/"}),
        route("exact", hosts=["api.example.com"], auth={"type": "key", "consumers": ["alice"]}),
    ]
    assert (
        api.put("/api/v1/gateway/edge/routes/", {"routes": table}, format="json").status_code == 200
    )
    client = Client()
    client.force_login(viewer)
    response = client.get("/gateway/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-gateway="edge"' in html and "gw-1" in html
    assert html.index('data-route="exact"') < html.index('data-route="catch-all"')
    assert f'data-key="{key["prefix"]}"' in html and 'data-provider="corp"' in html
    for secret in (key["key"], key["key_hash"], HS_SECRET):
        assert secret not in html
    assert Client().get("/gateway/").status_code == 302  # the login page


EDITORS = ('id="route-dialog"', 'id="new-consumer"', 'id="new-gateway"', "data-new-route=",
           "data-edit-route=", "data-delete-route=", "data-new-key=", "data-revoke-key=",
           'id="gateway-data"', "console/gateway.js", 'id="new-provider"', 'id="provider-dialog"',
           "data-edit-provider=", "data-delete-provider=", "console/gateway-providers.js")
PROVIDER = {"name": "corp", "algorithms": ["HS256"], "issuer": "https://idp", "audience": "orders",
            "secret": HS_SECRET}


def _world(api: APIClient) -> None:
    service("orders")
    api.post("/api/v1/gateway/", {"name": "edge"}, format="json")
    api.post("/api/v1/gateway/consumers/", {"name": "alice"}, format="json")
    api.post("/api/v1/gateway/consumers/alice/keys/", {}, format="json")
    api.post("/api/v1/gateway/edge/routes/", route("orders-api"), format="json")
    assert api.post("/api/v1/gateway/jwt-providers/", PROVIDER, format="json").status_code == 201


def test_an_admin_gets_the_editors_and_the_documents_without_a_key(
    api: APIClient, admin_user: User
) -> None:
    _world(api)
    client = Client()
    client.force_login(admin_user)
    html = client.get("/gateway/").content.decode()
    for control in EDITORS:
        assert control in html
    assert 'id="gateway-read-only"' not in html
    data = html.split('id="gateway-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert '"orders-api"' in data and '"version": 1' in data
    assert "key_hash" not in data and "sha256:" not in data
    docs = json.loads(data)["provider_docs"]
    assert docs["corp"]["secret_set"] is True and "secret" not in docs["corp"]
    assert HS_SECRET not in html


@pytest.mark.parametrize("role, scope", [("viewer", ""), ("operator", ""), ("admin", "team=a")])
def test_others_get_no_editor_and_their_writes_are_refused(
    api: APIClient, viewer: User, role: str, scope: str
) -> None:
    _world(api)
    user_role_set(user=viewer, role=Role(role), scope=scope)
    client = Client()
    client.force_login(viewer)
    html = client.get("/gateway/").content.decode()
    assert 'id="gateway-read-only"' in html and 'data-route="orders-api"' in html
    assert 'data-provider="corp"' in html and HS_SECRET not in html
    for control in EDITORS:
        assert control not in html
    for method, path, body in (
        ("post", "/api/v1/gateway/edge/routes/", route("other")),
        ("delete", "/api/v1/gateway/edge/routes/orders-api/", None),
        ("post", "/api/v1/gateway/consumers/alice/keys/", {}),
        ("put", "/api/v1/gateway/jwt-providers/corp/", PROVIDER),
        ("delete", "/api/v1/gateway/jwt-providers/corp/", None),
    ):
        answer = getattr(client, method)(path, body, content_type="application/json")
        assert answer.status_code == 403, (method, path)
