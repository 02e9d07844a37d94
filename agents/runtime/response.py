"""The response side of an Exchange: the upstream's answer, relayed to the client.

These are Exchange's methods (assigned in its class body, so calling one costs
what calling any method does); they live here because they are one concept —
the response head's framing and the retry decisions a status or a reset
calls for, the body's re-chunking, the 101 tunnel — and exchange.py holds the
request's routing and endings. The upstream connection (pool.ResponseHandler)
calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.runtime.heads import response_headers
from agents.runtime.httpwire import LAST_CHUNK, chunk, reason_phrase, render_headers
from agents.runtime.outlier import RESET
from agents.runtime.retrying import RETRY, may_retry

if TYPE_CHECKING:
    from agents.runtime.exchange import Exchange


def upstream_write_paused(self: Exchange, paused: bool) -> None:
    if paused:
        self.client.pause_reading("upstream")
    else:
        self.client.resume_reading("upstream")


def response_head(self: Exchange, status: int, reason: bytes,
                  headers: list[tuple[bytes, bytes]]) -> None:
    if self.finished:
        return
    phrase = reason or reason_phrase(status)
    if status == 101:
        _start_tunnel(self, phrase, headers)
        return
    if 100 <= status < 200:
        if status == 100 and self.continue_sent:
            return  # a retry's upstream said it again; the client heard it once
        self.continue_sent = self.continue_sent or status == 100
        if self.http11:
            self.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (
                status, phrase, response_headers(headers)[0]))
        return
    self._cancel_timer()
    endpoint = self.endpoint
    # The detector needs failures, and successes only to end a streak.
    if endpoint is not None and (
            status >= 500 or endpoint.consecutive_5xx or endpoint.consecutive_gateway):
        self.target.outlier.record(endpoint, status)
    if status >= 500 and not self.continue_sent:
        kind = "5xx" if self.state.retry_5xx else "gateway-error"
        if (kind == "5xx" or status in (502, 503, 504)) and may_retry(self, kind):
            self._observe(True)
            self._close_conn()  # its body is unread: the connection cannot be reused
            self._resolve((status, f"upstream-{status}"))
            return
    self.status = status
    route = self.route
    if route is not None and route.response_ops is not None:
        headers = route.response_ops.apply(headers)
    block, length, chunked = response_headers(headers)
    self.until_close = length is None and not chunked
    if self.is_head or status in (204, 304):
        self.mode = b"none"
        if length is not None and status != 204:
            block += b"content-length: %s\r\n" % length
    elif length is not None:
        self.mode = b"length"
        block += b"content-length: %s\r\n" % length
    elif self.http11:
        self.mode = b"chunk"
        block += b"transfer-encoding: chunked\r\n"
    else:
        self.mode = b"close"  # an HTTP/1.0 client learns the end from the close
        self.keep_alive = False
    if self.ctx.draining:  # the agent is stopping: the client reconnects to its successor
        self.keep_alive = False
    if not self.keep_alive:
        block += b"connection: close\r\n"
    elif not self.http11:
        block += b"connection: keep-alive\r\n"
    self.out.append(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, phrase, block))
    self.response_started = True
    if self.is_head and self.conn is not None:
        self.conn.reset_parser()
        self._finish_ok()


def response_body(self: Exchange, data: bytes) -> None:
    if self.finished:
        return
    if self.tunnel:
        self.client.write(data)
    elif self.mode == b"chunk":
        self.out += chunk(data)
    elif self.mode != b"none":
        self.out.append(data)


def response_done(self: Exchange) -> None:
    if self.finished:
        return
    if self.mode == b"chunk":
        self.out.append(LAST_CHUNK)
    self._finish_ok()


def flush(self: Exchange) -> None:
    """Write what the last upstream read produced: one send for head and body."""
    out = self.out
    if out:
        self.out = []
        self.client.write(out[0] if len(out) == 1 else b"".join(out))


def upstream_lost(self: Exchange, error: str) -> None:
    if self.finished:
        return
    conn, self.conn = self.conn, None
    if self.tunnel:
        self.client.close()
        self._complete(False, keep=False)
        return
    if self.response_started and self.until_close and self.mode != b"none":
        if self.mode == b"chunk":  # that close was the end of the body
            self.out.append(LAST_CHUNK)
        self._complete(self.status >= 500, keep=self.keep_alive and self.request_complete)
    elif (not self.response_started and conn is not None and conn.uses > 1
          and not conn.got_bytes and not self.has_body):
        self._cancel_timer()
        self._resolve(RETRY)  # a pooled connection the upstream had closed: try a new one
    elif not self.response_started:
        self._cancel_timer()
        if self.endpoint is not None:
            self.target.outlier.record(self.endpoint, RESET)
            self._observe(True)
        retry = not self.continue_sent and may_retry(self, "reset")
        if retry:
            self._resolve((502, error))
        else:
            self.fail(502, error)
    else:
        self.fail(502, error)


def _start_tunnel(self: Exchange, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """101 Switching Protocols: relay it, then pipe bytes both ways until one side closes."""
    if not self.upgrade:
        self.fail(502, "unexpected-upgrade")
        return
    self._cancel_timer()
    self.tunnel = True
    self.status = 101
    self.response_started = True
    upgrade = [(n, v) for n, v in headers if n.lower() == b"upgrade"]
    block = response_headers(headers)[0] + b"connection: upgrade\r\n"
    self.client.write(b"HTTP/1.1 101 %s\r\n%s%s\r\n" % (
        phrase, block, render_headers(upgrade)))
    self.client.start_tunnel(self)
