"""agent.yaml `gateway:` and the agent's handling of the snapshot's gateway section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.runtime.agent import Agent
from agents.runtime.config import ConfigError, parse_config
from tests.agents.gateway_helpers import make_cert, route

BASE: dict[str, Any] = {"control_plane": "http://127.0.0.1:1", "token": "t", "node": "edge-1",
                        "data_dir": "/tmp/unused", "admin": "127.0.0.1:0", "dns": "off"}


def config(gateway: Any, **top: Any) -> Any:
    return parse_config({**BASE, **top, "gateway": gateway})


def test_minimal_gateway_section_and_defaults() -> None:
    cfg = config({"name": "edge", "listeners": [{"listen": "127.0.0.1:8080"}]}).gateway
    assert cfg is not None
    assert cfg.name == "edge" and cfg.listeners[0].port == 8080 and not cfg.listeners[0].tls
    assert cfg.max_body_bytes == 1024 * 1024 and cfg.on_redis_error == "open"
    assert cfg.redis == "" and cfg.trusted_proxies == () and cfg.redis_timeout_ms == 50
    assert cfg.as_report() == {"name": "edge"}


def test_full_gateway_section(tmp_path: Path) -> None:
    a, b = make_cert(tmp_path, "a.example.com"), make_cert(tmp_path, "b.example.com")
    cfg = config({"name": "edge", "listeners": [
        {"listen": "127.0.0.1:8443", "tls": {"certificates": [
            {"cert": str(a.cert), "key": str(a.key)}, {"cert": str(b.cert), "key": str(b.key)}]}}],
        "trusted_proxies": ["10.0.0.0/8", "::1/128"], "max_body_bytes": 10,
        "redis": "redis://127.0.0.1:6379/13", "redis_timeout": "20ms",
        "on_redis_error": "closed", "jwks_refresh": "1m"}).gateway
    assert cfg is not None and len(cfg.listeners[0].certificates) == 2
    assert [str(n) for n in cfg.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert (cfg.max_body_bytes, cfg.redis_timeout_ms, cfg.on_redis_error,
            cfg.jwks_refresh_ms) == (10, 20, "closed", 60_000)


@pytest.mark.parametrize("gateway,where", [
    ("edge", "gateway: expected a mapping"),
    ({"listeners": [{"listen": "127.0.0.1:1"}]}, "gateway.name: required"),
    ({"name": "Edge!", "listeners": [{"listen": "127.0.0.1:1"}]}, "gateway.name: 'Edge!'"),
    ({"name": "edge"}, "gateway.listeners: expected a non-empty list"),
    ({"name": "edge", "listeners": []}, "gateway.listeners: expected a non-empty list"),
    ({"name": "edge", "listeners": [{"listen": "8080"}]},
     "gateway.listeners[0].listen: expected host:port"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1", "tls": {}}]},
     "gateway.listeners[0].tls.certificates: expected a non-empty list"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1",
                                     "tls": {"certificates": [{"cert": "/nope", "key": "/nope"}]}}]},
     "gateway.listeners[0].tls.certificates[0].cert: '/nope' is not a readable file"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}, {"listen": "127.0.0.1:1"}]},
     "gateway.listeners[1].listen: 127.0.0.1:1 is already gateway.listeners[0]"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "trusted_proxies": ["10.0.0/33"]},
     "gateway.trusted_proxies[0]:"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "trusted_proxies": "10.0.0.0/8"},
     "gateway.trusted_proxies: expected a list"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "on_redis_error": "maybe"},
     "gateway.on_redis_error: expected one of open, closed"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "redis": "http://x"},
     "gateway.redis: expected a redis:// URL"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "redis": "redis://h/x"},
     "gateway.redis: the path must be a database number"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "max_body_bytes": -1},
     "gateway.max_body_bytes: must be between"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "jwks_refresh": "1ms"},
     "gateway.jwks_refresh: must be between"),
    ({"name": "edge", "listeners": [{"listen": "127.0.0.1:1"}], "routes": []},
     "gateway.routes: unknown key"),
])
def test_bad_gateway_sections_name_the_path(gateway: Any, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(gateway)
    assert str(caught.value).startswith(f"agent.yaml: {where}"), str(caught.value)


def test_gateway_listener_cannot_take_the_admin_port() -> None:
    with pytest.raises(ConfigError, match=r"gateway.listeners\[0\].listen: 127.0.0.1:19000 is "
                                          "already used"):
        parse_config({**BASE, "admin": "127.0.0.1:19000",
                      "gateway": {"name": "edge", "listeners": [{"listen": "127.0.0.1:19000"}]}})


async def test_agent_refuses_a_bad_gateway_section_alone(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "data_dir": str(tmp_path),
                        "gateway": {"name": "edge", "listeners": [{"listen": "127.0.0.1:0"}]}})
    agent = Agent(cfg)
    assert agent.gateway is not None
    upstreams = {"orders": {"protocol": "http", "endpoints": [], "route_target": True}}
    good = {"revision": 1, "upstreams": upstreams,
            "gateway": {"name": "edge", "routes": [route("r", "orders", path={"prefix": "/"})]}}
    assert agent.offer(good) and agent.nack is None
    assert [r.name for r in agent.gateway.table.routes] == ["r"]
    bad = {"revision": 2, "upstreams": upstreams,
           "gateway": {"name": "edge", "routes": [route("r2", "orders", path={"prefix": "x"})]}}
    assert agent.offer(bad)
    assert agent.nack is not None and "gateway" in agent.nack["refused"]
    assert agent.snapshot is not None and agent.snapshot.revision == 2  # the rest applied
    assert [r.name for r in agent.gateway.table.routes] == ["r"]
    assert agent.snapshot.raw["gateway"]["routes"][0]["name"] == "r"  # persisted as served
    assert agent._gateway_payload() == {"gateway": {"name": "edge"}}
