"""A backend for the end-to-end drain and worker-kill tests:
`python -m tests.registry.slow_backend NAME [--health-delay S] PORT [PORT ...]`.

GET /health -> 200 "ok" after --health-delay seconds; GET /slow?s=N -> 200 NAME
after N seconds; GET /stats -> JSON {port: {"health_hits": [...times],
"in_flight": n}}; anything else -> 200 NAME at once. Stdlib only, threaded."""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATS: dict[int, dict[str, Any]] = {}
LOCK = threading.Lock()


def make_handler(name: str, health_delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            url = urlsplit(self.path)
            port = self.server.server_address[1]
            stats = STATS[port]
            if url.path == "/stats":
                with LOCK:
                    body = json.dumps(STATS).encode()
                self._reply(body, "application/json")
                return
            delay = 0.0
            if url.path == "/health":
                with LOCK:
                    stats["health_hits"].append(time.time())
                delay = health_delay
            elif url.path == "/slow":
                delay = float(parse_qs(url.query).get("s", ["3"])[0])
            with LOCK:
                stats["in_flight"] += 1
            try:
                time.sleep(delay)
                self._reply(b"ok" if url.path == "/health" else name.encode())
            finally:
                with LOCK:
                    stats["in_flight"] -= 1

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("ports", type=int, nargs="+")
    parser.add_argument("--health-delay", type=float, default=0.0)
    args = parser.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    handler = make_handler(args.name, args.health_delay)
    servers = []
    for port in args.ports:
        STATS[port] = {"health_hits": [], "in_flight": 0}
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
