"""The probes against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agents.runtime.addresses import literal_refusal
from monitoring import checks
from monitoring.checks import CheckResult, CheckSpec, http_check, run_batch, tcp_check

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def http_server(status: int, requests: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if requests is not None:
            requests.append(request)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        writer.close()

    return handle


def silent_server(connections: list[int]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.read()  # until the client gives up
        writer.close()

    return handle


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records (and refuses) every connection the probes try to open."""
    attempts: list[tuple[str, int]] = []

    async def refuse(host: str, port: int, **kwargs: Any) -> Any:
        attempts.append((host, port))
        raise ConnectionRefusedError

    monkeypatch.setattr(checks.asyncio, "open_connection", refuse)
    return attempts


async def test_http_check_passes_on_200_with_host_header_and_close() -> None:
    requests: list[bytes] = []
    async with serving(http_server(200, requests)) as port:
        result = await http_check("127.0.0.1", port, "/health", 1.0)
    assert result.ok
    assert result.output.startswith("HTTP 200 in ") and result.output.endswith(" ms")
    head = requests[0].decode()
    assert head.startswith("GET /health HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in head
    assert "Connection: close\r\n" in head


async def test_http_check_passes_on_redirect() -> None:
    async with serving(http_server(302)) as port:
        result = await http_check("127.0.0.1", port, "/", 1.0)
    assert result.ok


async def test_http_check_fails_on_503() -> None:
    async with serving(http_server(503)) as port:
        result = await http_check("127.0.0.1", port, "/health", 1.0)
    assert result == CheckResult(False, "HTTP 503")


async def test_http_check_fails_on_refused_connection() -> None:
    result = await http_check("127.0.0.1", closed_port(), "/health", 1.0)
    assert result == CheckResult(False, "connection refused")


async def test_http_check_times_out_on_a_server_that_never_answers() -> None:
    connections: list[int] = []
    async with serving(silent_server(connections)) as port:
        result = await http_check("127.0.0.1", port, "/health", 0.2)
    assert result == CheckResult(False, "timed out after 200 ms")
    assert connections == [1]


async def test_http_check_fails_on_garbage_response() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        writer.close()

    async with serving(handle) as port:
        result = await http_check("127.0.0.1", port, "/", 1.0)
    assert not result.ok
    assert result.output.startswith("invalid HTTP response")


async def test_http_check_refuses_a_path_that_would_inject_headers() -> None:
    result = await http_check("127.0.0.1", closed_port(), "/x\r\nEvil: 1", 1.0)
    assert not result.ok
    assert "check path" in result.output


async def test_tcp_check_passes_on_accepting_port() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(handle) as port:
        result = await tcp_check("127.0.0.1", port, 1.0)
    assert result.ok
    assert result.output.startswith("TCP connect in ")


async def test_tcp_check_fails_on_refused_connection() -> None:
    result = await tcp_check("127.0.0.1", closed_port(), 1.0)
    assert result == CheckResult(False, "connection refused")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "cloud metadata address"),
        ("fd00:ec2::254", "cloud metadata address"),
        ("::ffff:169.254.169.254", "cloud metadata address"),
        ("::169.254.169.254", "cloud metadata address"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "cloud metadata address"),  # NAT64 well-known prefix
        ("64:ff9b::169.254.169.254", "cloud metadata address"),
        ("64:ff9b:1::a9fe:a9fe", "cloud metadata address"),  # NAT64 local-use prefix
        ("2002:a9fe:a9fe::1", "cloud metadata address"),  # 6to4
        ("100.100.100.200", "cloud metadata address"),  # Alibaba
        ("168.63.129.16", "cloud metadata address"),  # Azure WireServer
        ("192.0.0.192", "cloud metadata address"),  # Oracle
        ("::ffff:168.63.129.16", "cloud metadata address"),
        ("64:ff9b::6464:64c8", "cloud metadata address"),  # NAT64 of Alibaba's
        ("169.254.10.1", "link-local address"),
        ("::169.254.10.1", "link-local address"),
        ("64:ff9b::a9fe:0a01", "link-local address"),
        ("fe80::1", "link-local address"),
        ("fe80::1%1", "link-local address"),
    ],
)
async def test_link_local_and_metadata_are_never_contacted(
    address: str, why: str, no_connections: list[tuple[str, int]]
) -> None:
    http = await http_check(address, 80, "/latest/meta-data/", 1.0)
    tcp = await tcp_check(address, 80, 1.0)
    assert http == CheckResult(False, f"refused: {why}")
    assert tcp == CheckResult(False, f"refused: {why}")
    assert no_connections == []


@pytest.mark.parametrize("address", ["::1", "::", "10.0.0.5", "::a00:5", "64:ff9b::a00:5", "2001:db8::1"])
def test_ordinary_addresses_are_not_refused(address: str) -> None:
    assert literal_refusal(address, allow_link_local=False) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "[::169.254.169.254]", "64:ff9b::a9fe:a9fe"])
def test_target_refusal_judges_stored_addresses(address: str) -> None:
    assert literal_refusal(address, allow_link_local=True) == "cloud metadata address"


def test_target_refusal_leaves_host_names_to_resolution() -> None:
    assert literal_refusal("metadata.google.internal", allow_link_local=False) is None


async def test_host_name_resolving_to_metadata_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_connections: list[tuple[str, int]]
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    monkeypatch.setattr(checks, "_resolve", resolve)
    result = await http_check("metadata.google.internal", 80, "/", 1.0)
    assert result == CheckResult(
        False,
        "refused: metadata.google.internal resolves to cloud metadata address 169.254.169.254",
    )
    assert no_connections == []


async def test_host_name_is_resolved_and_checked() -> None:
    async with serving(http_server(204)) as port:
        result = await http_check("localhost", port, "/", 1.0)
    # localhost may resolve to ::1 first where the server only listens on IPv4.
    assert result.ok or result.output == "connection refused"


async def test_link_local_is_allowed_with_the_setting(
    settings: Any, no_connections: list[tuple[str, int]]
) -> None:
    settings.MESH_CHECK_ALLOW_LINK_LOCAL = True
    result = await tcp_check("169.254.10.1", 8080, 1.0)
    assert result == CheckResult(False, "connection refused")
    assert no_connections == [("169.254.10.1", 8080)]
    # The metadata endpoint stays off limits whatever the setting.
    assert (await tcp_check("169.254.169.254", 80, 1.0)).output == "refused: cloud metadata address"
    assert no_connections == [("169.254.10.1", 8080)]


async def test_run_batch_keeps_order_and_isolates_failures() -> None:
    async with serving(http_server(200)) as up, serving(http_server(500)) as down:
        specs = [
            CheckSpec("a", "http", "127.0.0.1", up, "/health", 1000),
            CheckSpec("b", "http", "127.0.0.1", down, "/health", 1000),
            CheckSpec("c", "tcp", "127.0.0.1", closed_port(), "", 1000),
            CheckSpec("d", "bogus", "127.0.0.1", up, "", 1000),
            CheckSpec("e", "tcp", "127.0.0.1", up, "", 1000),
        ]
        results = await run_batch(specs, allow_link_local=False)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert results[1].output == "HTTP 500"
    assert results[2].output == "connection refused"
    assert results[3].output.startswith("check error: ValueError")


async def test_run_batch_caps_concurrency() -> None:
    active = 0
    peak = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.02)
        active -= 1
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writer.close()

    async with serving(handle) as port:
        specs = [CheckSpec(str(i), "http", "127.0.0.1", port, "/", 2000) for i in range(40)]
        results = await run_batch(specs, concurrency=5, allow_link_local=False)
    assert all(r.ok for r in results)
    assert 1 <= peak <= 5


def body_server(status: int, body: bytes, requests: list[bytes] | None = None) -> Handler:
    """Answers like a real server: headers, then the body in two writes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if requests is not None:
            requests.append(request)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        await writer.drain()
        half = len(body) // 2
        writer.write(body[:half])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(body[half:])
        await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(
    ("status", "expect", "ok", "output"),
    [
        (204, (200, 204), True, "HTTP 204 in "),
        (302, (200, 299), False, "HTTP 302 (expected 200-299)"),
        (503, (200, 399), False, "HTTP 503"),
        (404, (404, 404), True, "HTTP 404 in "),
        (200, (404, 404), False, "HTTP 200 (expected 404)"),
        (418, (400, 499), True, "HTTP 418 in "),
    ],
)
async def test_http_check_expected_status_range(
    status: int, expect: tuple[int, int], ok: bool, output: str
) -> None:
    async with serving(http_server(status)) as port:
        result = await http_check("127.0.0.1", port, "/health", 1.0, expect_status=expect)
    assert result.ok is ok and result.output.startswith(output)


async def test_http_check_body_substring_across_reads() -> None:
    page = b"<html>" + b"x" * 5000 + b"status: READY</html>"
    async with serving(body_server(200, page)) as port:
        found = await http_check("127.0.0.1", port, "/", 1.0, body="status: READY")
        missing = await http_check("127.0.0.1", port, "/", 1.0, body="status: DEGRADED")
    assert found.ok
    assert missing == CheckResult(False, "HTTP 200 but body lacks 'status: DEGRADED'")


async def test_http_check_body_is_not_matched_in_headers() -> None:
    async with serving(body_server(200, b"fine")) as port:
        result = await http_check("127.0.0.1", port, "/", 1.0, body="Content-Length")
    assert not result.ok


async def test_http_check_wrong_status_fails_before_the_body() -> None:
    async with serving(body_server(500, b"READY")) as port:
        result = await http_check("127.0.0.1", port, "/", 1.0, body="READY")
    assert result == CheckResult(False, "HTTP 500")


async def test_http_check_sends_headers_and_may_override_host() -> None:
    requests: list[bytes] = []
    headers = (("Host", "payments.internal"), ("X-Probe", "mesh 1"), ("Connection", "keep-alive"))
    async with serving(body_server(200, b"ok", requests)) as port:
        result = await http_check("127.0.0.1", port, "/h", 1.0, headers=headers)
    assert result.ok
    head = requests[0].decode()
    assert "Host: payments.internal\r\n" in head and f":{port}" not in head
    assert "X-Probe: mesh 1\r\n" in head
    assert head.count("Connection:") == 1 and "Connection: close\r\n" in head


async def test_http_check_refuses_header_injection() -> None:
    async with serving(http_server(200)) as port:
        result = await http_check("127.0.0.1", port, "/", 1.0, headers=(("X-A", "1\r\nX-B: 2"),))
    assert result == CheckResult(False, "invalid check header 'X-A'")


async def test_batch_carries_check_options() -> None:
    async with serving(body_server(201, b"alive")) as port:
        spec = CheckSpec("a", "http", "127.0.0.1", port, "/", 500, (201, 201), "alive", ())
        wrong = CheckSpec("b", "http", "127.0.0.1", port, "/", 500, (200, 200), "", ())
        results = await run_batch([spec, wrong])
    assert results[0].ok and results[1] == CheckResult(False, "HTTP 201 (expected 200)")
