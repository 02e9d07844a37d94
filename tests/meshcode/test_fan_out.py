"""An apply reaches agents as one revision, announced once after the commit."""

from __future__ import annotations

from typing import Any

import pytest

from meshcode.apply import mesh_apply
from meshcode.plan import InvalidDocuments
from registry import notify
from registry.models import MeshRevision

pytestmark = pytest.mark.django_db

MESH = [
    {"kind": "Service", "name": "a"},
    {"kind": "Service", "name": "b"},
    {"kind": "TrafficPolicy", "name": "a", "failover": {"targets": ["b"]}},
]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[str], list[str]]]:
    calls: list[tuple[int, list[str], list[str]]] = []
    monkeypatch.setattr(
        notify, "_fan_out", lambda revision, names, keys: calls.append((revision, names, keys))
    )
    return calls


def test_an_apply_is_announced_once_with_its_revision(
    sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = mesh_apply(user=None, documents=MESH)
    assert sent == [(result.revision, ["a", "b"], ["service:a", "service:b"])]
    assert result.revision == MeshRevision.current()


def test_a_dry_run_or_a_refused_apply_announces_nothing(
    sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        mesh_apply(user=None, documents=MESH, dry_run=True)
        with pytest.raises(InvalidDocuments):
            mesh_apply(user=None, documents=[*MESH, {"kind": "TrafficPolicy", "name": "c"}])
    assert sent == []
    assert MeshRevision.current() == 0
