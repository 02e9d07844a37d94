"""The SDK against a running control plane (`meshconsole up`), as docs/sdk.md shows.

    export MESH_URL=http://127.0.0.1:8000 MESH_TOKEN=$(meshconsole apitoken admin)
    python examples/sdk_quickstart.py

It serves a tiny HTTP service on 127.0.0.1:8081, registers it as service1
(heartbeated while this runs), discovers it, balances and calls it with the
service's retry/outlier policy, and deregisters on exit.
"""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from meshconsole.client import Service, ServiceEndpoint, ServiceMesh


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from service1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 8081), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    with ServiceMesh() as sm:  # MESH_URL / MESH_TOKEN
        sm.register(Service("service1", "127.0.0.1:8081"))  # heartbeats while alive
        services = sm.discover("service1")  # healthy endpoints, cached, watched
        print("discovered:", [e.host_port for e in services], "stale:", services.stale)

        lb = sm.load_balancer("service1", policy="least_request")
        endpoint = lb.pick()
        assert endpoint is not None
        print("picked:", endpoint.host_port)

        # One try, counted against the endpoint (outlier ejection) if it raises.
        with sm.fault_tolerance("service1").call() as ep, \
                urllib.request.urlopen(f"http://{ep.host_port}/", timeout=2) as answer:
            print("called:", answer.read().decode().strip())

        # Retried on another endpoint after a failure, up to the policy's attempts.
        def get(ep: ServiceEndpoint) -> int:
            with urllib.request.urlopen(f"http://{ep.host_port}/", timeout=2) as answer:
                return answer.status

        print("with retries:", sm.fault_tolerance("service1").run(get))
    server.shutdown()
    print("deregistered; bye")


if __name__ == "__main__":
    main()
