"""Just enough HTTP/1.1 on asyncio streams for the demo: a keep-alive server
and a one-shot GET client. Standard library only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

Handler = Callable[[str, str], Awaitable[tuple[int, bytes]]]
REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return headers
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()


def _response(status: int, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            parts = request_line.decode("latin-1").split()
            if len(parts) != 3:
                writer.write(_response(400, b'{"error": "bad request"}', False))
                return
            method, target, version = parts
            headers = await _read_headers(reader)
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            status, body = await handler(method, target)
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            writer.write(_response(status, body, keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await _read_headers(reader)  # trailers
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return await reader.read()


async def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET URL on a fresh connection; (status, body). Raises OSError/TimeoutError."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: meshdemo\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            await writer.drain()
            status_line = await reader.readline()
            fields = status_line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise ConnectionError(f"bad status line {status_line!r}")
            headers = await _read_headers(reader)
            return int(fields[1]), await _read_body(reader, headers)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)
