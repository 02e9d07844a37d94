"""A small JSON client for the REST API (stdlib only: the SDK must not pull Django in)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MeshError(Exception):
    """Anything the SDK cannot do; the message says what and why."""


class MeshUnavailable(MeshError):
    """The control plane did not answer (down, unreachable, timed out)."""


class MeshHTTPError(MeshError):
    """The control plane answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: object) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


class Transport:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: object = None, *,
                timeout: float | None = None) -> Answer:
        """The answer to one call; MeshUnavailable when there is none, MeshHTTPError ≥ 400."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        req = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                raw = response.read()
                status, reply_headers = response.status, dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp is not None else b""
            raise MeshHTTPError(method, path, exc.code, _decode(raw)) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MeshUnavailable(f"{method} {self.url}{path}: {reason}") from None
        return Answer(status, _decode(raw), reply_headers)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]
