"""Enrollment and what an agent's token may change: tokens that expire, run out
or are revoked; a node name held by its agent; retried enrollments; an agent's
report never takes over what its node does not own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from agents.enrollment import enrollment_token_create
from agents.models import Agent, EnrollmentToken, hash_token
from journal.models import AuditEntry, Event, EventKind
from registry.models import Instance, Service

pytestmark = pytest.mark.django_db

ENROLL = "/api/v1/agents/enroll/"
PROPOSED = "p" * 43


def enroll(token: str, node: str = "host-a", **extra: Any) -> Any:
    return APIClient().post(ENROLL, {"token": token, "node": node, **extra}, format="json")


def agent_client(body: dict[str, Any]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {body['agent_token']}")
    return client


def report(body: dict[str, Any], services: list[dict[str, Any]]) -> Any:
    return agent_client(body).post(
        f"/api/v1/agents/{body['agent_id']}/report/", {"services": services}, format="json"
    )


def test_tokens_are_stored_hashed_and_expire_after_a_day_by_default() -> None:
    raw = enrollment_token_create()
    token = EnrollmentToken.objects.get()
    assert token.token_hash == hash_token(raw) and raw not in (token.token_hash, token.prefix)
    assert token.expires_at is not None
    left = token.expires_at - timezone.now()
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)


def test_expired_token_is_refused() -> None:
    raw = enrollment_token_create()
    EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert enroll(raw).status_code == 403
    assert not Agent.objects.exists()


def test_a_token_with_a_use_count_runs_out() -> None:
    raw = enrollment_token_create(max_uses=2)
    assert enroll(raw, "host-a").status_code == 201
    assert enroll(raw, "host-b").status_code == 201
    assert enroll(raw, "host-c").status_code == 403
    assert EnrollmentToken.objects.get().uses == 2


def test_revoked_token_is_refused(api: APIClient) -> None:
    raw = enrollment_token_create()
    prefix = EnrollmentToken.objects.get().prefix
    response = api.post(f"/api/v1/agents/enrollment-tokens/{prefix}/revoke/")
    assert response.status_code == 200 and response.json() == {"revoked": 1}
    assert enroll(raw).status_code == 403
    assert AuditEntry.objects.filter(action="revoke", object_type="enrollment-token").exists()


def test_tokens_are_listed_and_created_through_the_api_with_the_key_shown_once(
    api: APIClient,
) -> None:
    created = api.post(
        "/api/v1/agents/enrollment-tokens/",
        {"description": "rack 4", "ttl": "1h", "max_uses": 3},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token"].startswith("mesh-enroll-") and body["max_uses"] == 3 and body["active"]
    listed = api.get("/api/v1/agents/enrollment-tokens/").json()["results"]
    assert [t["description"] for t in listed] == ["rack 4"]
    assert "token" not in listed[0] and body["token"] not in str(listed)
    assert enroll(body["token"]).status_code == 201
    bad = api.post("/api/v1/agents/enrollment-tokens/", {"ttl": "soon"}, format="json")
    assert bad.status_code == 400 and "ttl" in bad.json()
    assert api.post(
        "/api/v1/agents/enrollment-tokens/", {"colour": "red"}, format="json"
    ).status_code == 400


def test_token_management_needs_staff(anon: APIClient, viewer: Any) -> None:
    assert anon.get("/api/v1/agents/enrollment-tokens/").status_code == 401
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/v1/agents/enrollment-tokens/").status_code == 403
    assert client.post("/api/v1/agents/enrollment-tokens/", {}, format="json").status_code == 403


def test_a_retried_enrollment_with_the_proposed_token_gets_the_same_answer() -> None:
    raw = enrollment_token_create(max_uses=1)
    first = enroll(raw, agent_token=PROPOSED)
    assert first.status_code == 201
    # The first answer was lost (the agent timed out); it asks again.
    again = enroll(raw, agent_token=PROPOSED)
    assert again.status_code == 200
    assert again.json()["agent_id"] == first.json()["agent_id"]
    assert again.json()["agent_token"] == PROPOSED
    assert EnrollmentToken.objects.get().uses == 1  # a retry takes no second use
    assert agent_client(first.json()).get(
        f"/api/v1/agents/{first.json()['agent_id']}/config/"
    ).status_code == 200


def test_a_short_proposed_token_is_refused() -> None:
    response = enroll(enrollment_token_create(), agent_token="short")
    assert response.status_code == 400 and "agent_token" in response.json()


def test_another_enrollment_under_the_node_needs_removal_or_an_operators_leave(
    api: APIClient,
) -> None:
    raw = enrollment_token_create()
    real = enroll(raw).json()
    assert enroll(raw, agent_token="x" * 40).status_code == 409
    allowed = api.post(f"/api/v1/agents/{real['agent_id']}/allow-reenroll/")
    assert allowed.status_code == 204
    rebuilt = enroll(raw)
    assert rebuilt.status_code == 200
    assert rebuilt.json()["agent_id"] == real["agent_id"]
    old = agent_client(real).get(f"/api/v1/agents/{real['agent_id']}/config/")
    assert old.status_code == 401
    # The leave is for one enrollment only.
    assert enroll(raw).status_code == 409
    removed = api.delete(f"/api/v1/agents/{real['agent_id']}/")
    assert removed.status_code == 204
    assert enroll(raw).status_code == 201
    assert AuditEntry.objects.filter(object_type="agent", action="delete").exists()


def test_removing_an_agent_deregisters_its_instances_and_stops_its_token(api: APIClient) -> None:
    body = enroll(enrollment_token_create()).json()
    report(body, [{"name": "orders", "address": "127.0.0.1", "port": 8081}])
    assert Instance.objects.filter(service__name="orders").count() == 1
    assert api.delete(f"/api/v1/agents/{body['agent_id']}/").status_code == 204
    assert not Instance.objects.exists()
    assert report(body, []).status_code == 401


def test_an_agent_cannot_take_over_or_delete_an_operators_instance(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "billing", "check": {"type": "tcp"}}, format="json")
    registered = api.post(
        "/api/v1/services/billing/instances/",
        {"address": "127.0.0.1", "port": 7100, "node": "host-b"},
        format="json",
    )
    assert registered.status_code == 201
    body = enroll(enrollment_token_create()).json()
    hostile = [
        {
            "name": "billing",
            "address": "127.0.0.1",
            "port": 7100,
            "check": {"type": "http", "path": "/pwn", "interval": "5s", "timeout": "1s"},
        }
    ]
    assert report(body, hostile).status_code == 200
    instance = Instance.objects.select_related("node").get(pk=registered.json()["id"])
    assert instance.node is not None and instance.node.name == "host-b"
    assert not instance.agent_managed
    billing = Service.objects.get(name="billing")
    assert billing.check_type == "tcp" and billing.check_path != "/pwn"
    warnings = Event.objects.filter(kind=EventKind.AGENT, service="billing")
    assert {"instance:127.0.0.1:7100", "check"} <= {e.data.get("what") for e in warnings}
    # The same report again is one event, not one per report.
    report(body, hostile)
    assert Event.objects.filter(kind=EventKind.AGENT, service="billing").count() == warnings.count()
    # Its next report without the service deletes nothing it does not own.
    assert report(body, []).status_code == 200
    assert Instance.objects.filter(pk=registered.json()["id"]).exists()


def test_an_agent_that_runs_a_service_alone_still_updates_its_check() -> None:
    body = enroll(enrollment_token_create()).json()
    spec = {"name": "orders", "address": "127.0.0.1", "port": 8081,
            "check": {"type": "http", "path": "/health"}}
    report(body, [spec])
    report(body, [{**spec, "check": {"type": "http", "path": "/ready"}}])
    assert Service.objects.get(name="orders").check_path == "/ready"


def test_enrolltoken_command_lists_and_revokes(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("enrolltoken", "--ttl", "2h", "--uses", "5", "--description", "ci")
    raw = capsys.readouterr().out.strip()
    token = EnrollmentToken.objects.get()
    assert token.token_hash == hash_token(raw) and token.max_uses == 5
    call_command("enrolltoken", "--list")
    listing = capsys.readouterr().out
    assert token.prefix in listing and "active" in listing and raw not in listing
    call_command("enrolltoken", "--revoke", token.prefix)
    assert EnrollmentToken.objects.get().revoked


def test_token_prefixes_never_start_like_an_option() -> None:
    for _ in range(200):
        enrollment_token_create()
    assert not EnrollmentToken.objects.filter(prefix__startswith="-").exists()
    assert not EnrollmentToken.objects.filter(prefix__startswith="_").exists()
