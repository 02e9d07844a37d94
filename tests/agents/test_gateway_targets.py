"""The gateway's targets are the mesh's: one runtime per service (one pool, one outlier
detector) with its subsets as views, dialled with mTLS to a strict service's inbound
listener with the gateway's own identity (issue 12/11)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.agent import Agent
from agents.runtime.certs import GATEWAY
from agents.runtime.config import Inbound, LocalService, parse_config
from agents.runtime.dial import inbound_sni
from agents.runtime.inbound import InboundListener
from agents.runtime.pki import key_pem, new_key
from agents.runtime.security import gateway_identity, parse_security, source_of
from tests.agents.backends import Backend, free_port
from tests.agents.gateway_helpers import call, entry, route, running_gateway
from tests.agents.testca import TD, TestCA, security_doc, store_with

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, Backend]]:
    started = {name: await Backend(name).start() for name in ("bad", "good")}
    yield started
    for backend in started.values():
        await backend.stop()


async def test_an_ejection_through_one_route_holds_for_every_route_of_the_service(
        backends: dict[str, Backend]) -> None:
    bad, good = backends["bad"], backends["good"]
    orders = entry(bad, good, outlier={"consecutive_5xx": 2, "base_ejection_ms": 60_000,
                                       "max_ejection_percent": 50},
                   retries={"attempts": 0})
    orders["endpoints"][0]["tags"] = ["v1"]  # only "bad" is in v1
    orders["subsets"] = {"v1": {"tags": ["v1"], "metadata": {}}}
    section = {"routes": [route("v1", "orders", path={"prefix": "/v1"}, subset="v1"),
                          route("all", "orders", path={"prefix": "/"})]}
    async with running_gateway(section, {"orders": orders}) as (gateway, port):
        whole, v1 = gateway.targets[("orders", "")], gateway.targets[("orders", "v1")]
        assert whole is gateway.services["orders"] and len(gateway.services) == 1
        assert v1.pool is whole.pool and v1.outlier is whole.outlier  # one per service
        # Two 5xx through the subset route eject "bad" ...
        assert [(await call(port, "GET", "/v1?status=503")).status for _ in range(2)] == [
            503, 503]
        stats = {e["id"]: e for e in gateway.stats()["targets"][0]["endpoints"]}
        assert stats[f"ep{bad.port}"]["ejected"] and not stats[f"ep{good.port}"]["ejected"]
        # ... which holds for the whole-service route: it never reaches "bad" now.
        seen = len(bad.requests)
        answers = [await call(port, "GET", "/x") for _ in range(6)]
        assert {(a.status, a.header("x-backend")) for a in answers} == {(200, "good")}
        assert len(bad.requests) == seen
        # The subset's view was replanned too: it has no healthy endpoint left.
        assert not v1.healthy  # type: ignore[attr-defined]


async def test_a_gateway_request_is_counted_and_pooled_on_its_routes_service(
        backends: dict[str, Backend]) -> None:
    """The breaker counters, the pool a connection goes back to and the outlier records
    are those of the destination the request was sent to (once they were the
    listener's: `active` grew on the service until max_requests refused everything,
    and no upstream connection was reused)."""
    good = backends["good"]
    orders = entry(good, circuit_breaker={"max_requests": 2})
    section = {"routes": [route("all", "orders", path={"prefix": "/"})]}
    async with running_gateway(section, {"orders": orders}) as (gateway, port):
        assert [(await call(port, "GET", "/x")).status for _ in range(5)] == [200] * 5
        runtime = gateway.services["orders"]
        assert runtime.active == 0 and gateway.listener_ctx.upstream.active == 0
        assert runtime.pool.idle_count() == 1 and good.connections == 1  # one, reused


async def test_a_route_removed_from_the_table_drops_its_service(
        backends: dict[str, Backend]) -> None:
    from agents.runtime.snapshot import parse_snapshot
    from tests.agents.gateway_helpers import snapshot

    upstreams = {"orders": entry(backends["good"]), "users": entry(backends["bad"])}
    section = {"routes": [route("o", "orders", path={"prefix": "/o"}),
                          route("u", "users", path={"prefix": "/u"})]}
    async with running_gateway(section, upstreams) as (gateway, port):
        assert (await call(port, "GET", "/u")).header("x-backend") == "bad"
        users = gateway.services["users"]
        smaller = {"routes": [route("o", "orders", path={"prefix": "/"})], "version": 2}
        assert gateway.offer(parse_snapshot(snapshot(smaller, upstreams, 2))) is None
        assert set(gateway.services) == {"orders"} and set(gateway.targets) == {("orders", "")}
        assert not users.state.endpoints and users.pool.idle_count() == 0
        deadline = asyncio.get_running_loop().time() + 10
        while users.pool.open and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)  # the closed connection's connection_lost
        assert users.pool.open == 0
        assert (await call(port, "GET", "/u")).header("x-backend") == "good"


# --- mTLS: a strict service behind its agent's inbound listener


def gateway_agent(tmp_path: Path) -> Agent:
    return Agent(parse_config({
        "control_plane": "http://127.0.0.1:9", "token": "t", "node": "edge-1",
        "data_dir": str(tmp_path / "gw"), "admin": "127.0.0.1:0", "dns": "off",
        "gateway": {"name": "edge", "listeners": [{"listen": "127.0.0.1:0"}]}}))


def strict_snapshot(doc: dict[str, Any], backend: Backend, inbound_port: int) -> dict[str, Any]:
    endpoint = {"id": "payments-1", "address": "127.0.0.1", "port": backend.port,
                "status": "passing", "inbound": {"address": "127.0.0.1", "port": inbound_port}}
    return {"revision": 1, "security": doc, "upstreams": {"payments": {
        "protocol": "http", "mtls": "strict", "route_target": True,
        "policy": {"connect_timeout_ms": 1000, "request_timeout_ms": 5000},
        "endpoints": [endpoint]}},
        "gateway": {"name": "edge", "routes": [route("pay", "payments",
                                                     path={"prefix": "/"})]}}


async def test_a_strict_service_is_dialled_with_mtls_and_the_gateways_identity(
        tmp_path: Path) -> None:
    backend = await Backend("payments").start()
    ca = TestCA()
    server_store = store_with(tmp_path / "server", ["payments"], ca)
    inbound = InboundListener(Inbound("127.0.0.1", 0, "127.0.0.1", 0),
                              [LocalService("payments", "127.0.0.1", backend.port,
                                            id="payments")], server_store)
    doc = security_doc([ca.pem], inbound={"payments": "strict"})
    inbound.apply(parse_security(doc))
    server = await inbound.start()
    inbound_port = int(server.sockets[0].getsockname()[1])
    agent = gateway_agent(tmp_path)
    assert agent.gateway is not None
    # The agent asks for the gateway's identity (beside the node's: it runs no service).
    assert agent.certs.names == ("", GATEWAY + "edge")
    key = new_key()
    agent.certs.install(GATEWAY + "edge", key_pem(key),
                        ca.issue(key.public_key(), gateway_identity(TD, "edge")))
    assert agent.certs.path_of(GATEWAY + "edge").name == "_gateway-edge.pem"
    agent.certs.set_roots([ca.pem])
    assert agent.offer(strict_snapshot(doc, backend, inbound_port))
    await agent.gateway.start()
    port = agent.gateway.servers[0].sockets[0].getsockname()[1]
    try:
        runtime = agent.gateway.services["payments"]
        tls = runtime.state.endpoints[0].tls
        assert tls is not None and (tls.host, tls.port) == ("127.0.0.1", inbound_port)
        assert tls.sni == inbound_sni(backend.port, "payments")
        assert tls.identities == {f"spiffe://{TD}/ns/default/svc/payments"}
        answer = await call(port, "GET", "/pay/1")
        assert answer.status == 200 and answer.json()["backend"] == "payments"
        assert inbound.refused == {}
        # The inbound side saw the gateway's certificate: its intention source.
        edges = {(w["source"], w["destination"]) for w in inbound.metrics.drain()}
        assert edges == {("gateway:edge", "payments")}
        # An intention denying the gateway: 403 from the service's agent, app untouched.
        seen = len(backend.requests)
        doc = {**doc, "intentions": [{"id": "no-edge", "source": "gateway:edge",
                                      "destination": "payments", "action": "deny"}]}
        inbound.apply(parse_security(doc))
        denied = await call(port, "GET", "/pay/2")
        assert denied.status == 403
        assert denied.header("x-mesh-error") == "denied-by-policy (no-edge)"
        assert len(backend.requests) == seen
    finally:
        for conn in list(agent.gateway.listener_ctx.connections):
            conn.close()
        await agent.gateway.close()
        inbound.close()
        await backend.stop()


async def test_without_the_gateways_certificate_a_strict_service_is_not_dialled_plain(
        tmp_path: Path) -> None:
    """No silent fallback: until the gateway holds its identity, a strict service is a 502
    (connect-failed), never a plaintext dial of its inbound port or its app."""
    backend = await Backend("payments").start()
    ca = TestCA()
    agent = gateway_agent(tmp_path)
    assert agent.gateway is not None
    doc = security_doc([ca.pem])
    assert agent.offer(strict_snapshot(doc, backend, await free_port()))
    await agent.gateway.start()
    port = agent.gateway.servers[0].sockets[0].getsockname()[1]
    try:
        answer = await call(port, "GET", "/")
        assert answer.status == 502 and answer.header("x-mesh-error") == "connect-failed"
        assert backend.requests == []
    finally:
        await agent.gateway.close()
        await backend.stop()


def test_a_gateway_identity_is_an_intention_source() -> None:
    roots = [TestCA().pem]
    assert source_of(TD, gateway_identity(TD, "edge")) == "gateway:edge"
    assert source_of(TD, f"spiffe://{TD}/ns/default/gateway/Bad_Name") is None
    security = parse_security({**security_doc(roots), "intentions": [
        {"id": "1", "source": "gateway:edge", "destination": "payments", "action": "deny"}]})
    assert security is not None
    assert security.decide("gateway:edge", "payments", None)[0] == "deny"
    assert security.decide("gateway:other", "payments", None)[0] == "allow"
    with pytest.raises(ValueError, match="not a service name"):
        parse_security({**security_doc(roots), "intentions": [
            {"id": "1", "source": "gateway:", "destination": "payments", "action": "deny"}]})


async def test_gateway_windows_of_the_inbound_side_are_not_reported(tmp_path: Path) -> None:
    agent = Agent(parse_config({
        "control_plane": "http://127.0.0.1:9", "token": "t", "node": "host-b",
        "data_dir": str(tmp_path / "b"), "admin": "127.0.0.1:0", "dns": "off",
        "services": [{"name": "payments", "address": "127.0.0.1", "port": 8080}],
        "inbound": {"listen": f"127.0.0.1:{await free_port()}"}}))  # (never started)
    assert agent.inbound is not None
    for source in ("gateway:edge", "orders"):
        agent.inbound.metrics.record_edge((source, "payments"), 1.0, False, 200)
    await asyncio.sleep(0)
    assert [w["source"] for w in agent.zt.inbound_windows()] == ["orders"]
