"""The agent snapshot carries each upstream's policy, priorities, health and failover."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents.models import Agent
from agents.snapshot import agent_snapshot
from policies.models import FailoverState, TrafficPolicy
from registry.models import Instance, Node
from tests.policies.helpers import instance, service

pytestmark = pytest.mark.django_db


def agent(*upstreams: str) -> Agent:
    node = Node.objects.create(name="host-a", zone="zone-1")
    return Agent.objects.create(
        node=node, token_hash="x", upstreams=[{"service": name} for name in upstreams]
    )


def test_snapshot_carries_the_saved_policy() -> None:
    payments = service("payments")
    TrafficPolicy.objects.create(
        service=payments, load_balancer="ring_hash", hash_on="header", hash_key="x-user",
        retry_on=["5xx"], rate_limit_rps=10, rate_limit_burst=20,
    )
    upstream = agent_snapshot(agent=agent("payments"))["upstreams"]["payments"]
    policy = upstream["policy"]
    assert policy["load_balancer"] == "ring_hash"
    assert policy["hash_on"] == {"type": "header", "name": "x-user"}
    assert policy["retries"]["on"] == ["5xx"]
    assert policy["rate_limit"] == {"rps": 10.0, "burst": 20}
    assert upstream["failover"] == {"active_target": "", "reason": ""}


def test_endpoints_list_enabled_instances_with_status_and_zone_priority() -> None:
    payments = service("payments")
    TrafficPolicy.objects.create(service=payments, zone_priority=["zone-2", "zone-1"])
    instance(payments, 1, zone="zone-1")
    instance(payments, 2, zone="zone-2", health="critical")
    instance(payments, 3, zone="zone-3", health="warning")
    maintenance = instance(payments, 4)
    Instance.objects.filter(pk=maintenance.pk).update(admin_state="maintenance")
    weightless = instance(payments, 5)
    Instance.objects.filter(pk=weightless.pk).update(weight=0)
    endpoints = agent_snapshot(agent=agent("payments"))["upstreams"]["payments"]["endpoints"]
    assert [(e["port"], e["status"], e["priority"]) for e in endpoints] == [
        (1, "passing", 1),
        (2, "critical", 0),
        (3, "warning", 2),
    ]


def test_without_zone_priority_every_endpoint_is_priority_0() -> None:
    payments = service("payments")
    instance(payments, 1, zone="zone-9")
    endpoints = agent_snapshot(agent=agent("payments"))["upstreams"]["payments"]["endpoints"]
    assert [e["priority"] for e in endpoints] == [0]


def test_active_failover_serves_the_target_endpoints_with_the_original_policy() -> None:
    payments, dr = service("payments"), service("payments-dr")
    TrafficPolicy.objects.create(
        service=payments, load_balancer="random", zone_priority=["zone-2"],
        failover_targets=["payments-dr"],
    )
    instance(payments, 1, health="critical")
    instance(dr, 9001, zone="zone-2")
    FailoverState.objects.create(
        service=payments, active_target="payments-dr", activated_at=timezone.now(),
        reason="payments has no healthy instance",
    )
    upstream = agent_snapshot(agent=agent("payments"))["upstreams"]["payments"]
    assert upstream["failover"] == {
        "active_target": "payments-dr", "reason": "payments has no healthy instance"
    }
    assert upstream["policy"]["load_balancer"] == "random"
    assert [(e["port"], e["priority"]) for e in upstream["endpoints"]] == [(9001, 0)]


def test_unknown_upstream_has_defaults_and_no_endpoints() -> None:
    upstream = agent_snapshot(agent=agent("ghost"))["upstreams"]["ghost"]
    assert upstream["endpoints"] == [] and upstream["policy"]["load_balancer"] == "round_robin"
