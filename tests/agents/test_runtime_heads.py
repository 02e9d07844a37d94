"""The one-pass header blocks of the HTTP proxy (agents/runtime/heads.py)."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.runtime.heads import BadRequest, request_headers, response_headers
from agents.runtime.httpwire import HOP_BY_HOP, render_headers


def end_to_end(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The reference, written plainly (RFC 9110 7.6.1): hop-by-hop headers and the names
    Connection lists are dropped, the rest kept in order."""
    listed = {t.strip().lower() for n, v in headers if n.lower() == b"connection"
              for t in v.split(b",") if t.strip()}
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP | listed]


def lines(block: bytes) -> list[tuple[bytes, bytes]]:
    assert block.endswith(b"\r\n") or block == b""
    out = []
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b": ")
        out.append((name, value))
    return out


def test_request_block_drops_hop_by_hop_and_fills_in_forwarding_headers() -> None:
    fwd = request_headers([
        (b"Host", b"svc"), (b"Connection", b"keep-alive, X-Secret"), (b"X-Secret", b"1"),
        (b"Keep-Alive", b"300"), (b"TE", b"trailers"), (b"X-Forwarded-For", b"10.0.0.1"),
        (b"X-Request-Id", b"abc"), (b"Expect", b"100-Continue"), (b"Content-Length", b"5"),
        (b"X-Kept", b"yes"),
    ], b"127.0.0.1")
    assert lines(fwd.block) == [
        (b"Host", b"svc"), (b"Expect", b"100-Continue"), (b"X-Kept", b"yes"),
        (b"x-forwarded-for", b"10.0.0.1, 127.0.0.1"), (b"x-forwarded-proto", b"http"),
    ]
    assert fwd.request_id == b"abc"  # kept aside: the proxy writes exactly one
    assert fwd.expect and fwd.has_host
    assert fwd.lengths == [b"5"] and fwd.encodings is None


def test_request_block_keeps_the_clients_proto_and_notes_a_missing_host() -> None:
    fwd = request_headers([(b"X-Forwarded-Proto", b"https"),
                           (b"Transfer-Encoding", b"chunked")], b"10.1.1.1")
    assert lines(fwd.block) == [(b"X-Forwarded-Proto", b"https"),
                                (b"x-forwarded-for", b"10.1.1.1")]
    assert not fwd.has_host and not fwd.expect and fwd.request_id is None
    assert fwd.encodings == [b"chunked"] and fwd.lengths is None


@pytest.mark.parametrize(("host", "reason"), [
    ([(b"Host", b"a"), (b"X-A", b"1"), (b"host", b"a")], "duplicate-host"),
    ([(b"Host", b"a b")], "bad-host"),
    ([(b"Host", b"a\\b")], "bad-host"),
])
def test_request_block_refuses_two_hosts_or_an_invalid_one(
    host: list[tuple[bytes, bytes]], reason: str,
) -> None:
    with pytest.raises(BadRequest, match=f"^{reason}$"):
        request_headers(host, b"127.0.0.1")


BAD_HEADERS = [
    b"X(A): 1",  # name not a token
    b"X A: 1",
    b"X-A: a\x01b",  # control bytes in a value
    b"X-A: a\x00b",
    b"X-A: a\x1fb",
    b"X-A: a\x7fb",
    b"X-A: a\rb",  # a bare CR: header injection
    b"Keep-Alive: a\x7fb",  # in a header the proxy drops, too
]


class _Headers:
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.seen.append((name, value))


@pytest.mark.parametrize("line", BAD_HEADERS)
def test_the_parser_refuses_headers_the_proxy_must_never_forward(line: bytes) -> None:
    # heads.request_headers does not check names and values again: llhttp does, before
    # any callback. Pinned here so that a parser change that relaxed it fails loudly.
    sink = _Headers()
    parser = httptools.HttpRequestParser(sink)
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: t\r\n" + line + b"\r\n\r\n")
    assert sink.seen in ([], [(b"Host", b"t")])  # the bad header never reached a callback


def test_the_parser_passes_tabs_and_obs_text_in_values() -> None:
    sink = _Headers()
    httptools.HttpRequestParser(sink).feed_data(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\tb\x80\r\n\r\n")
    assert sink.seen[-1] == (b"X-A", b"a\tb\x80")


def test_response_block_drops_hop_by_hop_and_reports_framing() -> None:
    block, length, chunked = response_headers([
        (b"Server", b"nginx"), (b"Content-Length", b"2"), (b"Connection", b"keep-alive"),
        (b"Content-Length", b"7"), (b"ETag", b'"x"'),
    ])
    assert lines(block) == [(b"Server", b"nginx"), (b"ETag", b'"x"')]
    assert length == b"7" and not chunked  # the last one, as before
    block, length, chunked = response_headers([(b"Transfer-Encoding", b"chunked"),
                                               (b"Connection", b"close, X-Hop"),
                                               (b"X-Hop", b"1"), (b"X-Kept", b"2")])
    assert lines(block) == [(b"X-Kept", b"2")]
    assert length is None and chunked


NAMES = st.sampled_from([b"Host", b"X-A", b"x-b", b"Connection", b"Keep-Alive", b"TE",
                         b"Content-Length", b"Transfer-Encoding", b"Upgrade", b"X-Listed",
                         b"Trailer", b"Server", b"ETag"])
VALUES = st.sampled_from([b"1", b"close", b"keep-alive", b"X-Listed", b"x-a, X-Listed",
                          b"chunked", b"", b"a b"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_response_block_is_exactly_the_end_to_end_headers(
        headers: list[tuple[bytes, bytes]]) -> None:
    block, length, chunked = response_headers(headers)
    assert block == render_headers(end_to_end(headers))
    lengths = [v for n, v in headers if n.lower() == b"content-length"]
    assert length == (lengths[-1] if lengths else None)
    assert chunked == any(n.lower() == b"transfer-encoding" for n, _ in headers)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_request_block_forwards_exactly_the_end_to_end_headers(
        headers: list[tuple[bytes, bytes]]) -> None:
    hosts = [v for n, v in headers if n.lower() == b"host"]
    if len(hosts) > 1 or any(b" " in v for v in hosts):  # of VALUES, only spaces are invalid
        with pytest.raises(BadRequest):
            request_headers(headers, b"192.0.2.1")
        return
    fwd = request_headers(headers, b"192.0.2.1")
    kept = lines(fwd.block)
    assert kept[:-2] == end_to_end(headers)  # + X-Forwarded-For and -Proto at the end
    assert kept[-2:] == [(b"x-forwarded-for", b"192.0.2.1"), (b"x-forwarded-proto", b"http")]
    assert not any(n.lower() in HOP_BY_HOP for n, _ in kept)


def test_valid_host_values_are_remembered_boundedly_and_bad_ones_never() -> None:
    from agents.runtime import heads

    heads._GOOD_HOSTS.clear()
    for i in range(heads._GOOD_HOSTS_MAX + 50):
        heads.request_headers([(b"Host", f"h{i}.example:80".encode())], b"10.0.0.1")
    assert len(heads._GOOD_HOSTS) == heads._GOOD_HOSTS_MAX
    with pytest.raises(heads.BadRequest):
        heads.request_headers([(b"Host", b"a b")], b"10.0.0.1")
    assert b"a b" not in heads._GOOD_HOSTS
