"""The gateway with real processes: the control plane (web, Celery worker and beat), a
real backend registered as an instance of `orders`, and a real `meshagent gateway`
enrolled with a token that lists the gateway. Everything is configured through the
REST API: the gateway, a key-auth route, a consumer and its key (shown once, then
its `last_used_at` from the gateway's report). A revoked key and a changed route
reach the gateway within a bounded poll; after traffic the topology shows the
gateway as the entry node with its edge to `orders`."""

from __future__ import annotations

import http.client as httpclient
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import Processes, free_port, python, wait_until

pytestmark = pytest.mark.e2e

HOST = "api.example.test"
APPLY_DEADLINE_S = 10.0  # expect ~1 s (long-poll); generous for a loaded 2-core machine


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers.get('x-mesh-error', '')} {self.body[:60]!r}>"


def get(port: int, path: str, key: str | None = None, host: str = HOST) -> Answer:
    headers = {"Host": host}
    if key is not None:
        headers["apikey"] = key
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def created(cp: ControlPlane, path: str, body: dict[str, Any]) -> Any:
    status, answer = cp.api("POST", path, body)
    assert status == 201, (path, status, answer)
    return answer


def start_gateway(procs: Processes, cp: ControlPlane, tmp_path: Path, token: str,
                  listen: int, admin: int) -> None:
    config = {
        "control_plane": cp.url, "token": token, "node": "edge-1", "zone": "zone-1",
        "data_dir": str(tmp_path / "gateway"), "admin": f"127.0.0.1:{admin}", "dns": "off",
        "gateway": {"name": "edge", "listeners": [{"listen": f"127.0.0.1:{listen}"}]},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    procs.start("gateway", [python(), "-m", "agents.runtime.cli", "gateway", "-c", str(path)],
                cp.env)


def timed_until(predicate: Any, what: str) -> float:
    """Poll PREDICATE until true (deadline APPLY_DEADLINE_S); the seconds it took."""
    started = time.monotonic()
    wait_until(predicate, APPLY_DEADLINE_S, interval=0.05, what=what)
    took = time.monotonic() - started
    print(f"{what}: applied on the gateway after {took:.2f}s")
    return took


def test_gateway_key_auth_route_changes_and_topology(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            port = free_port()
            procs.start("backend", [python(), "-m", "tests.e2e.backend", str(port), "orders-1"],
                        cp.env)
            cp.register({"name": "orders",
                         "check": {"type": "http", "path": "/health", "interval": "1s",
                                   "timeout": "500ms", "rise": 1, "fall": 2}}, [port])
            cp.wait_all_passing("orders")

            created(cp, "/api/v1/gateway/", {"name": "edge"})
            created(cp, "/api/v1/gateway/edge/routes/", {
                "name": "orders-api", "hosts": [HOST], "path": {"prefix": "/orders"},
                "service": "orders", "strip_prefix": True, "auth": {"type": "key"}})
            created(cp, "/api/v1/gateway/consumers/", {"name": "alice"})
            new_key = created(cp, "/api/v1/gateway/consumers/alice/keys/", {})
            key, prefix = new_key["key"], new_key["prefix"]
            assert key.startswith(prefix)
            _, listed = cp.api("GET", "/api/v1/gateway/consumers/alice/keys/")
            assert key not in str(listed)  # shown once: the listing has prefixes only

            token = created(cp, "/api/v1/agents/enrollment-tokens/",
                            {"description": "e2e gateway", "gateways": ["edge"]})["token"]
            listen, admin = free_port(), free_port()
            start_gateway(procs, cp, tmp_path, token, listen, admin)

            # strip_prefix: /orders/work reaches the backend as /work (its name answers).
            wait_until(lambda: get(listen, "/orders/work", key).status == 200, 45,
                       what="the gateway routing /orders with the key")
            ok = get(listen, "/orders/work", key)
            assert (ok.status, ok.body) == (200, "orders-1")
            assert get(listen, "/orders/health", key).body == "ok"

            missing = get(listen, "/orders/work")
            assert missing.status == 401, missing
            assert missing.headers.get("www-authenticate", "").startswith("Key"), missing.headers
            wrong = get(listen, "/orders/work", "x" * len(key))
            assert wrong.status == 401, wrong
            assert "www-authenticate" in wrong.headers
            other_host = get(listen, "/orders/work", key, host="other.example.test")
            assert other_host.status == 404, other_host  # the route is for HOST only

            # The gateway reports the key's use: the listing shows when (to the minute).
            def last_used() -> Any:
                _, keys = cp.api("GET", "/api/v1/gateway/consumers/alice/keys/")
                return next((k["last_used_at"] for k in keys["results"]
                             if k["prefix"] == prefix), None)

            wait_until(last_used, 30, what="the key's last_used_at from the gateway's report")
            assert last_used().endswith(":00Z"), last_used()

            # Revoke the key through the API: the same request is a 401 within the poll.
            status, _ = cp.api("DELETE", f"/api/v1/gateway/consumers/alice/keys/{prefix}/")
            assert status == 204
            timed_until(lambda: get(listen, "/orders/work", key).status == 401, "key revoked")
            assert get(listen, "/orders/work", key).status == 401

            # Change the route: no auth and a new prefix. Applied within the poll.
            status, body = cp.api("PUT", "/api/v1/gateway/edge/routes/orders-api/", {
                "hosts": [HOST], "path": {"prefix": "/v2"}, "service": "orders",
                "strip_prefix": True, "auth": {"type": "none"}})
            assert status == 200, body
            timed_until(lambda: get(listen, "/v2/work").status == 200, "route changed")
            assert get(listen, "/v2/work").body == "orders-1"
            gone = get(listen, "/orders/work")
            assert gone.status == 404 and gone.headers.get("x-mesh-error") == "no-route", gone

            # Traffic, then the gateway is the topology's entry node with an edge to orders.
            sent = 20
            for _ in range(sent):
                assert get(listen, "/v2/work").status == 200

            def entry() -> tuple[dict[str, Any], dict[str, Any]] | None:
                _, topology = cp.api("GET", "/api/v1/topology/?window=60s")
                nodes = {n["id"]: n for n in topology["nodes"]}
                edges = [e for e in topology["edges"]
                         if (e["source"], e["destination"]) == ("edge", "orders")
                         and e["requests"] >= sent]  # windows arrive report by report
                if "edge" not in nodes or not edges:
                    return None
                return nodes["edge"], edges[0]

            node, edge = wait_until(entry, 30, what="the gateway node and its edge to orders")
            assert node["kind"] == "gateway"
            assert edge["p50_ms"] is not None and edge["error_rate"] == 0
            assert {n["id"]: n["kind"] for n in cp.api("GET", "/api/v1/topology/")[1]["nodes"]
                    }["orders"] == "service"
    except BaseException:
        print(f"----- gateway log -----\n{procs.log('gateway')[-6000:]}")
        raise
    finally:
        procs.stop_all()
