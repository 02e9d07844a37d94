"""The gateway page: gateways with their routes in match order, consumers by key
prefix, providers; never a key, a key hash or a secret."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

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
