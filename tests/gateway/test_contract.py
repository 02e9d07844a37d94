"""The gateway section against the contract's own example (docs/agent-protocol.md,
"Gateway agents"): the example is parsed out of the doc, and the section the
control plane builds for the same configuration must have the same shape — the
same keys at every level, the same value types — and, where the example's
values are what the API stores, the same values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.gateway.helpers import config, enroll, service

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-protocol.md"


def contract_example() -> dict[str, Any]:
    text = DOC.read_text()
    start = text.index('```json\n"gateway": {')
    block = text[start + len("```json\n") : text.index("```", start + 8)]
    block = re.sub(r"\s//[^\n]*", "", block)  # the doc's comments (not https://)
    block = block.replace("…", "")
    return dict(json.loads("{" + block + "}")["gateway"])


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_section_has_the_contracts_shape(api: APIClient) -> None:
    example = contract_example()
    [route] = example["routes"]
    service(route["service"])
    [consumer] = example["consumers"]
    api.post(
        "/api/v1/gateway/consumers/",
        {"name": consumer["name"], "jwt_subjects": consumer["jwt_subjects"]},
        format="json",
    )
    key = api.post(f"/api/v1/gateway/consumers/{consumer['name']}/keys/", {}, format="json")
    for name in route["auth"]["consumers"]:
        if name != consumer["name"]:
            api.post("/api/v1/gateway/consumers/", {"name": name}, format="json")
    [(provider_name, provider)] = example["jwt_providers"].items()
    keys = [{"kty": "RSA", "n": "sXch", "e": "AQAB"}]
    body = {**provider, "name": provider_name, "jwks": {"keys": keys}}
    response = api.post("/api/v1/gateway/jwt-providers/", body, format="json")
    assert response.status_code == 201, response.content
    client, agent = enroll("gw-1", gateway=example["name"])
    # The example's route, with both key and jwt settings as the doc shows
    # them, is two routes for the API (auth is key or jwt): one each.
    as_key = {**route, "auth": {k: v for k, v in route["auth"].items() if k != "jwt"}}
    as_jwt = {
        **route,
        "name": "jwt-" + route["name"],
        "auth": {
            "type": "jwt",
            "jwt": route["auth"]["jwt"],
            "consumers": route["auth"]["consumers"],
        },
    }
    response = api.put(
        f"/api/v1/gateway/{example['name']}/routes/", {"routes": [as_key, as_jwt]}, format="json"
    )
    assert response.status_code == 200, response.content
    section = config(client, agent["agent_id"])["gateway"]

    assert set(section) == set(example)
    got_key = next(r for r in section["routes"] if r["name"] == route["name"])
    assert {k: v for k, v in got_key.items() if k != "auth"} == {
        k: v for k, v in route.items() if k != "auth"
    }
    assert got_key["auth"]["key"] == route["auth"]["key"]
    assert got_key["auth"]["consumers"] == route["auth"]["consumers"]
    got_jwt = next(r for r in section["routes"] if r["name"] == as_jwt["name"])
    assert got_jwt["auth"]["jwt"] == route["auth"]["jwt"]
    got_consumer = next(c for c in section["consumers"] if c["name"] == consumer["name"])
    assert _shape(got_consumer) == _shape(consumer)
    assert got_consumer["key_hashes"] == [key.json()["key_hash"]]
    got_provider = section["jwt_providers"][provider_name]
    assert _shape({**got_provider, "jwks": {"keys": []}}) == _shape(provider)
    assert {k: v for k, v in got_provider.items() if k != "jwks"} == {
        k: v for k, v in provider.items() if k != "jwks"
    }


def test_the_agents_own_parser_takes_the_section(api: APIClient) -> None:
    """Producer fed to consumer: the section the control plane builds, through
    the gateway's parser (agents/runtime/gateway/table.py), values intact."""
    from agents.runtime.gateway.table import parse_gateway_section
    from agents.runtime.snapshot import parse_snapshot
    from tests.gateway.helpers import HS_SECRET

    service("orders")
    api.post(
        "/api/v1/gateway/consumers/", {"name": "alice", "jwt_subjects": ["a@corp"]}, format="json"
    )
    key = api.post("/api/v1/gateway/consumers/alice/keys/", {}, format="json").json()
    hs = {
        "name": "corp",
        "algorithms": ["HS256"],
        "issuer": "https://idp",
        "audience": "orders",
        "secret": HS_SECRET,
        "leeway_s": 10,
    }
    assert api.post("/api/v1/gateway/jwt-providers/", hs, format="json").status_code == 201
    url = {
        "name": "idp",
        "algorithms": ["RS256"],
        "issuer": "https://idp2",
        "audience": "orders",
        "jwks_url": "https://idp2.example.com/jwks",
    }
    assert api.post("/api/v1/gateway/jwt-providers/", url, format="json").status_code == 201
    table = [
        {"name": "any", "path": {"regex": "/v[0-9]+/.*"}, "service": "orders"},
        {
            "name": "keyed",
            "hosts": ["api.example.com"],
            "path": {"prefix": "/orders"},
            "service": "orders",
            "strip_prefix": True,
            "methods": ["GET", "POST"],
            "auth": {
                "type": "key",
                "key": {"header": "x-api-key", "query": "apikey"},
                "consumers": ["alice"],
            },
            "rate_limits": [
                {"scope": "consumer", "mode": "global", "requests": 5, "per": "minute", "burst": 2},
                {"requests": 100, "per": "second"},
            ],
            "cors": {"origins": ["https://app.example.com"], "credentials": True},
            "max_body_bytes": 2048,
            "timeout_ms": 1500,
        },
        {
            "name": "jwt",
            "hosts": ["*.example.org"],
            "path": {"exact": "/me"},
            "service": "orders",
            "auth": {"type": "jwt", "jwt": {"provider": "corp"}},
        },
    ]
    response = api.put("/api/v1/gateway/edge/routes/", {"routes": table}, format="json")
    assert response.status_code == 404  # no gateway yet: an agent's enrollment makes it
    client, agent = enroll("gw-1", gateway="edge")
    response = api.put("/api/v1/gateway/edge/routes/", {"routes": table}, format="json")
    assert response.status_code == 200, response.content
    snapshot = config(client, agent["agent_id"])
    parse_snapshot(snapshot)
    parsed = parse_gateway_section(snapshot["gateway"])
    assert [r.name for r in parsed.routes] == ["keyed", "jwt", "any"]
    assert parsed.providers["corp"] is not None and "idp" in parsed.providers
    assert [c.name for c in parsed.consumers] == ["alice"]
    assert parsed.consumers[0].key_hashes == (key["key_hash"],)
    keyed = parsed.routes[0]
    assert [
        (lim.scope, lim.mode, lim.requests, lim.per, lim.burst) for lim in keyed.rate_limits
    ] == [("consumer", "global", 5, "minute", 2), ("route", "local", 100, "second", 0)]
