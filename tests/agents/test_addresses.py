"""One address rule for the API, the agent's config and the snapshot parser:
an address the API accepted used to make every consuming agent NACK the whole
snapshot (`bad_host`, `-x`, `a..b`, `host:8080`, a 250-character name, non-ASCII)."""

from __future__ import annotations

import copy

import pytest
from rest_framework.test import APIClient

from agents.runtime.addresses import address_error
from agents.runtime.snapshot import SnapshotError, parse_snapshot

BAD = ["bad_host", "-x", "x-", "a..b", "host:8080", "a" * 250, "a." * 127 + "b", "héllo",
       "", " 10.0.0.1", "10.0.0.1/24", "http://x"]
# Not IP literals to ipaddress, but resolvers (inet_aton) read them as IPv4: 2852039166
# and 0xa9fea9fe are 169.254.169.254 (metadata), 010.0.0.1 is 8.0.0.1, 1.2.3 is 1.2.0.3.
# As host names they passed the literal-only refusal and reached agents' snapshots.
NUMERIC = ["2852039166", "0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "010.0.0.1", "1.2.3", "0x7f.1",
           "10.0.0.300", "1.2.3.4.5"]
GOOD = ["10.0.0.1", "::1", "2001:db8::5", "payments-1.internal", "a" * 63 + ".b", "host.",
        "localhost"]


@pytest.mark.parametrize("address", BAD)
def test_bad_addresses_are_refused(address: str) -> None:
    assert address_error(address)


@pytest.mark.parametrize("address", NUMERIC)
def test_numbers_that_resolvers_read_as_ipv4_are_not_host_names(address: str) -> None:
    problem = address_error(address)
    assert problem and "IPv4" in problem, problem


@pytest.mark.parametrize("address", ["1a.example", "0x.example", "a1", "deadbeef", "1-2.com"])
def test_names_with_digits_are_still_host_names(address: str) -> None:
    assert address_error(address) is None


@pytest.mark.parametrize("address", GOOD)
def test_good_addresses_pass(address: str) -> None:
    assert address_error(address) is None


SNAPSHOT = {
    "revision": 3, "agent_id": "a", "node": "host-a", "zone": "", "report_interval_ms": 2000,
    "upstreams": {"payments": {"protocol": "http", "policy": {}, "endpoints": [
        {"id": "e1", "address": "10.0.0.1", "port": 80, "weight": 100, "zone": "",
         "priority": 0, "status": "passing"}]}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("address", [a for a in BAD if a.strip() == a])  # the API trims
def test_the_api_refuses_what_the_agent_would(api: APIClient, address: str) -> None:
    api.post("/api/v1/services/", {"name": "payments"}, format="json")
    response = api.post(
        "/api/v1/services/payments/instances/", {"address": address, "port": 80}, format="json"
    )
    assert response.status_code == 400 and "address" in response.json()
    raw = copy.deepcopy(SNAPSHOT)
    raw["upstreams"]["payments"]["endpoints"][0]["address"] = address
    with pytest.raises(SnapshotError):
        parse_snapshot(raw)


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["2852039166", "0xa9fea9fe", "010.0.0.1"])
def test_the_api_refuses_an_address_resolvers_read_as_another_ipv4(
    api: APIClient, address: str
) -> None:
    from registry.models import Instance

    api.post("/api/v1/services/", {"name": "payments", "check": {"type": "none"}}, format="json")
    response = api.post(
        "/api/v1/services/payments/instances/", {"address": address, "port": 80}, format="json"
    )
    assert response.status_code == 400 and "IPv4" in str(response.json()["address"])
    assert not Instance.objects.exists()


@pytest.mark.parametrize("address", GOOD)
def test_what_the_api_accepts_the_agent_accepts(api: APIClient, address: str) -> None:
    api.post("/api/v1/services/", {"name": "payments"}, format="json")
    response = api.post(
        "/api/v1/services/payments/instances/", {"address": address, "port": 80}, format="json"
    )
    assert response.status_code == 201, response.content
    raw = copy.deepcopy(SNAPSHOT)
    raw["upstreams"]["payments"]["endpoints"][0]["address"] = address
    parse_snapshot(raw)


@pytest.mark.parametrize("address", [a for a in BAD if a])
def test_meshagent_check_refuses_what_the_api_refuses(tmp_path, address: str) -> None:
    from agents.runtime.config import ConfigError, parse_config

    config = {"control_plane": "http://127.0.0.1:8000", "token": "t", "node": "host-a",
              "data_dir": str(tmp_path), "services": [{"name": "orders", "address": address,
                                                       "port": 8081}]}
    with pytest.raises(ConfigError, match=r"services\[0\]\.address"):
        parse_config(config)
