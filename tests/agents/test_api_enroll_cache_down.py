"""Enrollment while the cache (Redis) does not answer: a clear 503, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents.enrollment import enrollment_token_create
from agents.models import Agent


@pytest.mark.django_db
def test_enroll_with_the_cache_down_answers_503_with_a_json_error(tmp_path: Path) -> None:
    token = enrollment_token_create()
    # A real Redis client pointed at a socket nobody listens on: connection refused.
    dead = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"unix://{tmp_path / 'no-redis.sock'}",
        }
    }
    with override_settings(CACHES=dead):
        response = APIClient().post(
            "/api/v1/agents/enroll/",
            {"token": token, "node": "host-a", "zone": "zone-1", "version": "0.1.0", "upstreams": []},
            format="json",
        )
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert "retry" in response.json()["detail"]
    assert not Agent.objects.exists()

    # The cache back: the same token enrolls.
    response = APIClient().post(
        "/api/v1/agents/enroll/",
        {"token": token, "node": "host-a", "zone": "zone-1", "version": "0.1.0", "upstreams": []},
        format="json",
    )
    assert response.status_code == 201, response.content
