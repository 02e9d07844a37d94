"""Control-plane client: enroll, config (long-poll), report — JSON over HTTP/1.1.

One short-lived connection per call keeps it simple and robust across control
plane restarts; calls are seconds apart, so connection reuse would buy nothing.
Every call is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools

from agents.runtime import __version__

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
CALL_TIMEOUT_S = 10.0


class ControlPlaneError(Exception):
    """The control plane could not be reached or answered something unusable."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(ControlPlaneError):
    """Our agent token is no longer accepted: enroll again."""


class ControlPlaneBusy(ControlPlaneError):
    """429/503: the control plane asks us to come back later (its admission control,
    a busy database). RETRY_AFTER: its Retry-After, in seconds (0 when it gave none)."""

    def __init__(self, message: str, status: int, retry_after: float = 0.0) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


BUSY = (429, 503)
MAX_RETRY_AFTER_S = 60.0


def retry_after_s(headers: dict[str, str]) -> float:
    """A Retry-After of delay-seconds, bounded; 0 when absent or not a number of seconds."""
    value = headers.get("retry-after", "").strip()
    if not value.isascii() or not value.isdigit():
        return 0.0
    return min(float(value), MAX_RETRY_AFTER_S)


class EnrollmentRefused(ControlPlaneError):
    """The enrollment token is bad or revoked; retrying soon will not help much."""


class Backoff:
    """Exponential backoff with jitter, so a fleet of agents does not retry in step."""

    def __init__(self, base: float = 0.5, cap: float = 10.0,
                 rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


class _Response:
    def __init__(self) -> None:
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.complete = False
        self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > MAX_RESPONSE_BYTES:
            raise ControlPlaneError("response too large")

    def on_message_complete(self) -> None:
        self.complete = True


class ControlPlaneClient:
    def __init__(self, base_url: str, *, timeout: float = CALL_TIMEOUT_S) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout

    async def request(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                      timeout: float | None = None) -> tuple[int, dict[str, str], Any]:
        try:
            async with asyncio.timeout(timeout or self.timeout):
                return await self._request(method, path, body, token)
        except TimeoutError:
            raise ControlPlaneError(f"{method} {path}: timed out") from None
        except OSError as exc:
            raise ControlPlaneError(f"{method} {path}: {exc.strerror or exc}") from None

    async def _request(self, method: str, path: str, body: Any,
                       token: str | None) -> tuple[int, dict[str, str], Any]:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        host = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {host}",
            f"User-Agent: meshagent/{__version__}",
            "Accept: application/json",
            "Connection: close",
        ]
        if token:
            lines.append(f"Authorization: Agent {token}")
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
        context = ssl.create_default_context() if self.https else None
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        try:
            writer.write(request)
            await writer.drain()
            response = _Response()
            parser = httptools.HttpResponseParser(response)
            while not response.complete:
                data = await reader.read(65536)
                if not data:
                    if response.headers_done and "content-length" not in response.headers:
                        break  # body delimited by the close
                    raise ControlPlaneError(f"{method} {path}: connection closed early")
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    raise ControlPlaneError(f"{method} {path}: bad response: {exc}") from None
        finally:
            writer.close()
        status = parser.get_status_code()
        try:
            decoded = json.loads(bytes(response.body)) if response.body else None
        except ValueError:
            decoded = None
        return status, response.headers, decoded

    async def enroll(self, payload: dict[str, Any]) -> dict[str, Any]:
        status, _, data = await self.request("POST", "/api/v1/agents/enroll/", body=payload)
        if status in (401, 403):
            raise EnrollmentRefused(f"enrollment refused: {_detail(data)}", status)
        return _expect(status, data, (200, 201), "enroll")

    async def get_config(self, agent_id: str, token: str, *, revision: int | None = None,
                         wait_s: float = 30.0) -> dict[str, Any]:
        path = f"/api/v1/agents/{agent_id}/config/"
        timeout = self.timeout
        if revision is not None:
            path += "?" + urlencode({"revision": revision, "wait": f"{int(wait_s)}s"})
            timeout += wait_s  # the server may legitimately hold the call for `wait`
        status, _, data = await self.request("GET", path, token=token, timeout=timeout)
        if status in (401, 403):
            raise Unauthorized(f"config: {_detail(data)}", status)
        return _expect(status, data, (200,), "config")

    async def report(self, agent_id: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/agents/{agent_id}/report/"
        status, headers, data = await self.request("POST", path, body=payload, token=token)
        if status in (401, 403):
            raise Unauthorized(f"report: {_detail(data)}", status)
        if status in BUSY:
            raise ControlPlaneBusy(f"report: HTTP {status}: {_detail(data)}", status,
                                   retry_after_s(headers))
        return _expect(status, data, (200,), "report")

    async def certificate(self, agent_id: str, token: str, service: str,
                          csr: str, *, gateway: str = "") -> dict[str, Any]:
        """POST a CSR (zero-trust contract): the signed leaf, its chain and the roots.
        SERVICE "" with GATEWAY: the identity of the gateway this agent serves as."""
        path = f"/api/v1/agents/{agent_id}/certificates/"
        body = {"service": service, "csr": csr, **({"gateway": gateway} if gateway else {})}
        status, _, data = await self.request("POST", path, body=body, token=token)
        if status == 401:
            raise Unauthorized(f"certificates: {_detail(data)}", status)
        return _expect(status, data, (200, 201), "certificates")


def _detail(data: Any) -> str:
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return json.dumps(data)[:300] if data is not None else "no details"


def _expect(status: int, data: Any, ok: tuple[int, ...], what: str) -> dict[str, Any]:
    if status not in ok:
        raise ControlPlaneError(f"{what}: HTTP {status}: {_detail(data)}", status)
    if not isinstance(data, dict):
        raise ControlPlaneError(f"{what}: expected a JSON object", status)
    return data
