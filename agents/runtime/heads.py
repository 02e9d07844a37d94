"""Request and response heads as the proxy forwards them, each built in one pass.

The hot path of the HTTP proxy: per request, the client's headers become the
block of header lines an upstream gets (hop-by-hop ones dropped, X-Forwarded-*
and X-Request-Id filled in), and the upstream's headers become the block the
client gets, with the framing the proxy must redo (Content-Length, chunked).
Each is one loop over the headers and one join; the rare cases (a Connection
header naming more headers to drop, an invalid byte) take a second, slower pass.
"""

from __future__ import annotations

import re

from agents.runtime.httpwire import HOP_BY_HOP

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The forwarded header block, whole: `name: value\r\n` lines, names tokens, no control
# bytes in values. One regex call per request instead of two per header.
_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]++: [^\x00-\x08\x0a-\x1f\x7f]*+\r\n)*+")
# Connection may name these without making anything else hop-by-hop.
_PLAIN_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
_REQUEST_NAMES = HOP_BY_HOP | {
    b"x-forwarded-for", b"x-request-id", b"expect", b"host", b"x-forwarded-proto"}
_EMPTY: frozenset[bytes] = frozenset()


class BadRequest(Exception):
    """A request the proxy refuses (400); raised from a parser callback, its text becomes
    the X-Mesh-Error reason."""


def _tokens(value: bytes) -> set[bytes] | None:
    """The header names a Connection header lists; None for the usual lone keyword."""
    if value.lower() in _PLAIN_TOKENS:
        return None
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def check_header(name: bytes, value: bytes) -> None:
    if not _TOKEN.fullmatch(name):
        raise BadRequest("invalid-header-name")
    if _BAD_VALUE.search(value):
        raise BadRequest("invalid-header-value")


class RequestHeaders:
    """What the proxy forwards of a client's headers, and what it learned from them."""

    __slots__ = ("block", "request_id", "expect", "has_host", "lengths", "encodings")

    def __init__(self, block: bytes, request_id: bytes | None, expect: bool, has_host: bool,
                 lengths: list[bytes] | None, encodings: list[bytes] | None) -> None:
        self.block = block  # header lines, X-Forwarded-For/-Proto included, no X-Request-Id
        self.request_id = request_id  # the client's, if it sent one
        self.expect = expect  # Expect: 100-continue
        self.has_host = has_host
        self.lengths = lengths  # every Content-Length value, if any (framing is redone)
        self.encodings = encodings  # every Transfer-Encoding value, if any


def request_headers(headers: list[tuple[bytes, bytes]], peer: bytes,
                    drop: frozenset[bytes] = _EMPTY) -> RequestHeaders:
    """The client's end-to-end headers for an upstream: X-Forwarded-For extended with the
    peer, X-Forwarded-Proto added unless present. Raises BadRequest."""
    lines: list[bytes] = []
    forwarded_for = b""
    request_id: bytes | None = None
    expect = has_host = has_proto = False
    named: set[bytes] | None = None
    lengths: list[bytes] | None = None
    encodings: list[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in _REQUEST_NAMES or (drop and lname in drop):
            if lname in HOP_BY_HOP or lname in drop:
                check_header(name, value)  # dropped, but a bad byte still refuses the request
                if lname == b"content-length":
                    lengths = [value] if lengths is None else [*lengths, value]
                elif lname == b"transfer-encoding":
                    encodings = [value] if encodings is None else [*encodings, value]
                elif lname == b"connection":
                    listed = _tokens(value)
                    if listed:
                        named = listed if named is None else named | listed
                continue
            if lname == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
            if lname == b"x-request-id":
                request_id = value
                continue
            if lname == b"host":
                has_host = True
            elif lname == b"x-forwarded-proto":
                has_proto = True
            elif value.lower() == b"100-continue":
                expect = True
        lines += (name, b": ", value, b"\r\n")
    if named and not drop and not named <= _PLAIN_TOKENS:
        return request_headers(headers, peer, frozenset(named - _PLAIN_TOKENS))
    lines += (b"x-forwarded-for: ", forwarded_for + b", " + peer if forwarded_for else peer,
              b"\r\n")
    if not has_proto:
        lines.append(b"x-forwarded-proto: http\r\n")
    block = b"".join(lines)
    if not _BLOCK.fullmatch(block):
        for name, value in headers:
            check_header(name, value)
        raise BadRequest("invalid-header")
    return RequestHeaders(block, request_id, expect, has_host, lengths, encodings)


def response_headers(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] = _EMPTY
                     ) -> tuple[bytes, bytes | None, bool]:
    """(end-to-end header lines, the last Content-Length, whether it was chunked)."""
    lines: list[bytes] = []
    length: bytes | None = None
    chunked = False
    named: set[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or (drop and lname in drop):
            if lname == b"content-length":
                length = value
            elif lname == b"transfer-encoding":
                chunked = True
            elif lname == b"connection":
                listed = _tokens(value)
                if listed:
                    named = listed if named is None else named | listed
            continue
        lines += (name, b": ", value, b"\r\n")
    if named and not drop and not named <= _PLAIN_TOKENS:
        return response_headers(headers, frozenset(named - _PLAIN_TOKENS))
    return b"".join(lines), length, chunked
