"""meshconsole.api.SerializerPool: the same answers and errors as a new serializer per
request, with instances reused (and never shared by two requests at once)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rest_framework import serializers

from agents.api.serializers import ReportSerializer
from meshconsole.api import SerializerPool


def fresh(data: Any) -> tuple[bool, Any]:
    s = ReportSerializer(data=data)
    return (True, s.validated_data) if s.is_valid() else (False, s.errors)


def pooled(pool: SerializerPool[ReportSerializer], data: Any) -> tuple[bool, Any]:
    try:
        return True, pool.validate(data)
    except serializers.ValidationError as exc:
        return False, exc.detail


GOOD = {"version": "0.1.0", "applied_revision": 3,
        "services": [{"name": "orders", "address": "127.0.0.1", "port": 8080}]}
BAD = [
    {"version": 5},
    {"applied_revision": -1, "services": [{"name": "Bad Name", "port": 0}]},
    {"services": [{"name": "orders", "address": "127.0.0.1", "port": 1, "check": {"x": 1}}]},
    ["not", "an", "object"],
    "text",
]


@pytest.mark.parametrize("data", [GOOD, *BAD])
def test_the_pool_answers_as_a_new_serializer_does(data: Any) -> None:
    pool: SerializerPool[ReportSerializer] = SerializerPool(ReportSerializer)
    for _ in range(3):  # the same instance, used again after errors
        assert pooled(pool, data) == fresh(data)


def test_instances_are_reused_and_never_shared_at_once() -> None:
    built: list[int] = []

    class Counting(ReportSerializer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)

    pool: SerializerPool[Counting] = SerializerPool(Counting)
    for _ in range(20):
        pool.validate(GOOD)
    assert len(built) == 1
    errors: list[str] = []

    def work(i: int) -> None:
        for j in range(50):
            data = {**GOOD, "applied_revision": i * 1000 + j}
            ok, answer = pooled(pool, data)
            if not ok or answer["applied_revision"] != i * 1000 + j:
                errors.append(f"{i}/{j}: {answer}")
            ok, answer = pooled(pool, BAD[1])
            if ok or "applied_revision" not in answer:
                errors.append(f"{i}/{j}: bad passed: {answer}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= len(built) <= 6
