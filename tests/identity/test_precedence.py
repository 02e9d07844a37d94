"""The one precedence function and the first-match decision (docs/security.md)."""

from __future__ import annotations

import random

from identity.intentions import IntentionSnapshot, Request, decide, sorted_rules


def rule(rid: str, source: str, destination: str, action: str, http: dict | None = None) -> IntentionSnapshot:
    return {"id": rid, "source": source, "destination": destination, "action": action, "http": http}  # type: ignore[typeddict-item]


def test_exact_beats_wildcard_source_beats_wildcard_destination_beats_both() -> None:
    rules = [
        rule("1", "*", "*", "deny"),
        rule("2", "orders", "*", "deny"),
        rule("3", "*", "payments", "deny"),
        rule("4", "orders", "payments", "allow"),
    ]
    for _ in range(5):
        random.shuffle(rules)
        assert [r["id"] for r in sorted_rules(rules)] == ["4", "3", "2", "1"]


def test_within_a_class_http_first_then_deny_then_id() -> None:
    rules = [
        rule("10", "orders", "payments", "allow"),
        rule("9", "orders", "payments", "deny"),
        rule("12", "orders", "payments", "allow", {"methods": ["GET"]}),
        rule("11", "orders", "payments", "deny", {"path_prefix": "/admin"}),
        rule("2", "orders", "payments", "allow"),
    ]
    assert [r["id"] for r in sorted_rules(rules)] == ["11", "12", "9", "2", "10"]


def test_an_exact_allow_overrides_a_wildcard_deny_and_no_match_is_the_default() -> None:
    rules = [rule("1", "*", "payments", "deny"), rule("2", "orders", "payments", "allow")]
    allowed = decide(rules, "deny", Request("orders", "payments"))
    assert (allowed.allowed, allowed.rule and allowed.rule["id"]) == (True, "2")
    denied = decide(rules, "allow", Request("billing", "payments"))
    assert (denied.allowed, denied.rule and denied.rule["id"]) == (False, "1")
    default = decide(rules, "deny", Request("orders", "ledger"))
    assert (default.allowed, default.rule) == (False, None)
    assert "default" in default.reason


def test_http_conditions_need_every_condition_and_never_match_tcp() -> None:
    http = {"methods": ["POST"], "path_prefix": "/refund", "headers": {"x-team": "a"}}
    rules = [rule("1", "orders", "payments", "deny", http), rule("2", "orders", "payments", "allow")]
    hit = Request("orders", "payments", "POST", "/refund/7", {"X-Team": "a"})
    assert decide(rules, "allow", hit).rule["id"] == "1"  # type: ignore[index]
    for miss in (
        Request("orders", "payments", "GET", "/refund/7", {"x-team": "a"}),
        Request("orders", "payments", "POST", "/other", {"x-team": "a"}),
        Request("orders", "payments", "POST", "/refund", {"x-team": "b"}),
        Request("orders", "payments"),  # TCP
    ):
        assert decide(rules, "deny", miss).rule["id"] == "2"  # type: ignore[index]


def test_a_node_identity_matches_only_wildcards() -> None:
    rules = [rule("1", "orders", "payments", "allow"), rule("2", "*", "payments", "deny")]
    decision = decide(rules, "allow", Request("node:edge-1", "payments"))
    assert (decision.allowed, decision.rule["id"]) == (False, "2")  # type: ignore[index]
