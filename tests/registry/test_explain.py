"""The one-line reason for an instance's state and its timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from journal.models import EventKind
from journal.records import event_record
from monitoring.checks import CheckResult, CheckSpec
from monitoring.health import check_results_record
from policies.models import TrafficPolicy
from registry.control import instances_control
from registry.explain import clock, instance_explain, instance_reason
from registry.models import Instance, Service
from registry.services import instance_register, service_create

pytestmark = pytest.mark.django_db

OK = CheckResult(True, "HTTP 200 in 1 ms")
REFUSED = CheckResult(False, "connection refused")


def make_service(**check: Any) -> Service:
    data = {"name": "payments", "check_type": "http", "check_rise": 2, "check_fall": 3, **check}
    return service_create(user=None, data=data)


def make_instances(service: Service, n: int) -> list[Instance]:
    return [
        instance_register(user=None, service=service, data={"address": "127.0.0.1", "port": p})
        for p in range(8001, 8001 + n)
    ]


def run(instance: Instance, *results: CheckResult) -> Instance:
    for result in results:
        spec = CheckSpec(instance.pk, "http", instance.address, instance.port, "/health", 1000)
        check_results_record(results=[(spec, result)], now=timezone.now())
    return Instance.objects.select_related("service").get(pk=instance.pk)


def reason(instance: Instance) -> tuple[str, bool]:
    return instance_reason(Instance.objects.select_related("service").get(pk=instance.pk))


def test_passing_instance_receives_traffic() -> None:
    (a,) = make_instances(make_service(), 1)
    a = run(a, OK, OK)
    text, receives = reason(a)
    assert text == (
        f"passing since {clock(a.status_since)} (2 passing HTTP checks: HTTP 200 in 1 ms); "
        "receives traffic"
    )
    assert receives


def test_critical_instance_receives_no_traffic_when_the_rest_is_healthy() -> None:
    a, b, c = make_instances(make_service(), 3)
    run(b, OK)
    run(c, OK)
    a = run(a, OK, REFUSED, REFUSED, REFUSED)
    text, receives = reason(a)
    assert text == (
        f"critical since {clock(a.status_since)} (3 failed HTTP checks: connection refused); "
        "receives no traffic"
    )
    assert not receives


def test_critical_instance_still_receives_traffic_in_panic() -> None:
    service = make_service()
    a, b, c = make_instances(service, 3)
    run(a, OK)
    run(b, OK)
    run(c, OK)
    run(a, REFUSED, REFUSED, REFUSED)
    b = run(b, REFUSED, REFUSED, REFUSED)
    text, receives = reason(b)
    assert text.endswith(
        "still receives traffic: payments is in panic mode (1 of 3 healthy < 50%)"
    ), text
    assert receives
    assert Service.objects.get(pk=service.pk).in_panic
    timeline = instance_explain(Instance.objects.get(pk=b.pk))["timeline"]
    assert any(e["kind"] == "panic" and "panic mode" in e["message"] for e in timeline)


def test_panic_threshold_comes_from_the_traffic_policy() -> None:
    service = make_service()
    a, b = make_instances(service, 2)
    run(a, OK)
    b = run(b, REFUSED)  # one healthy of two: 50% is not below 50%
    assert reason(b)[1] is False
    TrafficPolicy.objects.create(service=service, panic_threshold_percent=60)
    assert reason(b)[0].endswith("payments is in panic mode (1 of 2 healthy < 60%)")
    TrafficPolicy.objects.filter(service=service).update(panic_threshold_percent=0)
    assert reason(b) == (reason(b)[0], False)  # 0 = never panic


def test_maintenance_draining_disabled_and_weight_zero(admin_user: User) -> None:
    service = make_service(drain_timeout_ms=30_000)
    a, b, c, d = make_instances(service, 4)
    for instance in (a, b, c, d):
        run(instance, OK)
    instances_control(user=admin_user, service=service, action="maintenance", ids=[a.pk])
    instances_control(user=admin_user, service=service, action="drain", ids=[b.pk])
    instances_control(user=admin_user, service=service, action="disable", ids=[c.pk])
    instances_control(user=admin_user, service=service, action="weight", ids=[d.pk], weight=0)
    a, b, c, d = (Instance.objects.select_related("service").get(pk=i.pk) for i in (a, b, c, d))
    assert instance_reason(a) == (
        f"maintenance since {clock(a.status_since)} by alice; receives no traffic", False)
    assert b.drain_started_at is not None
    done = clock(b.drain_started_at + timedelta(seconds=30))
    assert instance_reason(b) == (
        f"draining since {clock(b.status_since)} by alice (maintenance at {done}); "
        "in-flight requests finish, receives no new traffic", False)
    assert instance_reason(c) == (
        f"disabled since {clock(c.status_since)} by alice; receives no traffic and is not checked",
        False)
    assert instance_reason(d)[0].endswith("receives no traffic: weight 0")


def test_ttl_and_unchecked_instances_explain_their_source() -> None:
    service = service_create(user=None, data={"name": "plain", "check_type": "none"})
    (a,) = [instance_register(user=None, service=service, data={"address": "h", "port": 1})]
    assert reason(a)[0].startswith("passing since") and "(no health check configured)" in reason(a)[0]


def test_active_ejection_is_mentioned() -> None:
    (a,) = make_instances(make_service(), 1)
    run(a, OK)
    until = timezone.now() + timedelta(seconds=30)
    event_record(kind=EventKind.EJECTION, message="ejected: 5 consecutive 5xx", service="payments",
                 instance=a.pk, actor="agent:host-a", data={"until": until.isoformat()})
    assert reason(a)[0].endswith(f"receives traffic; ejected by agent:host-a until {clock(until)}")


def test_timeline_tells_the_story_oldest_first(admin_user: User) -> None:
    service = make_service()
    (a,) = make_instances(service, 1)
    run(a, OK, REFUSED, REFUSED, REFUSED, OK)
    event_record(kind=EventKind.EJECTION, message="ejected by agent host-a", service="payments",
                 instance=a.pk, actor="agent:host-a")
    instances_control(user=admin_user, service=service, action="drain", ids=[a.pk])
    timeline = instance_explain(Instance.objects.select_related("service").get(pk=a.pk))["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert kinds[0] == "registry"
    assert [e["message"] for e in timeline if e["kind"] == "check"] == [
        "HTTP check passing: HTTP 200 in 1 ms",
        "HTTP check failing: connection refused",
        "HTTP check passing: HTTP 200 in 1 ms",
    ]
    health = [e["message"] for e in timeline if e["kind"] == "health"]
    assert any("critical -> passing" in m for m in health)
    assert any("passing -> critical" in m for m in health)
    # Still critical (rise 2), the drain empties the rotation: panic ends with it.
    assert kinds[-3:] == ["ejection", "admin", "panic"]
    drain = timeline[-2]
    assert drain["actor"] == "alice" and "critical -> draining" in drain["message"]
    assert "left panic mode" in timeline[-1]["message"]
    stamps = [e["ts"] for e in timeline]
    assert stamps == sorted(stamps)


def test_explain_endpoint_and_instance_explanation(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    body = api.post("/api/v1/services/payments/instances/", {"address": "10.0.0.1", "port": 80},
                    format="json").json()
    assert body["explanation"].startswith("passing since") and body["explanation"].endswith(
        "; receives traffic")
    response = api.get(f"/api/v1/services/payments/instances/{body['id']}/explain/")
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"reason", "receives_traffic", "timeline"}
    assert data["reason"] == body["explanation"] and data["receives_traffic"] is True
    assert data["timeline"][0]["kind"] == "registry"
    assert set(data["timeline"][0]) == {"ts", "kind", "message", "actor"}
    listed = api.get("/api/v1/services/payments/instances/").json()["results"]
    assert listed[0]["explanation"] == body["explanation"]
    assert api.get("/api/v1/services/payments/instances/nope/explain/").status_code == 404
