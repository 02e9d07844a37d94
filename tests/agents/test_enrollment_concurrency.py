"""Enrollments racing for a token's uses (PostgreSQL: real concurrent writers).
The use is claimed by the last statement of the enrollment's transaction, so a
fleet enrolling with one token does not queue on its row; the conditional UPDATE
still lets exactly max_uses of them through, and a loser leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agents.enrollment import EnrollmentRefused, agent_enroll, enrollment_token_create
from agents.models import Agent, EnrollmentToken
from registry.models import Node
from tests.identity.test_concurrency import race

pytestmark = pytest.mark.django_db(transaction=True)


def test_racing_enrollments_take_exactly_the_tokens_uses() -> None:
    raw = enrollment_token_create(max_uses=3)
    names = iter(f"host-{i}" for i in range(8))
    lock = threading.Lock()

    def enroll() -> Any:
        with lock:
            node = next(names)
        return agent_enroll(token=raw, node=node, zone="zone-1", version="0.1.0",
                            upstreams=[], address="127.0.0.1")

    results = race(8, enroll)
    refused = [r for r in results if isinstance(r, EnrollmentRefused)]
    enrolled = [r for r in results if not isinstance(r, Exception)]
    assert (len(enrolled), len(refused)) == (3, 5), results
    assert EnrollmentToken.objects.get().uses == 3
    assert Agent.objects.count() == 3
    # A refused enrollment rolled back its node too.
    assert set(Node.objects.values_list("name", flat=True)) == {
        e.agent.node.name for e in enrolled}
