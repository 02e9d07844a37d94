"""The console's state label of a service (monitoring.topology.service_state_label):
operator states and an active failover are not drawn as a failure."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from monitoring.topology import service_state_label, service_state_payload, topology_nodes
from policies.models import FailoverState
from policies.services import policy_update
from registry import services
from registry.models import Instance, Service

pytestmark = pytest.mark.django_db


def make(user: User, name: str, ports: tuple[int, ...]) -> tuple[Service, list[Instance]]:
    service = services.service_create(user=user, data={"name": name, "check_type": "none"})
    made = [
        services.instance_register(
            user=user, service=service, data={"address": "127.0.0.1", "port": port}
        )
        for port in ports
    ]
    return service, made


def node(name: str) -> dict[str, object]:
    return next(dict(n) for n in topology_nodes() if n["name"] == name)


@pytest.mark.parametrize(
    ("passing", "total", "held", "failover", "label"),
    [
        (2, 2, {}, "", "passing"),
        (1, 2, {}, "", "warning"),
        (0, 2, {}, "", "critical"),
        (0, 0, {}, "", "empty"),
        (0, 2, {"maintenance": 2}, "", "maintenance"),
        (0, 2, {"draining": 1, "disabled": 1}, "", "draining"),
        (0, 1, {"disabled": 1}, "", "disabled"),
        (1, 2, {"maintenance": 1}, "", "passing"),  # the rest is held on purpose
        (0, 3, {"maintenance": 1}, "", "critical"),  # two of them do fail
        (0, 2, {}, "payments-dr", "failover"),
    ],
)
def test_state_label(
    passing: int, total: int, held: dict[str, int], failover: str, label: str
) -> None:
    assert (
        service_state_label(passing=passing, total=total, held=held, failover=failover) == label
    )


def test_a_service_in_maintenance_is_not_drawn_as_failing(admin_user: User) -> None:
    _, instances = make(admin_user, "payments", (8001, 8002))
    for instance in instances:
        services.instance_update(user=admin_user, instance=instance, data={"maintenance": True})
    payments = node("payments")
    assert payments["health"] == "critical"  # the v1 field keeps its meaning
    assert payments["state"] == "maintenance"
    assert payments["held"] == {"maintenance": 2}
    data = service_state_payload("payments")
    assert data is not None
    assert data["state"] == "maintenance" and data["held"] == {"maintenance": 2}


def test_an_active_failover_names_its_target_and_hold_down(admin_user: User) -> None:
    payments, _ = make(admin_user, "payments", (8001,))
    make(admin_user, "payments-dr", (9001,))
    policy_update(
        user=admin_user,
        service=payments,
        data={"failover_targets": ["payments-dr"], "failback_hold_down_ms": 45_000},
    )
    now = timezone.now()
    FailoverState.objects.create(
        service=payments, active_target="payments-dr", activated_at=now, reason="no healthy"
    )
    assert node("payments")["state"] == "failover"
    assert node("payments")["failover"] == "payments-dr"
    assert node("payments-dr")["failover"] == ""
    data = service_state_payload("payments")
    assert data is not None
    assert data["state"] == "failover"
    assert data["failover"]["active_target"] == "payments-dr"
    assert data["failover"]["targets"] == ["payments-dr"]
    assert data["failover"]["hold_down_ms"] == 45_000
    assert data["failover"]["activated_at"] == now.isoformat()
