"""Consumers and their API keys: a key is shown once, stored as its sha256 only,
listed by prefix, revoked by prefix; nothing secret in GET or in the audit."""

from __future__ import annotations

import hashlib
import json

import pytest
from rest_framework.test import APIClient

from gateway.models import Consumer, ConsumerKey
from journal.models import AuditEntry

pytestmark = pytest.mark.django_db

CONSUMERS = "/api/v1/gateway/consumers/"


def test_a_key_is_shown_once_and_stored_hashed(api: APIClient) -> None:
    created = api.post(CONSUMERS, {"name": "alice", "jwt_subjects": ["alice@corp"]}, format="json")
    assert created.status_code == 201, created.content
    response = api.post(CONSUMERS + "alice/keys/", {"description": "ci"}, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    key = body["key"]
    assert len(key) >= 40 and body["prefix"] == key[:8]
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    row = ConsumerKey.objects.get()
    assert row.key_hash == digest == body["key_hash"]
    stored = json.dumps(list(ConsumerKey.objects.values()), default=str)
    assert key not in stored
    # Never again: not in the consumer, its key list, nor the audit.
    for path in (CONSUMERS, CONSUMERS + "alice/", CONSUMERS + "alice/keys/"):
        text = api.get(path).content.decode()
        assert key not in text and digest not in text and body["prefix"] in text
    audit = json.dumps(list(AuditEntry.objects.values("before", "after")))
    assert key not in audit and digest not in audit and body["prefix"] in audit


def test_keys_are_revoked_by_prefix(api: APIClient) -> None:
    api.post(CONSUMERS, {"name": "alice"}, format="json")
    first = api.post(CONSUMERS + "alice/keys/", {}, format="json").json()
    second = api.post(CONSUMERS + "alice/keys/", {}, format="json").json()
    assert first["key"] != second["key"]
    assert api.delete(CONSUMERS + f"alice/keys/{first['prefix']}/").status_code == 204
    assert api.delete(CONSUMERS + f"alice/keys/{first['prefix']}/").status_code == 404
    assert [k["prefix"] for k in api.get(CONSUMERS + "alice/keys/").json()["results"]] == [
        second["prefix"]
    ]
    assert api.post(CONSUMERS + "bob/keys/", {}, format="json").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Alice"},
        {"name": "alice", "tags": "team=a"},
        {"name": "alice", "jwt_subjects": ["a", "a"]},
        {"name": "alice", "description": "x" * 201},
        {"name": "alice", "password": "hunter2"},
        ["alice"],
    ],
)
def test_a_bad_consumer_is_a_400_and_stores_nothing(api: APIClient, body: object) -> None:
    assert api.post(CONSUMERS, body, format="json").status_code == 400
    assert not Consumer.objects.exists()


def test_consumers_change_but_keep_their_name(api: APIClient) -> None:
    api.post(CONSUMERS, {"name": "alice"}, format="json")
    assert api.post(CONSUMERS, {"name": "alice"}, format="json").status_code == 409
    response = api.patch(CONSUMERS + "alice/", {"tags": ["team=web"]}, format="json")
    assert response.status_code == 200 and response.json()["tags"] == ["team=web"]
    assert api.patch(CONSUMERS + "alice/", {"name": "bob"}, format="json").status_code == 400
    assert api.post(CONSUMERS + "alice/keys/", {"key": "mine"}, format="json").status_code == 400
    assert not ConsumerKey.objects.exists()


@pytest.mark.parametrize(("body", "error"), [
    ({"tags": [5]}, {"tags": {"0": ["expected a string, got a number"]}}),
    ({"jwt_subjects": ["alice@corp", 1.5]}, {"jwt_subjects": {"1": ["expected a string, got a number"]}}),
    ({"jwt_subjects": [False]}, {"jwt_subjects": {"0": ["expected a string, got a boolean"]}}),
])
def test_a_number_in_a_list_of_text_is_a_400_not_its_string(
    api: APIClient, body: dict[str, object], error: dict[str, object]
) -> None:
    """A JWT `sub` of "5" would have matched subject 5 (a string claim, RFC 7519)."""
    response = api.post(CONSUMERS, {"name": "alice", **body}, format="json")
    assert response.status_code == 400 and response.json() == error, response.content
    assert not Consumer.objects.exists()
    assert api.post(CONSUMERS, {"name": "alice"}, format="json").status_code == 201
    audited = AuditEntry.objects.count()
    response = api.patch(CONSUMERS + "alice/", body, format="json")
    assert response.status_code == 400 and response.json() == error, response.content
    assert Consumer.objects.get().tags == [] and Consumer.objects.get().jwt_subjects == []
    assert AuditEntry.objects.count() == audited
