"""Active health probes: plain asyncio, one connection per check.

Probes never raise: every outcome, including a bug in a probe, is a CheckResult
whose output says what happened, so one bad target cannot sink a batch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from agents.runtime.addresses import (  # noqa: F401  (re-exported: the probes' policy)
    LINK_LOCAL_NETWORKS,
    METADATA_ADDRESSES,
    IPAddress,
    address_refusal,
)

MAX_STATUS_LINE = 8192
# How much of a response body a check reads looking for its expected substring.
MAX_BODY = 64 * 1024
DEFAULT_EXPECT = (200, 399)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DEFAULT_CONCURRENCY = 500


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    output: str


@dataclass(frozen=True)
class CheckSpec:
    """One claimed check, as plain data (no ORM objects cross into asyncio)."""

    instance_id: str
    check_type: str  # "http" or "tcp"
    address: str
    port: int
    path: str = "/"
    timeout_ms: int = 2000
    expect_status: tuple[int, int] = (200, 399)
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class AddressRefused(Exception):
    pass


def _allow_link_local_default() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "MESH_CHECK_ALLOW_LINK_LOCAL", False))


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def vetted_address(host: str, port: int, *, allow_link_local: bool) -> str:
    """The IP to connect to for HOST, after the address policy.

    A host name is resolved here and the check connects to the vetted IP, so a
    second resolution cannot swap in a refused address.
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        refusal = address_refusal(literal, allow_link_local=allow_link_local)
        if refusal:
            raise AddressRefused(f"refused: {refusal}")
        return str(literal)
    addresses = await _resolve(host, port)
    if not addresses:
        raise AddressRefused(f"cannot resolve {host}")
    for candidate in addresses:
        refusal = address_refusal(
            ipaddress.ip_address(candidate.split("%", 1)[0]), allow_link_local=allow_link_local
        )
        if refusal:
            raise AddressRefused(f"refused: {host} resolves to {refusal} {candidate}")
    return addresses[0]


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failure(exc: BaseException, timeout: float) -> CheckResult:
    if isinstance(exc, AddressRefused):
        return CheckResult(False, str(exc))
    if isinstance(exc, TimeoutError):
        return CheckResult(False, f"timed out after {round(timeout * 1000)} ms")
    if isinstance(exc, ConnectionRefusedError):
        return CheckResult(False, "connection refused")
    if isinstance(exc, ConnectionResetError):
        return CheckResult(False, "connection reset")
    if isinstance(exc, socket.gaierror):
        return CheckResult(False, f"cannot resolve host: {exc.strerror or exc}")
    if isinstance(exc, OSError):
        return CheckResult(False, f"connection failed: {exc.strerror or exc}")
    return CheckResult(False, f"check error: {type(exc).__name__}: {exc}")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(Exception):
        await writer.wait_closed()


def _host_header(address: str, port: int) -> str:
    host = address.strip("[]")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if port == 80 else f"{host}:{port}"


def _header_lines(address: str, port: int, headers: Sequence[tuple[str, str]]) -> str:
    wanted = {
        "host": _host_header(address, port),
        "user-agent": "meshconsole-check/1",
        "accept": "*/*",
    }
    lines = []
    for name, value in headers:
        if not HEADER_NAME.fullmatch(name) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid check header {name!r}")
        if name.lower() == "connection":
            continue  # one request per connection, always
        wanted.pop(name.lower(), None)
        lines.append(f"{name}: {value}\r\n")
    defaults = {"host": "Host", "user-agent": "User-Agent", "accept": "Accept"}
    head = "".join(f"{defaults[k]}: {v}\r\n" for k, v in wanted.items())
    return head + "".join(lines)


def _request(address: str, port: int, path: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    path = path or "/"
    if not path.startswith("/"):
        path = "/" + path
    if any(c in path for c in "\r\n ") or not path.isascii():
        raise ValueError("check path must be printable ASCII without spaces")
    return (
        f"GET {path} HTTP/1.1\r\n{_header_lines(address, port, headers)}Connection: close\r\n\r\n"
    ).encode("latin-1")


async def _read_body(reader: asyncio.StreamReader) -> bytes:
    """The rest of the response after the status line: headers skipped, at most
    MAX_BODY bytes of body (the server closes the connection: Connection: close)."""
    rest = b""
    while len(rest) < MAX_BODY + MAX_STATUS_LINE:
        chunk = await reader.read(65536)
        if not chunk:
            break
        rest += chunk
    _, _, body = rest.partition(b"\r\n\r\n")
    return body[:MAX_BODY]


def _status(line: bytes) -> int:
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"invalid HTTP response: {line[:60]!r}")
    return int(parts[1])


async def http_check(
    address: str,
    port: int,
    path: str,
    timeout: float,
    *,
    allow_link_local: bool | None = None,
    expect_status: tuple[int, int] = (200, 399),
    body: str = "",
    headers: Sequence[tuple[str, str]] = (),
) -> CheckResult:
    """GET PATH over HTTP/1.1 with HEADERS; a status in EXPECT_STATUS (inclusive)
    passes, and when BODY is set the response body must contain it. TIMEOUT is in
    seconds and bounds the whole check: resolution, connect, status line, body."""
    if allow_link_local is None:
        allow_link_local = _allow_link_local_default()
    started = time.monotonic()
    content = b""
    try:
        request = _request(address, port, path, headers)
        async with asyncio.timeout(timeout):
            ip = await vetted_address(address, port, allow_link_local=allow_link_local)
            reader, writer = await asyncio.open_connection(ip, port, limit=MAX_STATUS_LINE)
            try:
                writer.write(request)
                await writer.drain()
                try:
                    line = await reader.readline()
                except ValueError:
                    raise ValueError("invalid HTTP response: status line too long") from None
                if body and line:
                    content = await _read_body(reader)
            finally:
                await _close(writer)
        if not line:
            return CheckResult(False, "connection closed without a response")
        status = _status(line)
    except ValueError as exc:
        return CheckResult(False, str(exc))
    except Exception as exc:
        return _failure(exc, timeout)
    low, high = expect_status
    if not low <= status <= high:
        if (low, high) == DEFAULT_EXPECT:
            return CheckResult(False, f"HTTP {status}")
        expected = f"{low}" if low == high else f"{low}-{high}"
        return CheckResult(False, f"HTTP {status} (expected {expected})")
    if body and body.encode() not in content:
        return CheckResult(False, f"HTTP {status} but body lacks {body[:60]!r}")
    return CheckResult(True, f"HTTP {status} in {_elapsed_ms(started)} ms")


async def tcp_check(
    address: str, port: int, timeout: float, *, allow_link_local: bool | None = None
) -> CheckResult:
    """A completed TCP handshake passes."""
    if allow_link_local is None:
        allow_link_local = _allow_link_local_default()
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            ip = await vetted_address(address, port, allow_link_local=allow_link_local)
            _, writer = await asyncio.open_connection(ip, port)
            await _close(writer)
    except Exception as exc:
        return _failure(exc, timeout)
    return CheckResult(True, f"TCP connect in {_elapsed_ms(started)} ms")


def _probe(spec: CheckSpec, allow_link_local: bool) -> Awaitable[CheckResult]:
    timeout = spec.timeout_ms / 1000
    if spec.check_type == "http":
        return http_check(
            spec.address,
            spec.port,
            spec.path,
            timeout,
            allow_link_local=allow_link_local,
            expect_status=spec.expect_status,
            body=spec.body,
            headers=spec.headers,
        )
    if spec.check_type == "tcp":
        return tcp_check(spec.address, spec.port, timeout, allow_link_local=allow_link_local)
    raise ValueError(f"unknown check type {spec.check_type!r}")


async def run_batch(
    specs: Sequence[CheckSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    allow_link_local: bool | None = None,
) -> list[CheckResult]:
    """Run SPECS concurrently, at most CONCURRENCY at once; results in SPECS' order."""
    if allow_link_local is None:
        allow_link_local = _allow_link_local_default()
    allowed = allow_link_local
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(spec: CheckSpec) -> CheckResult:
        async with gate:
            try:
                return await _probe(spec, allowed)
            except Exception as exc:
                return CheckResult(False, f"check error: {type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(one(spec) for spec in specs)))
