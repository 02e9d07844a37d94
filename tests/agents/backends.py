"""Real loopback servers and a raw client for the agent runtime's tests.

- HttpServer / Backend: small asyncio HTTP/1.1 servers (keep-alive, chunked
  requests) that record what reached them;
- HttpClient: a raw keep-alive client that parses with httptools;
- FakeControlPlane: the agent protocol (docs/agent-protocol.md) in memory.
  It exists only for the runtime's unit tests; the real control plane is
  covered by the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httptools


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    body_len: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class _RequestParser:
    def __init__(self, keep_body: Callable[[str], bool]) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.keep_body = keep_body
        self.done: list[Request] = []
        self.current: Request | None = None
        self._url = b""

    def on_message_begin(self) -> None:
        self._url = b""
        self.current = Request("", "", [])

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.method = self.parser.get_method().decode()
        self.current.target = self._url.decode()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body_len += len(body)
        if self.keep_body(self.current.path):
            self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.done.append(self.current)
        self.current = None


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


class HttpServer:
    """Calls handler(request, writer) per request; it writes the answer, returns keep-alive."""

    def __init__(self, handler: Handler, keep_body: Callable[[str], bool] = lambda p: True):
        self.handler = handler
        self.keep_body = keep_body
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.requests: list[Request] = []
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        parser = _RequestParser(self.keep_body)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                parser.parser.feed_data(data)
                while parser.done:
                    request = parser.done.pop(0)
                    self.requests.append(request)
                    if not await self.handler(request, writer):
                        return
        except (ConnectionError, httptools.HttpParserError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Backend(HttpServer):
    """A service instance with a few behaviours chosen by path."""

    def __init__(self, name: str = "backend") -> None:
        super().__init__(self._route, keep_body=lambda path: path != "/sink")
        self.name = name

    async def _route(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        q = req.query
        if req.path == "/slow":
            await asyncio.sleep(float(q.get("ms", "1000")) / 1000)
        if req.path == "/die":  # promises 100 bytes, sends 10, then vanishes
            writer.write(head(200, [("Content-Length", "100")]) + b"0123456789")
            await writer.drain()
            writer.transport.abort()
            return False
        if req.path == "/close":  # HTTP/1.0-style body delimited by the close
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
            await writer.drain()
            return False
        if req.path == "/chunked":
            writer.write(head(200, [("Transfer-Encoding", "chunked")]))
            for piece in (b"hello ", b"chunked ", b"world"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            return True
        if req.path == "/big":
            size = int(q.get("bytes", str(1024 * 1024)))
            writer.write(head(200, [("Content-Length", str(size))]))
            piece = b"x" * 65536
            sent = 0
            while sent < size:
                part = piece[: size - sent]
                writer.write(part)
                sent += len(part)
                await writer.drain()
            return True
        if req.path == "/echo":
            writer.write(head(200, [("Content-Length", str(len(req.body)))]) + req.body)
            return True
        if req.path == "/hop":
            hop = [("Connection", "X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                   ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T"), ("Upgrade", "h2c"),
                   ("X-Kept", "yes"), ("Content-Length", "2")]
            writer.write(head(200, hop) + b"ok")
            return True
        status = int(q.get("status", "200"))
        body = json.dumps({"backend": self.name, "method": req.method, "path": req.path,
                           "body_len": req.body_len}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("X-Backend", self.name)]
        writer.write(head(status, headers) + (b"" if req.method == "HEAD" else body))
        await writer.drain()
        return True


class _ResponseParser:
    def __init__(self, stream_to: Callable[[bytes], None] | None = None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.response = Response(0)
        self.headers_done = False
        self.complete = False
        self.stream_to = stream_to
        self.body_len = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.response.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if self.stream_to is not None:
            self.stream_to(body)
        else:
            self.response.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class HttpClient:
    """A keep-alive client connection to 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def read_response(self, *, head_only: bool = False,
                            stream_to: Callable[[bytes], None] | None = None) -> Response:
        assert self.reader is not None
        parser = _ResponseParser(stream_to)
        while not (parser.complete or (head_only and parser.headers_done)):
            data = await self.reader.read(65536)
            if not data:
                if parser.headers_done and parser.response.header("content-length") is None:
                    break
                raise ConnectionError("closed before the response was complete")
            parser.parser.feed_data(data)
        return parser.response

    async def request(self, method: str, path: str, *, headers: list[tuple[str, str]] | None = None,
                      body: bytes | None = None) -> Response:
        lines = [f"{method} {path} HTTP/1.1", "Host: test"]
        lines += [f"{n}: {v}" for n, v in headers or []]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return await self.read_response(head_only=method == "HEAD")


async def fetch(port: int, method: str, path: str, **kwargs: Any) -> Response:
    async with HttpClient(port) as client:
        return await client.request(method, path, **kwargs)


async def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                out += chunk
    writer.close()
    return out


class FakeControlPlane(HttpServer):
    """The control plane side of the agent protocol, in memory, for unit tests only."""

    def __init__(self, enrollment_token: str = "enroll-secret") -> None:
        super().__init__(self._route)
        self.enrollment_token = enrollment_token
        self.agent_id = "00000000-0000-4000-8000-000000000001"
        self.agent_tokens: set[str] = set()
        self.enrollments: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.revision = 1
        self.upstreams: dict[str, Any] = {}
        self.override: dict[str, Any] | None = None  # served as is (e.g. an invalid snapshot)
        self.changed = asyncio.Condition()
        self.report_interval_answer: int | None = None  # the report answer's interval
        self.reports_busy = 0  # this many next reports are answered 503 + Retry-After: 1
        self.refused_reports = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def publish(self, upstreams: dict[str, Any] | None = None,
                      override: dict[str, Any] | None = None) -> int:
        if upstreams is not None:
            self.upstreams = upstreams
        self.override = override
        self.revision += 1
        async with self.changed:
            self.changed.notify_all()
        return self.revision

    def snapshot(self) -> dict[str, Any]:
        if self.override is not None:
            return {**self.override, "revision": self.revision}
        return {"revision": self.revision, "agent_id": self.agent_id, "node": "host-a",
                "zone": "zone-1", "report_interval_ms": 200, "upstreams": self.upstreams}

    async def _reply(self, writer: asyncio.StreamWriter, status: int, data: Any,
                     extra: list[tuple[str, str]] | None = None) -> bool:
        body = json.dumps(data).encode()
        writer.write(head(status, [("Content-Type", "application/json"),
                                   ("Content-Length", str(len(body))),
                                   ("X-Mesh-Index", str(self.revision)), *(extra or [])]) + body)
        await writer.drain()
        return True

    async def _route(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        if req.path == "/api/v1/agents/enroll/" and req.method == "POST":
            data = json.loads(req.body)
            if data.get("token") != self.enrollment_token:
                return await self._reply(writer, 403, {"detail": "unknown or revoked token"})
            self.enrollments.append(data)
            token = secrets.token_hex(8)
            self.agent_tokens = {token}  # re-enrolling replaces the node's token
            return await self._reply(writer, 201, {"agent_id": self.agent_id,
                                                   "agent_token": token,
                                                   "revision": self.revision})
        auth = (req.header("authorization") or "").split()
        if len(auth) != 2 or auth[0] != "Agent" or auth[1] not in self.agent_tokens:
            return await self._reply(writer, 401, {"detail": "Invalid agent token."})
        if req.path == f"/api/v1/agents/{self.agent_id}/config/" and req.method == "GET":
            if "revision" in req.query:
                since = int(req.query["revision"])
                wait = float(req.query.get("wait", "30s").rstrip("s"))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait), self.changed:
                        await self.changed.wait_for(lambda: self.revision > since)
            return await self._reply(writer, 200, self.snapshot())
        if req.path == f"/api/v1/agents/{self.agent_id}/report/" and req.method == "POST":
            if self.reports_busy > 0:
                self.reports_busy -= 1
                self.refused_reports += 1
                return await self._reply(writer, 503, {"detail": "busy"}, [("Retry-After", "1")])
            self.reports.append(json.loads(req.body))
            answer: dict[str, Any] = {"revision": self.revision, "instances": {}}
            if self.report_interval_answer is not None:
                answer["report_interval_ms"] = self.report_interval_answer
            return await self._reply(writer, 200, answer)
        return await self._reply(writer, 404, {"detail": "not found"})


def endpoints_of(*backends: HttpServer | int, weight: int = 100) -> list[dict[str, Any]]:
    ports = [b if isinstance(b, int) else b.port for b in backends]
    return [{"id": f"ep{port}", "address": "127.0.0.1", "port": port, "weight": weight,
             "zone": "zone-1", "status": "passing"} for port in ports]


def upstream_entry(*backends: HttpServer | int, protocol: str = "http",
                   load_balancer: str = "round_robin", request_timeout_ms: int = 15000,
                   **policy: Any) -> dict[str, Any]:
    return {"protocol": protocol,
            "policy": {"load_balancer": load_balancer, "connect_timeout_ms": 1000,
                       "request_timeout_ms": request_timeout_ms, **policy},
            "endpoints": endpoints_of(*backends)}


async def free_port() -> int:
    """A port nobody listens on (bound then released), for 'connection refused' cases."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


async def upgrade_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       greeting: bytes = b"") -> None:
    """An asyncio.start_server handler: switches protocols on the first request (101, then
    GREETING), then answers each read with b"echo:" + data until the peer sends b"bye"."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n" + greeting)
    while data := await reader.read(1024):
        if data == b"bye":
            break
        writer.write(b"echo:" + data)
    writer.close()


@contextlib.asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in names]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


async def load(port: int, total: int, *, connections: int = 8, path: str = "/",
               headers: list[tuple[str, str]] | None = None) -> list[int]:
    """TOTAL GETs over CONNECTIONS keep-alive connections; the statuses."""
    statuses: list[int] = []

    async def one(count: int) -> None:
        async with HttpClient(port) as client:
            for _ in range(count):
                statuses.append((await client.request("GET", path, headers=headers)).status)

    share = [total // connections + (i < total % connections) for i in range(connections)]
    await asyncio.gather(*(one(n) for n in share))
    return statuses
