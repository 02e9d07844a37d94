"""Push-empty protection, control-plane side: the snapshot says how many
instances an operator withheld and how long agents hold an emptied list; a
change that leaves a service with no instance by deregistration is a warning."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents.models import Agent
from agents.runtime.admission import admit
from agents.runtime.snapshot import parse_snapshot
from agents.snapshot import agent_snapshot
from journal.models import Event, Severity
from registry import services as registry_services
from registry.control import instances_control
from registry.models import Node
from tests.policies.helpers import instance, service

pytestmark = pytest.mark.django_db


def consumer() -> Agent:
    node = Node.objects.create(name="host-a")
    return Agent.objects.create(node=node, token_hash="x", upstreams=[{"service": "payments"}])


def warnings() -> list[Event]:
    return list(Event.objects.filter(severity=Severity.WARNING, data__push_empty=True))


@override_settings(MESH_PUSH_EMPTY_HOLD=45)
def test_deregistering_the_last_instance_warns_and_agents_hold_the_endpoints() -> None:
    payments = service("payments")
    one, two = instance(payments, 1), instance(payments, 2)
    agent = consumer()
    before = parse_snapshot(agent_snapshot(agent=agent))
    registry_services.instance_deregister(user=None, instance=one)
    assert warnings() == []  # one is left
    registry_services.instance_deregister(user=None, instance=two)
    [warning] = warnings()
    assert "payments" in warning.message and "45s" in warning.message
    raw = agent_snapshot(agent=agent)
    assert raw["push_empty_hold_ms"] == 45_000
    assert raw["upstreams"]["payments"]["endpoints"] == []
    assert raw["upstreams"]["payments"]["withheld"] == 0
    held = admit(raw, before, holds={}, now=0.0)
    assert len(held.snapshot.upstreams["payments"].endpoints) == 2


def test_maintenance_of_every_instance_is_withheld_and_believed_at_once(
    admin_user: object,
) -> None:
    payments = service("payments")
    instance(payments, 1)
    instance(payments, 2)
    agent = consumer()
    before = parse_snapshot(agent_snapshot(agent=agent))
    instances_control(user=admin_user, service=payments, action="maintenance")  # type: ignore[arg-type]
    raw = agent_snapshot(agent=agent)
    assert raw["upstreams"]["payments"]["withheld"] == 2
    after = admit(raw, before, holds={}, now=0.0)
    assert after.snapshot.upstreams["payments"].endpoints == () and after.held == {}
    assert warnings() == []


def test_deleting_a_service_with_instances_warns() -> None:
    payments = service("payments")
    instance(payments, 1)
    registry_services.service_delete(user=None, service=payments)
    assert len(warnings()) == 1
