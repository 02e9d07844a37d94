"""L4 proxy for `protocol: tcp` upstreams: balance per connection, then pipe bytes.

Streams are fine here: there is one task pair per connection, not per request,
and drain() gives the flow control (a slow side pauses the other's reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from agents.runtime.balancer import Endpoint
from agents.runtime.hashing import hash64
from agents.runtime.metrics import Metrics
from agents.runtime.outlier import CONNECT_FAILURE
from agents.runtime.upstream import UpstreamRuntime

log = logging.getLogger("meshagent.tcp")

CHUNK = 64 * 1024


@dataclass
class TcpContext:
    upstream: UpstreamRuntime
    metrics: Metrics
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    inflight: int = 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other side may still be answering
    except (ConnectionError, OSError):
        writer.close()


async def _connect(ctx: TcpContext, peer: bytes) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, Endpoint] | None:
    """Same selection as HTTP (panic, zones, balancer); only the client IP can be a hash key."""
    upstream = ctx.upstream
    state = upstream.state
    hash_key = hash64(peer) if state.hash_on is not None and peer else None
    tried: set[str] = set()
    while (endpoint := upstream.pick(state, tried, hash_key)) is not None:
        if endpoint.key in tried:
            break  # every endpoint refused us once: give up rather than loop
        tried.add(endpoint.key)
        try:
            async with asyncio.timeout(state.connect_timeout):
                reader, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
        except (OSError, TimeoutError):
            endpoint.errors += 1
            upstream.outlier.record(endpoint, CONNECT_FAILURE)
            continue
        upstream.outlier.record(endpoint, 200)  # a connection made: the streak is over
        return reader, writer, endpoint
    return None


async def handle_tcp(ctx: TcpContext, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    ctx.inflight += 1
    ctx.writers.add(writer)
    upstream = ctx.upstream
    error = True
    try:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]).encode() if isinstance(peername, tuple) else b""
        connected = await _connect(ctx, peer)
        if connected is None:
            return
        up_reader, up_writer, endpoint = connected
        endpoint.active += 1
        ctx.writers.add(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            error = False
        finally:
            endpoint.active -= 1
            endpoint.observe((loop.time() - started) * 1000.0, error)
            ctx.writers.discard(up_writer)
            up_writer.close()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("tcp proxy error")
    finally:
        ctx.inflight -= 1
        ctx.writers.discard(writer)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        # For L4 the "latency" recorded is the connection's lifetime.
        upstream_ms = (loop.time() - started) * 1000.0
        ctx.metrics.record(upstream.source, upstream.service, upstream_ms, error)


async def start_tcp_listener(ctx: TcpContext, host: str, port: int, *,
                             reuse_port: bool = False) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_tcp(ctx, reader, writer)

    return await asyncio.start_server(on_client, host, port, backlog=1024, reuse_address=True,
                                      reuse_port=reuse_port or None, limit=CHUNK)
