"""A tiny HTTP backend for end-to-end tests: `python -m tests.e2e.backend PORT NAME`.

GET /health -> 200; anything else -> 200 with body NAME (so clients can tell
which instance answered). Stdlib only, threaded, keep-alive."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The head and the body are two writes: without TCP_NODELAY the body waits for
        # the proxy's delayed ACK (~40 ms a request on keep-alive connections).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            body = b"ok" if self.path == "/health" else name.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
