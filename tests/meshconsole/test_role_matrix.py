"""The role matrix: every URL of the API and the console × every kind of caller
× every verb the URL serves, against the table below, 100 % match.

The URLs come from the resolver: an endpoint (or a verb of a class-based view)
without a row in TABLE fails `test_every_endpoint_has_a_row`. A cell is
allowed when the answer is neither 401 nor 403 nor a redirect to the login
page (a 400 from an empty body is allowed: the request got past the roles);
each call runs in a savepoint rolled back after it, so one caller's DELETE
does not change what the next one sees.

Callers (the columns, in this order):
  anon    no credentials
  viewer  a signed-in person with no role row (the default: viewer)
  oper    operator
  admin   admin (unscoped)
  in      admin scoped to team=payments, on the payments service (tagged)
  out     the same scoped admin, on the orders service (not tagged)
  agent   an enrolled agent's token (`Authorization: Agent …`), on its own id
  api     an admin's API token
  ro      an admin's read-only API token
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from agents.enrollment import agent_enroll, enrollment_token_create
from agents.models import EnrollmentToken
from gateway import services as gateway_services
from gateway.api.serializers import RouteSerializer
from meshcode.models import MeshVersion
from meshconsole.apitokens import api_token_create
from meshconsole.models import Role
from meshconsole.roles import user_role_set
from registry import services

CALLERS = ["anon", "viewer", "oper", "admin", "in", "out", "agent", "api", "ro"]
# a: allowed; u: 401; f: 403; l: redirect to the login page.
OPEN = "aaaaaaaaa"  # no credentials needed
READ = "uaaaaauaa"  # viewer and up, any credential of a person
OPERATE = "ufaaafuaf"  # operator and up, in scope; a read-only token cannot
ADMIN = "uffaafuaf"  # admin, in scope
GLOBAL_ADMIN = "uffaffuaf"  # admin, unscoped (nothing service-specific)
DIFF = "uaaaaauaf"  # a POST that writes nothing: viewer and up, not a read-only token
AGENT = "uuuuuuauu"  # the agent's own token only
PAGE = "laaaaalll"  # console pages: a session (any role); tokens are for the API

# (URL name) -> (path, {verb: expected}). {svc}: the caller's service (orders
# for `out`, payments for the rest), {inst}: an instance of it, {agent}: the
# agent's id, {prefix}: an enrollment token's prefix.
TABLE: dict[str, tuple[str, dict[str, str]]] = {
    "healthz": ("/healthz", {"GET": OPEN}),
    "readyz": ("/readyz", {"GET": OPEN}),
    # The schema and its docs are public as in v1 (tooling fetches it bare).
    "schema": ("/api/schema/?format=json", {"GET": OPEN}),
    "api-docs": ("/api/docs/", {"GET": OPEN}),
    "discovery": ("/api/v1/discovery/{svc}/", {"GET": READ}),
    "service-list": ("/api/v1/services/", {"GET": READ, "POST": GLOBAL_ADMIN}),
    "service-detail": (
        "/api/v1/services/{svc}/",
        {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN},
    ),
    "instance-list": ("/api/v1/services/{svc}/instances/", {"GET": READ, "POST": OPERATE}),
    "instance-bulk": ("/api/v1/services/{svc}/instances/bulk/", {"POST": OPERATE}),
    "instance-detail": (
        "/api/v1/services/{svc}/instances/{inst}/",
        {"GET": READ, "PATCH": OPERATE, "DELETE": OPERATE},
    ),
    "instance-disable": ("/api/v1/services/{svc}/instances/{inst}/disable/", {"POST": OPERATE}),
    "instance-drain": ("/api/v1/services/{svc}/instances/{inst}/drain/", {"POST": OPERATE}),
    "instance-enable": ("/api/v1/services/{svc}/instances/{inst}/enable/", {"POST": OPERATE}),
    "instance-maintenance": (
        "/api/v1/services/{svc}/instances/{inst}/maintenance/",
        {"POST": OPERATE},
    ),
    "instance-weight": ("/api/v1/services/{svc}/instances/{inst}/weight/", {"POST": OPERATE}),
    "instance-heartbeat": (
        "/api/v1/services/{svc}/instances/{inst}/heartbeat/",
        {"PUT": OPERATE},
    ),
    "instance-explain": ("/api/v1/services/{svc}/instances/{inst}/explain/", {"GET": READ}),
    "service-policy": (
        "/api/v1/services/{svc}/policy/",
        {"GET": READ, "PUT": ADMIN, "PATCH": ADMIN},
    ),
    "service-policy-versions": ("/api/v1/services/{svc}/policy/versions/", {"GET": READ}),
    "service-policy-rollback": ("/api/v1/services/{svc}/policy/rollback/", {"POST": ADMIN}),
    "service-routes": ("/api/v1/services/{svc}/routes/", {"GET": READ, "PUT": ADMIN}),
    "service-routes-versions": ("/api/v1/services/{svc}/routes/versions/", {"GET": READ}),
    "service-routes-rollback": (
        "/api/v1/services/{svc}/routes/versions/1/rollback/",
        {"POST": ADMIN},
    ),
    "service-metrics": ("/api/v1/services/{svc}/metrics/", {"GET": READ}),
    "service-instances-metrics": ("/api/v1/services/{svc}/metrics/instances/", {"GET": READ}),
    "instance-metrics": ("/api/v1/services/{svc}/instances/{inst}/metrics/", {"GET": READ}),
    "service-what-if": ("/api/v1/services/{svc}/what-if/", {"POST": DIFF}),
    "topology": ("/api/v1/topology/", {"GET": READ}),
    "topology-history": ("/api/v1/topology/history/", {"GET": READ}),
    "topology-at": ("/api/v1/topology/history/at/?at=2026-01-01T00:00:00Z", {"GET": READ}),
    "events": ("/api/v1/events/", {"GET": READ}),
    "agents": ("/api/v1/agents/", {"GET": READ}),
    "agent-enroll": ("/api/v1/agents/enroll/", {"POST": OPEN}),
    "enrollment-tokens": (
        "/api/v1/agents/enrollment-tokens/",
        {"GET": GLOBAL_ADMIN, "POST": GLOBAL_ADMIN},
    ),
    "enrollment-token-revoke": (
        "/api/v1/agents/enrollment-tokens/{prefix}/revoke/",
        {"POST": GLOBAL_ADMIN},
    ),
    "agent-detail": ("/api/v1/agents/{agent}/", {"DELETE": GLOBAL_ADMIN}),
    "agent-allow-reenroll": ("/api/v1/agents/{agent}/allow-reenroll/", {"POST": GLOBAL_ADMIN}),
    "agent-disable": ("/api/v1/agents/{agent}/disable/", {"POST": GLOBAL_ADMIN}),
    "agent-enable": ("/api/v1/agents/{agent}/enable/", {"POST": GLOBAL_ADMIN}),
    "agent-certificates": ("/api/v1/agents/{agent}/certificates/", {"POST": AGENT}),
    # Intentions and the CA are mesh-wide: any role reads, an unscoped admin writes.
    # (An intention / root that does not exist: an allowed caller gets a 404.)
    "intentions": ("/api/v1/intentions/", {"GET": READ, "POST": GLOBAL_ADMIN}),
    "intention-detail": (
        "/api/v1/intentions/999999/",
        {"GET": READ, "PATCH": GLOBAL_ADMIN, "DELETE": GLOBAL_ADMIN},
    ),
    "intentions-default": ("/api/v1/intentions/default/", {"GET": READ, "PUT": GLOBAL_ADMIN}),
    "intentions-check": (
        "/api/v1/intentions/check/?source=orders&destination=payments", {"GET": READ}
    ),
    "ca-roots": ("/api/v1/ca/roots/", {"GET": READ}),
    "ca-rotate": ("/api/v1/ca/rotate/", {"POST": GLOBAL_ADMIN}),
    "ca-retire": ("/api/v1/ca/roots/deadbeefdeadbeef/retire/", {"POST": GLOBAL_ADMIN}),
    "agent-config": ("/api/v1/agents/{agent}/config/", {"GET": AGENT}),
    "agent-report": ("/api/v1/agents/{agent}/report/", {"POST": AGENT}),
    # The gateway (issue 12): any role reads (secrets are never shown), an unscoped
    # admin writes. {key}: a key prefix of consumer alice.
    "gateways": ("/api/v1/gateway/", {"GET": READ, "POST": GLOBAL_ADMIN}),
    "gateway-detail": ("/api/v1/gateway/edge/", {"GET": READ, "DELETE": GLOBAL_ADMIN}),
    "gateway-metrics": ("/api/v1/gateway/edge/metrics/", {"GET": READ}),
    "gateway-routes": (
        "/api/v1/gateway/edge/routes/",
        {"GET": READ, "PUT": GLOBAL_ADMIN, "POST": GLOBAL_ADMIN},
    ),
    "gateway-route": (
        "/api/v1/gateway/edge/routes/orders-api/",
        {"GET": READ, "PUT": GLOBAL_ADMIN, "DELETE": GLOBAL_ADMIN},
    ),
    "gateway-consumers": ("/api/v1/gateway/consumers/", {"GET": READ, "POST": GLOBAL_ADMIN}),
    "gateway-consumer": (
        "/api/v1/gateway/consumers/alice/",
        {"GET": READ, "PATCH": GLOBAL_ADMIN, "DELETE": GLOBAL_ADMIN},
    ),
    "gateway-consumer-keys": (
        "/api/v1/gateway/consumers/alice/keys/",
        {"GET": READ, "POST": GLOBAL_ADMIN},
    ),
    "gateway-consumer-key": (
        "/api/v1/gateway/consumers/alice/keys/{key}/",
        {"DELETE": GLOBAL_ADMIN},
    ),
    "gateway-jwt-providers": (
        "/api/v1/gateway/jwt-providers/",
        {"GET": READ, "POST": GLOBAL_ADMIN},
    ),
    "gateway-jwt-provider": (
        "/api/v1/gateway/jwt-providers/corp/",
        {"GET": READ, "PUT": GLOBAL_ADMIN, "DELETE": GLOBAL_ADMIN},
    ),
    "mesh-schema": ("/api/v1/mesh/schema/", {"GET": READ}),
    "mesh-diff": ("/api/v1/mesh/diff/", {"POST": DIFF}),
    "mesh-apply": ("/api/v1/mesh/apply/", {"POST": GLOBAL_ADMIN}),
    "mesh-export": ("/api/v1/mesh/export/", {"GET": READ}),
    "mesh-versions": ("/api/v1/mesh/versions/", {"GET": READ}),
    "mesh-rollback": ("/api/v1/mesh/rollback/", {"POST": GLOBAL_ADMIN}),
    "audit": ("/api/v1/audit/", {"GET": READ}),
    "audit-export": ("/api/v1/audit/export/?format=csv", {"GET": READ}),
    "users": ("/api/v1/users/", {"GET": GLOBAL_ADMIN, "POST": GLOBAL_ADMIN}),
    "user-detail": ("/api/v1/users/olga/", {"GET": GLOBAL_ADMIN, "PATCH": GLOBAL_ADMIN}),
    "login": ("/login/", {"GET": OPEN, "POST": OPEN, "PUT": OPEN}),  # FormView: PUT = POST
    "logout": ("/logout/", {"POST": OPEN}),
    "console-overview": ("/", {"GET": PAGE}),
    "console-services": ("/services/", {"GET": PAGE}),
    "console-service": ("/services/{svc}/", {"GET": PAGE}),
    "console-policy": ("/services/{svc}/policy/", {"GET": PAGE}),
    "console-dependents": ("/services/{svc}/dependents/", {"GET": PAGE}),
    "console-agents": ("/agents/", {"GET": PAGE}),
    "console-gateway": ("/gateway/", {"GET": PAGE}),
    "console-events": ("/events/", {"GET": PAGE}),
    "console-audit": ("/audit/", {"GET": PAGE}),
    "console-security": ("/security/", {"GET": PAGE}),
    "console-mesh-version": ("/audit/versions/1/", {"GET": PAGE}),
}

# The Django admin has its own rule (staff), and is view-only for mesh objects.
NOT_IN_THE_MATRIX = {"admin"}


def _patterns(
    patterns: list[URLPattern | URLResolver], namespace: str | None = None
) -> Iterator[tuple[URLPattern, str | None]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, pattern.namespace or namespace)
        else:
            yield pattern, namespace


def _served_verbs(pattern: URLPattern) -> set[str] | None:
    """The verbs a class-based view answers (None: a function view)."""
    callback: Any = pattern.callback
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:
        return None
    allowed = {m for m in cls.http_method_names if m not in ("options", "head", "trace")}
    actions = getattr(callback, "actions", None)
    if actions is not None:
        return {m.upper() for m in actions if m in allowed}
    return {m.upper() for m in allowed if hasattr(cls, m)}


def test_every_endpoint_has_a_row() -> None:
    seen: dict[str, set[str] | None] = {}
    for pattern, namespace in _patterns(get_resolver().url_patterns):
        if namespace in NOT_IN_THE_MATRIX:
            continue
        assert pattern.name, f"unnamed URL pattern {pattern.pattern}: name it and add a row"
        seen[pattern.name] = _served_verbs(pattern)
    assert set(seen) == set(TABLE), "URL names without a row / rows without a URL"
    for name, verbs in seen.items():
        if verbs is not None:
            assert verbs == set(TABLE[name][1]), f"{name}: the view serves {sorted(verbs)}"


@dataclass
class World:
    clients: dict[str, APIClient]
    values: dict[str, dict[str, str]]  # caller -> path placeholders


def _user(name: str, role: Role | None, scope: str = "") -> User:
    user = User.objects.create_user(name)
    if role is not None:
        user_role_set(user=user, role=role, scope=scope)
    return user


def _gateway_world(admin: User) -> str:
    """A gateway `edge` with route orders-api, consumer alice with a key (its
    prefix returned), JWT provider corp."""
    gateway = gateway_services.gateway_create(user=admin, name="edge")
    consumer = gateway_services.consumer_create(user=admin, data={"name": "alice"})
    gateway_services.provider_write(
        user=admin,
        name="corp",
        data={"algorithms": ["HS256"], "issuer": "https://idp", "audience": "orders",
              "secret": "x" * 40},
    )
    route = RouteSerializer(data={"name": "orders-api", "service": "orders"})
    route.is_valid(raise_exception=True)
    gateway_services.routes_write(
        user=admin, gateway=gateway, edit=lambda _: [dict(route.validated_data)]
    )
    return gateway_services.consumer_key_create(user=admin, consumer=consumer).row.prefix


@pytest.fixture
def world(db: None) -> World:
    admin = User.objects.create_superuser("alice", "", None)
    payments = services.service_create(
        user=admin, data={"name": "payments", "tags": ["team=payments"]}
    )
    orders = services.service_create(user=admin, data={"name": "orders", "tags": ["team=orders"]})
    instance = {
        s.name: services.instance_register(
            user=admin, service=s, data={"address": "10.0.0.5", "port": 8080}
        )
        for s in (payments, orders)
    }
    enrollment = agent_enroll(
        token=enrollment_token_create(),
        node="host-a",
        zone="zone-1",
        version="0.1.0",
        upstreams=[],
        address="127.0.0.1",
    )
    MeshVersion.objects.create(number=1, author="alice", message="first", managed=[])
    key = _gateway_world(admin)
    people = {
        "viewer": _user("victor", None),
        "oper": _user("olga", Role.OPERATOR),
        "admin": _user("adam", Role.ADMIN),
        "in": _user("sam", Role.ADMIN, "team=payments"),
        "out": User.objects.get(username="sam"),
    }
    clients: dict[str, APIClient] = {c: APIClient() for c in CALLERS}
    for caller, user in people.items():
        clients[caller].force_login(user)
    clients["agent"].credentials(HTTP_AUTHORIZATION=f"Agent {enrollment.agent_token}")
    clients["api"].credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=admin)}")
    read_only = api_token_create(user=admin, read_only=True, name="ro")
    clients["ro"].credentials(HTTP_AUTHORIZATION=f"Token {read_only}")
    prefix = EnrollmentToken.objects.first()
    assert prefix is not None
    values = {}
    for caller in CALLERS:
        svc = "orders" if caller == "out" else "payments"
        values[caller] = {
            "svc": svc,
            "inst": str(instance[svc].pk),
            "agent": str(enrollment.agent.id),
            "prefix": prefix.prefix,
            "key": key,
        }
    return World(clients, values)


def _outcome(response: Any) -> str:
    status = response.status_code
    if status == 401:
        return "u"
    if status == 403:
        return "f"
    if status == 302 and response["Location"].startswith("/login/?next="):
        return "l"
    return "a"


def _call(client: APIClient, verb: str, path: str) -> Any:
    # Each call in a savepoint rolled back after it: every caller sees the same world.
    with transaction.atomic():
        sid = transaction.savepoint()
        try:
            return getattr(client, verb.lower())(path, format="json")
        finally:
            transaction.savepoint_rollback(sid)


CELLS = [(name, verb) for name, (_, verbs) in TABLE.items() for verb in verbs]


@pytest.mark.parametrize(("name", "verb"), CELLS, ids=[f"{n}-{v}" for n, v in CELLS])
def test_role_matrix(world: World, name: str, verb: str) -> None:
    template, verbs = TABLE[name]
    got = []
    for caller in CALLERS:
        path = template.format(**world.values[caller])
        got.append(_outcome(_call(world.clients[caller], verb, path)))
    expected = verbs[verb]
    mismatches = [
        f"{caller}: expected {e}, got {g}"
        for caller, e, g in zip(CALLERS, expected, got, strict=True)
        if e != g
    ]
    assert not mismatches, f"{verb} {template}: " + "; ".join(mismatches)
