"""The contract between the control plane and the agent, tested in-process on both sides.

A mesh that uses every policy option docs/policies.md documents is turned into
an agent snapshot by the control plane (`agent_snapshot`) and fed to the
agent's parser (`parse_snapshot`): it must be accepted, and every value must
arrive as it was set. The doc is parsed, so an option documented there but not
set here fails this file. The bounds of the shared vocabulary are refused
alike by the policy API and by the agent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from agents.runtime.balancers import BALANCER_NAMES, CONSISTENT_HASH_BALANCERS
from agents.runtime.policy import (
    CircuitBreakerPolicy,
    HashOn,
    OutlierPolicy,
    Policy,
    PolicyError,
    RateLimitPolicy,
    RetryPolicy,
    parse_policy,
)
from agents.runtime.snapshot import parse_snapshot
from agents.runtime.vocabulary import HASH_TYPES, POLICY_BOUNDS, RATE_LIMIT_RPS, RETRY_CONDITIONS
from agents.snapshot import agent_snapshot
from policies.models import FailoverState
from registry.models import Node
from tests.policies.helpers import instance, service

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"
# Options of the policy API that reach the agent other than as `policy` fields.
CONTROL_PLANE_OPTIONS = ("zone_priority", "failover_targets", "failback_hold_down_ms")

# The main service: every option away from its default.
FULL_DOCUMENT: dict[str, Any] = {
    "load_balancer": "ring_hash",
    "hash_on": {"type": "header", "name": "x-user"},
    "connect_timeout": "500ms",
    "request_timeout": "9s",
    "idle_timeout": "20s",
    "retries": {"attempts": 3, "per_try_timeout": "300ms", "on": list(RETRY_CONDITIONS),
                "backoff_base": "10ms", "backoff_max": "100ms", "budget_percent": 25,
                "min_per_second": 4},
    "outlier": {"consecutive_5xx": 4, "consecutive_gateway": 2, "base_ejection": "1s",
                "max_ejection_percent": 30},
    "circuit_breaker": {"max_connections": 10, "max_pending": 5, "max_requests": 20},
    "rate_limit": {"rps": 50.5, "burst": 100},
    "panic_threshold_percent": 40,
    "locality": {"enabled": False},
    "zone_priority": ["zone-2", "zone-1"],
    "failover": {"targets": ["payments-dr"], "hold_down": "2m"},
}
FULL_POLICY = Policy(
    load_balancer="ring_hash",
    hash_on=HashOn("header", "x-user"),
    connect_timeout_ms=500,
    request_timeout_ms=9000,
    idle_timeout_ms=20_000,
    retries=RetryPolicy(attempts=3, per_try_timeout_ms=300, on=frozenset(RETRY_CONDITIONS),
                        backoff_base_ms=10, backoff_max_ms=100, budget_percent=25,
                        min_per_second=4),
    outlier=OutlierPolicy(consecutive_5xx=4, consecutive_gateway=2, base_ejection_ms=1000,
                          max_ejection_percent=30),
    circuit_breaker=CircuitBreakerPolicy(max_connections=10, max_pending=5, max_requests=20),
    rate_limit=RateLimitPolicy(rps=50.5, burst=100),
    panic_threshold_percent=40,
    locality_enabled=False,
)
HASH_NAMES = {"header": "x-user", "cookie": "session", "client_ip": ""}


def _doc_snapshot() -> dict[str, Any]:
    """The JSON example of docs/policies.md's "Snapshot shape", comments dropped."""
    block = re.search(r"## Snapshot shape.*?```json\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/policies.md has no snapshot example"
    text = re.sub(r"//[^\n]*", "", block.group(1))
    return dict(json.loads("{" + text + "}"))


def _doc_comment(key: str) -> tuple[str, str]:
    """The example value of KEY in the doc's snapshot and the comment on its line."""
    line = re.search(rf'"{key}": ("?[\w]+"?),\s*//([^\n]*)', DOC.read_text())
    assert line, f"docs/policies.md: no commented {key} line"
    return line.group(1).strip('"'), line.group(2)


def _paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths |= _paths(value, f"{path}.")
        else:
            paths.add(path)
    return paths


def _policy_paths(policy: Policy) -> dict[str, object]:
    """The snapshot path of each field of a parsed policy, with its value."""
    values: dict[str, object] = {
        "load_balancer": policy.load_balancer,
        "hash_on": policy.hash_on,
        "rate_limit": policy.rate_limit,
        "locality.enabled": policy.locality_enabled,
        "connect_timeout_ms": policy.connect_timeout_ms,
        "request_timeout_ms": policy.request_timeout_ms,
        "idle_timeout_ms": policy.idle_timeout_ms,
        "panic_threshold_percent": policy.panic_threshold_percent,
    }
    for group, obj in (("retries", policy.retries), ("outlier", policy.outlier),
                       ("circuit_breaker", policy.circuit_breaker)):
        for name, value in vars(obj).items():
            values[f"{group}.{name}"] = value
    return values


def _put(api: APIClient, name: str, document: dict[str, Any]) -> None:
    response = api.put(f"/api/v1/services/{name}/policy/", document, format="json")
    assert response.status_code == 200, response.content


@pytest.fixture
def mesh(api: APIClient) -> dict[str, Any]:
    """Every balancer (one service each), every hash type, and the full policy with an
    active failover; an agent consuming all of them; its snapshot, parsed by the agent."""
    payments, target = service("payments"), service("payments-dr")
    instance(payments, 8080, zone="zone-1", health="critical")
    instance(target, 9090, zone="zone-2")
    instance(target, 9091, zone="zone-1")
    _put(api, "payments", FULL_DOCUMENT)
    FailoverState.objects.create(service=payments, active_target="payments-dr",
                                 reason="no healthy instance")
    names = ["payments"]
    hash_types = iter(HASH_TYPES)
    for balancer in BALANCER_NAMES:
        name = f"lb-{balancer.replace('_', '-')}"
        document: dict[str, Any] = {"load_balancer": balancer}
        if balancer in CONSISTENT_HASH_BALANCERS:
            kind = next(hash_types, "client_ip")
            document["hash_on"] = {"type": kind, "name": HASH_NAMES[kind]}
        instance(service(name), 7000)
        _put(api, name, document)
        names.append(name)
    for kind in hash_types:  # more hash types than consistent-hash balancers
        name = f"hash-{kind.replace('_', '-')}"
        instance(service(name), 7000)
        _put(api, name, {"load_balancer": CONSISTENT_HASH_BALANCERS[0],
                         "hash_on": {"type": kind, "name": HASH_NAMES[kind]}})
        names.append(name)
    node = Node.objects.create(name="host-a", zone="zone-1")
    agent = Agent.objects.create(node=node, token_hash="x",
                                 upstreams=[{"service": name} for name in names])
    raw = agent_snapshot(agent=agent)
    return {"raw": raw, "parsed": parse_snapshot(json.loads(json.dumps(raw)))}


def test_the_full_policy_reaches_the_agent_as_set(mesh: dict[str, Any]) -> None:
    upstream = mesh["parsed"].upstreams["payments"]
    assert upstream.policy == FULL_POLICY
    assert (upstream.failover_target, upstream.failover_reason) == (
        "payments-dr", "no healthy instance")
    # Failover active: the target's endpoints, ranked by payments' zone_priority.
    assert sorted((e.port, e.zone, e.priority, e.status) for e in upstream.endpoints) == [
        (9090, "zone-2", 0, "passing"), (9091, "zone-1", 1, "passing")]


def test_every_balancer_and_hash_type_reaches_the_agent(mesh: dict[str, Any]) -> None:
    policies = [u.policy for u in mesh["parsed"].upstreams.values()]
    assert {p.load_balancer for p in policies} == set(BALANCER_NAMES)
    assert {p.hash_on.type for p in policies if p.hash_on} == set(HASH_TYPES)
    for p in policies:
        if p.hash_on is not None:
            assert p.hash_on.name == HASH_NAMES[p.hash_on.type]
            assert p.load_balancer in CONSISTENT_HASH_BALANCERS


def test_every_documented_option_is_set_away_from_its_default(mesh: dict[str, Any]) -> None:
    documented = _doc_snapshot()["upstreams"]["payments"]
    policy_paths = _paths(documented["policy"])
    covered = _policy_paths(FULL_POLICY)
    defaults = _policy_paths(Policy())
    assert policy_paths == set(covered), "docs/policies.md and this contract list other fields"
    unchanged = sorted(p for p in policy_paths if covered[p] == defaults[p])
    assert not unchanged, f"the contract leaves these at their default: {unchanged}"
    # The documented endpoint and failover fields are all in what the agent parsed.
    raw = mesh["raw"]["upstreams"]["payments"]
    assert set(documented["endpoints"][0]) == set(raw["endpoints"][0])
    assert set(documented["failover"]) == set(raw["failover"])
    text = DOC.read_text()
    for option in CONTROL_PLANE_OPTIONS:
        assert f"`{option}`" in text


def test_the_doc_lists_exactly_the_vocabulary() -> None:
    default, others = _doc_comment("load_balancer")
    assert {default, *(name.strip() for name in others.split("|"))} == set(BALANCER_NAMES)
    _, hash_comment = _doc_comment("hash_on")
    types = re.search(r'"type": ((?:"\w+"\|?)+)', hash_comment)
    assert types and set(re.findall(r'"(\w+)"', types.group(1))) == set(HASH_TYPES)
    text = DOC.read_text()
    assert all(f"`{condition}`" in text for condition in RETRY_CONDITIONS)


# --- the bounds: the API and the agent refuse the same values ---------------------

_COMPANIONS: dict[str, dict[str, int]] = {
    # Cross-field rules, kept satisfied so that only the bound under test decides.
    "retries.backoff_base_ms": {"retries.backoff_max_ms": 60_000},
    "retries.backoff_max_ms": {"retries.backoff_base_ms": 1},
    "retries.per_try_timeout_ms": {"request_timeout_ms": 3_600_000},
}


def _snapshot_policy(key: str, value: int | float) -> dict[str, Any]:
    values = {key: value, **_COMPANIONS.get(key, {})}
    if key == "rate_limit.burst":
        values["rate_limit.rps"] = 10
    policy: dict[str, Any] = {}
    for path, v in values.items():
        group, _, name = path.rpartition(".")
        (policy.setdefault(group, {}) if group else policy)[name] = v
    return policy


def _api_document(policy: dict[str, Any]) -> dict[str, Any]:
    def convert(data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out[key] = convert(value)
            elif key.endswith("_ms"):
                out[key.removesuffix("_ms")] = f"{value}ms"
            else:
                out[key] = value
        return out

    return convert(policy)


def _cases() -> list[tuple[str, int | float, bool]]:
    cases: list[tuple[str, int | float, bool]] = []
    for key, bound in POLICY_BOUNDS.items():
        cases += [(key, bound.low, True), (key, bound.high, True), (key, bound.high + 1, False)]
        if bound.low > 0:  # below 0 a duration does not parse: a different refusal
            cases.append((key, bound.low - 1, False))
    low, high = RATE_LIMIT_RPS
    cases += [("rate_limit.rps", low, True), ("rate_limit.rps", high, True),
              ("rate_limit.rps", low / 2, False), ("rate_limit.rps", high * 2, False)]
    return cases


@pytest.mark.parametrize(("key", "value", "accepted"), _cases(),
                         ids=[f"{k}={v}" for k, v, _ in _cases()])
def test_the_api_and_the_agent_refuse_the_same_values(api: APIClient, key: str,
                                                      value: int | float,
                                                      accepted: bool) -> None:
    service("payments")
    policy = _snapshot_policy(key, value)
    try:
        parse_policy(policy)
        agent_accepts = True
    except PolicyError as exc:
        agent_accepts = False
        assert key.rpartition(".")[2] in str(exc)
    response = api.put("/api/v1/services/payments/policy/", _api_document(policy),
                       format="json")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert key.split(".")[0].removesuffix("_ms") in response.json(), response.content
    assert (agent_accepts, response.status_code == 200) == (accepted, accepted)
