"""The published JSON Schema of one mesh document (served at
/api/v1/mesh/schema/, written to docs/mesh.schema.json; a test keeps them
equal). It describes the shape for editors and CI linters; the server's
serializers stay the judge (cross-field rules, existing services, cycles)."""

from __future__ import annotations

from typing import Any

from agents.runtime.balancers import BALANCER_NAMES
from agents.runtime.durations import _DURATION
from agents.runtime.vocabulary import (
    HASH_NAME_MAX,
    HASH_TYPES,
    POLICY_BOUNDS,
    RATE_LIMIT_RPS,
    RETRY_CONDITIONS,
)
from gateway import vocabulary as gv
from identity.api.serializers import MAX_HEADERS, NAME_OR_WILDCARD, SOURCE_NAME
from identity.models import Action
from meshcode.intentions import MAX_SOURCES
from policies import routes as r
from policies.document import MAX_FAILOVER_TARGETS, ZONE_RE
from registry.models import SERVICE_NAME_RE, STATUS_RANGE_RE, CheckType, MtlsMode, Protocol

SCHEMA_ID = "https://meshconsole.invalid/schemas/mesh-v1.schema.json"


def _duration() -> dict[str, Any]:
    return {
        "description": 'a duration: "500ms", "5s", "2m", "1h"; a bare number is seconds',
        "oneOf": [
            {"type": "string", "pattern": _DURATION.pattern},
            {"type": "number", "minimum": 0},
        ],
    }


def _int(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _bounded(key: str) -> dict[str, Any]:
    """An integer policy field with the agent's own bounds (agents.runtime.vocabulary)."""
    bound = POLICY_BOUNDS[key]
    return _int(bound.low, bound.high)


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def _name(what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": SERVICE_NAME_RE, "maxLength": 63, "description": what}


def _check() -> dict[str, Any]:
    return _object(
        {
            "type": {"enum": list(CheckType.values)},
            "path": {"type": "string", "pattern": r"^/[^\s]*$", "maxLength": 255},
            "interval": _duration(),
            "timeout": _duration(),
            "rise": _int(1, 100),
            "fall": _int(1, 100),
            "expect_status": {"type": "string", "pattern": STATUS_RANGE_RE},
            "body": {"type": "string", "maxLength": 200},
            "headers": {
                "type": "object",
                "maxProperties": 20,
                "additionalProperties": {"type": "string", "maxLength": 1000},
            },
        }
    )


def _service() -> dict[str, Any]:
    return _object(
        {
            "kind": {"const": "Service"},
            "name": _name("the service name (a DNS label)"),
            "protocol": {"enum": list(Protocol.values)},
            "description": {"type": "string", "maxLength": 2000},
            "tags": {
                "type": "array",
                "maxItems": 64,
                "items": {"type": "string", "maxLength": 100},
            },
            "check": _check(),
            "drain_timeout": _duration(),
            "mtls_mode": {
                "enum": list(MtlsMode.values),
                "description": 'inbound mTLS: strict | permissive | off; "" = the mesh default',
            },
        },
        required=["kind", "name"],
    )


def _traffic_policy() -> dict[str, Any]:
    return _object(
        {
            "kind": {"const": "TrafficPolicy"},
            "name": _name("the destination service this policy governs"),
            "load_balancer": {"enum": list(BALANCER_NAMES)},
            "hash_on": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "type": {"enum": list(HASH_TYPES)},
                            "name": {"type": "string", "maxLength": HASH_NAME_MAX},
                        },
                        required=["type"],
                    ),
                ]
            },
            "connect_timeout": _duration(),
            "request_timeout": _duration(),
            "idle_timeout": _duration(),
            "retries": _object(
                {
                    "attempts": _bounded("retries.attempts"),
                    "per_try_timeout": _duration(),
                    "on": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": list(RETRY_CONDITIONS)},
                    },
                    "backoff_base": _duration(),
                    "backoff_max": _duration(),
                    "budget_percent": _bounded("retries.budget_percent"),
                    "min_per_second": _bounded("retries.min_per_second"),
                }
            ),
            "outlier": _object(
                {
                    "consecutive_5xx": _bounded("outlier.consecutive_5xx"),
                    "consecutive_gateway": _bounded("outlier.consecutive_gateway"),
                    "base_ejection": _duration(),
                    "max_ejection_percent": _bounded("outlier.max_ejection_percent"),
                }
            ),
            "circuit_breaker": _object(
                {
                    name: _bounded(f"circuit_breaker.{name}")
                    for name in ("max_connections", "max_pending", "max_requests")
                }
            ),
            "rate_limit": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "rps": {
                                "type": "number",
                                "minimum": RATE_LIMIT_RPS[0],
                                "maximum": RATE_LIMIT_RPS[1],
                            },
                            "burst": _bounded("rate_limit.burst"),
                        },
                        required=["rps"],
                    ),
                ]
            },
            "panic_threshold_percent": _bounded("panic_threshold_percent"),
            "locality": _object({"enabled": {"type": "boolean"}}),
            "zone_priority": {
                "type": "array",
                "maxItems": 32,
                "uniqueItems": True,
                "items": {"type": "string", "pattern": ZONE_RE, "maxLength": 63},
            },
            "failover": _object(
                {
                    "targets": {
                        "type": "array",
                        "maxItems": MAX_FAILOVER_TARGETS,
                        "uniqueItems": True,
                        "items": _name("a service to fail over to, in order"),
                    },
                    "hold_down": _duration(),
                }
            ),
        },
        required=["kind", "name"],
    )


def _text(limit: int = r.MAX_VALUE) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit}


def _exactly_one(properties: dict[str, Any]) -> dict[str, Any]:
    return _object(properties, minProperties=1, maxProperties=1)


def _header_edits() -> dict[str, Any]:
    header = {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"}
    return _object(
        {
            "set": {
                "type": "object",
                "maxProperties": r.MAX_HEADER_EDITS,
                "propertyNames": header,
                "additionalProperties": _text(),
            },
            "remove": {"type": "array", "maxItems": r.MAX_HEADER_EDITS, "items": header},
        }
    )


def _conditions(kinds: dict[str, Any]) -> dict[str, Any]:
    condition = _object(
        {"name": {"type": "string", "minLength": 1, "maxLength": 200}, **kinds},
        required=["name"],
        minProperties=2,
        maxProperties=2,
    )
    return {"type": "array", "maxItems": r.MAX_MATCHES, "items": condition}


def _routes() -> dict[str, Any]:
    name = {"type": "string", "pattern": r.NAME_RE.pattern}
    path = {"type": "string", "pattern": r"^/\S*$", "maxLength": r.MAX_PATH}
    regex = _text(r.MAX_REGEX)
    true = {"const": True}
    subset = _object(
        {
            "tags": {"type": "array", "maxItems": r.MAX_SELECTORS, "items": _text(200)},
            "metadata": {
                "type": "object",
                "maxProperties": r.MAX_SELECTORS,
                "additionalProperties": _text(500),
            },
        }
    )
    target = _object(
        {
            "subset": name,
            "service": _name("another service (its whole endpoint set)"),
            "weight": _int(0, r.MAX_WEIGHT),
        },
        required=["weight"],
        minProperties=2,
        maxProperties=2,
    )
    timeout = POLICY_BOUNDS["request_timeout_ms"]
    route = _object(
        {
            "name": name,
            "match": _object(
                {
                    "path": _exactly_one({"exact": path, "prefix": path, "regex": regex}),
                    "methods": {
                        "type": "array",
                        "maxItems": r.MAX_METHODS,
                        "items": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z-]{0,19}$"},
                    },
                    "headers": _conditions(
                        {"exact": _text(), "prefix": _text(), "regex": regex,
                         "present": true, "absent": true}
                    ),
                    "query": _conditions({"exact": _text(), "regex": regex, "present": true}),
                }
            ),
            "split": {"type": "array", "minItems": 1, "maxItems": r.MAX_SPLIT, "items": target},
            "sticky": _exactly_one(
                {"header": {"type": "string", "maxLength": 100},
                 "cookie": {"type": "string", "maxLength": 100}}
            ),
            "fallback": {"enum": list(r.FALLBACKS)},
            "rewrite": _exactly_one({"prefix": path, "path": path}),
            "request_headers": _header_edits(),
            "response_headers": _header_edits(),
            "timeout_ms": _int(max(timeout.low, 1), timeout.high),
            "retries": _object({"attempts": _bounded("retries.attempts")}, required=["attempts"]),
        },
        required=["name", "split"],
    )
    return _object(
        {
            "kind": {"const": "Routes"},
            "name": _name("the destination service these routes belong to"),
            "subsets": {
                "type": "object",
                "maxProperties": r.MAX_SUBSETS,
                "propertyNames": name,
                "additionalProperties": subset,
            },
            "routes": {"type": "array", "maxItems": r.MAX_ROUTES, "items": route},
        },
        required=["kind", "name"],
    )


def _strings(max_items: int, **item: Any) -> dict[str, Any]:
    return {"type": "array", "maxItems": max_items, "uniqueItems": True,
            "items": {"type": "string", **item}}  # fmt: skip


def _consumer() -> dict[str, Any]:
    return _object(
        {
            "kind": {"const": "Consumer"},
            "name": _name("the consumer (an API client of the gateways)"),
            "description": {"type": "string", "maxLength": 200},
            "tags": _strings(64, maxLength=100),
            "jwt_subjects": _strings(100, maxLength=253),
        },
        required=["kind", "name"],
    )


def _path_match() -> dict[str, Any]:
    kinds = {k: {"type": "string", "maxLength": gv.PATH_MAX} for k in gv.PATH_KINDS}
    return _object(kinds, minProperties=1, maxProperties=1)


def _gateway_route() -> dict[str, Any]:
    methods = {"type": "array", "uniqueItems": True, "items": {"enum": list(gv.HTTP_METHODS)}}
    return _object(
        {
            "kind": {"const": "GatewayRoute"},
            "name": _name("the route (unique across gateways)"),
            "gateway": _name("the gateway whose table holds it (created when new)"),
            "hosts": _strings(gv.HOSTS_MAX, maxLength=253),
            "path": _path_match(),
            "methods": methods,
            "service": _name("the mesh service it routes to"),
            "subset": {"type": "string", "maxLength": 63},
            "strip_prefix": {"type": "boolean"},
            "auth": _object(
                {
                    "type": {"enum": list(gv.AUTH_TYPES)},
                    "key": _object({"header": {"type": "string"}, "query": {"type": "string"}}),
                    "jwt": _object({"provider": _name("a JWT provider")}, required=["provider"]),
                    "consumers": _strings(1000, pattern=SERVICE_NAME_RE),
                }
            ),
            "rate_limits": {
                "type": "array",
                "maxItems": gv.RATE_LIMITS_MAX,
                "items": _object(
                    {
                        "scope": {"enum": list(gv.RATE_SCOPES)},
                        "mode": {"enum": list(gv.RATE_MODES)},
                        "requests": _int(1, gv.RATE_REQUESTS_MAX),
                        "per": {"enum": list(gv.RATE_PERIODS)},
                        "burst": _int(0, gv.RATE_BURST_MAX),
                    },
                    required=["requests", "per"],
                ),
            },
            "cors": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "origins": _strings(100, maxLength=300),
                            "methods": methods,
                            "headers": _strings(100, maxLength=100),
                            "credentials": {"type": "boolean"},
                            "max_age_s": _int(*gv.CORS_MAX_AGE_S),
                        },
                        required=["origins"],
                    ),
                ]
            },
            "max_body_bytes": {"oneOf": [{"type": "null"}, _int(*gv.MAX_BODY_BYTES)]},
            "timeout_ms": {"oneOf": [{"type": "null"}, _int(*gv.TIMEOUT_MS)]},
        },
        required=["kind", "name", "gateway", "service"],
    )


def _intentions() -> dict[str, Any]:
    service_or_any = {"type": "string", "pattern": NAME_OR_WILDCARD, "maxLength": 63}
    return _object(
        {
            "kind": {"const": "Intentions"},
            "name": {**service_or_any, "description": 'the destination service, or "*"'},
            "sources": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SOURCES,
                "items": _object(
                    {
                        "source": {
                            "type": "string",
                            "pattern": SOURCE_NAME,
                            "maxLength": 71,
                            "description": 'a service, "gateway:<name>", or "*"',
                        },
                        "action": {"enum": list(Action.values)},
                        "http": {
                            "oneOf": [
                                {"type": "null"},
                                _object(
                                    {
                                        "methods": {
                                            "type": "array",
                                            "maxItems": 16,
                                            "items": {"type": "string", "maxLength": 32},
                                        },
                                        "path_prefix": {
                                            "type": "string",
                                            "pattern": r"^/[^\s]*$",
                                            "maxLength": 500,
                                        },
                                        "headers": {
                                            "type": "object",
                                            "maxProperties": MAX_HEADERS,
                                            "additionalProperties": {
                                                "type": "string",
                                                "maxLength": 500,
                                            },
                                        },
                                    },
                                    minProperties=1,
                                ),
                            ]
                        },
                        "description": {"type": "string", "maxLength": 500},
                    },
                    required=["source", "action"],
                ),
            },
        },
        required=["kind", "name", "sources"],
    )


# One entry per kind (meshcode.kinds.KINDS); later kinds add theirs here.
DEFINITIONS = {
    "Service": _service,
    "TrafficPolicy": _traffic_policy,
    "Routes": _routes,
    "Intentions": _intentions,
    "Consumer": _consumer,
    "GatewayRoute": _gateway_route,
}


def mesh_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "meshconsole mesh document",
        "description": (
            "One document of a mesh YAML file (docs/mesh-as-code.md); "
            "a file holds several, separated by ---."
        ),
        "type": "object",
        "required": ["kind", "name"],
        "properties": {"kind": {"enum": list(DEFINITIONS)}},
        "oneOf": [{"$ref": f"#/$defs/{kind}"} for kind in DEFINITIONS],
        "$defs": {kind: build() for kind, build in DEFINITIONS.items()},
    }
