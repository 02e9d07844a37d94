"""Request and response heads as the proxy forwards them, each built in one pass.

The hot path of the HTTP proxy: per request, the client's headers become the
block of header lines an upstream gets (hop-by-hop ones dropped, X-Forwarded-*
and X-Request-Id filled in), and the upstream's headers become the block the
client gets, with the framing the proxy must redo (Content-Length, chunked).
Each is one loop over the headers and one join; the rare case of a Connection
header naming more headers to drop takes a second pass.

Header names and values are not checked again here: llhttp (httptools, strict,
no leniencies ever set) refuses a name that is not a token and a value with a
control byte other than HTAB before a callback sees them, and
tests/agents/test_runtime_heads.py pins that, so a parser upgrade that relaxed
it fails the tests instead of opening a header-injection hole.
"""

from __future__ import annotations

import re

from agents.runtime.hashing import hash64
from agents.runtime.httpwire import HOP_BY_HOP
from agents.runtime.policy import HashOn

# Connection may name these without making anything else hop-by-hop.
_PLAIN_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
_REQUEST_NAMES = HOP_BY_HOP | {
    b"x-forwarded-for", b"x-request-id", b"expect", b"host", b"x-forwarded-proto"}
_EMPTY: frozenset[bytes] = frozenset()
# RFC 9110 §7.2 Host = uri-host [ ":" port ]: an IP literal or a reg-name (unreserved,
# pct-encoded, sub-delims; empty allowed). Anything else (spaces, "/", "@") is a 400.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%~_-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
# Host values already found valid: a client sends the same few again and again,
# and a set lookup costs a tenth of the regex on the hot path. Bounded, so a
# client sending a new Host per request cannot grow it.
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_MAX = 1024


class BadRequest(Exception):
    """A request the proxy refuses (400); raised from a parser callback, its text becomes
    the X-Mesh-Error reason."""

    status = 400


class VersionNotSupported(BadRequest):
    """A well-formed request line in an HTTP version other than 1.0/1.1 (RFC 9110 §15.6.6)."""

    status = 505


def _listed(value: bytes) -> frozenset[bytes]:
    """Header names a Connection header lists beyond close/keep-alive/upgrade (hop-by-hop
    anyway); empty for the usual lone keyword."""
    if value.lower() in _PLAIN_TOKENS:
        return _EMPTY
    return frozenset(t.strip().lower() for t in value.split(b",")) - _PLAIN_TOKENS - {b""}


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
    peer, X-Forwarded-Proto added unless present."""
    lines: list[bytes] = []
    forwarded_for = b""
    request_id: bytes | None = None
    expect = has_host = has_proto = False
    named = _EMPTY
    lengths: list[bytes] | None = None
    encodings: list[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in _REQUEST_NAMES or (drop and lname in drop):
            if lname in HOP_BY_HOP or lname in drop:
                if lname == b"content-length":
                    lengths = [value] if lengths is None else [*lengths, value]
                elif lname == b"transfer-encoding":
                    encodings = [value] if encodings is None else [*encodings, value]
                elif lname == b"connection":
                    named |= _listed(value)
                continue
            if lname == b"x-forwarded-for":
                forwarded_for = value if not forwarded_for else forwarded_for + b", " + value
                continue
            if lname == b"x-request-id":
                request_id = value
                continue
            if lname == b"host":
                # RFC 9112 §3.2: two Host lines, or an invalid one, is a 400, never forwarded
                # (two proxies could each pick a different one). The proxy answers the
                # missing-Host case, which depends on the HTTP version.
                if has_host:
                    raise BadRequest("duplicate-host")
                if value not in _GOOD_HOSTS:
                    if _HOST.fullmatch(value) is None:
                        raise BadRequest("bad-host")
                    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
                        _GOOD_HOSTS.add(value)
                has_host = True
            elif lname == b"x-forwarded-proto":
                has_proto = True
            elif value.lower() == b"100-continue":
                expect = True
        lines += (name, b": ", value, b"\r\n")
    if named and not drop:
        return request_headers(headers, peer, named)
    lines += (b"x-forwarded-for: ", forwarded_for + b", " + peer if forwarded_for else peer,
              b"\r\n")
    if not has_proto:
        lines.append(b"x-forwarded-proto: http\r\n")
    return RequestHeaders(b"".join(lines), request_id, expect, has_host, lengths, encodings)


def response_headers(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] = _EMPTY
                     ) -> tuple[bytes, bytes | None, bool]:
    """(end-to-end header lines, the last Content-Length, whether it was chunked)."""
    lines: list[bytes] = []
    length: bytes | None = None
    chunked = False
    named = _EMPTY
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or (drop and lname in drop):
            if lname == b"content-length":
                length = value
            elif lname == b"transfer-encoding":
                chunked = True
            elif lname == b"connection":
                named |= _listed(value)
            continue
        lines += (name, b": ", value, b"\r\n")
    if named and not drop:
        return response_headers(headers, named)
    return b"".join(lines), length, chunked


def request_hash_key(hash_on: HashOn, peer: bytes,
                     headers: list[tuple[bytes, bytes]]) -> int | None:
    """An HTTP request's key for a consistent-hash balancer (policy.hash_on), or None."""
    if hash_on.type == "client_ip":
        return hash64(peer) if peer else None
    wanted = hash_on.name.encode().lower() if hash_on.type == "header" else b"cookie"
    for name, value in headers:
        if name.lower() != wanted:
            continue
        if hash_on.type == "header":
            return hash64(value)
        prefix = hash_on.name.encode() + b"="
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(prefix):
                return hash64(part[len(prefix):])
    return None
