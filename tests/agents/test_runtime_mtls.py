"""The mTLS hop between two agents' data planes, in one loop, on real loopback sockets:
a client side dialling the server side's inbound listener, a test CA from
`cryptography`, real HTTP and TCP backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop

from agents.runtime.agent import Agent
from agents.runtime.config import parse_config
from agents.runtime.metrics import render_inbound
from agents.runtime.pki import key_pem, new_key
from agents.runtime.security import service_identity
from agents.runtime.snapshot import SNAPSHOT_FILE, write_atomic
from tests.agents.backends import Backend, fetch, free_port
from tests.agents.mtls_pair import mtls_pair
from tests.agents.test_runtime_proxy_tcp import tcp_server
from tests.agents.testca import TD, TestCA, security_doc, store_with

pytestmark = [pytest.mark.timeout(30), pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")]


@pytest.fixture(params=["asyncio", "uvloop"], scope="module")
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test on the stdlib loop and on uvloop (what meshagent runs on): their SSL
    transports differ (SNI callback owner, EOF, set_protocol)."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = await Backend("payments").start()
    yield server
    await server.stop()


async def tcp_roundtrip(port: int, data: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(3):
            return await reader.read(65536)
    finally:
        writer.close()


def backend_requests(backend: Backend) -> int:
    return len(backend.requests)


async def test_http_and_tcp_work_across_the_mtls_hop(tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        http_port = await pair.outbound("payments", "http")
        tcp_port = await pair.outbound("ledger", "tcp")
        for _ in range(3):  # keep-alive through both hops
            response = await fetch(http_port, "GET", "/hello")
            assert response.status == 200
            assert response.json()["backend"] == "payments"
        assert await tcp_roundtrip(tcp_port) == b"ping"
        assert pair.inbound.refused == {}
        # The inbound side records the edge from the verified certificate.
        await asyncio.sleep(0.2)  # a TCP edge is recorded when its connection ends
        edges = {(w["source"], w["destination"]) for w in pair.inbound.metrics.drain()}
        assert edges == {("orders", "payments"), ("orders", "ledger")}


async def test_a_plaintext_connection_to_the_inbound_port_is_refused(
        tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await fetch(pair.inbound_port, "GET", "/hello")
        assert backend_requests(backend) == 0


async def test_a_client_certificate_from_another_ca_is_refused(
        tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port,
                                                    client_ca=TestCA("rogue")) as pair:
        port = await pair.outbound("payments", "http")
        response = await fetch(port, "GET", "/hello")
        assert response.status == 502  # the handshake fails: nothing reaches the app
        assert backend_requests(backend) == 0


async def test_an_expired_client_certificate_is_refused(tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port,
                                                    client_valid_s=1) as pair:
        await asyncio.sleep(1.2)
        port = await pair.outbound("payments", "http")
        assert (await fetch(port, "GET", "/hello")).status == 502
        assert backend_requests(backend) == 0


async def test_a_revoked_serial_is_refused_and_its_open_connections_closed(
        tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        http_port = await pair.outbound("payments", "http")
        tcp_port = await pair.outbound("ledger", "tcp")
        assert (await fetch(http_port, "GET", "/a")).status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(b"open")
        assert await reader.read(100) == b"open"
        serial = pair.client_store.leaves["orders"].serial
        pair.publish(revoked_serials=[f"{serial:x}"])
        async with asyncio.timeout(1.0):  # the open TCP connection is cut at once
            assert await reader.read(100) == b""
        writer.close()
        seen = backend_requests(backend)
        assert (await fetch(http_port, "GET", "/b")).status == 502
        assert backend_requests(backend) == seen
        assert pair.inbound.refused.get("revoked", 0) >= 2


async def test_a_server_identity_that_does_not_match_is_refused(
        tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        port = await pair.outbound("payments", "http")
        side = pair.sides["payments:orders"]
        # The destination's endpoint now points (by SNI) at the ledger: its certificate
        # says ledger, not payments, so the client refuses it.
        for endpoint in side.runtime.state.endpoints:
            assert endpoint.tls is not None
            endpoint.tls = type(endpoint.tls)(endpoint.tls.host, endpoint.tls.port,
                                              f"{pair.app_ports['ledger']}.ledger.inbound.mesh",
                                              endpoint.tls.identities)
        assert (await fetch(port, "GET", "/hello")).status == 502
        assert backend_requests(backend) == 0


async def test_deny_is_403_and_the_backend_never_sees_the_request(
        tmp_path: Path, backend: Backend) -> None:
    rules = [{"id": "no-orders", "source": "orders", "destination": "payments",
              "action": "deny", "http": None}]
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port,
                                                    intentions=rules) as pair:
        port = await pair.outbound("payments", "http")
        response = await fetch(port, "POST", "/refund", body=b"{}")
        assert response.status == 403
        assert response.header("x-mesh-error") == "denied-by-policy (no-orders)"
        assert backend_requests(backend) == 0
        windows = pair.inbound.metrics.drain()
        assert [(w["source"], w["destination"], w["denied"]) for w in windows] == [
            ("orders", "payments", 1)]
        assert ('meshagent_inbound_denied_total{source="orders",destination="payments"} 1'
                in render_inbound(pair.inbound.metrics))


async def test_tcp_deny_closes_the_connection(tmp_path: Path, backend: Backend) -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(100))
        writer.close()

    rules = [{"id": "no-ledger", "source": "*", "destination": "ledger", "action": "deny",
              "http": None}]
    async with tcp_server(record) as tcp_app, mtls_pair(tmp_path, backend.port, tcp_app,
                                                        intentions=rules) as pair:
        port = await pair.outbound("ledger", "tcp")
        assert await tcp_roundtrip(port) == b""
        await asyncio.sleep(0.1)
        assert seen == []
        assert pair.inbound.refused == {"denied": 1}


async def test_allow_by_http_condition_per_request_on_one_connection(
        tmp_path: Path, backend: Backend) -> None:
    rules = [{"id": "refunds", "source": "orders", "destination": "payments", "action": "allow",
              "http": {"methods": ["POST"], "path_prefix": "/refund", "headers": {}}}]
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port,
                                                    intentions=rules, default="deny") as pair:
        port = await pair.outbound("payments", "http")
        assert (await fetch(port, "POST", "/refund/1", body=b"x")).status == 200
        response = await fetch(port, "GET", "/refund/1")
        assert response.status == 403
        assert response.header("x-mesh-error") == "denied-by-policy (default)"
        assert [r.path for r in backend.requests] == ["/refund/1"]


async def test_an_intention_change_applies_to_the_next_request(
        tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        port = await pair.outbound("payments", "http")
        assert (await fetch(port, "GET", "/x")).status == 200
        pair.publish(default_action="deny")
        assert (await fetch(port, "GET", "/x")).status == 403


async def test_mtls_off_dials_the_application_directly(tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        port = await pair.outbound("payments", "http", mtls="off")
        assert (await fetch(port, "GET", "/x")).status == 200
        assert pair.inbound.metrics.drain() == []  # it did not go through the inbound


async def test_a_retired_root_is_no_longer_trusted(tmp_path: Path, backend: Backend) -> None:
    async with tcp_server() as echo_port, mtls_pair(tmp_path, backend.port, echo_port) as pair:
        port = await pair.outbound("payments", "http")
        assert (await fetch(port, "GET", "/a")).status == 200
        # root-2 replaces root-1, but only the server side gets a new leaf: the client's
        # leaf (root-1's) must now be refused on new connections.
        new = TestCA("root-2")
        key = new_key()
        pair.server_store.install("payments", key_pem(key), new.issue(
            key.public_key(), service_identity(TD, "payments")))
        pair.publish(roots=[new.pem])
        pair.sides["payments:orders"].runtime.pool.close_all()
        assert (await fetch(port, "GET", "/b")).status == 502
        assert [r.path for r in backend.requests] == ["/a"]


async def test_a_restart_with_the_control_plane_down_serves_on_cached_certificates(
        tmp_path: Path, backend: Backend) -> None:
    """Both agents start from what an earlier run left in data_dir (snapshot.json and
    certs/*.pem, 0600); the control plane's address answers nothing."""
    ca = TestCA()
    inbound_port, listen = await free_port(), await free_port()
    doc = security_doc([ca.pem])
    store_with(tmp_path / "b", ["payments"], ca)
    store_with(tmp_path / "a", ["orders"], ca)
    write_atomic(tmp_path / "b" / SNAPSHOT_FILE, {"revision": 4, "security": doc,
                                                  "upstreams": {}})
    write_atomic(tmp_path / "a" / SNAPSHOT_FILE, {"revision": 4, "security": doc, "upstreams": {
        "payments": {"protocol": "http", "mtls": "strict", "endpoints": [
            {"id": "p1", "address": "127.0.0.1", "port": backend.port,
             "inbound": {"address": "127.0.0.1", "port": inbound_port}}]}}})
    dead = f"http://127.0.0.1:{await free_port()}"
    server = Agent(parse_config({
        "control_plane": dead, "token": "t", "node": "host-b", "data_dir": str(tmp_path / "b"),
        "admin": "127.0.0.1:0", "dns": "off",
        "services": [{"name": "payments", "address": "127.0.0.1", "port": backend.port}],
        "inbound": {"listen": f"127.0.0.1:{inbound_port}"}}))
    client = Agent(parse_config({
        "control_plane": dead, "token": "t", "node": "host-a", "data_dir": str(tmp_path / "a"),
        "admin": "127.0.0.1:0", "dns": "off",
        "services": [{"name": "orders", "address": "127.0.0.1", "port": 8081}],
        "upstreams": [{"service": "payments", "listen": f"127.0.0.1:{listen}"}]}))
    await server.start()
    await client.start()
    try:
        response = await fetch(listen, "GET", "/cached")
        assert response.status == 200 and response.json()["path"] == "/cached"
        pem = tmp_path / "a" / "certs" / "orders.pem"
        assert pem.stat().st_mode & 0o777 == 0o600
        assert [c["service"] for c in client.zt.certificates()] == ["orders"]
        assert "meshagent_certificate_expiry_seconds{identity=" in client.prometheus()
    finally:
        await client.stop(grace_s=0.5)
        await server.stop(grace_s=0.5)
