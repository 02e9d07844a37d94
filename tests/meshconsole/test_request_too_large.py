"""A request body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 in DRF's JSON shape,
naming the limit; Django's own answer was an empty HTML "Bad Request (400)"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from registry.models import Service

pytestmark = pytest.mark.django_db


def test_an_oversized_body_is_413_json_and_changes_nothing(
    api: APIClient, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "big", "description": "x" * 2000})
    response = api.generic("POST", "/api/v1/services/", body, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert "1000 bytes" in response.json()["detail"]
    assert not Service.objects.exists()


def test_a_body_under_the_limit_is_still_taken(api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "small", "description": "x" * 500})
    response = api.generic("POST", "/api/v1/services/", body, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
