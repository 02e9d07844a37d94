"""The agent's admin endpoint: /ready, /stats, /metrics, /config.

A few requests a minute from a probe or Prometheus: one request per
connection, the request line read with a size and time limit, then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any, Protocol

from agents.runtime.httpwire import simple_response

READ_LIMIT = 16 * 1024
READ_TIMEOUT_S = 5.0
JSON = b"application/json"


class AdminSource(Protocol):
    def ready(self) -> bool:
        ...

    def stats(self) -> dict[str, Any]:
        ...

    def prometheus(self) -> str:
        ...

    def config_json(self) -> dict[str, Any] | None:
        ...


def _json(status: int, data: Any, head_only: bool) -> bytes:
    body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    return simple_response(status, body, content_type=JSON, close=True, head_only=head_only)


def route(source: AdminSource, method: str, target: str) -> bytes:
    path = target.split("?", 1)[0]
    head_only = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return simple_response(405, b"method not allowed\n", close=True,
                               extra=[(b"allow", b"GET, HEAD")])
    if path == "/ready":
        ready = source.ready()
        return simple_response(200 if ready else 503, b"ready\n" if ready else b"not ready\n",
                               close=True, head_only=head_only)
    if path == "/stats":
        return _json(200, source.stats(), head_only)
    if path == "/metrics":
        body = source.prometheus().encode()
        return simple_response(200, body, content_type=b"text/plain; version=0.0.4",
                               close=True, head_only=head_only)
    if path == "/config":
        config = source.config_json()
        if config is None:
            return _json(404, {"detail": "no snapshot applied yet"}, head_only)
        return _json(200, config, head_only)
    return simple_response(404, b"not found\n", close=True, head_only=head_only)


class _BadHead(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


async def _request_line(reader: asyncio.StreamReader) -> bytes:
    """The head read line by line, to its empty line; its first line returned. Every line
    must end in CRLF: a bare LF (or CR) is refused, as llhttp refuses it on the proxy
    listeners, instead of waiting for a CRLF CRLF that never comes."""
    first: bytes | None = None
    total = 0
    while True:
        line = await reader.readuntil(b"\n")  # LimitOverrunError: one line over READ_LIMIT
        total += len(line)
        if total > READ_LIMIT:
            raise _HeadTooLarge
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise _BadHead
        if first is None:
            first = line
        if line == b"\r\n":
            return first[:-2]


async def _serve(source: AdminSource, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            request_line = (await _request_line(reader)).decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            response = simple_response(400, b"bad request\n", close=True)
        else:
            response = route(source, parts[0], parts[1])
        writer.write(response)
        await writer.drain()
    except _BadHead:
        await _refuse(reader, writer, simple_response(
            400, b"bad request: header lines must end in CRLF\n", close=True))
    except (asyncio.LimitOverrunError, _HeadTooLarge):
        await _refuse(reader, writer, simple_response(
            431, b"request header fields too large\n", close=True))
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  response: bytes) -> None:
    """RESPONSE to a head not read whole (a 400, a 431 over READ_LIMIT). The rest of it is
    read (bounded) before the close: closing with unread bytes makes the kernel reset the
    connection, answer unseen."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        writer.write(response)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(READ_TIMEOUT_S):
            for _ in range(64):  # at most 64 reads of the limit
                if not await reader.read(READ_LIMIT):
                    break


async def start_admin(source: AdminSource, host: str, port: int,
                      sock: socket.socket | None = None) -> asyncio.Server:
    """sock: a listening socket taken over from the agent this one replaces (handover.py)."""
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(source, reader, writer)

    if sock is not None:
        return await asyncio.start_server(on_client, sock=sock, limit=READ_LIMIT)
    return await asyncio.start_server(on_client, host, port, limit=READ_LIMIT, reuse_address=True)
