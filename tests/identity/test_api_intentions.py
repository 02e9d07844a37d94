"""The intentions API: validation, versions, audit, the default, the check, and the snapshot."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from agents.models import Agent
from agents.snapshot import agent_snapshot
from identity.models import Intention
from journal.models import AuditEntry
from tests.identity.helpers import enrolled_agent

pytestmark = pytest.mark.django_db


def create(api: APIClient, **body: Any) -> Any:
    return api.post("/api/v1/intentions/", body, format="json")


@pytest.mark.parametrize(
    "body",
    [
        {"source": "Orders", "destination": "payments", "action": "allow"},
        {"source": "orders", "destination": "payments", "action": "maybe"},
        {"source": "orders", "destination": "payments"},
        {"source": "orders", "destination": "orders", "action": "deny"},
        {"source": "orders", "destination": "payments", "action": "deny", "http": {}},
        {"source": "orders", "destination": "payments", "action": "deny", "http": {"methods": ["PO ST"]}},
        {"source": "orders", "destination": "payments", "action": "deny", "http": {"path_prefix": "refund"}},
        {"source": "orders", "destination": "payments", "action": "deny", "http": {"headers": {"bad header": "x"}}},
        {"source": "orders", "destination": "payments", "action": "deny", "http": {"verbs": ["GET"]}},
        {"source": "orders", "destination": "payments", "action": "deny", "colour": "red"},
        {"source": "gateway:Edge", "destination": "payments", "action": "deny"},
        {"source": "gateway:", "destination": "payments", "action": "deny"},
        {"source": "orders", "destination": "gateway:edge", "action": "deny"},
    ],
)
def test_invalid_intentions_are_400_and_change_nothing(api: APIClient, body: dict[str, Any]) -> None:
    response = create(api, **body)
    assert response.status_code == 400, response.content
    assert not Intention.objects.exists()
    assert not AuditEntry.objects.filter(object_type="intention").exists()


def test_create_read_patch_delete_with_versions_and_audit(api: APIClient) -> None:
    response = create(
        api, source="orders", destination="payments", action="deny",
        http={"methods": ["post"], "path_prefix": "/refund", "headers": {"X-Team": "a"}},
        description="no refunds from orders",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["http"] == {"methods": ["POST"], "path_prefix": "/refund", "headers": {"x-team": "a"}}
    assert body["version"] == 1
    url = f"/api/v1/intentions/{body['id']}/"
    assert api.get(url).json()["description"] == "no refunds from orders"
    # A stale version is a 409 that changes nothing.
    patched = api.patch(url, {"action": "allow", "version": 1}, format="json")
    assert patched.status_code == 200 and patched.json()["version"] == 2
    stale = api.patch(url, {"action": "deny", "version": 1}, format="json")
    assert stale.status_code == 409
    assert Intention.objects.get().action == "allow"
    stale_header = api.patch(url, {"action": "deny"}, format="json", HTTP_IF_MATCH='"1"')
    assert stale_header.status_code == 409
    assert api.delete(url, HTTP_IF_MATCH='"1"').status_code == 409
    assert api.delete(url, HTTP_IF_MATCH='"2"').status_code == 204
    assert api.get(url).status_code == 404
    actions = list(
        AuditEntry.objects.filter(object_type="intention").order_by("id").values_list("action", flat=True)
    )
    assert actions == ["create", "update", "delete"]
    update = AuditEntry.objects.get(object_type="intention", action="update")
    assert (update.before["action"], update.after["action"]) == ("deny", "allow")


def test_unknown_service_names_are_accepted(api: APIClient) -> None:
    assert create(api, source="not-yet", destination="*", action="deny").status_code == 201


def test_viewers_read_but_only_staff_write(api: APIClient, viewer: User) -> None:
    create(api, source="orders", destination="payments", action="deny")
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/v1/intentions/").status_code == 200
    assert create(client, source="a", destination="b", action="deny").status_code == 403
    assert client.put("/api/v1/intentions/default/", {"default_action": "deny"}, format="json").status_code == 403
    assert APIClient().get("/api/v1/intentions/").status_code in (401, 403)


def test_the_default_is_allow_and_one_put_switches_it(api: APIClient) -> None:
    assert api.get("/api/v1/intentions/default/").json() == {"default_action": "allow", "version": 1}
    response = api.put("/api/v1/intentions/default/", {"default_action": "deny"}, format="json")
    assert response.json() == {"default_action": "deny", "version": 2}
    stale = api.put("/api/v1/intentions/default/", {"default_action": "allow", "version": 1}, format="json")
    assert stale.status_code == 409
    assert api.put("/api/v1/intentions/default/", {"default_action": "nope"}, format="json").status_code == 400
    assert api.get("/api/v1/intentions/default/").json()["default_action"] == "deny"


def test_a_gateway_is_an_intention_source(api: APIClient) -> None:
    """`gateway:<name>`: the identity every agent serving as that gateway holds."""
    rule = create(api, source="gateway:edge", destination="payments", action="deny")
    assert rule.status_code == 201, rule.content
    assert rule.json()["source"] == "gateway:edge"
    check = "/api/v1/intentions/check/?destination=payments&source="
    assert api.get(check + "gateway:edge").json()["allowed"] is False
    assert api.get(check + "gateway:other").json()["allowed"] is True


def test_check_explains_the_rule_that_decides(api: APIClient) -> None:
    wildcard = create(api, source="*", destination="payments", action="deny").json()
    refunds = create(
        api, source="orders", destination="payments", action="allow",
        http={"methods": ["POST"], "path_prefix": "/refund"},
    ).json()
    base = "/api/v1/intentions/check/?source=orders&destination=payments"
    hit = api.get(base + "&method=POST&path=/refund/1").json()
    assert hit["allowed"] is True and hit["rule"]["id"] == refunds["id"]
    miss = api.get(base + "&method=GET&path=/refund/1").json()
    assert miss["allowed"] is False and miss["rule"]["id"] == wildcard["id"]
    tcp = api.get(base).json()
    assert tcp["rule"]["id"] == wildcard["id"]
    other = api.get("/api/v1/intentions/check/?source=orders&destination=ledger").json()
    assert other == {"allowed": True, "rule": None, "reason": other["reason"]}
    assert "default" in other["reason"]
    assert api.get("/api/v1/intentions/check/?source=orders").status_code == 400
    assert api.get(base + "&colour=red").status_code == 400


def test_the_snapshot_carries_the_local_services_rules_sorted_and_moves_on_a_change(api: APIClient) -> None:
    _, agent_id = enrolled_agent(services=[{"name": "payments", "address": "127.0.0.1", "port": 8080}])
    agent = Agent.objects.get(pk=agent_id)
    before = agent_snapshot(agent=agent)
    assert before["security"]["intentions"] == []
    assert before["security"]["default_action"] == "allow"
    assert before["security"]["inbound"] == {"payments": {"mtls": "permissive"}}
    low = create(api, source="*", destination="*", action="deny").json()
    mine = create(api, source="orders", destination="payments", action="allow").json()
    create(api, source="orders", destination="ledger", action="deny")  # not this agent's
    after = agent_snapshot(agent=agent)
    assert after["revision"] > before["revision"]
    assert [r["id"] for r in after["security"]["intentions"]] == [mine["id"], low["id"]]
    assert after["security"]["intentions"][0] == {
        "id": mine["id"], "source": "orders", "destination": "payments", "action": "allow", "http": None,
    }
    api.put("/api/v1/intentions/default/", {"default_action": "deny"}, format="json")
    final = agent_snapshot(agent=agent)
    assert final["security"]["default_action"] == "deny"
    assert final["revision"] > after["revision"]


# Digits str.isdigit() takes that are not ASCII: "²" made int() raise (a 500), "١" (Arabic-
# Indic one) read as intention 1.
@pytest.mark.parametrize("digits", ["\u00b2", "\u0661", "1\u00b2"])
def test_an_id_or_if_match_in_non_ascii_digits_is_a_404_or_400_not_a_500(
    api: APIClient, digits: str
) -> None:
    intention = create(api, source="web", destination="orders", action="allow").json()
    url = f"/api/v1/intentions/{intention['id']}/"
    api.raise_request_exception = False
    for method in ("get", "patch", "delete"):
        response = getattr(api, method)(f"/api/v1/intentions/{digits}/", {"action": "deny"},
                                        format="json")
        assert response.status_code == 404, response.content[:200]
        assert response.json() == {"detail": f"no intention {digits!r}"}
    for method, path, body in [("patch", url, {"action": "deny"}), ("delete", url, None),
                               ("put", "/api/v1/intentions/default/", {"default_action": "deny"})]:
        for header in (digits, f'"{digits}"'):
            response = getattr(api, method)(path, body, format="json", HTTP_IF_MATCH=header)
            assert response.status_code == 400, response.content[:200]
            assert response.json() == {"If-Match": ["the intention's version, an integer"]}
    assert Intention.objects.get().action == "allow"
    assert Intention.objects.get().version == 1
    assert api.get("/api/v1/intentions/default/").json()["version"] == 1
    assert AuditEntry.objects.filter(object_type__startswith="intention").count() == 1


@pytest.mark.parametrize(("http", "error"), [
    ({"methods": [5]}, {"methods": {"0": ["expected a string, got a number"]}}),
    ({"headers": {"x-team": 1.5}}, {"headers": {"x-team": ["expected a string, got a number"]}}),
    ({"headers": {"x-team": True}}, {"headers": {"x-team": ["expected a string, got a boolean"]}}),
])
def test_a_number_where_a_condition_takes_text_is_a_400_not_its_string(
    api: APIClient, http: dict[str, Any], error: dict[str, Any]
) -> None:
    """Method 5 became "5", a header value 1.5 the text "1.5"."""
    response = create(api, source="web", destination="orders", action="deny", http=http)
    assert response.status_code == 400 and response.json() == {"http": error}, response.content
    assert not Intention.objects.exists()
    intention = create(api, source="web", destination="orders", action="deny").json()
    response = api.patch(f"/api/v1/intentions/{intention['id']}/", {"http": http}, format="json")
    assert response.status_code == 400 and response.json() == {"http": error}, response.content
    assert Intention.objects.get().http is None and Intention.objects.get().version == 1
