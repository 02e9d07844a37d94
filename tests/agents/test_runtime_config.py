"""agent.yaml validation: the documented example loads, every bad case names its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.runtime.config import ConfigError, load_config, parse_config

EXAMPLE = """
control_plane: http://127.0.0.1:8000
token: mesh-enroll-abc
node: host-a
zone: zone-1
data_dir: /var/lib/meshagent
admin: 127.0.0.1:19000
services:
  - name: orders
    address: 127.0.0.1
    port: 8081
    tags: [v1]
    check: {type: http, path: /health, interval: 2s, timeout: 1s, rise: 2, fall: 2}
upstreams:
  - service: payments
    listen: 127.0.0.1:9101
    protocol: http
"""


def base() -> dict:
    return yaml.safe_load(EXAMPLE)


def error_for(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_the_architecture_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.node == "host-a" and config.zone == "zone-1"
    assert (config.admin_host, config.admin_port) == ("127.0.0.1", 19000)
    service = config.services[0]
    assert service.check is not None and service.check.interval_ms == 2000
    assert service.check.timeout_ms == 1000 and service.weight == 100
    upstream = config.upstreams[0]
    assert (upstream.service, upstream.host, upstream.port) == ("payments", "127.0.0.1", 9101)
    assert upstream.source == "orders"  # the node's only service


def test_source_is_unknown_when_the_node_runs_several_services() -> None:
    data = base()
    data["services"].append({"name": "billing", "address": "127.0.0.1", "port": 8082})
    config = parse_config(data)
    assert config.upstreams[0].source == "unknown"
    data["upstreams"][0]["source"] = "billing"
    assert parse_config(data).upstreams[0].source == "billing"


def test_check_reports_durations_as_strings() -> None:
    check = parse_config(base()).services[0].check
    assert check is not None
    assert check.as_report() == {"type": "http", "path": "/health", "interval": "2s",
                                 "timeout": "1s", "rise": 2, "fall": 2}


def test_ipv6_listen_address_is_accepted() -> None:
    data = base()
    data["upstreams"][0]["listen"] = "[::1]:9101"
    assert parse_config(data).upstreams[0].host == "::1"


def _set(path: str, value: object) -> dict:
    data = base()
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


BAD = [
    ("upstreams.0.listen", "9101", "agent.yaml: upstreams[0].listen: expected host:port, got '9101'"),
    ("upstreams.0.listen", "127.0.0.1:70000", "upstreams[0].listen: port must be between"),
    ("upstreams.0.protocol", "udp", "upstreams[0].protocol: expected one of http, tcp, got 'udp'"),
    ("upstreams.0.service", "Pay_ments", "upstreams[0].service: 'Pay_ments' is not a DNS label"),
    ("upstreams.0.colour", "red", "upstreams[0].colour: unknown key"),
    ("services.0.port", 0, "services[0].port: must be between 1 and 65535, got 0"),
    ("services.0.port", "80", "services[0].port: expected an integer, got a string ('80')"),
    ("services.0.port", KeyError, "services[0].port: required"),
    ("services.0.name", "-orders", "services[0].name: '-orders' is not a DNS label"),
    ("services.0.name", "x" * 64, "services[0].name:"),
    ("services.0.tags", "v1", "services[0].tags: expected a list of strings"),
    ("services.0.metadata", {"a": 1}, "services[0].metadata: expected a mapping of strings"),
    ("services.0.weight", True, "services[0].weight: expected an integer, got a boolean"),
    ("services.0.check.type", "icmp", "services[0].check.type: expected one of http, tcp, ttl"),
    ("services.0.check.interval", "soon", "services[0].check.interval: 'soon' is not a duration"),
    ("services.0.check.timeout", "5s", "services[0].check.timeout: must not exceed the interval"),
    ("services.0.check.rise", 0, "services[0].check.rise: must be between 1 and 100"),
    ("services.0.check.path", "health", "services[0].check.path: 'health' is not a path"),
    ("control_plane", "ftp://x", "control_plane: expected an http:// or https:// URL"),
    ("control_plane", "http://:80", "control_plane: expected an http:// or https:// URL"),
    ("token", "", "token: must not be empty"),
    ("token", KeyError, "agent.yaml: token: required"),
    ("node", "host a", "node: 'host a' is not a host name"),
    ("admin", "localhost", "admin: expected host:port, got 'localhost'"),
    ("data_dir", 3, "data_dir: expected a string, got an integer (3)"),
    ("services", {"name": "x"}, "services: expected a list, got a mapping"),
    ("extra", 1, "agent.yaml: extra: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_value_is_refused_with_its_path(path: str, value: object, message: str) -> None:
    assert message in error_for(_set(path, value))


def test_duplicate_listen_addresses_are_refused() -> None:
    data = base()
    data["upstreams"].append({"service": "billing", "listen": "127.0.0.1:9101"})
    assert error_for(data) == (
        "agent.yaml: upstreams[1].listen: 127.0.0.1:9101 is already used by upstreams[0]"
    )


def test_listen_on_the_admin_address_is_refused() -> None:
    data = _set("upstreams.0.listen", "127.0.0.1:19000")
    assert "already used by admin" in error_for(data)


def test_duplicate_service_names_are_refused() -> None:
    data = base()
    data["services"].append(dict(data["services"][0]))
    assert "services[1].name: 'orders' is listed twice" in error_for(data)


def test_two_instances_of_one_service_on_one_host_are_allowed() -> None:
    data = base()
    data["services"] = [{"name": "payments", "address": "127.0.0.1", "port": 8081},
                        {"name": "payments", "address": "127.0.0.1", "port": 8082},
                        {"name": "orders", "address": "127.0.0.1", "port": 8083}]
    config = parse_config(data)
    assert [(s.name, s.port, s.id) for s in config.services] == [
        ("payments", 8081, "payments:8081"), ("payments", 8082, "payments:8082"),
        ("orders", 8083, "orders")]
    assert [s.as_report()["id"] for s in config.services] == [
        "payments:8081", "payments:8082", "orders"]


def test_an_explicit_id_names_the_entry() -> None:
    data = base()
    data["services"] = [{"id": "blue", "name": "payments", "address": "127.0.0.1", "port": 8081},
                        {"id": "green", "name": "payments", "address": "127.0.0.1", "port": 8082}]
    assert [s.id for s in parse_config(data).services] == ["blue", "green"]
    data["services"][1]["id"] = "blue"
    assert error_for(data) == "agent.yaml: services[1].id: 'blue' is already the id of services[0]"
    data["services"][1]["id"] = "no spaces"
    assert "services[1].id: 'no spaces' is not an id" in error_for(data)


def test_one_service_twice_on_one_port_is_refused_naming_both() -> None:
    data = base()
    data["services"].append(dict(data["services"][0], address="127.0.0.2"))
    assert error_for(data) == ("agent.yaml: services[1].name: 'orders' is listed twice with "
                               "port 8081 (services[0] and services[1])")


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert error_for(["a"]) == "agent.yaml: expected a mapping, got a list"
    assert error_for(None) == "agent.yaml: expected a mapping, got nothing"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("node: host-a\nservices: [a, b\n")
    with pytest.raises(ConfigError, match=r"agent.yaml: line \d+, column \d+"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
