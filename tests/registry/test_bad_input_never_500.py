"""Odd payloads and query strings across the API: a clear 4xx, never a 500, nothing stored."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from registry.models import Service

pytestmark = pytest.mark.django_db
BODIES = [
    "[]",
    "null",
    '"x"',
    "1",
    '{"name": null}',
    '{"name": ["a"]}',
    '{"name": "ok", "check": "http"}',
    '{"name": "ok", "check": null}',
    '{"name": "ok", "tags": [1, {}]}',
    '{"name": "ok", "check": {"interval": -5}}',
    '{"name": "ok", "check": {"interval": "1e309s"}}',
    '{"name": "ok", "check": {"interval": 1e400}}',
    '{"name": "ok", "check": {"interval": "1'
    + "0" * 400
    + 's"}}',
    '{"name": "ok", "check": {"expect_status": "999-1"}}',
    '{"name": "ok", "check": {"headers": {"a\\nb": "c"}}}',
    '{"name": "ok", "description": "\\u0000"}',
]
INST = [
    "[]",
    "null",
    '{"address": "1.2.3.4", "port": 1, "metadata": {"a": {"b": 1}}}',
    '{"address": "1.2.3.4", "port": 1, "node": 5}',
    '{"address": "' + "a" * 300 + '", "port": 1}',
    '{"address": "1.2.3.4", "port": 1.5}',
    '{"address": "\\u0000", "port": 1}',
]
POL = [
    "[]",
    "null",
    '{"load_balancer": 5}',
    '{"retries": []}',
    '{"retries": {"attempts": -1}}',
    '{"failover": {"targets": "x"}}',
    '{"rate_limit": {"rps": "fast"}}',
    '{"zone_priority": [null]}',
    '{"connect_timeout": "1e400s"}',
    '{"hash_on": "header"}',
]


def test_odd_input_gets_a_4xx_never_a_500(api: APIClient) -> None:
    for b in BODIES:
        r = api.generic("POST", "/api/v1/services/", b, content_type="application/json")
        assert 400 <= r.status_code < 500, (b, r.status_code, r.content[:300])
    assert not Service.objects.exists()
    api.post("/api/v1/services/", {"name": "svc", "check": {"type": "none"}}, format="json")
    for b in INST:
        r = api.generic(
            "POST", "/api/v1/services/svc/instances/", b, content_type="application/json"
        )
        assert r.status_code < 500, (b, r.status_code, r.content[:300])
    for verb in ("PUT", "PATCH"):
        for b in POL:
            r = api.generic(
                verb, "/api/v1/services/svc/policy/", b, content_type="application/json"
            )
            assert r.status_code < 500, (verb, b, r.status_code, r.content[:300])
    for b in [
        "[]",
        "null",
        '{"selector": "x", "action": "drain"}',
        '{"selector": {"tags": "v1"}, "action": "drain"}',
        '{"selector": {}, "action": "weight", "all": true}',
        '{"selector": {"metadata": {"a": 1}}, "action": "nuke"}',
    ]:
        r = api.generic(
            "POST", "/api/v1/services/svc/instances/bulk/", b, content_type="application/json"
        )
        assert r.status_code < 500, (b, r.status_code, r.content[:300])
    for q in [
        "window=-1s",
        "window=1e999s",
        "window=",
        "limit=abc",
        "since=yesterday",
        "kind=nope",
    ]:
        for path in ["/api/v1/topology/", "/api/v1/events/", "/api/v1/services/svc/metrics/"]:
            r = api.get(path + "?" + q)
            assert r.status_code < 500, (path, q, r.status_code, r.content[:300])
    for b in ["[]", '{"status": "dead"}', "null", '{"status": "passing", "output": 5}']:
        inst = api.post(
            "/api/v1/services/svc/instances/", {"address": "9.9.9.9", "port": 9}, format="json"
        ).json()
        r = api.generic(
            "PUT",
            f"/api/v1/services/svc/instances/{inst.get('id', 'x')}/heartbeat/",
            b,
            content_type="application/json",
        )
        assert r.status_code < 500, (b, r.status_code, r.content[:300])


@pytest.mark.parametrize(
    "since",
    [
        # Python takes offsets up to ±23:59; PostgreSQL only up to ±15:59.
        "8465-02-06T02:07:59.0-22:26",
        # Leaves the calendar once in UTC.
        "9999-12-31T23:59:59-23:00",
        "0001-01-01T00:00:00+23:00",
    ],
)
def test_events_since_any_valid_iso_time_is_never_a_500(api: APIClient, since: str) -> None:
    """Found by the schemathesis run on PostgreSQL (tests/test_openapi_conformance.py)."""
    response = api.get("/api/v1/events/", {"since": since})
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])


def test_events_since_with_a_wide_offset_is_compared_in_utc(api: APIClient) -> None:
    from journal.models import Event, EventKind

    Event.objects.create(kind=EventKind.CONFIG, message="now")
    assert api.get("/api/v1/events/", {"since": "2000-01-01T00:00:00-22:26"}).json()["results"][
        0
    ]["message"] == "now"
    assert api.get("/api/v1/events/", {"since": "9000-01-01T00:00:00-22:26"}).json()[
        "results"
    ] == []


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "ok", "check": {"type": "http", "headers": {"a\\ud8ad": "b"}}}',
        '{"name": "ok", "check": {"type": "http", "headers": {"\\udc00": "b"}}}',
    ],
)
def test_unpaired_surrogates_anywhere_in_json_are_400(api: APIClient, body: str) -> None:
    """Valid JSON, not UTF-8: refused by the parser, before any field sees it."""
    response = api.generic("POST", "/api/v1/services/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "surrogate" in str(response.json())
    assert not Service.objects.exists()


def test_instance_metadata_key_with_a_surrogate_is_400_not_500(api: APIClient) -> None:
    api.post("/api/v1/services/", {"name": "svc", "check": {"type": "none"}}, format="json")
    body = '{"address": "127.0.0.1", "port": 5, "metadata": {"k\\ud8ad": "v"}}'
    response = api.generic(
        "POST", "/api/v1/services/svc/instances/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/services/", {"name": 5}, "name"),
    ("/api/v1/services/", {"name": "typed", "description": 1e300}, "description"),
    ("/api/v1/intentions/", {"source": 1e300, "destination": "b", "action": "deny"}, "source"),
    ("/api/v1/gateway/consumers/", {"name": 7}, "name"),
])
def test_a_number_where_text_belongs_is_a_400_not_its_string(
    api: APIClient, path: str, body: dict[str, object], field: str
) -> None:
    response = api.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert "expected a string" in str(response.json()[field])
    assert not Service.objects.filter(name__in=["5", "typed"]).exists()


def test_an_http_status_may_be_a_number(api: APIClient) -> None:
    body = {"name": "numeric-status", "check": {"type": "http", "path": "/h", "expect_status": 204}}
    response = api.post("/api/v1/services/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["check"]["expect_status"] == "204"


DEEP_WRITES = [
    ("POST", "/api/v1/services/"),
    ("POST", "/api/v1/gateway/"),
    ("PUT", "/api/v1/gateway/edge/routes/"),
    ("POST", "/api/v1/gateway/consumers/"),
    ("POST", "/api/v1/gateway/jwt-providers/"),
    ("POST", "/api/v1/intentions/"),
    ("PUT", "/api/v1/intentions/default/"),
    ("POST", "/api/v1/ca/rotate/"),
]


@pytest.mark.parametrize(("method", "path"), DEEP_WRITES)
@pytest.mark.parametrize("depth", [100_000, 65])
def test_json_nested_too_deeply_is_a_400_not_a_500(
    api: APIClient, method: str, path: str, depth: int
) -> None:
    """100,000 levels overflowed the decoder's recursion (a RecursionError, a 500); past
    MAX_JSON_DEPTH (64), well beyond any document of the API, is refused too."""
    from gateway.models import Gateway
    from identity.models import CARoot, Intention
    from journal.models import AuditEntry

    api.post("/api/v1/gateway/", {"name": "edge"}, format="json")
    audited = AuditEntry.objects.count()
    body = '{"name": "deep", "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    response = api.generic(method, path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {"detail": "JSON parse error - nested deeper than 64 levels"}
    assert AuditEntry.objects.count() == audited
    assert not Service.objects.exists() and not Intention.objects.exists()
    assert not CARoot.objects.exists() and list(Gateway.objects.values_list("name", flat=True)) == ["edge"]


def test_json_nested_64_deep_is_parsed(api: APIClient) -> None:
    body = '{"name": "deep", "x": ' + "[" * 63 + "]" * 63 + "}"
    response = api.generic("POST", "/api/v1/gateway/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {"x": ["unknown field"]}  # parsed: the serializer's answer
