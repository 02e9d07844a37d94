"""What an agent takes of a snapshot: a bad upstream is refused alone (the rest
applies), and an upstream emptied by deregistration keeps its last endpoints
for a while (push-empty protection) unless health or an operator emptied it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agents.runtime.admission import admit
from agents.runtime.snapshot import SnapshotError, parse_snapshot


def endpoint(i: int, status: str = "passing") -> dict[str, Any]:
    return {"id": f"e{i}", "address": f"10.0.0.{i}", "port": 80, "weight": 100, "zone": "",
            "priority": 0, "status": status}


def snapshot(revision: int, hold_ms: int = 60_000, **upstreams: Any) -> dict[str, Any]:
    return {"revision": revision, "agent_id": "a", "node": "host-a", "zone": "",
            "report_interval_ms": 2000, "push_empty_hold_ms": hold_ms,
            "upstreams": {name: {"protocol": "http", "policy": {}, "endpoints": eps, **extra}
                          for name, (eps, extra) in upstreams.items()}}


def addresses(snap: Any, name: str) -> list[str]:
    return [e.address for e in snap.upstreams[name].endpoints]


def test_a_bad_upstream_is_refused_alone_and_keeps_what_it_had() -> None:
    first = parse_snapshot(snapshot(1, payments=([endpoint(1)], {}), users=([endpoint(2)], {})))
    bad = snapshot(2, payments=([{**endpoint(3), "address": "bad_host"}], {}),
                   users=([endpoint(4, "maintenance")], {}))
    admission = admit(bad, first, holds={}, now=0.0)
    assert list(admission.refused) == ["upstreams.payments"]
    assert "bad_host" in admission.refused["upstreams.payments"]
    assert "endpoints[0].address" in admission.refused["upstreams.payments"]
    assert addresses(admission.snapshot, "payments") == ["10.0.0.1"]  # kept
    assert admission.snapshot.upstreams["users"].endpoints[0].status == "maintenance"  # applied
    assert admission.snapshot.revision == 2
    # What is applied parses strictly as it is (the disk copy, the workers' copy).
    reparsed = parse_snapshot(copy.deepcopy(admission.snapshot.raw))
    assert addresses(reparsed, "payments") == ["10.0.0.1"]


def test_a_bad_new_upstream_with_nothing_to_keep_is_left_out() -> None:
    admission = admit(snapshot(1, payments=([{**endpoint(1), "port": 0}], {})), None,
                      holds={}, now=0.0)
    assert "upstreams.payments" in admission.refused
    assert "payments" not in admission.snapshot.upstreams


def test_an_unusable_top_level_is_refused_whole() -> None:
    with pytest.raises(SnapshotError):
        admit({"upstreams": {}}, None, holds={}, now=0.0)  # no revision
    with pytest.raises(SnapshotError):
        admit([], None, holds={}, now=0.0)


def test_deregistering_every_endpoint_holds_the_last_ones_then_lets_go() -> None:
    first = parse_snapshot(snapshot(1, payments=([endpoint(1), endpoint(2)], {})))
    empty = snapshot(2, hold_ms=30_000, payments=([], {"withheld": 0}))
    held = admit(empty, first, holds={}, now=100.0)
    assert addresses(held.snapshot, "payments") == ["10.0.0.1", "10.0.0.2"]
    assert held.held == {"payments": 130.0}
    still = admit(empty, held.snapshot, holds=held.held, now=129.0)
    assert addresses(still.snapshot, "payments") == ["10.0.0.1", "10.0.0.2"]
    over = admit(empty, still.snapshot, holds=still.held, now=130.0)
    assert addresses(over.snapshot, "payments") == [] and over.held == {}


def test_endpoints_coming_back_end_the_hold() -> None:
    first = parse_snapshot(snapshot(1, payments=([endpoint(1)], {})))
    held = admit(snapshot(2, payments=([], {})), first, holds={}, now=0.0)
    back = admit(snapshot(3, payments=([endpoint(5)], {})), held.snapshot, holds=held.held,
                 now=1.0)
    assert addresses(back.snapshot, "payments") == ["10.0.0.5"] and back.held == {}


def test_an_operator_emptying_the_list_is_believed_at_once() -> None:
    first = parse_snapshot(snapshot(1, payments=([endpoint(1)], {})))
    admission = admit(snapshot(2, payments=([], {"withheld": 1})), first, holds={}, now=0.0)
    assert addresses(admission.snapshot, "payments") == [] and admission.held == {}


def test_health_never_empties_a_list_and_hold_zero_is_off() -> None:
    first = parse_snapshot(snapshot(1, payments=([endpoint(1)], {})))
    sick = admit(snapshot(2, payments=([endpoint(1, "critical")], {})), first, holds={}, now=0)
    assert sick.snapshot.upstreams["payments"].endpoints[0].status == "critical"
    off = admit(snapshot(2, hold_ms=0, payments=([], {})), first, holds={}, now=0.0)
    assert addresses(off.snapshot, "payments") == []
