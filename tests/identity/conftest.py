"""The enrollment throttle (60/min per address) lives in the shared cache: the few
HTTP enrollments of these tests must not use up the budget of later tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _enroll_budget_untouched() -> Iterator[None]:
    yield
    cache.delete("throttle_anon_127.0.0.1")
