"""The admin shows gateway objects, never writes them, and never shows a secret."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from gateway.models import ConsumerKey, JWTProvider
from tests.gateway.helpers import HS_SECRET

pytestmark = pytest.mark.django_db


def test_the_admin_is_view_only_and_shows_no_secret(api: APIClient, admin_user: User) -> None:
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
    staff = Client()
    staff.force_login(admin_user)
    pages = [
        f"/admin/gateway/jwtprovider/{JWTProvider.objects.get().pk}/change/",
        f"/admin/gateway/consumerkey/{ConsumerKey.objects.get().pk}/change/",
        "/admin/gateway/consumerkey/",
        "/admin/gateway/jwtprovider/",
    ]
    for page in pages:
        response = staff.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert HS_SECRET not in html and key["key_hash"] not in html, page
    assert staff.get("/admin/gateway/consumer/add/").status_code == 403
    pk = JWTProvider.objects.get().pk
    response = staff.post(f"/admin/gateway/jwtprovider/{pk}/change/", {"issuer": "https://evil"})
    assert response.status_code == 403
    assert JWTProvider.objects.get().issuer == "https://idp"
