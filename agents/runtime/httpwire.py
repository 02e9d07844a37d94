"""Small HTTP/1.1 wire helpers shared by the proxy and the admin server."""

from __future__ import annotations

from http import HTTPStatus
from random import getrandbits

# Headers that describe one connection, not the message (RFC 9110 7.6.1); the proxy
# re-frames bodies itself, so Content-Length/Transfer-Encoding are re-added, not copied.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
    b"transfer-encoding", b"content-length",
})


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def render_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (n, v) for n, v in headers)


def chunk(data: bytes) -> list[bytes]:
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK = b"0\r\n\r\n"


def simple_response(status: int, body: bytes, *, content_type: bytes = b"text/plain; charset=utf-8",
                    extra: list[tuple[bytes, bytes]] | None = None, close: bool = False,
                    head_only: bool = False) -> bytes:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    if close:
        headers.append((b"connection", b"close"))
    head = b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason_phrase(status), render_headers(headers))
    return head if head_only else head + body


def new_request_id() -> bytes:
    """128 random bits as hex. From the random module's generator, not os.urandom: an id
    must be unique, not secret, and this costs no system call per request (the module
    reseeds itself in a forked child, so worker processes do not repeat each other)."""
    return getrandbits(128).to_bytes(16).hex().encode()
