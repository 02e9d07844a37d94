"""Report windows with the route fields (subset, route, consumer, statuses):
validated by the report, stored by both ingest paths, and the topology's edge
per subset (issue 12: v1 against v2 on the page that launched the canary)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from agents.runtime import histogram
from monitoring import ingest
from monitoring.models import EdgeWindow
from registry.models import MeshRevision
from tests.agents.test_api_agents import enroll

pytestmark = pytest.mark.django_db


def _window(subset: str, requests: int, errors: int, latency_ms: float, **extra: Any) -> dict[str, Any]:
    buckets = histogram.empty()
    buckets[histogram.bucket_index(latency_ms)] = requests
    return {"source": "orders", "destination": "payments", "window_end": time.time(), "seconds": 2.0,
            "requests": requests, "errors": errors, "buckets": buckets, "subset": subset, **extra}


def _report(client: APIClient, agent_id: str, windows: list[dict[str, Any]]) -> Any:
    return client.post(f"/api/v1/agents/{agent_id}/report/", {"metrics": windows}, format="json")


def test_route_fields_are_stored_and_the_topology_shows_each_subset(api: APIClient) -> None:
    client, body = enroll()
    windows = [
        _window("v1", 90, 1, 3.0, route="canary-api",
                statuses={"2xx": 89, "5xx": 1}),
        _window("v2", 10, 5, 40.0, route="canary-api", consumer="alice",
                statuses={"2xx": 5, "5xx": 5}),
        _window("", 50, 0, 3.0),
    ]
    assert _report(client, body["agent_id"], windows).status_code == 200
    assert ingest.metrics_ingest() == 3
    rows = {w.subset: w for w in EdgeWindow.objects.all()}
    assert rows["v1"].route == "canary-api" and rows["v1"].statuses == {"2xx": 89, "5xx": 1}
    assert rows["v2"].consumer == "alice"
    assert rows[""].route == "" and rows[""].statuses is None
    edge = api.get("/api/v1/topology/?window=60s").json()["edges"][0]
    assert (edge["requests"], edge["errors"]) == (150, 6)  # the totals, as before
    assert sorted(edge["subsets"]) == ["v1", "v2"]
    v1, v2 = edge["subsets"]["v1"], edge["subsets"]["v2"]
    assert (v1["requests"], v1["errors"], v1["rps"]) == (90, 1, 1.5)
    assert (v2["requests"], v2["errors"], v2["error_rate"]) == (10, 5, 0.5)
    assert v1["p99_ms"] is not None and v1["p99_ms"] < 10 < 30 < v2["p50_ms"] <= 51.2


def test_without_redis_the_bulk_path_keeps_the_route_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_redis", redis.Redis(host="127.0.0.1", port=1,
                                                      socket_connect_timeout=0.5))
    client, body = enroll()
    assert _report(client, body["agent_id"],
                   [_window("v2", 4, 0, 3.0, route="r", statuses={"4xx": 4})]).status_code == 200
    row = EdgeWindow.objects.get()
    assert (row.subset, row.route, row.consumer, row.statuses) == ("v2", "r", "", {"4xx": 4})


def test_windows_without_the_new_fields_still_count_as_no_subset(api: APIClient) -> None:
    client, body = enroll()
    window = _window("", 7, 0, 3.0)
    del window["subset"]
    assert _report(client, body["agent_id"], [window]).status_code == 200
    ingest.metrics_ingest()
    assert EdgeWindow.objects.get().subset == ""
    assert api.get("/api/v1/topology/").json()["edges"][0]["subsets"] == {}


@pytest.mark.parametrize(
    "extra",
    [
        {"subset": "V2"},
        {"subset": "x" * 64},
        {"route": "no spaces"},
        {"consumer": 7},
        {"statuses": {"6xx": 1}},
        {"statuses": {"2xx": -1}},
        {"statuses": {"2xx": "many"}},
        {"statuses": [1, 2]},
    ],
)
def test_bad_route_fields_are_400_and_store_nothing(extra: dict[str, Any]) -> None:
    client, body = enroll()
    revision = MeshRevision.current()
    response = _report(client, body["agent_id"], [{**_window("v1", 1, 0, 3.0), **extra}])
    assert response.status_code == 400, response.content
    assert ingest.metrics_backlog() == 0 and not EdgeWindow.objects.exists()
    assert MeshRevision.current() == revision
