"""The zero-trust parts of agent.yaml and of the snapshot: `inbound:`, `security`,
endpoint `inbound`, upstream `mtls`; and how intentions are evaluated."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.admission import admit
from agents.runtime.cli import main
from agents.runtime.config import ConfigError, parse_config
from agents.runtime.pki import new_key
from agents.runtime.security import parse_security, source_of
from agents.runtime.snapshot import SnapshotError, parse_snapshot
from tests.agents.test_runtime_cli import write_config
from tests.agents.testca import TestCA, security_doc

BASE: dict[str, Any] = {"control_plane": "http://127.0.0.1:8000", "token": "t", "node": "host-a",
                        "data_dir": "/tmp/x",
                        "services": [{"name": "payments", "address": "127.0.0.1",
                                      "port": 8080}]}
CA = TestCA()
OTHER = TestCA("other")
LEAF = CA.issue(new_key().public_key(), "spiffe://t/ns/default/svc/x")  # not a CA


def test_inbound_advertise_defaults_to_the_listen_address_or_loopback() -> None:
    one = parse_config({**BASE, "inbound": {"listen": "10.0.0.5:15001"}}).inbound
    assert one is not None and one.as_report() == {"address": "10.0.0.5", "port": 15001}
    wild = parse_config({**BASE, "inbound": {"listen": "0.0.0.0:15001"}}).inbound
    assert wild is not None and wild.as_report() == {"address": "127.0.0.1", "port": 15001}
    given = parse_config({**BASE, "inbound": {"listen": "0.0.0.0:15001",
                                              "advertise": "10.0.0.5:16001"}}).inbound
    assert given is not None and given.as_report() == {"address": "10.0.0.5", "port": 16001}
    assert parse_config(BASE).inbound is None


@pytest.mark.parametrize(("inbound", "message"), [
    ({"listen": "nope"}, "inbound.listen: expected host:port"),
    ({"listen": "127.0.0.1:0"}, "inbound.listen: needs a fixed port"),
    ({"listen": "127.0.0.1:15001", "advertise": "0.0.0.0:15001"}, "inbound.advertise: 0.0.0.0"),
    ({"listen": "127.0.0.1:15001", "extra": 1}, "inbound.extra: unknown key"),
    ({"listen": "127.0.0.1:19000"}, "inbound.listen: 127.0.0.1:19000 is already used"),
    ("yes", "inbound: expected a mapping"),
])
def test_a_bad_inbound_section_is_refused_with_its_path(inbound: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config({**BASE, "inbound": inbound})


def test_check_names_the_inbound_listener(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, inbound={"listen": "127.0.0.1:15001"})
    assert main(["check", "-c", str(path)]) == 0
    assert "inbound (mTLS) 127.0.0.1:15001 advertised as 127.0.0.1:15001" in capsys.readouterr().out
    bad = write_config(tmp_path, inbound={"listen": "127.0.0.1:99999"})
    assert main(["check", "-c", str(bad)]) == 2
    assert "inbound.listen: port must be between" in capsys.readouterr().err


def snapshot(**security: Any) -> dict[str, Any]:
    return {"revision": 3, "security": security_doc([CA.pem], **security),
            "upstreams": {"payments": {"protocol": "http", "mtls": "strict", "endpoints": [
                {"id": "p1", "address": "10.0.0.5", "port": 8080,
                 "inbound": {"address": "10.0.0.5", "port": 15001}}]}}}


def test_a_snapshot_without_security_is_an_older_control_plane_no_mtls() -> None:
    raw = snapshot()
    del raw["security"], raw["upstreams"]["payments"]["mtls"]
    del raw["upstreams"]["payments"]["endpoints"][0]["inbound"]
    snap = parse_snapshot(raw)
    assert snap.security is None
    assert snap.upstreams["payments"].mtls == "off"
    assert snap.upstreams["payments"].endpoints[0].inbound is None


def test_the_security_section_parses_whole() -> None:
    snap = parse_snapshot(snapshot(revoked=[0xABC], default="deny", inbound={"payments": "strict"}))
    assert snap.security is not None
    assert snap.security.revoked == frozenset({0xABC})
    assert snap.security.default_action == "deny"
    assert snap.security.mode_of("payments") == "strict"
    assert snap.upstreams["payments"].endpoints[0].inbound == ("10.0.0.5", 15001)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["security"].update(roots=[]), "security.roots: must not be empty"),
    (lambda s: s["security"].update(roots=["not pem"]), r"security.roots\[0\]: not a PEM"),
    (lambda s: s["security"].update(roots=[LEAF]), r"security.roots\[0\]: .*CA:true"),
    (lambda s: s["security"].update(roots=[CA.pem + OTHER.pem]),
     r"security.roots\[0\]: one certificate per root, got 2"),
    (lambda s: s["security"].update(revoked_serials=["XYZ"]), "lower-hex serial"),
    (lambda s: s["security"].update(default_action="maybe"), "default_action"),
    (lambda s: s["security"].update(trust_domain="Bad Domain"), "trust_domain"),
    (lambda s: s["security"].update(intentions=[{"id": "a", "source": "x", "destination": "*",
                                                 "action": "permit"}]), "action"),
    (lambda s: s["security"].update(intentions=[{"id": "a", "source": "x", "destination": "*",
                                                 "action": "allow",
                                                 "http": {"path_prefix": "x"}}]), "path_prefix"),
    (lambda s: s["security"].update(inbound={"payments": {"mtls": "on"}}), "unknown mode"),
])
def test_an_invalid_security_section_is_refused_whole(change: Any, message: str) -> None:
    raw = snapshot()
    change(raw)
    with pytest.raises(SnapshotError, match=message):
        parse_snapshot(raw)
    with pytest.raises(SnapshotError):  # the agent NACKs it (admission): nothing applies
        admit(raw, None, holds={}, now=0.0)


def test_a_bad_mtls_mode_or_inbound_refuses_that_upstream_alone() -> None:
    raw = snapshot()
    raw["upstreams"]["billing"] = copy.deepcopy(raw["upstreams"]["payments"])
    raw["upstreams"]["billing"]["mtls"] = "sometimes"
    raw["upstreams"]["payments"]["endpoints"][0]["inbound"]["port"] = 0
    raw["upstreams"]["ledger"] = {"protocol": "tcp", "mtls": "permissive", "endpoints": []}
    admission = admit(raw, None, holds={}, now=0.0)
    assert set(admission.refused) == {"upstreams.billing", "upstreams.payments"}
    assert set(admission.snapshot.upstreams) == {"ledger"}


def rules(*entries: tuple[str, str, str, str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [{"id": i, "source": s, "destination": d, "action": a, "http": h}
            for i, s, d, a, h in entries]


def test_the_first_matching_rule_decides_else_the_default() -> None:
    security = parse_security(security_doc([CA.pem], default="deny", intentions=rules(
        ("refund-only", "orders", "payments", "allow",
         {"methods": ["POST"], "path_prefix": "/refund", "headers": {"x-team": "a"}}),
        ("orders-no", "orders", "payments", "deny", None),
        ("all-to-payments", "*", "payments", "allow", None),
    )))
    assert security is not None
    post = (b"POST", b"/refund/7", [(b"X-Team", b"a")])
    assert security.decide("orders", "payments", post) == ("allow", "refund-only")
    assert security.decide("orders", "payments", (b"POST", b"/refund", [])) == (
        "deny", "orders-no")  # the header condition is not met
    assert security.decide("orders", "payments", (b"GET", b"/refund", [(b"x-team", b"a")])) == (
        "deny", "orders-no")
    # A rule with HTTP conditions never matches a TCP connection.
    assert security.decide("orders", "payments") == ("deny", "orders-no")
    assert security.decide("billing", "payments") == ("allow", "all-to-payments")
    assert security.decide("billing", "ledger") == ("deny", "default")
    assert security.decide("node:host-a", "payments") == ("allow", "all-to-payments")


def test_peer_identities_map_to_intention_sources() -> None:
    assert source_of("mesh.local", "spiffe://mesh.local/ns/default/svc/orders") == "orders"
    assert source_of("mesh.local", "spiffe://mesh.local/ns/default/node/host-a") == "node:host-a"
    assert source_of("mesh.local", "spiffe://other.domain/ns/default/svc/orders") is None
    assert source_of("mesh.local", "spiffe://mesh.local/ns/default/svc/Bad_Name") is None
    assert source_of("mesh.local", "spiffe://mesh.local/ns/default/svc/a/b") is None


def test_an_http_object_without_conditions_is_no_http_rule() -> None:
    security = parse_security(security_doc([CA.pem], default="deny", intentions=rules(
        ("empty", "orders", "ledger", "allow", {"methods": [], "path_prefix": "", "headers": {}}),
    )))
    assert security is not None
    assert security.decide("orders", "ledger") == ("allow", "empty")  # TCP too
