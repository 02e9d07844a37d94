"""Shared fixtures: a fixed cast of users and API clients."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshconsole.apitokens import api_token_create


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create_superuser("alice", "alice@example.com", "alice-password-1")


@pytest.fixture
def viewer(db: None) -> User:
    return User.objects.create_user("victor", "victor@example.com", "victor-password-1")


@pytest.fixture
def api(admin_user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=admin_user)}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _fresh_shared_topology() -> None:
    # The shared topology is keyed by mesh revision, which restarts with each
    # test database; production revisions only grow.
    from agents.snapshot import security_cache, upstreams_cache
    from monitoring import topology

    topology._shared.clear()
    upstreams_cache.clear()  # keyed by index, which restarts with each test database
    security_cache.clear()
