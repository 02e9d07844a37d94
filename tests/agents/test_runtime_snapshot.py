"""Snapshots: validated whole, persisted atomically, reloaded; the agent identity file."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.snapshot import (
    Identity,
    SnapshotError,
    load_identity,
    load_snapshot,
    parse_snapshot,
    save_identity,
    save_snapshot,
    write_atomic,
)

GOOD: dict[str, Any] = {
    "revision": 42, "agent_id": "a1", "node": "host-a", "zone": "zone-1",
    "report_interval_ms": 2000,
    "upstreams": {"payments": {
        "protocol": "http",
        "policy": {"load_balancer": "least_request", "connect_timeout_ms": 1000,
                   "request_timeout_ms": 15000},
        "endpoints": [{"id": "ab12", "address": "127.0.0.1", "port": 8080, "weight": 100,
                       "zone": "zone-1", "status": "passing"}]}},
}


def variant(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    target[keys[-1]] = value
    return data


def test_a_valid_snapshot_parses() -> None:
    snapshot = parse_snapshot(GOOD)
    assert snapshot.revision == 42
    upstream = snapshot.upstreams["payments"]
    assert upstream.policy.load_balancer == "least_request"
    assert upstream.endpoints[0].port == 8080


def test_unknown_extra_fields_are_tolerated_for_newer_control_planes() -> None:
    data = variant("upstreams.payments.policy.mirror", {"to": "x"})
    data["upstreams"]["payments"]["policy"]["retries"] = {"attempts": 1, "jitter": "full"}
    assert parse_snapshot(data).upstreams["payments"].policy.request_timeout_ms == 15000


FULL_POLICY: dict[str, Any] = {
    "load_balancer": "ring_hash", "hash_on": {"type": "header", "name": "X-User"},
    "connect_timeout_ms": 500, "request_timeout_ms": 9000, "idle_timeout_ms": 20000,
    "retries": {"attempts": 3, "per_try_timeout_ms": 300, "on": ["5xx", "reset"],
                "backoff_base_ms": 10, "backoff_max_ms": 100, "budget_percent": 25,
                "min_per_second": 4},
    "outlier": {"consecutive_5xx": 4, "consecutive_gateway": 2, "base_ejection_ms": 1000,
                "max_ejection_percent": 30},
    "circuit_breaker": {"max_connections": 10, "max_pending": 5, "max_requests": 20},
    "rate_limit": {"rps": 50.5, "burst": 100},
    "panic_threshold_percent": 40,
    "locality": {"enabled": False},
}


def test_the_full_policy_and_failover_and_priority_parse() -> None:
    data = variant("upstreams.payments.policy", FULL_POLICY)
    data["upstreams"]["payments"]["failover"] = {"active_target": "payments-dr", "reason": "x"}
    data["upstreams"]["payments"]["endpoints"][0]["priority"] = 2
    upstream = parse_snapshot(data).upstreams["payments"]
    policy = upstream.policy
    assert policy.hash_on is not None and policy.hash_on.name == "x-user"
    assert policy.retries.attempts == 3 and policy.retries.on == {"5xx", "reset"}
    assert policy.outlier.max_ejection_percent == 30
    assert policy.circuit_breaker.max_pending == 5
    assert policy.rate_limit is not None and policy.rate_limit.rps == 50.5
    assert policy.panic_threshold_percent == 40 and policy.locality_enabled is False
    assert upstream.failover_target == "payments-dr"
    assert upstream.endpoints[0].priority == 2


def test_a_null_hash_on_and_rate_limit_mean_off() -> None:
    data = variant("upstreams.payments.policy", {"hash_on": None, "rate_limit": None})
    policy = parse_snapshot(data).upstreams["payments"].policy
    assert policy.hash_on is None and policy.rate_limit is None


BAD = [
    ("revision", "42", "revision: expected an integer"),
    ("revision", -1, "revision: -1 is outside"),
    ("upstreams", [], "upstreams: expected an object"),
    ("upstreams.payments.protocol", "udp", "unknown protocol 'udp'"),
    ("upstreams.payments.policy.load_balancer", "fastest", "unknown balancer 'fastest'"),
    ("upstreams.payments.policy.connect_timeout_ms", 0, "connect_timeout_ms: 0 is outside"),
    ("upstreams.payments.policy.request_timeout_ms", "1s", "request_timeout_ms: expected an int"),
    ("upstreams.payments.endpoints", {}, "endpoints: expected a list"),
    ("upstreams.payments.endpoints.0.port", 70000, "endpoints[0].port: 70000 is outside"),
    ("upstreams.payments.endpoints.0.port", True, "endpoints[0].port: expected an integer"),
    ("upstreams.payments.endpoints.0.address", "not an address!", "is not an IP address"),
    ("upstreams.payments.endpoints.0.address", 5, "address: expected a string"),
    ("upstreams.payments.endpoints.0.weight", -1, "weight: -1 is outside"),
    ("upstreams.payments.endpoints.0.status", "sleepy", "unknown status 'sleepy'"),
    ("upstreams.payments.endpoints.0.id", None, "endpoints[0].id: expected a string"),
    ("report_interval_ms", 5, "report_interval_ms: 5 is outside"),
    ("upstreams.payments.policy.retries", 3, "policy.retries: expected an object"),
    ("upstreams.payments.policy.retries", {"attempts": 11}, "retries.attempts: 11 is outside"),
    ("upstreams.payments.policy.retries", {"on": ["teapot"]}, "retries.on: expected a list of"),
    ("upstreams.payments.policy.hash_on", {"type": "moon"}, "hash_on.type: expected one of"),
    ("upstreams.payments.policy.hash_on", {"type": "cookie"}, "hash_on.name: required"),
    ("upstreams.payments.policy.outlier", {"max_ejection_percent": 101}, "101 is outside"),
    ("upstreams.payments.policy.circuit_breaker", {"max_requests": -1}, "max_requests: -1"),
    ("upstreams.payments.policy.rate_limit", {"rps": 0}, "rate_limit.rps: expected a number"),
    ("upstreams.payments.policy.panic_threshold_percent", 200, "200 is outside"),
    ("upstreams.payments.policy.locality", {"enabled": "yes"}, "locality.enabled: expected"),
    ("upstreams.payments.policy.idle_timeout_ms", 0, "idle_timeout_ms: 0 is outside"),
    ("upstreams.payments.endpoints.0.priority", -1, "priority: -1 is outside"),
    ("upstreams.payments.failover", [], "failover: expected an object"),
]


@pytest.mark.parametrize(("path", "value", "reason"), BAD, ids=[p for p, _, _ in BAD])
def test_an_invalid_field_refuses_the_whole_snapshot(path: str, value: object,
                                                     reason: str) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(variant(path, value))
    assert reason in str(info.value)


def test_duplicate_endpoints_are_refused() -> None:
    data = copy.deepcopy(GOOD)
    endpoints = data["upstreams"]["payments"]["endpoints"]
    endpoints.append(dict(endpoints[0], id="other"))
    with pytest.raises(SnapshotError, match="listed twice"):
        parse_snapshot(data)


def test_applied_snapshot_is_persisted_and_loaded_back(tmp_path: Path) -> None:
    save_snapshot(tmp_path, parse_snapshot(GOOD))
    assert json.loads((tmp_path / "snapshot.json").read_text()) == GOOD
    loaded = load_snapshot(tmp_path)
    assert loaded is not None and loaded == parse_snapshot(GOOD)
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]  # no tmp file left


def test_missing_or_corrupt_snapshot_file_loads_as_none(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path) is None
    (tmp_path / "snapshot.json").write_text('{"revision": ')
    assert load_snapshot(tmp_path) is None


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "snapshot.json", {"revision": 1})
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "snapshot.json", {"revision": object()})
    assert json.loads((tmp_path / "snapshot.json").read_text()) == {"revision": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]


def test_identity_is_private_and_bound_to_control_plane_and_node(tmp_path: Path) -> None:
    identity = Identity("id-1", "secret", "http://cp:8000", "host-a")
    save_identity(tmp_path, identity)
    mode = stat.S_IMODE(os.stat(tmp_path / "agent.json").st_mode)
    assert mode == 0o600
    assert load_identity(tmp_path, control_plane="http://cp:8000", node="host-a") == identity
    assert load_identity(tmp_path, control_plane="http://other:8000", node="host-a") is None
    assert load_identity(tmp_path, control_plane="http://cp:8000", node="host-b") is None
    (tmp_path / "agent.json").write_text('{"agent_id": ""}')
    assert load_identity(tmp_path, control_plane="http://cp:8000", node="host-a") is None


def test_the_proposed_agent_token_survives_retries_and_restarts_until_forgotten(
    tmp_path: Path,
) -> None:
    from agents.runtime.snapshot import forget_identity, pending_agent_token

    first = pending_agent_token(tmp_path, control_plane="http://cp", node="host-a")
    assert len(first) >= 32
    assert pending_agent_token(tmp_path, control_plane="http://cp", node="host-a") == first
    assert (tmp_path / "enroll-pending.json").stat().st_mode & 0o777 == 0o600
    # Another node or control plane is another enrollment.
    assert pending_agent_token(tmp_path, control_plane="http://cp", node="host-b") != first
    forget_identity(tmp_path)
    assert pending_agent_token(tmp_path, control_plane="http://cp", node="host-a") != first
