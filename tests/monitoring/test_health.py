"""Claiming due checks and turning results into health, on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from django.db import connection
from django.utils import timezone

from agents.models import Agent
from journal.models import Event, EventKind
from monitoring.checks import CheckResult, CheckSpec
from monitoring.health import check_results_record, checks_claim_due
from registry.models import AdminState, Health, HealthCause, Instance, MeshRevision, Node, Service
from registry.services import instance_register, service_create

pytestmark = pytest.mark.django_db

OK = CheckResult(True, "HTTP 200 in 1 ms")
REFUSED = CheckResult(False, "connection refused")


def make_service(name: str = "payments", **check: Any) -> Service:
    data = {"name": name, "check_type": "http", "check_rise": 2, "check_fall": 3, **check}
    return service_create(user=None, data=data)


def make_instance(service: Service, port: int = 8080, **fields: Any) -> Instance:
    instance = instance_register(
        user=None, service=service, data={"address": "127.0.0.1", "port": port}
    )
    if fields:
        Instance.objects.filter(pk=instance.pk).update(**fields)
    return Instance.objects.get(pk=instance.pk)


def record(instance: Instance, result: CheckResult, check_type: str = "http") -> list[str]:
    spec = CheckSpec(instance.pk, check_type, instance.address, instance.port, "/health", 1000)
    return check_results_record(results=[(spec, result)], now=timezone.now())


def health_events(instance: Instance) -> list[Event]:
    return list(Event.objects.filter(kind=EventKind.HEALTH, instance=instance.pk))


def test_claim_is_exclusive_and_due_again_after_the_jittered_interval() -> None:
    service = make_service(check_interval_ms=5000, check_timeout_ms=1000)
    a, b = make_instance(service, 8080), make_instance(service, 8081)
    now = timezone.now() + timedelta(seconds=1)

    first = checks_claim_due(now=now, limit=100)
    assert {s.instance_id for s in first} == {a.pk, b.pk}
    assert first[0].check_type == "http" and first[0].path == "/health"
    assert first[0].timeout_ms == 1000
    assert checks_claim_due(now=now, limit=100) == []
    # Jitter moves each instance's next check within +-10% of the interval.
    assert checks_claim_due(now=now + timedelta(milliseconds=4499), limit=100) == []
    again = checks_claim_due(now=now + timedelta(milliseconds=5501), limit=100)
    assert {s.instance_id for s in again} == {a.pk, b.pk}


def test_claim_respects_limit_and_null_next_check() -> None:
    service = make_service()
    instances = [make_instance(service, 9000 + i) for i in range(5)]
    Instance.objects.filter(pk=instances[0].pk).update(next_check_at=None)
    now = timezone.now() + timedelta(seconds=1)
    claimed = checks_claim_due(now=now, limit=2)
    assert len(claimed) == 2
    assert claimed[0].instance_id == instances[0].pk  # never-scheduled goes first
    assert len(checks_claim_due(now=now, limit=100)) == 3


def test_claim_covers_maintenance_but_not_heartbeat_or_unchecked_services() -> None:
    checked = make_instance(make_service("web", check_type="tcp"))
    Instance.objects.filter(pk=checked.pk).update(admin_state=AdminState.MAINTENANCE)
    make_instance(make_service("ttl-svc", check_type="ttl"))
    make_instance(make_service("plain", check_type="none"))
    claimed = checks_claim_due(now=timezone.now() + timedelta(seconds=1), limit=100)
    assert [(s.instance_id, s.check_type) for s in claimed] == [(checked.pk, "tcp")]


def test_stale_read_cannot_claim_twice() -> None:
    service = make_service()
    instance = make_instance(service)
    now = timezone.now() + timedelta(seconds=1)
    read = Instance.objects.get(pk=instance.pk).next_check_at
    assert checks_claim_due(now=now, limit=10)
    # A second worker that read the old value loses the conditional update.
    assert (
        Instance.objects.filter(pk=instance.pk, next_check_at=read).update(next_check_at=now) == 0
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_claim_each_check_once() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("in-memory shared-cache SQLite locks tables instead of waiting")
    service = make_service()
    for i in range(60):
        make_instance(service, 10000 + i)
    now = timezone.now() + timedelta(seconds=1)
    claims: list[list[str]] = []
    start = threading.Barrier(4)

    def worker() -> None:
        try:
            start.wait()
            claims.append([s.instance_id for s in checks_claim_due(now=now, limit=100)])
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [pk for claim in claims for pk in claim]
    assert len(everything) == 60
    assert len(set(everything)) == 60


def test_result_is_stored_with_counters() -> None:
    instance = make_instance(make_service())
    record(instance, REFUSED)
    record(instance, REFUSED)
    instance.refresh_from_db()
    assert (instance.consecutive_ok, instance.consecutive_fail) == (0, 2)
    assert instance.last_check_output == "connection refused"
    assert instance.last_check_at is not None
    record(instance, OK)
    instance.refresh_from_db()
    assert (instance.consecutive_ok, instance.consecutive_fail) == (1, 0)
    assert instance.last_check_output == "HTTP 200 in 1 ms"


def test_first_success_of_a_new_instance_passes_at_once() -> None:
    instance = make_instance(make_service(check_rise=5))
    assert instance.health == Health.CRITICAL
    revision = MeshRevision.current()
    assert record(instance, OK) == [instance.pk]
    instance.refresh_from_db()
    assert instance.health == Health.PASSING
    assert instance.status_reason == "1 passing HTTP check: HTTP 200 in 1 ms"
    assert len(health_events(instance)) == 1
    assert MeshRevision.current() == revision + 1


def test_failing_new_instance_stays_critical_without_events() -> None:
    instance = make_instance(make_service())
    for _ in range(5):
        assert record(instance, REFUSED) == []
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert health_events(instance) == []


def test_fall_then_rise_make_one_event_each_and_bump_the_revision() -> None:
    instance = make_instance(make_service(check_rise=2, check_fall=3))
    record(instance, OK)  # first check: passing

    revision = MeshRevision.current()
    assert record(instance, REFUSED) == []
    assert record(instance, REFUSED) == []
    assert MeshRevision.current() == revision
    assert record(instance, REFUSED) == [instance.pk]
    assert record(instance, REFUSED) == []
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason == "3 failed HTTP checks: connection refused"
    assert MeshRevision.current() == revision + 1
    down = [e for e in health_events(instance) if e.data["to"] == Health.CRITICAL]
    assert len(down) == 1 and down[0].revision == revision + 1

    assert record(instance, OK) == []  # one success is not enough to rise
    assert record(instance, OK) == [instance.pk]
    assert record(instance, OK) == []
    instance.refresh_from_db()
    assert instance.health == Health.PASSING
    assert instance.status_reason == "2 passing HTTP checks: HTTP 200 in 1 ms"
    assert MeshRevision.current() == revision + 2
    assert len(health_events(instance)) == 3  # first pass, down, up


def test_a_success_between_failures_resets_the_fall_count() -> None:
    instance = make_instance(make_service(check_fall=2))
    record(instance, OK)
    for result in (REFUSED, OK, REFUSED, OK, REFUSED):
        assert record(instance, result) == []
    instance.refresh_from_db()
    assert instance.health == Health.PASSING


def test_maintenance_instance_health_still_follows_checks() -> None:
    instance = make_instance(make_service(check_fall=1), admin_state=AdminState.MAINTENANCE)
    record(instance, OK)
    record(instance, REFUSED)
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status == "maintenance"


def test_agent_back_awaiting_check_passes_on_first_success() -> None:
    instance = make_instance(
        make_service(check_rise=3),
        health_cause=HealthCause.AWAITING,
        status_reason="agent back; awaiting check",
    )
    assert record(instance, OK) == [instance.pk]
    instance.refresh_from_db()
    assert instance.health == Health.PASSING


def test_silent_agents_instances_are_not_resurrected_by_checks() -> None:
    node = Node.objects.create(name="host-a")
    Agent.objects.create(node=node, token_hash="h" * 64, silent=True)
    instance = make_instance(
        make_service(check_rise=1),
        node=node,
        agent_managed=True,
        health_cause=HealthCause.AGENT,
        status_reason="agent host-a silent for 15s",
    )
    for _ in range(3):
        assert record(instance, OK) == []
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason == "agent host-a silent for 15s"
    assert instance.consecutive_ok == 3


def test_result_for_a_check_that_changed_kind_is_ignored() -> None:
    instance = make_instance(make_service(check_type="tcp"))
    assert record(instance, OK, check_type="http") == []
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.last_check_at is None


def test_result_for_a_deleted_instance_is_ignored() -> None:
    instance = make_instance(make_service())
    Instance.objects.filter(pk=instance.pk).delete()
    assert record(instance, OK) == []


def test_jitter_spreads_next_checks_within_ten_percent_and_never_later() -> None:
    from monitoring.health import check_lease, jitter_fraction

    ids = [f"instance-{n}" for n in range(500)]
    fractions = [jitter_fraction(i) for i in ids]
    assert all(-0.1 <= f <= 0.0 for f in fractions)
    assert min(fractions) < -0.09 and max(fractions) > -0.01  # actually spread
    assert jitter_fraction("x") == jitter_fraction("x")  # deterministic per instance
    leases = {check_lease(i, interval_ms=10_000, timeout_ms=1000) for i in ids}
    assert min(leases) >= timedelta(seconds=9) and max(leases) <= timedelta(seconds=10)
    assert len(leases) > 400
    # Never before the check's own timeout: a dead worker's claim comes back after it.
    assert check_lease("x", interval_ms=1000, timeout_ms=5000) == timedelta(seconds=5)


def test_claimed_checks_of_one_service_do_not_align() -> None:
    service = make_service(check_interval_ms=10_000, check_timeout_ms=1000)
    for port in range(8000, 8020):
        make_instance(service, port)
    now = timezone.now() + timedelta(seconds=1)
    checks_claim_due(now=now, limit=100)
    due = set(Instance.objects.values_list("next_check_at", flat=True))
    assert len(due) == 20
    assert all(now + timedelta(seconds=9) <= d <= now + timedelta(seconds=11) for d in due)


def test_claim_carries_http_options() -> None:
    service = make_service(
        check_expect_status="200-204", check_body="READY", check_headers={"X-Probe": "1"}
    )
    make_instance(service)
    (spec,) = checks_claim_due(now=timezone.now() + timedelta(seconds=1), limit=10)
    assert (spec.expect_status, spec.body, spec.headers) == ((200, 204), "READY", (("X-Probe", "1"),))


def test_disabled_instances_are_not_claimed() -> None:
    service = make_service()
    make_instance(service, admin_state=AdminState.DISABLED)
    assert checks_claim_due(now=timezone.now() + timedelta(seconds=1), limit=10) == []


def test_result_rows_only_when_the_result_changes() -> None:
    from journal.models import CheckResult as Row

    instance = make_instance(make_service())
    for result in (OK, OK, OK, REFUSED, REFUSED, REFUSED, REFUSED, OK):
        record(instance, result)
    rows = list(Row.objects.order_by("id").values_list("ok", "output"))
    assert rows == [(True, OK.output), (False, REFUSED.output), (True, OK.output)]


def test_result_rows_are_pruned_by_age_and_count() -> None:
    from journal.models import CheckResult as Row
    from monitoring.health import RESULTS_KEPT, check_results_prune

    now = timezone.now()
    old = [Row(ts=now - timedelta(days=30), service="s", instance="a", check_type="http", ok=True)]
    many = [
        Row(ts=now - timedelta(seconds=n), service="s", instance="b", check_type="http", ok=n % 2 == 0)
        for n in range(RESULTS_KEPT + 10)
    ]
    Row.objects.bulk_create(old + many)
    assert check_results_prune(before=now - timedelta(days=7)) == 11
    kept = list(Row.objects.filter(instance="b").values_list("ts", flat=True))
    assert len(kept) == RESULTS_KEPT and min(kept) == now - timedelta(seconds=RESULTS_KEPT - 1)


def spec_of(instance: Instance) -> CheckSpec:
    return CheckSpec(instance.pk, "http", instance.address, instance.port, "/health", 1000)


def record_all(instances: list[Instance], result: CheckResult) -> list[str]:
    results = [(spec_of(i), result) for i in instances]
    return check_results_record(results=results, now=timezone.now())


def panic_events(service: Service) -> list[Event]:
    return list(
        Event.objects.filter(kind=EventKind.HEALTH, service=service.name, instance="").order_by(
            "pk"
        )
    )


def test_a_batch_of_transitions_is_announced_once(
    django_capture_on_commit_callbacks: Any,
) -> None:
    payments, orders = make_service(), make_service("orders")
    instances = [make_instance(payments, 8080 + n) for n in range(4)]
    instances.append(make_instance(orders, 9090))
    record_all(instances, OK)
    record_all(instances, REFUSED)
    record_all(instances, REFUSED)
    revision = MeshRevision.current()

    with (
        patch("registry.notify.publish_revision") as publish,
        patch("registry.notify._group_send") as group_send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert len(record_all(instances, REFUSED)) == 5

    # Each transition is still its own event with its own revision...
    down = Event.objects.filter(kind=EventKind.HEALTH, data__to=Health.CRITICAL)
    revisions = sorted(down.values_list("revision", flat=True))
    assert revisions == list(range(revision + 1, revision + 6))
    assert MeshRevision.current() == revision + 5
    # ...but waiters and consoles hear of the batch once.
    publish.assert_called_once()
    assert publish.call_args.args[0] == revision + 5
    assert publish.call_args.args[1] == ["service:orders", "service:payments"]
    assert sorted(c.args[0] for c in group_send.call_args_list) == [
        "service.orders",
        "service.payments",
        "topology",
    ]


def test_panic_events_of_a_batch_are_those_of_one_result_at_a_time() -> None:
    one, batched = make_service("one"), make_service("batched")
    singles = [make_instance(one, 8080 + n) for n in range(4)]
    batch = [make_instance(batched, 9080 + n) for n in range(4)]
    record_all(singles + batch, OK)
    for _ in range(3):
        for instance in singles[:3]:
            record(instance, REFUSED)
        record_all(batch[:3], REFUSED)

    def seen(service: Service) -> list[tuple[Any, ...]]:
        return [
            (e.severity, e.message.replace(service.name, "S"), e.data, e.revision)
            for e in panic_events(service)
        ]

    assert [e[:3] for e in seen(one)] == [e[:3] for e in seen(batched)]
    batch_panic = seen(batched)[-1]
    assert batch_panic[2] == {"panic": True, "healthy": 1, "enabled": 4, "threshold": 50}
    # In the transaction (and revision) of the transition that caused it.
    last_down = Event.objects.get(instance=batch[2].pk, data__to=Health.CRITICAL)
    assert batch_panic[3] == last_down.revision
    assert Service.objects.get(pk=batched.pk).in_panic


def test_panic_counted_after_the_batch_when_its_last_result_changes_nothing() -> None:
    service = make_service(check_rise=1)
    instances = [make_instance(service, 8080 + n) for n in range(4)]
    record_all(instances, OK)
    for _ in range(3):
        record_all(instances[:3], REFUSED)
    revision = MeshRevision.current()

    # The last result (instances[3], already passing) moves nothing: the service's
    # panic state is counted once after the loop, as its own revision.
    assert len(record_all(instances, OK)) == 3
    left = panic_events(service)[-1]
    assert left.data == {"panic": False, "healthy": 4, "enabled": 4, "threshold": 50}
    assert left.message == "payments left panic mode (4 of 4 healthy)"
    assert left.revision == revision + 4 == MeshRevision.current()
    assert not Service.objects.get(pk=service.pk).in_panic


def test_the_rules_read_the_health_cause_not_the_reason_text() -> None:
    # An instance whose agent went silent waits for the agent, whatever its
    # reason says; one whose reason merely starts with "agent " does not.
    service = make_service(check_rise=1)
    silent = make_instance(service, health_cause=HealthCause.AGENT, status_reason="host lost")
    assert record(silent, OK) == []
    wording = make_instance(
        service,
        port=8081,
        health_cause=HealthCause.CHECK,
        status_reason="agent-style wording from a check output",
    )
    assert record(wording, OK) == [wording.pk]
    wording.refresh_from_db()
    assert wording.health == Health.PASSING and wording.health_cause == HealthCause.CHECK
