"""Outlier ejections reported by agents become events."""

from __future__ import annotations

from typing import Any

import pytest

from journal.models import Event
from tests.agents.test_api_agents import enroll

pytestmark = pytest.mark.django_db

EJECTED = {"service": "payments", "endpoint": "ab12cd34ef56ab78", "address": "10.0.0.5", "port": 8080,
           "event": "ejected", "reason": "5 consecutive 5xx", "duration_ms": 30000, "at": 1764086400.5}


def test_ejection_and_return_are_recorded_as_events_of_the_agent() -> None:
    client, body = enroll()
    returned = dict(EJECTED, event="returned", reason="", duration_ms=0)
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/",
                           {"ejections": [EJECTED, returned]}, format="json")
    assert response.status_code == 200, response.content
    ejected, back = Event.objects.filter(kind="ejection").order_by("id")
    assert (ejected.service, ejected.instance, ejected.actor) == ("payments", "ab12cd34ef56ab78", "agent:host-a")
    assert ejected.severity == "warning"
    assert "30s" in ejected.message and "5 consecutive 5xx" in ejected.message
    assert ejected.data["duration_ms"] == 30000 and ejected.data["reason"] == "5 consecutive 5xx"
    assert back.severity == "info" and back.data["event"] == "returned"


@pytest.mark.parametrize(
    "ejection",
    [
        dict(EJECTED, event="vanished"),
        dict(EJECTED, port=0),
        dict(EJECTED, service="Not A Service"),
        dict(EJECTED, duration_ms=-1),
        dict(EJECTED, endpoint="../etc"),
        {k: v for k, v in EJECTED.items() if k != "service"},
    ],
)
def test_bad_ejection_is_400_and_records_nothing(ejection: dict[str, Any]) -> None:
    client, body = enroll()
    response = client.post(f"/api/v1/agents/{body['agent_id']}/report/",
                           {"ejections": [ejection]}, format="json")
    assert response.status_code == 400
    assert "ejections" in response.json()
    assert not Event.objects.filter(kind="ejection").exists()
