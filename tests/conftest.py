"""Shared fixtures: a fixed cast of users and API clients."""

from __future__ import annotations

from collections.abc import Iterator

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
    from registry import pacing

    topology._shared.clear()
    upstreams_cache.clear()  # keyed by index, which restarts with each test database
    security_cache.clear()
    pacing.forget_fleet_size()  # counted from the test database


@pytest.fixture(autouse=True)
def _enroll_budget_untouched() -> Iterator[None]:
    # The enrollment throttle (60/min per address) lives in the shared cache (Redis),
    # which outlives a test: one test's enrollments must not use up a later test's.
    yield
    from django.core.cache import cache

    try:
        cache.delete("throttle_anon_127.0.0.1")
    except Exception:  # a test that stops Redis on purpose
        pass


@pytest.fixture(autouse=True)
def _empty_metrics_stream() -> None:
    # Reports push traffic windows onto a Redis stream (monitoring.ingest) that
    # outlives the test database: each test starts with none pending.
    from monitoring import ingest

    try:
        ingest._client().delete(ingest.stream_key())
    except Exception:  # a test that stops Redis on purpose must still start
        pass
