"""Self-preservation: many agents silent at once are not believed dead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.expiry import SELF_PRESERVATION_KEY, agents_expire
from agents.models import Agent
from journal.models import Event
from registry.models import Instance, Node
from tests.policies.helpers import instance, service

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_flag(settings: Any) -> Iterator[None]:
    settings.MESH_HEARTBEAT_TTL = 10
    settings.MESH_SELF_PRESERVATION_PERCENT = 50
    cache.delete(SELF_PRESERVATION_KEY)
    yield
    cache.delete(SELF_PRESERVATION_KEY)


def fleet(count: int) -> list[Agent]:
    orders = service("orders")
    agents = []
    for n in range(count):
        node = Node.objects.create(name=f"host-{n}", zone="zone-1")
        agents.append(Agent.objects.create(node=node, token_hash=f"t{n}", last_seen=timezone.now()))
        created = instance(orders, 8000 + n)
        Instance.objects.filter(pk=created.pk).update(node=node, agent_managed=True)
    return agents


def go_silent(agents: list[Agent]) -> None:
    Agent.objects.filter(pk__in=[a.pk for a in agents]).update(
        last_seen=timezone.now() - timedelta(seconds=60)
    )


def come_back(agents: list[Agent]) -> None:
    Agent.objects.filter(pk__in=[a.pk for a in agents]).update(last_seen=timezone.now())


def warnings() -> list[Event]:
    return list(Event.objects.filter(message__startswith="self-preservation:"))


def test_most_agents_silent_at_once_keeps_their_instances_and_warns_once() -> None:
    agents = fleet(4)
    go_silent(agents[:3])
    assert agents_expire() == []
    assert agents_expire() == []
    assert not Instance.objects.filter(health="critical").exists()
    assert not Agent.objects.filter(silent=True).exists()
    (warning,) = warnings()
    assert warning.severity == "warning"
    assert warning.message == (
        "self-preservation: 3 of 4 agents silent at once; not marking their instances critical"
    )


def test_release_when_agents_return_resumes_normal_expiry() -> None:
    agents = fleet(4)
    go_silent(agents[:3])
    agents_expire()
    come_back(agents[:2])  # 1 of 4 silent now: under the threshold
    assert agents_expire() == ["host-2"]
    assert Event.objects.filter(message__startswith="self-preservation released", severity="info").count() == 1
    assert list(Instance.objects.filter(health="critical").values_list("port", flat=True)) == [8002]
    assert agents_expire() == []
    assert len(warnings()) == 1


def test_a_minority_going_silent_expires_normally() -> None:
    agents = fleet(4)
    go_silent(agents[:2])  # 50 %, not more than 50 %
    assert sorted(agents_expire()) == ["host-0", "host-1"]
    assert not warnings()


def test_fewer_than_three_agents_never_self_preserve() -> None:
    agents = fleet(2)
    go_silent(agents)
    assert sorted(agents_expire()) == ["host-0", "host-1"]
    assert not warnings()


def test_agents_silent_in_earlier_windows_do_not_count() -> None:
    agents = fleet(5)
    go_silent(agents[:1])
    assert agents_expire() == ["host-0"]  # 1 of 5
    go_silent(agents[1:3])  # 2 of the 4 still reporting: 50 %, not more
    assert sorted(agents_expire()) == ["host-1", "host-2"]
    assert not warnings()


def test_threshold_of_100_disables_self_preservation(settings: Any) -> None:
    settings.MESH_SELF_PRESERVATION_PERCENT = 100
    agents = fleet(3)
    go_silent(agents)
    assert len(agents_expire()) == 3
    assert not warnings()
