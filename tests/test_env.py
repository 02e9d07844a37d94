"""The typed environment helpers of meshconsole.env."""

from __future__ import annotations

import ipaddress

import pytest

from meshconsole.env import (
    EnvError,
    env_bool,
    env_choice,
    env_dns_name,
    env_duration_ms,
    env_int,
    env_list,
    env_networks,
)


def test_env_bool(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_bool("MESH_T_BOOL", True) is True
    monkeypatch.setenv("MESH_T_BOOL", "Off")
    assert env_bool("MESH_T_BOOL", True) is False
    monkeypatch.setenv("MESH_T_BOOL", "maybe")
    with pytest.raises(EnvError, match="MESH_T_BOOL='maybe' is not a boolean"):
        env_bool("MESH_T_BOOL")


def test_env_int(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_int("MESH_T_INT", 7) == 7
    monkeypatch.setenv("MESH_T_INT", "31536000")
    assert env_int("MESH_T_INT", 0) == 31536000
    monkeypatch.setenv("MESH_T_INT", "1y")
    with pytest.raises(EnvError, match="MESH_T_INT='1y' is not an integer"):
        env_int("MESH_T_INT", 0)


def test_env_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_list("MESH_T_LIST", ["a"]) == ["a"]
    monkeypatch.setenv("MESH_T_LIST", " a, ,b ")
    assert env_list("MESH_T_LIST") == ["a", "b"]


def test_env_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_networks("MESH_T_NETS") == []
    monkeypatch.setenv("MESH_T_NETS", "10.0.0.1, 192.168.0.0/16,fd00::/8")
    assert env_networks("MESH_T_NETS") == [
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    ]
    monkeypatch.setenv("MESH_T_NETS", "10.0.0.1,proxy.example")
    with pytest.raises(EnvError, match="MESH_T_NETS: 'proxy.example' is not an IP"):
        env_networks("MESH_T_NETS")


def test_env_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    choices = ("strict", "permissive", "off")
    assert env_choice("MESH_T_CHOICE", "permissive", choices) == "permissive"
    monkeypatch.setenv("MESH_T_CHOICE", "Strict")
    assert env_choice("MESH_T_CHOICE", "permissive", choices) == "strict"
    monkeypatch.setenv("MESH_T_CHOICE", "sometimes")
    with pytest.raises(EnvError, match="not one of strict, permissive, off"):
        env_choice("MESH_T_CHOICE", "permissive", choices)


def test_env_dns_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_dns_name("MESH_T_TD", "mesh.local") == "mesh.local"
    monkeypatch.setenv("MESH_T_TD", "Prod.Example")
    assert env_dns_name("MESH_T_TD", "mesh.local") == "prod.example"
    for bad in ("spiffe://x", "a..b", "-a.b", "a/b"):
        monkeypatch.setenv("MESH_T_TD", bad)
        with pytest.raises(EnvError, match="is not a DNS name"):
            env_dns_name("MESH_T_TD", "mesh.local")


def test_env_duration_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_duration_ms("MESH_T_DUR", "24h", min_ms=1, max_ms=10**10) == 86_400_000
    monkeypatch.setenv("MESH_T_DUR", "90m")
    assert env_duration_ms("MESH_T_DUR", "24h", min_ms=1, max_ms=10**10) == 5_400_000
    monkeypatch.setenv("MESH_T_DUR", "soon")
    with pytest.raises(EnvError, match="is not a duration"):
        env_duration_ms("MESH_T_DUR", "24h", min_ms=1, max_ms=10**10)
    monkeypatch.setenv("MESH_T_DUR", "1s")
    with pytest.raises(EnvError, match="must be between"):
        env_duration_ms("MESH_T_DUR", "24h", min_ms=60_000, max_ms=10**10)
