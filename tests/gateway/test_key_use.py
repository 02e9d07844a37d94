"""Key use reported by gateway agents (`gateway.keys_used` in a report, the digests
the agent runtime collects) sets ConsumerKey.last_used_at to the report's minute:
one UPDATE per report, nothing for a key already marked in that minute."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.runtime.gateway.auth import Consumers, key_digest
from agents.runtime.gateway.table import parse_gateway_section
from gateway.models import ConsumerKey
from gateway.services import consumer_keys_used
from tests.gateway.helpers import config, enroll, service

pytestmark = pytest.mark.django_db

CONSUMERS = "/api/v1/gateway/consumers/"


def _keys(api: APIClient) -> tuple[str, str]:
    assert api.post(CONSUMERS, {"name": "alice"}, format="json").status_code == 201
    first = api.post(CONSUMERS + "alice/keys/", {}, format="json").json()["key"]
    second = api.post(CONSUMERS + "alice/keys/", {}, format="json").json()["key"]
    return first, second


def _report(client: APIClient, agent_id: str, gateway: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/agents/{agent_id}/report/", {"gateway": gateway},
                       format="json")


def test_a_gateways_report_of_key_use_sets_last_used_at(api: APIClient) -> None:
    service("orders")
    used, unused = _keys(api)
    client, body = enroll("gw-1", gateway="edge")
    # The producer: the agent's own consumers, from the snapshot this gateway is sent.
    consumers = Consumers(parse_gateway_section(config(client, body["agent_id"])["gateway"])
                          .consumers)
    assert consumers.by_key(used.encode()) == "alice"
    keys_used = sorted("sha256:" + raw.hex() for raw in consumers.used)
    assert keys_used == [key_digest(used)]
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    response = _report(client, body["agent_id"], {"name": "edge", "keys_used": keys_used})
    assert response.status_code == 200, response.content
    rows = {k.key_hash: k.last_used_at for k in ConsumerKey.objects.all()}
    assert rows[key_digest(unused)] is None
    stamped = rows[key_digest(used)]
    assert stamped is not None and stamped >= before and stamped.second == 0
    listed = {k["prefix"]: k["last_used_at"]
              for k in api.get(CONSUMERS + "alice/keys/").json()["results"]}
    assert listed[used[:8]] is not None and listed[unused[:8]] is None


def test_one_update_per_report_and_none_within_the_same_minute(api: APIClient) -> None:
    first, second = _keys(api)
    at = datetime(2026, 12, 3, 10, 0, 30, tzinfo=UTC)
    hashes = [key_digest(first), key_digest(second)]
    with CaptureQueriesContext(connection) as queries:
        assert consumer_keys_used(key_hashes=hashes, at=at) == 2
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    assert consumer_keys_used(key_hashes=hashes, at=at.replace(second=59)) == 0
    assert consumer_keys_used(key_hashes=hashes, at=at.replace(minute=1)) == 2
    assert consumer_keys_used(key_hashes=[], at=at) == 0


def test_key_use_from_anyone_but_a_gateway_agent_changes_nothing(api: APIClient) -> None:
    used, _ = _keys(api)
    plain, plain_body = enroll("host-a")
    refused = _report(plain, plain_body["agent_id"],
                      {"name": "edge", "keys_used": [key_digest(used)]})
    assert refused.status_code == 403  # declaring a gateway its token does not list
    gw, gw_body = enroll("gw-1", gateway="edge")
    bad = _report(gw, gw_body["agent_id"], {"name": "edge", "keys_used": ["md5:abc"]})
    assert bad.status_code == 400 and "keys_used" in bad.json()["gateway"]
    assert not ConsumerKey.objects.filter(last_used_at__isnull=False).exists()
