"""A path under /api/ that no route matches is a JSON 404 in DRF's shape, as every other
API error is; it was the console's HTML page. Console paths keep the styled page."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nonexistent/",
        "/api/v1/agents/not-a-uuid/config/",
        "/api/v1/services/payments/instances/x/y/z/",
        "/api/v2/services/",
    ],
)
def test_an_unknown_api_path_is_a_json_404(api: APIClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_console_path_keeps_the_styled_page(api: APIClient, admin_user) -> None:
    api.force_login(admin_user)
    response = api.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Not found" in response.content
