"""What-if before apply: predicted per-instance load through the agents' own plan."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.models import EdgeWindow
from registry.models import Health, Instance, MeshRevision, Node, Service

pytestmark = pytest.mark.django_db


def service(api: APIClient, name: str, zones: list[str]) -> list[str]:
    assert api.post("/api/v1/services/", {"name": name}, format="json").status_code == 201
    ids = []
    for port, zone in enumerate(zones, start=8081):
        body = {"address": "10.0.0.1", "port": port, "zone": zone}
        answer = api.post(f"/api/v1/services/{name}/instances/", body, format="json")
        assert answer.status_code == 201, answer.content
        ids.append(answer.json()["id"])
    Instance.objects.filter(service__name=name).update(health=Health.PASSING)
    return ids


def traffic(source: str, destination: str, node: str, zone: str, rps: float) -> None:
    Node.objects.get_or_create(name=node, defaults={"zone": zone})
    for _ in range(3):  # three 10 s windows in the last minute
        EdgeWindow.objects.create(window_end=timezone.now(), seconds=10, node=node, source=source,
                                  destination=destination, requests=int(rps * 10))


def what_if(api: APIClient, name: str, edit: dict[str, Any]) -> dict[str, Any]:
    answer = api.post(f"/api/v1/services/{name}/what-if/", edit, format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def load(side: dict[str, Any]) -> dict[str, float]:
    return {i["id"]: i["rps"] for i in side["instances"]}


def test_a_weight_change_moves_load_by_weight(api: APIClient) -> None:
    a, b, c = service(api, "payments", ["zone-1"] * 3)
    traffic("orders", "payments", "host-a", "zone-1", 30)
    # The default round_robin ignores weights (as the agent does): nothing moves.
    answer = what_if(api, "payments", {"instances": {c: {"weight": 200}}})
    assert load(answer["after"]) == {a: 10.0, b: 10.0, c: 10.0}
    assert answer["affected_callers"] == []
    assert any("ignores weights" in w for w in answer["warnings"])
    body = {"load_balancer": "weighted_round_robin"}
    assert api.patch("/api/v1/services/payments/policy/", body, format="json").status_code == 200
    answer = what_if(api, "payments", {"instances": {c: {"weight": 200}}})
    assert answer["warnings"] == []
    assert answer["callers"] == [{"source": "orders", "node": "host-a", "zone": "zone-1", "rps": 30.0}]
    assert load(answer["before"]) == {a: 10.0, b: 10.0, c: 10.0}
    assert load(answer["after"]) == {a: 7.5, b: 7.5, c: 15.0}
    assert answer["affected_callers"] == ["orders"]
    assert Instance.objects.get(pk=c).weight == 100  # nothing written


def test_maintenance_that_triggers_panic_spreads_over_unhealthy_instances(api: APIClient) -> None:
    a, b, c, d = service(api, "payments", ["zone-1"] * 4)
    Instance.objects.filter(pk=d).update(health=Health.CRITICAL)
    traffic("orders", "payments", "host-a", "zone-1", 40)
    before = what_if(api, "payments", {})
    assert before["before"] == before["after"]
    assert load(before["before"])[d] == 0 and before["before"]["panic"] is False  # 3 of 4 ≥ 50 %
    answer = what_if(api, "payments", {"instances": {a: {"state": "maintenance"}},
                                       "policy": {"panic_threshold_percent": 80}})
    assert answer["after"]["panic"] is True  # 2 of 3 enabled healthy < 80 %
    after = load(answer["after"])
    assert after[a] == 0.0 and after[d] == pytest.approx(40 / 3, abs=0.01)
    assert any("panic mode" in w for w in answer["warnings"])


def test_everything_out_fails_over_or_warns_of_503s(api: APIClient) -> None:
    a, b = service(api, "payments", ["zone-1", "zone-1"])
    (dr,) = service(api, "payments-dr", ["zone-2"])
    traffic("orders", "payments", "host-a", "zone-1", 10)
    edit = {"instances": {a: {"state": "maintenance"}, b: {"state": "disabled"}}}
    answer = what_if(api, "payments", edit)
    assert answer["after"]["rps"] == 0 and answer["after"]["served_by"] == "payments"
    assert any("503" in w and "orders" in w for w in answer["warnings"])
    answer = what_if(api, "payments", {**edit, "failover": {"targets": ["payments-dr"]}})
    assert answer["after"]["served_by"] == "payments-dr"
    assert load(answer["after"]) == {dr: 10.0}
    assert any("fail over from payments to payments-dr" in w for w in answer["warnings"])


def test_locality_follows_the_agents_plan(api: APIClient) -> None:
    near, far = service(api, "payments", ["zone-1", "zone-2"])
    traffic("orders", "payments", "host-a", "zone-1", 20)
    traffic("web", "payments", "host-b", "zone-2", 10)
    answer = what_if(api, "payments", {"instances": {near: {"state": "maintenance"}}})
    assert load(answer["before"]) == {near: 20.0, far: 10.0}  # each zone keeps its own
    assert load(answer["after"]) == {near: 0.0, far: 30.0}
    answer = what_if(api, "payments", {"policy": {"locality": False}})
    assert load(answer["after"]) == {near: 15.0, far: 15.0}


@pytest.mark.parametrize(
    "edit, field",
    [
        ({"instances": {"nope": {"weight": 1}}}, "instances.nope"),
        ({"instances": {"ID": {"weight": -1}}}, "instances.ID.weight"),
        ({"instances": {"ID": {"weight": True}}}, "instances.ID.weight"),
        ({"instances": {"ID": {"state": "gone"}}}, "instances.ID.state"),
        ({"instances": {"ID": {"port": 1}}}, "instances.ID"),
        ({"instances": []}, "instances"),
        ({"policy": {"panic_threshold_percent": 101}}, "policy.panic_threshold_percent"),
        ({"policy": {"load_balancer": "random"}}, "policy"),
        ({"failover": {"targets": ["missing"]}}, "failover.targets"),
        ({"bogus": 1}, "detail"),
    ],
)
def test_a_bad_edit_is_a_400_and_changes_nothing(
    api: APIClient, edit: dict[str, Any], field: str
) -> None:
    (one,) = service(api, "payments", ["zone-1"])
    edit = {k: ({one if i == "ID" else i: v for i, v in val.items()}
                if k == "instances" and isinstance(val, dict) else val)
            for k, val in edit.items()}
    revision = MeshRevision.current()
    answer = api.post("/api/v1/services/payments/what-if/", edit, format="json")
    assert answer.status_code == 400, answer.content
    assert field.replace("ID", one) in answer.json()
    assert MeshRevision.current() == revision


def test_what_if_needs_credentials_and_an_existing_service(api: APIClient, anon: APIClient) -> None:
    service(api, "payments", ["zone-1"])
    assert anon.post("/api/v1/services/payments/what-if/", {}, format="json").status_code in (401, 403)
    assert api.post("/api/v1/services/nope/what-if/", {}, format="json").status_code == 404
    assert Service.objects.count() == 1
