"""Unknown fields in a request body are a 400 naming them, on every operator
endpoint (a typo must not pass as a change), as the policy endpoint always did."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from registry.models import Instance, Service

pytestmark = pytest.mark.django_db

SERVICES = "/api/v1/services/"


@pytest.fixture
def instance_url(api: APIClient) -> str:
    api.post(SERVICES, {"name": "payments", "check": {"type": "ttl"}}, format="json")
    body = api.post(
        f"{SERVICES}payments/instances/", {"address": "127.0.0.1", "port": 8080}, format="json"
    ).json()
    return f"{SERVICES}payments/instances/{body['id']}/"


def test_service_create_with_an_unknown_field_is_400_and_creates_nothing(api: APIClient) -> None:
    response = api.post(SERVICES, {"name": "zzz", "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"colour": ["unknown field"]}
    assert not Service.objects.filter(name="zzz").exists()


def test_unknown_field_inside_the_check_is_400(api: APIClient) -> None:
    response = api.post(
        SERVICES, {"name": "zzz", "check": {"type": "http", "intervall": "5s"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"check": {"intervall": ["unknown field"]}}


def test_read_only_fields_sent_back_are_accepted(api: APIClient) -> None:
    """A document read, edited and sent back: read-only keys are known, and ignored."""
    api.post(SERVICES, {"name": "zzz"}, format="json")
    document = api.get(f"{SERVICES}zzz/").json()
    document["description"] = "edited"
    response = api.patch(f"{SERVICES}zzz/", document, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["description"] == "edited"


def test_service_patch_with_an_unknown_field_is_400(api: APIClient) -> None:
    api.post(SERVICES, {"name": "zzz"}, format="json")
    response = api.patch(f"{SERVICES}zzz/", {"descripton": "typo"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"descripton": ["unknown field"]}


def test_instance_create_and_patch_refuse_unknown_fields(
    api: APIClient, instance_url: str
) -> None:
    response = api.post(
        f"{SERVICES}payments/instances/",
        {"address": "127.0.0.1", "port": 8081, "wieght": 5},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"wieght": ["unknown field"]}
    assert Instance.objects.count() == 1
    response = api.patch(instance_url, {"weight": 5, "maintenence": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {"maintenence": ["unknown field"]}
    assert Instance.objects.get().weight == 100


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        ("weight/", {"weight": 5, "extra": 1}, "extra"),
        ("heartbeat/", {"status": "passing", "outptu": ""}, "outptu"),
    ],
)
def test_instance_commands_refuse_unknown_fields(
    api: APIClient, instance_url: str, suffix: str, body: dict[str, object], field: str
) -> None:
    method = api.put if suffix == "heartbeat/" else api.post
    response = method(instance_url + suffix, body, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["unknown field"]}


def test_bulk_refuses_unknown_fields_at_every_level(api: APIClient, instance_url: str) -> None:
    url = f"{SERVICES}payments/instances/bulk/"
    response = api.post(url, {"all": True, "action": "drain", "force": True}, format="json")
    assert response.json() == {"force": ["unknown field"]}
    response = api.post(
        url, {"selector": {"tag": ["a"]}, "action": "drain"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"selector": {"tag": ["unknown field"]}}


def test_enrollment_token_create_refuses_unknown_fields(api: APIClient) -> None:
    response = api.post(
        "/api/v1/agents/enrollment-tokens/", {"ttl": "1h", "max_use": 3}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"max_use": ["unknown field"]}


@pytest.mark.parametrize("ttl", ["7177635740048497375793h", "367d", "8785h"])
def test_enrollment_token_ttl_past_a_year_is_400_not_500(api: APIClient, ttl: str) -> None:
    """Found by the schemathesis run: the expiry overflowed the datetime."""
    response = api.post("/api/v1/agents/enrollment-tokens/", {"ttl": ttl}, format="json")
    assert response.status_code == 400
    assert "ttl" in response.json()


def test_enrollment_token_ttl_of_a_year_is_accepted(api: APIClient) -> None:
    response = api.post("/api/v1/agents/enrollment-tokens/", {"ttl": "8784h"}, format="json")
    assert response.status_code == 201, response.json()
