"""The gateway dials a strict mTLS service as the mesh does, on real processes: the
control plane (web, Celery worker and beat), a `meshagent run` serving `payments`
(`mtls_mode: strict`) behind its inbound listener, and a `meshagent gateway` whose
route sends to `payments`. The gateway gets its own identity from the control plane's
CA (`spiffe://mesh.local/ns/default/gateway/edge`), a request through it reaches the
backend over mTLS, and an intention denying `gateway:edge` written through the API
turns the next request into a 403 the backend never sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, wait_until
from tests.e2e.test_gateway_end_to_end import HOST, created, get, start_gateway, timed_until
from tests.e2e.test_mtls_end_to_end import RecordingBackend, start_agent, stats

pytestmark = pytest.mark.e2e

CHECK = {"type": "http", "path": "/health", "interval": "1s", "timeout": "500ms",
         "rise": 1, "fall": 2}
GATEWAY_IDENTITY = "spiffe://mesh.local/ns/default/gateway/edge"


def test_the_gateway_reaches_a_strict_service_over_mtls_and_a_deny_intention_is_a_403(
        tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    backend = RecordingBackend()
    try:
        with control_plane(tmp_path) as cp:
            created(cp, "/api/v1/services/", {"name": "payments", "mtls_mode": "strict",
                                              "check": CHECK})
            inbound = free_port()
            server_admin = start_agent(
                procs, cp, tmp_path, "host-b",
                services=[{"name": "payments", "address": "127.0.0.1", "port": backend.port,
                           "check": CHECK}],
                upstreams=[], inbound={"listen": f"127.0.0.1:{inbound}"})
            created(cp, "/api/v1/gateway/", {"name": "edge"})
            created(cp, "/api/v1/gateway/edge/routes/", {
                "name": "pay", "hosts": [HOST], "path": {"prefix": "/pay"},
                "service": "payments", "strip_prefix": True, "auth": {"type": "none"}})
            token = created(cp, "/api/v1/agents/enrollment-tokens/",
                            {"description": "e2e gateway mtls", "gateways": ["edge"]})["token"]
            listen, admin = free_port(), free_port()
            start_gateway(procs, cp, tmp_path, token, listen, admin)

            def gateway_identity() -> bool:
                return GATEWAY_IDENTITY in {c["identity"]
                                            for c in stats(admin).get("certificates") or []}

            wait_until(gateway_identity, 45,
                       what="the gateway holding its identity from the control plane's CA")

            def strict_endpoint() -> bool:
                targets = (stats(admin).get("gateway") or {}).get("targets") or []
                return any(t["service"] == "payments" and any(
                    e["status"] == "passing" for e in t["endpoints"]) for t in targets)

            wait_until(strict_endpoint, 45, what="the gateway's passing payments endpoint")
            wait_until(lambda: get(listen, "/pay/through-mtls").status == 200, 20,
                       what="a request through the gateway and the mTLS hop")
            assert "/through-mtls" in backend.paths  # (strip_prefix)
            # Only mTLS reaches the app: through the inbound listener, as gateway:edge.
            assert stats(server_admin)["inbound"]["open_connections"] >= 1

            status, rule = cp.api("POST", "/api/v1/intentions/", {
                "source": "gateway:edge", "destination": "payments", "action": "deny"})
            assert status == 201, rule
            timed_until(lambda: get(listen, "/pay/denied").status == 403, "deny intention")
            backend.paths.clear()
            denied = get(listen, "/pay/denied-again")
            assert denied.status == 403, denied
            assert denied.headers.get("x-mesh-error") == f"denied-by-policy ({rule['id']})"
            assert backend.paths == []
    except BaseException:
        print(f"----- gateway log -----\n{procs.log('gateway')[-6000:]}")
        print(f"----- host-b log -----\n{procs.log('host-b')[-4000:]}")
        raise
    finally:
        procs.stop_all()
        backend.stop()
