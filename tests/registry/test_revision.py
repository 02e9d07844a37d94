"""mesh_change: the one way a change reaches agents, blocking queries and consoles."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from journal.models import AuditEntry, Event, EventKind
from journal.records import AuditNote, EventNote
from registry import notify
from registry.models import SECURITY_KEY, MeshIndex, MeshRevision
from registry.revision import NotInTransaction, mesh_change

pytestmark = pytest.mark.django_db


def test_outside_a_transaction_it_refuses(transactional_db: None) -> None:
    with pytest.raises(NotInTransaction):
        mesh_change(services={"payments"})
    assert MeshRevision.current() == 0


def test_revision_events_audit_and_fan_out_go_together(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(
        notify, "_fan_out", lambda revision, names, keys: sent.append((revision, names, keys))
    )
    alice = User.objects.create_user("alice")
    before = MeshRevision.current()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        revision = mesh_change(
            services={"payments", "orders"},
            events=[EventNote(kind=EventKind.CONFIG, message="one"),
                    EventNote(kind=EventKind.CONFIG, message="two")],
            audit=[AuditNote(alice, "update", "service", "payments", {"a": 1}, {"a": 2}),
                   AuditNote(None, "update", "service", "orders", None, None)],
        )
        assert sent == []  # nothing leaves before the commit
    assert revision == before + 1 == MeshRevision.current()
    assert sorted(Event.objects.values_list("message", "revision")) == [
        ("one", revision), ("two", revision)
    ]
    # Writes by nobody (an agent, a worker) are events only.
    assert list(AuditEntry.objects.values_list("actor", "object_id")) == [("alice", "payments")]
    assert sent == [(revision, ["orders", "payments"], ["service:orders", "service:payments"])]
    assert MeshIndex.of(["service:payments"]) == revision == MeshIndex.of(["service:orders"])
    assert MeshIndex.of(["service:users"]) == 0


def test_a_rolled_back_change_leaves_no_revision_event_or_message(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(notify, "_fan_out", lambda revision, names, keys: sent.append(revision))
    before = MeshRevision.current()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        mesh_change(events=[EventNote(kind=EventKind.CONFIG, message="lost")])
        raise RuntimeError("the write failed")
    assert MeshRevision.current() == before
    assert not Event.objects.exists() and sent == []


def test_changes_inside_one_revision_share_it(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from registry.revision import one_revision

    sent: list[Any] = []
    monkeypatch.setattr(
        notify, "_fan_out", lambda revision, names, keys: sent.append((revision, names))
    )
    before = MeshRevision.current()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), one_revision():
        first = mesh_change(services={"payments"}, events=[EventNote(kind="config", message="a")])
        second = mesh_change(services={"orders"}, events=[EventNote(kind="config", message="b")])
    assert first == second == before + 1 == MeshRevision.current()
    assert set(Event.objects.values_list("revision", flat=True)) == {first}
    assert [r for r, _ in sent] == [first, first]  # each fan-out names the one revision
    # After the block, changes bump again.
    with transaction.atomic():
        assert mesh_change(services={"payments"}) == first + 1


def test_other_index_keys_move_and_are_sent(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[tuple[int, list[str], list[str]]] = []
    monkeypatch.setattr(
        notify, "_fan_out", lambda revision, names, keys: sent.append((revision, names, keys))
    )
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        revision = mesh_change(keys=[SECURITY_KEY])
    assert MeshIndex.of([SECURITY_KEY]) == revision
    assert MeshIndex.of(["service:payments"]) == 0
    assert sent == [(revision, [], [SECURITY_KEY])]
