"""The topology API shares one aggregation per (window, revision) with the
consoles: a second reader within the second reads no metrics window."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring import topology
from monitoring.models import EdgeWindow

pytestmark = pytest.mark.django_db


def edge(requests: int) -> EdgeWindow:
    return EdgeWindow.objects.create(window_end=timezone.now(), seconds=10, node="host-a",
                                     source="orders", destination="payments", requests=requests)


def reads_windows(queries: CaptureQueriesContext) -> bool:
    return any(EdgeWindow._meta.db_table in q["sql"] for q in queries.captured_queries)


def test_a_second_reader_reuses_the_aggregation(api: APIClient) -> None:
    edge(30)
    first = api.get("/api/v1/topology/").json()
    with CaptureQueriesContext(connection) as again:
        second = api.get("/api/v1/topology/").json()
    assert second == first and first["edges"][0]["requests"] == 30
    assert not reads_windows(again)


def test_a_mesh_change_is_shown_at_once(api: APIClient) -> None:
    api.get("/api/v1/topology/")
    api.post("/api/v1/services/", {"name": "payments"}, format="json")  # a new revision
    nodes = api.get("/api/v1/topology/").json()["nodes"]
    assert [n["name"] for n in nodes] == ["payments"]


def test_traffic_is_recomputed_once_the_snapshot_is_old(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge(30)
    api.get("/api/v1/topology/")
    edge(20)  # traffic moves without a revision
    monkeypatch.setattr(topology, "SHARED_MAX_AGE_S", 0.0)
    monkeypatch.setattr(topology, "SHARED_STALE_S", 0.0)
    assert api.get("/api/v1/topology/").json()["edges"][0]["requests"] == 50


@pytest.mark.django_db(transaction=True)  # the refresh runs on its own connection
def test_an_old_snapshot_is_served_while_one_thread_recomputes_it(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge(30)
    api.get("/api/v1/topology/")
    edge(20)
    monkeypatch.setattr(topology, "SHARED_MAX_AGE_S", 0.0)  # old at once, not stale
    stale = api.get("/api/v1/topology/").json()
    assert stale["edges"][0]["requests"] == 30  # answered without waiting
    refresh = topology._refreshing.get(60)
    if refresh is not None:
        refresh.join(30)
    monkeypatch.setattr(topology, "SHARED_MAX_AGE_S", 60.0)
    assert api.get("/api/v1/topology/").json()["edges"][0]["requests"] == 50


def test_windows_are_kept_separately_and_bounded(api: APIClient) -> None:
    for seconds in range(1, topology.SHARED_WINDOWS + 5):
        body = api.get(f"/api/v1/topology/?window={seconds}s").json()
        assert body["window_seconds"] == seconds
    assert len(topology._shared) == topology.SHARED_WINDOWS
    assert max(topology._shared) == topology.SHARED_WINDOWS + 4


def test_readers_share_one_encoding_of_the_same_snapshot(api: APIClient) -> None:
    edge(30)
    first = api.get("/api/v1/topology/")
    assert first["Content-Type"] == "application/json"
    second = api.get("/api/v1/topology/")
    assert second.content == first.content
    (entry,) = topology._shared.values()
    assert entry.encoded is not None and entry.encoded == first.content
    assert second.json()["edges"][0]["requests"] == 30
