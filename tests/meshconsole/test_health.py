"""/healthz and /readyz: GET and HEAD (load balancers probe with either) answer; any
other method is a 405 naming them, not the CSRF middleware's HTML 403 page."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_answers_like_get(path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_method_is_405_not_a_csrf_page(path: str, method: str) -> None:
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(path)
    assert response.status_code == 405, response.content[:200]
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
