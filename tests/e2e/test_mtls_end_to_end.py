"""Zero trust with the real control plane (web, Celery worker and beat) and two real
`meshagent run` processes: the control plane's CA signs both agents' CSRs, the client
agent dials the server agent's inbound listener with mTLS (the service is `strict`),
and a deny intention written through the API turns the next request into a 403 that
the backend never sees."""

from __future__ import annotations

import http.client as httpclient
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import Processes, free_port, http, python, wait_until

pytestmark = pytest.mark.e2e


class RecordingBackend:
    """A threaded HTTP backend on loopback that records every path it is sent."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
                if self.path != "/health":
                    paths.append(self.path)
                body = b"payments"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_agent(procs: Processes, cp: ControlPlane, tmp_path: Path, name: str,
                **config: Any) -> int:
    admin = free_port()
    data = {"control_plane": cp.url, "token": cp.enroll_token, "node": name, "zone": "zone-1",
            "data_dir": str(tmp_path / name), "admin": f"127.0.0.1:{admin}", "dns": "off",
            **config}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    procs.start(name, [python(), "-m", "agents.runtime.cli", "run", "-c", str(path)], cp.env)
    return admin


def get(port: int, path: str) -> tuple[int, str, str]:
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("x-mesh-error") or "", response.read().decode()
    finally:
        conn.close()


def stats(admin: int) -> dict[str, Any]:
    status, body = http("GET", f"http://127.0.0.1:{admin}/stats", timeout=2)
    return body if status == 200 else {}


def test_strict_mtls_between_two_agents_and_a_deny_intention(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    backend = RecordingBackend()
    try:
        with control_plane(tmp_path) as cp:
            status, body = cp.api("POST", "/api/v1/services/", {
                "name": "payments", "mtls_mode": "strict",
                "check": {"type": "http", "path": "/health", "interval": "1s",
                          "timeout": "500ms", "rise": 1, "fall": 2}})
            assert status == 201, body
            inbound = free_port()
            server_admin = start_agent(
                procs, cp, tmp_path, "host-b",
                services=[{"name": "payments", "address": "127.0.0.1", "port": backend.port,
                           "check": {"type": "http", "path": "/health", "interval": "1s",
                                     "timeout": "500ms", "rise": 1, "fall": 2}}],
                upstreams=[], inbound={"listen": f"127.0.0.1:{inbound}"})
            listen = free_port()
            client_admin = start_agent(
                procs, cp, tmp_path, "host-a",
                services=[{"name": "orders", "address": "127.0.0.1", "port": free_port(),
                           "check": {"type": "none"}}],
                upstreams=[{"service": "payments", "listen": f"127.0.0.1:{listen}"}])

            def mtls_endpoint() -> bool:
                status, snap = http("GET", f"http://127.0.0.1:{client_admin}/config", timeout=2)
                if status != 200 or not snap or "payments" not in snap.get("upstreams", {}):
                    return False
                upstream = snap["upstreams"]["payments"]
                return upstream.get("mtls") == "strict" and any(
                    e.get("inbound") == {"address": "127.0.0.1", "port": inbound}
                    and e.get("status") == "passing" for e in upstream["endpoints"])

            wait_until(mtls_endpoint, 45, what="client snapshot with the strict inbound endpoint")
            wait_until(lambda: stats(server_admin).get("certificates")
                       and stats(client_admin).get("certificates"), 30,
                       what="both agents hold certificates from the control plane's CA")
            assert [c["identity"] for c in stats(client_admin)["certificates"]] == [
                "spiffe://mesh.local/ns/default/svc/orders"]
            wait_until(lambda: get(listen, "/through-mtls")[0] == 200, 15,
                       what="a request through the mTLS hop")
            assert "/through-mtls" in backend.paths
            assert stats(server_admin)["inbound"]["open_connections"] >= 1

            status, rule = cp.api("POST", "/api/v1/intentions/", {
                "source": "orders", "destination": "payments", "action": "deny"})
            assert status == 201, rule
            wait_until(lambda: get(listen, "/denied")[0] == 403, 5, what="the deny applied")
            backend.paths.clear()
            status, error, _ = get(listen, "/denied-again")
            assert status == 403
            assert error == f"denied-by-policy ({rule['id']})"
            assert backend.paths == []
    finally:
        procs.stop_all()
        backend.stop()
