"""Topology time travel: a frame per minute, thinned and pruned, replayed by time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.models import TopologyFrame
from monitoring.tasks import record_topology_frame
from monitoring.timetravel import frame_record, frames_prune, minute_of

pytestmark = pytest.mark.django_db


def test_the_slider_replays_the_state_of_that_minute_with_its_changes(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    instance = api.post("/api/v1/services/payments/instances/",
                        {"address": "10.0.0.1", "port": 80}, format="json").json()
    then = timezone.now() - timedelta(minutes=5)
    frame_record(then)  # payments passing, five minutes ago
    patch = api.patch(f"/api/v1/services/payments/instances/{instance['id']}/",
                      {"maintenance": True}, format="json")
    assert patch.status_code == 200
    record_topology_frame()  # now: in maintenance

    history = api.get("/api/v1/topology/history/").json()
    assert history["frames"] == [minute_of(then).isoformat(),
                                 minute_of(timezone.now()).isoformat()]
    [mark] = [c for c in history["changes"] if c["object_type"] == "instance" and c["before"]]
    assert (mark["before"]["status"], mark["after"]["status"]) == ("passing", "maintenance")

    old = api.get("/api/v1/topology/history/at/", {"at": (then + timedelta(seconds=30)).isoformat()})
    assert old.status_code == 200
    [node] = old.json()["topology"]["nodes"]
    assert node["state"] == "passing"
    now = api.get("/api/v1/topology/history/at/", {"at": timezone.now().isoformat()}).json()
    assert now["topology"]["nodes"][0]["state"] == "maintenance"
    assert any(c["object_type"] == "instance" for c in now["changes"])  # marked in its minute


def test_before_any_frame_and_bad_times_are_clear_errors(api: APIClient) -> None:
    assert api.get("/api/v1/topology/history/at/", {"at": "2020-01-01T00:00:00Z"}).status_code == 404
    assert api.get("/api/v1/topology/history/at/").status_code == 400
    assert api.get("/api/v1/topology/history/at/", {"at": "yesterday"}).status_code == 400
    answer = api.get("/api/v1/topology/history/", {"since": "2026-01-02T00:00:00Z",
                                                   "until": "2026-01-01T00:00:00Z"})
    assert answer.status_code == 400


@override_settings(MESH_TIMETRAVEL_FINE=3600, MESH_TIMETRAVEL_RETENTION=4 * 3600)
def test_old_frames_are_thinned_then_dropped() -> None:
    now = minute_of(timezone.now()).replace(minute=30)
    for minutes in range(0, 5 * 60, 1):
        TopologyFrame.objects.create(minute=now - timedelta(minutes=minutes), topology={})
    frames_prune(now)
    minutes = [f.minute for f in TopologyFrame.objects.all()]
    fine = [m for m in minutes if m >= now - timedelta(hours=1)]
    coarse = [m for m in minutes if m < now - timedelta(hours=1)]
    assert len(fine) == 61  # every minute of the last hour
    assert coarse and all(m.minute % 10 == 0 for m in coarse)
    assert min(minutes) >= now - timedelta(hours=4)
    assert len(coarse) == 18  # hours 1 to 4, one per 10 minutes
