"""What drf-spectacular cannot see by itself, so that /api/schema/ tells the truth:
the agent token scheme, the two blocking-query views (plain async Django views,
outside DRF), path parameter patterns, the error responses each operation can
give, and that request bodies refuse unknown fields (meshconsole.api.StrictFieldsMixin).

Checked by `manage.py spectacular --validate --fail-on-warn` and by the
schemathesis run in tests/test_openapi_conformance.py."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from meshconsole.api import DURATION_SCHEMA
from registry.models import SERVICE_NAME_RE

# Instance ids are generated hex; path values outside these never reach a view.
PATH_PATTERNS = {
    "name": SERVICE_NAME_RE,
    "service_name": SERVICE_NAME_RE,
    "id": r"^[A-Za-z0-9_-]{1,32}$",
}
WRITE_METHODS = ("post", "put", "patch", "delete")
# Agent-protocol bodies stay open to unknown fields: during a rolling upgrade a
# newer agent's extra field must not make an older control plane refuse it.
OPEN_REQUESTS = (
    "EnrollRequest",
    "ReportRequest",
    "UpstreamRequest",
    "LocalServiceRequest",
    "MetricsWindowRequest",
    "NackRequest",
    "EjectionRequest",
)
AGENT_TOKEN: dict[str, Any] = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "`Agent <agent token>`, as returned by agents/enroll/",
}


class AgentTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "agents.api.auth.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return AGENT_TOKEN


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    # DRF's validation shape: field name -> messages (or nested errors), or detail.
    "ValidationError": {"type": "object", "additionalProperties": {}},
}

BLOCKING_PARAMETERS = [
    {
        "in": "query",
        "name": "wait",
        "schema": DURATION_SCHEMA,
        "description": "with an index: wait at most this long (30s by default, capped "
        "by MESH_MAX_WAIT) for the mesh revision to pass it",
    },
]

INDEX_HEADER = {
    "X-Mesh-Index": {"schema": {"type": "integer"}, "description": "the mesh revision"}
}

ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "address": {"type": "string"},
        "port": {"type": "integer"},
        "zone": {"type": "string"},
        "weight": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "status": {"type": "string", "enum": ["passing", "warning"]},
    },
    "required": ["id", "address", "port", "zone", "weight", "tags", "metadata", "status"],
}

DISCOVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "service": {"type": "string"},
        "protocol": {"type": "string", "enum": ["http", "tcp"]},
        "revision": {"type": "integer"},
        "endpoints": {"type": "array", "items": _ref("DiscoveryEndpoint")},
    },
    "required": ["service", "protocol", "revision", "endpoints"],
}


def _discovery_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "discovery_retrieve",
            "summary": "Healthy endpoints of a service (Consul-style blocking query)",
            "tags": ["discovery"],
            "parameters": [
                {"in": "path", "name": "name", "required": True, "schema": {"type": "string"}},
                {
                    "in": "query",
                    "name": "index",
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "block until the mesh revision passes this index",
                },
                *BLOCKING_PARAMETERS,
            ],
            "security": [{"tokenAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    **_json(_ref("Discovery"), "routable endpoints"),
                    "headers": INDEX_HEADER,
                }
            },
        }
    }


def _config_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "agents_config_retrieve",
            "summary": "The agent's config snapshot (long-poll)",
            "description": "The snapshot's fields are described in docs/agent-protocol.md "
            "and docs/policies.md.",
            "tags": ["agents"],
            "parameters": [
                {
                    "in": "path",
                    "name": "agent_id",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                {
                    "in": "query",
                    "name": "revision",
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "block until the mesh revision passes this one",
                },
                *BLOCKING_PARAMETERS,
            ],
            "security": [{"agentToken": []}],
            "responses": {
                "200": {
                    **_json(
                        {
                            "type": "object",
                            "properties": {"revision": {"type": "integer"}},
                            "required": ["revision"],
                        },
                        "the snapshot",
                    ),
                    "headers": INDEX_HEADER,
                }
            },
        }
    }


PAGING = ("page", "page_size")


def _error_responses(method: str, operation: dict[str, Any]) -> dict[str, Any]:
    params = operation.get("parameters", [])
    security = operation.get("security") or [{}]
    anonymous = any(not requirement for requirement in security)
    errors: dict[str, Any] = {}
    # Pagination's own parameters are never a 400 (a bad page is a 404, a big
    # page_size is clamped); any other query parameter can be.
    queries = [p for p in params if p.get("in") == "query" and p.get("name") not in PAGING]
    if "requestBody" in operation or queries:
        errors["400"] = _json(_ref("ValidationError"), "invalid input, by field")
    if any(p.get("in") == "query" and p.get("name") == "page" for p in params):
        errors["404"] = _json(_ref("Error"), "no such object (or page)")
    if not anonymous:
        errors["401"] = _json(_ref("Error"), "no or invalid credentials")
    errors["403"] = _json(_ref("Error"), "these credentials may not do this")
    if any(p.get("in") == "path" for p in params):
        errors["404"] = _json(_ref("Error"), "no such object")
    if method in WRITE_METHODS:
        errors["409"] = _json(_ref("Error"), "conflicts with the current state")
    if anonymous:
        errors["429"] = _json(_ref("Error"), "throttled")
    return errors


def postprocess(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry (after drf-spectacular's enum hook)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(ERROR_SCHEMAS)
    schemas["Discovery"] = DISCOVERY_SCHEMA
    schemas["DiscoveryEndpoint"] = ENDPOINT_SCHEMA
    result["components"].setdefault("securitySchemes", {})["agentToken"] = AGENT_TOKEN
    paths = result.setdefault("paths", {})
    paths["/api/v1/discovery/{name}/"] = _discovery_path()
    paths["/api/v1/agents/{agent_id}/config/"] = _config_path()
    result["paths"] = dict(sorted(paths.items()))
    for name, schema in schemas.items():
        if name.endswith("Request") and name not in OPEN_REQUESTS and "properties" in schema:
            schema["additionalProperties"] = False
    for item in paths.values():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param["name"] in PATH_PATTERNS:
                    param["schema"] = {"type": "string", "pattern": PATH_PATTERNS[param["name"]]}
            responses = operation.setdefault("responses", {})
            for status, response in _error_responses(method, operation).items():
                responses.setdefault(status, response)
    return result
