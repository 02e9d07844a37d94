"""The fleet's report pace (registry/pacing.py): the interval stretches past
MESH_REPORT_BUDGET reports per second, the heartbeat TTL follows it, and agents
are told in the snapshot and in each report's answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents.enrollment import enrollment_token_create
from registry import pacing
from registry.models import Node
from tests.agents.test_api_agents import SERVICES, enroll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_count() -> Iterator[None]:
    pacing.forget_fleet_size()
    yield
    pacing.forget_fleet_size()


@pytest.mark.parametrize(("agents", "interval_ms", "ttl_s"), [
    (0, 2000, 15), (200, 2000, 15), (201, 2500, 19), (500, 5000, 38),
    (1000, 10_000, 75), (2000, 20_000, 150), (1_000_000, 60_000, 450),
])
def test_the_interval_stretches_past_the_budget(agents: int, interval_ms: int, ttl_s: int) -> None:
    assert pacing.report_interval_ms(agents) == interval_ms
    assert pacing.heartbeat_ttl_s(agents) == ttl_s


def test_a_budget_of_zero_never_stretches_and_the_ttl_scales_from_the_setting(settings: Any) -> None:
    settings.MESH_REPORT_BUDGET = 0
    assert pacing.report_interval_ms(5000) == 2000
    settings.MESH_REPORT_BUDGET = 10
    settings.MESH_HEARTBEAT_TTL = 3  # a small fleet keeps the setting exactly
    assert pacing.heartbeat_ttl_s(20) == 3
    assert pacing.report_interval_ms(100) == 10_000
    assert pacing.heartbeat_ttl_s(100) == 15


def test_the_fleet_is_the_hosts_with_an_agent_counted_once_in_a_while() -> None:
    Node.objects.create(name="api-registered")  # instances registered by API: no agent
    enroll("host-a")
    enroll("host-b", token=enrollment_token_create())
    pacing.forget_fleet_size()
    assert pacing.fleet_size() == 2
    enroll("host-c", token=enrollment_token_create())
    assert pacing.fleet_size() == 2  # cached for FLEET_CACHE_S
    pacing.forget_fleet_size()
    assert pacing.fleet_size() == 3


def test_snapshot_and_report_answer_carry_the_interval(settings: Any) -> None:
    client, body = enroll()
    settings.MESH_REPORT_BUDGET = 1  # one agent, one report a second: 2 s still
    config = client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()
    assert config["report_interval_ms"] == 2000
    enroll("host-b", token=enrollment_token_create())
    enroll("host-c", token=enrollment_token_create())
    pacing.forget_fleet_size()  # three agents at one a second: every 3 s
    answer = client.post(f"/api/v1/agents/{body['agent_id']}/report/", {"services": SERVICES},
                         format="json").json()
    assert answer["report_interval_ms"] == 3000
    assert client.get(f"/api/v1/agents/{body['agent_id']}/config/").json()[
        "report_interval_ms"] == 3000
