"""The policy document over the REST API: read, write, validation, history, rollback."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from journal.models import AuditEntry, Event
from policies.models import PolicyVersion, TrafficPolicy
from registry.models import MeshRevision
from tests.policies.helpers import service

pytestmark = pytest.mark.django_db

URL = "/api/v1/services/payments/policy/"


@pytest.fixture
def payments() -> None:
    service("payments")
    service("payments-dr")
    service("payments-dr2")


def test_service_without_policy_reads_the_defaults_as_version_0(api: APIClient, payments: None) -> None:
    body = api.get(URL).json()
    assert body["version"] == 0 and body["service"] == "payments"
    assert body["load_balancer"] == "round_robin" and body["hash_on"] is None
    assert body["connect_timeout"] == "1s" and body["request_timeout"] == "15s"
    assert body["retries"] == {
        "attempts": 2, "per_try_timeout": "0s", "on": ["connect-failure", "reset", "gateway-error"],
        "backoff_base": "25ms", "backoff_max": "250ms", "budget_percent": 20, "min_per_second": 3,
    }
    assert body["rate_limit"] is None
    assert body["failover"] == {"targets": [], "hold_down": "30s"}
    assert not TrafficPolicy.objects.exists()


def test_policy_of_unknown_service_is_404(api: APIClient) -> None:
    assert api.get("/api/v1/services/nope/policy/").status_code == 404
    assert api.put("/api/v1/services/nope/policy/", {}, format="json").status_code == 404


def test_policy_needs_credentials(anon: APIClient, payments: None) -> None:
    assert anon.get(URL).status_code == 401
    assert anon.patch(URL, {"load_balancer": "random"}, format="json").status_code == 401


def test_put_replaces_the_document_and_omitted_fields_take_defaults(api: APIClient, payments: None) -> None:
    api.patch(URL, {"panic_threshold_percent": 10}, format="json")
    response = api.put(URL, {"load_balancer": "least_request", "connect_timeout": "500ms",
                             "rate_limit": {"rps": 50, "burst": 100}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2
    assert body["connect_timeout"] == "500ms" and body["panic_threshold_percent"] == 50
    assert body["rate_limit"] == {"rps": 50.0, "burst": 100}
    policy = TrafficPolicy.objects.get()
    assert (policy.connect_timeout_ms, policy.rate_limit_rps) == (500, 50.0)


def test_patch_changes_only_the_given_fields_and_merges_groups(api: APIClient, payments: None) -> None:
    api.patch(URL, {"retries": {"attempts": 4}}, format="json")
    response = api.patch(URL, {"retries": {"backoff_max": "1s"}, "zone_priority": ["zone-2", "zone-1"]},
                         format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["retries"]["attempts"] == 4 and body["retries"]["backoff_max"] == "1s"
    assert body["zone_priority"] == ["zone-2", "zone-1"]
    assert body["version"] == 2


def test_hashing_balancer_without_hash_on_defaults_to_client_ip(api: APIClient, payments: None) -> None:
    body = api.patch(URL, {"load_balancer": "maglev"}, format="json").json()
    assert body["hash_on"] == {"type": "client_ip", "name": ""}
    body = api.patch(URL, {"load_balancer": "ring_hash", "hash_on": {"type": "header", "name": "x-user"}},
                     format="json").json()
    assert body["hash_on"] == {"type": "header", "name": "x-user"}
    # Leaving a hashing balancer drops its key rather than failing.
    body = api.patch(URL, {"load_balancer": "random"}, format="json").json()
    assert body["hash_on"] is None


def test_failover_targets_are_saved_in_order(api: APIClient, payments: None) -> None:
    body = api.patch(URL, {"failover": {"targets": ["payments-dr2", "payments-dr"], "hold_down": "2m"}},
                     format="json").json()
    assert body["failover"] == {"targets": ["payments-dr2", "payments-dr"], "hold_down": "2m"}
    assert TrafficPolicy.objects.get().failback_hold_down_ms == 120_000


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"load_balancer": "fastest"}, "load_balancer"),
        ({"connect_timeout": "soon"}, "connect_timeout"),
        ({"connect_timeout": "2m"}, "connect_timeout"),
        ({"connect_timeout": "0ms"}, "connect_timeout"),
        ({"idle_timeout": "10ms"}, "idle_timeout"),
        ({"retries": {"attempts": 11}}, "retries"),
        ({"retries": {"attempts": -1}}, "retries"),
        ({"retries": {"on": ["5xx", "teapot"]}}, "retries"),
        ({"retries": {"on": []}}, "retries"),
        ({"retries": {"on": ["5xx", "5xx"]}}, "retries"),
        ({"retries": {"backoff_base": "1s", "backoff_max": "500ms"}}, "retries"),
        ({"retries": {"per_try_timeout": "20s"}}, "retries"),
        ({"retries": {"budget_percent": 101}}, "retries"),
        ({"retries": {"surprise": 1}}, "retries"),
        ({"outlier": {"base_ejection": "10ms"}}, "outlier"),
        ({"outlier": {"max_ejection_percent": 150}}, "outlier"),
        ({"circuit_breaker": {"max_requests": -5}}, "circuit_breaker"),
        ({"rate_limit": {"rps": 0}}, "rate_limit"),
        ({"rate_limit": {"rps": 10, "burst": 0}}, "rate_limit"),
        ({"rate_limit": 5}, "rate_limit"),
        ({"panic_threshold_percent": 101}, "panic_threshold_percent"),
        ({"locality": {"enabled": "maybe"}}, "locality"),
        ({"zone_priority": ["zone 1"]}, "zone_priority"),
        ({"zone_priority": ["zone-1", "zone-1"]}, "zone_priority"),
        ({"zone_priority": "zone-1"}, "zone_priority"),
        ({"load_balancer": "round_robin", "hash_on": {"type": "header", "name": "x"}}, "hash_on"),
        ({"load_balancer": "ring_hash", "hash_on": {"type": "header"}}, "hash_on"),
        ({"load_balancer": "ring_hash", "hash_on": {"type": "client_ip", "name": "x"}}, "hash_on"),
        ({"load_balancer": "ring_hash", "hash_on": {"type": "query", "name": "x"}}, "hash_on"),
        ({"failover": {"targets": ["payments"]}}, "failover"),
        ({"failover": {"targets": ["nowhere"]}}, "failover"),
        ({"failover": {"targets": ["payments-dr", "payments-dr"]}}, "failover"),
        ({"failover": {"targets": ["Not A Name"]}}, "failover"),
        ({"failover": {"hold_down": "2d"}}, "failover"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_document_is_400_with_field_errors_and_changes_nothing(
    api: APIClient, payments: None, patch: dict[str, Any], field: str
) -> None:
    revision = MeshRevision.current()
    for method in (api.patch, api.put):
        response = method(URL, patch, format="json")
        assert response.status_code == 400, (patch, response.content)
        assert field in response.json(), response.json()
    assert not TrafficPolicy.objects.exists()
    assert not PolicyVersion.objects.exists()
    assert not AuditEntry.objects.filter(object_type="policy").exists()
    assert MeshRevision.current() == revision


def test_non_object_body_is_400(api: APIClient, payments: None) -> None:
    assert api.put(URL, ["round_robin"], format="json").status_code == 400


def test_failover_cycle_is_refused(api: APIClient, payments: None) -> None:
    ok = api.patch("/api/v1/services/payments-dr/policy/", {"failover": {"targets": ["payments-dr2"]}},
                   format="json")
    assert ok.status_code == 200
    ok = api.patch("/api/v1/services/payments-dr2/policy/", {"failover": {"targets": ["payments"]}},
                   format="json")
    assert ok.status_code == 200
    response = api.patch(URL, {"failover": {"targets": ["payments-dr"]}}, format="json")
    assert response.status_code == 400
    assert "payments -> payments-dr -> payments-dr2 -> payments" in str(response.json())
    assert not TrafficPolicy.objects.filter(service__name="payments").exists()


def test_stale_version_in_the_document_is_a_conflict(api: APIClient, payments: None) -> None:
    api.patch(URL, {"load_balancer": "random"}, format="json")
    assert api.patch(URL, {"version": 0, "panic_threshold_percent": 5}, format="json").status_code == 409
    assert api.patch(URL, {"version": 1, "panic_threshold_percent": 5}, format="json").status_code == 200


def test_write_records_version_audit_event_and_bumps_revision(
    api: APIClient, payments: None, django_capture_on_commit_callbacks: Any
) -> None:
    revision = MeshRevision.current()
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.patch(URL, {"request_timeout": "5s"}, format="json")
    assert response.status_code == 200
    assert len(callbacks) == 1  # mesh_changed's fan-out, after the commit
    assert MeshRevision.current() == revision + 1
    version = PolicyVersion.objects.get()
    assert (version.service_name, version.version, version.created_by) == ("payments", 1, "alice")
    assert version.document["request_timeout"] == "5s"
    audit = AuditEntry.objects.get(object_type="policy")
    assert audit.actor == "alice" and audit.object_id == "payments"
    assert audit.before["request_timeout"] == "15s" and audit.after["request_timeout"] == "5s"
    event = Event.objects.get(kind="config")
    assert event.service == "payments" and event.revision == revision + 1
    assert "request_timeout" in event.message and event.actor == "alice"
    assert response.json()["updated_by"] == "alice"


def test_write_that_changes_nothing_makes_no_new_version(api: APIClient, payments: None) -> None:
    api.patch(URL, {"load_balancer": "random"}, format="json")
    revision = MeshRevision.current()
    assert api.patch(URL, {"load_balancer": "random"}, format="json").json()["version"] == 1
    assert MeshRevision.current() == revision
    assert PolicyVersion.objects.count() == 1


def test_versions_list_newest_first_and_rollback_restores_as_new_version(
    api: APIClient, payments: None
) -> None:
    api.patch(URL, {"connect_timeout": "2s"}, format="json")
    api.patch(URL, {"connect_timeout": "3s", "load_balancer": "random"}, format="json")
    versions = api.get(URL + "versions/").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["document"]["connect_timeout"] == "2s" and versions[0]["created_by"] == "alice"
    response = api.post(URL + "rollback/", {"version": 1}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["version"], body["connect_timeout"], body["load_balancer"]) == (3, "2s", "round_robin")
    assert Event.objects.filter(kind="config", message__contains="rollback to v1").exists()
    assert [v["version"] for v in api.get(URL + "versions/").json()] == [3, 2, 1]


def test_rollback_to_unknown_version_is_400(api: APIClient, payments: None) -> None:
    assert api.post(URL + "rollback/", {"version": 7}, format="json").status_code == 400
    assert api.post(URL + "rollback/", {"version": "latest"}, format="json").status_code == 400


def test_rollback_is_validated_again(api: APIClient, payments: None) -> None:
    api.patch(URL, {"failover": {"targets": ["payments-dr"]}}, format="json")
    api.patch(URL, {"failover": {"targets": []}}, format="json")
    api.delete("/api/v1/services/payments-dr/")
    response = api.post(URL + "rollback/", {"version": 1}, format="json")
    assert response.status_code == 400
    assert "no such service" in str(response.json())
    assert TrafficPolicy.objects.get().version == 2


def test_recreated_service_continues_version_numbers(api: APIClient, payments: None) -> None:
    api.patch(URL, {"load_balancer": "random"}, format="json")
    api.delete("/api/v1/services/payments/")
    service("payments")
    assert api.patch(URL, {"load_balancer": "random"}, format="json").json()["version"] == 2


def test_policy_endpoints_are_in_the_openapi_schema(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert {"get", "put", "patch"} <= set(paths["/api/v1/services/{name}/policy/"])
    assert "/api/v1/services/{name}/policy/versions/" in paths
    assert "/api/v1/services/{name}/policy/rollback/" in paths


@pytest.mark.parametrize("method", ["put", "patch"])
def test_write_with_no_body_is_400_and_changes_nothing(
    api: APIClient, payments: None, method: str
) -> None:
    assert api.patch(URL, {"load_balancer": "least_request"}, format="json").status_code == 200
    before = PolicyVersion.objects.count()
    response = getattr(api, method)(URL)
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["a JSON object is required"]}
    assert api.get(URL).json()["load_balancer"] == "least_request"
    assert PolicyVersion.objects.count() == before


def test_put_of_an_empty_object_still_means_every_default(api: APIClient, payments: None) -> None:
    api.patch(URL, {"load_balancer": "least_request"}, format="json")
    assert api.put(URL, {}, format="json").status_code == 200
    assert api.get(URL).json()["load_balancer"] == "round_robin"
