"""The typed environment helpers of meshconsole.env."""

from __future__ import annotations

import ipaddress

import pytest

from meshconsole.env import EnvError, env_bool, env_int, env_list, env_networks


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
