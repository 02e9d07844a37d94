"""Coalescing the after-commit fan-out of a batch of changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from registry import notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        notify, "publish_revision", lambda value, keys=None: calls.append(("rev", value))
    )
    monkeypatch.setattr(
        notify, "_group_send", lambda group, message: calls.append((group, message))
    )
    return calls


def test_a_single_change_is_sent_at_its_commit(
    sent: list[tuple[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        notify.after_commit(revision=7, services={"payments"})
    assert sent == [
        ("rev", 7),
        ("topology", {"type": "topology.changed", "revision": 7}),
        ("service.payments", {"type": "service.changed", "service": "payments"}),
    ]


def test_a_batch_sends_the_latest_revision_and_each_group_once(
    sent: list[tuple[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), notify.batch():
        for revision, name in ((3, "payments"), (4, "orders"), (5, "payments")):
            notify.after_commit(revision=revision, services={name})
        with notify.batch():  # nested: the outer batch sends
            notify.after_commit(revision=6, services={"orders"})
    assert sent == [
        ("rev", 6),
        ("topology", {"type": "topology.changed", "revision": 6}),
        ("service.orders", {"type": "service.changed", "service": "orders"}),
        ("service.payments", {"type": "service.changed", "service": "payments"}),
    ]


def test_a_rolled_back_change_of_a_batch_is_not_sent(
    sent: list[tuple[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), notify.batch():
        notify.after_commit(revision=3, services={"payments"})
        with pytest.raises(RuntimeError), transaction.atomic():
            notify.after_commit(revision=4, services={"orders"})
            raise RuntimeError
    assert [c[0] for c in sent] == ["rev", "topology", "service.payments"]
    assert sent[0] == ("rev", 3)


def test_a_long_batch_does_not_hold_waiters(
    sent: list[tuple[str, Any]],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notify, "FLUSH_AFTER", 0.0)
    with django_capture_on_commit_callbacks(execute=True), notify.batch():
        notify.after_commit(revision=3, services={"payments"})
        notify.after_commit(revision=4, services={"payments"})
    assert [value for kind, value in sent if kind == "rev"] == [3, 4]
