"""Small HTTP/1.1 wire helpers shared by the proxy and the admin server."""

from __future__ import annotations

import os
from http import HTTPStatus

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


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in Connection: they are hop-by-hop for this message too."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(names)


def end_to_end(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    extra = connection_tokens(headers)
    return [(n, v) for n, v in headers
            if n.lower() not in HOP_BY_HOP and (not extra or n.lower() not in extra)]


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
    return os.urandom(16).hex().encode()


def upstream_headers(headers: list[tuple[bytes, bytes]], *, peer: bytes, host: bytes,
                     request_id: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """The end-to-end headers an upstream gets: X-Forwarded-For extended with the peer,
    X-Forwarded-Proto and Host filled in, one X-Request-Id (the client's, else the one
    given, else a new one: a retry sends the same). Returns (headers, request id, expect).
    """
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    has_proto = has_host = expect = False
    for name, value in end_to_end(headers):
        lname = name.lower()
        if lname == b"x-forwarded-for":
            forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
            continue
        if lname == b"x-request-id":
            request_id = value
            continue
        if lname == b"expect" and value.lower() == b"100-continue":
            expect = True
        has_proto = has_proto or lname == b"x-forwarded-proto"
        has_host = has_host or lname == b"host"
        out.append((name, value))
    if not has_host:  # HTTP/1.0 clients may omit it; HTTP/1.1 upstreams require it
        out.append((b"host", host))
    out.append((b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer))
    if not has_proto:
        out.append((b"x-forwarded-proto", b"http"))
    if request_id is None:
        request_id = new_request_id()
    out.append((b"x-request-id", request_id))
    return out, request_id, expect
