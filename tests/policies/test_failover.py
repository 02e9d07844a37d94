"""The failover engine: activate on loss of health, fail back after the hold-down."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from journal.models import Event
from policies.failover import failover_evaluate
from policies.models import FailoverState, TrafficPolicy
from policies.tasks import evaluate_failover
from registry.models import MeshRevision, Service
from tests.policies.helpers import instance, service, set_health


def at(seconds: float) -> datetime:
    return timezone.make_aware(datetime(2026, 1, 1, 12, 0)) + timedelta(seconds=seconds)


def mesh(hold_down_ms: int = 30_000, targets: tuple[str, ...] = ("payments-dr", "payments-dr2")) -> Service:
    payments = service("payments")
    for name in ("payments-dr", "payments-dr2"):
        instance(service(name), 9000)
    instance(payments, 8080)
    TrafficPolicy.objects.create(
        service=payments, failover_targets=list(targets), failback_hold_down_ms=hold_down_ms
    )
    return payments


def active(svc: Service) -> str:
    return FailoverState.objects.get(service=svc).active_target


@pytest.mark.django_db
def test_healthy_service_does_not_fail_over() -> None:
    payments = mesh()
    assert failover_evaluate(now=at(0)) == {}
    assert active(payments) == ""


@pytest.mark.django_db
def test_losing_the_last_healthy_instance_activates_the_first_healthy_target() -> None:
    payments = mesh()
    set_health(Service.objects.get(name="payments-dr"), "critical")
    set_health(payments, "critical")
    revision = MeshRevision.current()
    assert failover_evaluate(now=at(0)) == {"payments": "failover"}
    state = FailoverState.objects.get(service=payments)
    assert (state.active_target, state.activated_at) == ("payments-dr2", at(0))
    assert MeshRevision.current() == revision + 1
    event = Event.objects.get(kind="failover")
    assert event.severity == "critical" and event.service == "payments"
    assert event.data["to"] == "payments-dr2" and event.revision == revision + 1
    assert failover_evaluate(now=at(1)) == {}  # acted once


@pytest.mark.django_db
def test_no_failover_when_no_target_is_healthy() -> None:
    payments = mesh()
    for svc in Service.objects.all():
        set_health(svc, "critical")
    assert failover_evaluate(now=at(0)) == {}
    assert active(payments) == ""


@pytest.mark.django_db
def test_fails_back_only_after_the_hold_down_of_continuous_health() -> None:
    payments = mesh(hold_down_ms=30_000)
    set_health(payments, "critical")
    failover_evaluate(now=at(0))
    set_health(payments, "passing")
    assert failover_evaluate(now=at(10)) == {}
    assert FailoverState.objects.get(service=payments).healthy_since == at(10)
    assert failover_evaluate(now=at(39)) == {}
    assert active(payments) == "payments-dr"
    revision = MeshRevision.current()
    assert failover_evaluate(now=at(40)) == {"payments": "failback"}
    state = FailoverState.objects.get(service=payments)
    assert (state.active_target, state.activated_at, state.healthy_since) == ("", None, None)
    assert MeshRevision.current() == revision + 1
    failback = Event.objects.filter(kind="failover").latest("id")
    assert failback.data["action"] == "failback" and failback.severity == "info"


@pytest.mark.django_db
def test_failing_again_inside_the_hold_down_restarts_it() -> None:
    payments = mesh(hold_down_ms=30_000)
    set_health(payments, "critical")
    failover_evaluate(now=at(0))
    set_health(payments, "passing")
    failover_evaluate(now=at(10))
    set_health(payments, "critical")
    assert failover_evaluate(now=at(20)) == {}
    assert FailoverState.objects.get(service=payments).healthy_since is None
    set_health(payments, "passing")
    failover_evaluate(now=at(25))
    assert failover_evaluate(now=at(50)) == {}  # 40 s after the first recovery: too soon
    assert active(payments) == "payments-dr"
    assert failover_evaluate(now=at(55)) == {"payments": "failback"}
    assert Event.objects.filter(kind="failover").count() == 2  # no flapping in between


@pytest.mark.django_db
def test_zero_hold_down_fails_back_at_once() -> None:
    payments = mesh(hold_down_ms=0)
    set_health(payments, "critical")
    failover_evaluate(now=at(0))
    set_health(payments, "passing")
    assert failover_evaluate(now=at(1)) == {"payments": "failback"}


@pytest.mark.django_db
def test_unhealthy_target_is_replaced_by_the_next_healthy_one() -> None:
    payments = mesh()
    set_health(payments, "critical")
    failover_evaluate(now=at(0))
    set_health(Service.objects.get(name="payments-dr"), "critical")
    assert failover_evaluate(now=at(1)) == {"payments": "failover"}
    assert active(payments) == "payments-dr2"


@pytest.mark.django_db
def test_target_removed_from_policy_ends_the_failover() -> None:
    payments = mesh()
    set_health(payments, "critical")
    failover_evaluate(now=at(0))
    TrafficPolicy.objects.filter(service=payments).update(failover_targets=[])
    assert failover_evaluate(now=at(1)) == {"payments": "failback"}
    assert active(payments) == ""


@pytest.mark.django_db
def test_evaluation_can_be_limited_to_some_services() -> None:
    payments = mesh()
    set_health(payments, "critical")
    assert failover_evaluate(service_names=["orders"], now=at(0)) == {}
    assert failover_evaluate(service_names=["payments"], now=at(0)) == {"payments": "failover"}


@pytest.mark.django_db
def test_celery_task_runs_the_evaluation() -> None:
    payments = mesh()
    set_health(payments, "critical")
    assert evaluate_failover.apply().get() == {"payments": "failover"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_act_once() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent writers (PostgreSQL)")
    payments = mesh()
    set_health(payments, "critical")
    failover_evaluate(service_names=["nothing"])  # creates nothing; warms imports
    barrier = threading.Barrier(4)
    results: list[dict[str, str]] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(failover_evaluate(now=at(0)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(len, results)) == [0, 0, 0, 1]
    assert Event.objects.filter(kind="failover").count() == 1
    assert active(payments) == "payments-dr"
