"""The canary split at the edge, with real processes: a control plane (web, worker, beat),
two real backends registered as `orders` instances tagged v1 and v2, `orders`' routes
document splitting 90/10 between the subsets, and a real `meshagent gateway` whose route
names `orders` with no subset. About 1,000 requests through the gateway land 90/10
within ±4 points, and the topology shows the gateway's edge to orders per subset."""

from __future__ import annotations

import http.client as httpclient
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import control_plane
from tests.e2e.procs import Processes, free_port, python, wait_until
from tests.e2e.test_gateway_end_to_end import HOST, created, start_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOTAL = 1000
LOAD_DEADLINE_S = 120.0  # ~1,000 keep-alive requests take a few seconds here


def split_applied(admin: int) -> bool:
    """The gateway's runtime of orders has the canary route (its admin /stats)."""
    conn = httpclient.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        conn.request("GET", "/stats")
        stats = json.loads(conn.getresponse().read())
    except (OSError, ValueError):
        return False
    finally:
        conn.close()
    targets = (stats.get("gateway") or {}).get("targets") or []
    return any(t["service"] == "orders" and [r["name"] for r in t["routes"]] == ["canary"]
               and all(x["healthy"] for x in t["routes"][0]["targets"]) for t in targets)


def send(port: int, total: int) -> dict[str, int]:
    """TOTAL GETs over one keep-alive connection (reopened if the gateway closes it):
    the count of each backend's answers; bounded by LOAD_DEADLINE_S."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + LOAD_DEADLINE_S
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(total):
            assert time.monotonic() < deadline, f"{sum(seen.values())} answers in time"
            conn.request("GET", "/shop/work", headers={"Host": HOST})
            response = conn.getresponse()
            body = response.read().decode()
            assert response.status == 200, (response.status, body)
            seen[body] = seen.get(body, 0) + 1
            if response.will_close:
                conn.close()
                conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()
    return seen


def test_a_gateway_route_to_orders_takes_the_90_10_canary_split(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = {"v1": free_port(), "v2": free_port()}
            for tag, port in ports.items():
                procs.start(f"backend-{tag}",
                            [python(), "-m", "tests.e2e.backend", str(port), f"orders-{tag}"],
                            cp.env)
            ids = cp.register({"name": "orders",
                               "check": {"type": "http", "path": "/health", "interval": "1s",
                                         "timeout": "500ms", "rise": 1, "fall": 2}},
                              ports.values())
            for tag, port in ports.items():
                status, body = cp.api("PATCH", f"/api/v1/services/orders/instances/{ids[port]}/",
                                      {"tags": [tag]})
                assert status == 200, body
            cp.wait_all_passing("orders")
            status, body = cp.api("PUT", "/api/v1/services/orders/routes/", {
                "subsets": {"v1": {"tags": ["v1"]}, "v2": {"tags": ["v2"]}},
                "routes": [{"name": "canary", "match": {"path": {"prefix": "/work"}},
                            "split": [{"subset": "v1", "weight": 90},
                                      {"subset": "v2", "weight": 10}]}]})
            assert status == 200, body

            created(cp, "/api/v1/gateway/", {"name": "edge"})
            created(cp, "/api/v1/gateway/edge/routes/", {
                "name": "shop", "hosts": [HOST], "path": {"prefix": "/shop"},
                "service": "orders", "strip_prefix": True})
            token = created(cp, "/api/v1/agents/enrollment-tokens/",
                            {"description": "e2e gateway split", "gateways": ["edge"]})["token"]
            listen, admin = free_port(), free_port()
            start_gateway(procs, cp, tmp_path, token, listen, admin)
            wait_until(lambda: split_applied(admin), 45,
                       what="the gateway applying orders' canary route")

            started = time.monotonic()
            seen = send(listen, TOTAL)
            print(f"{TOTAL} requests through the gateway in {time.monotonic() - started:.1f}s: "
                  f"{seen}")
            assert set(seen) <= {"orders-v1", "orders-v2"}, seen
            share = 100 * seen.get("orders-v2", 0) / TOTAL
            assert abs(share - 10) <= 4, seen

            # The topology: the gateway's edge to orders, its figures per drawn subset.
            def per_subset() -> dict[str, Any] | None:
                _, topology = cp.api("GET", "/api/v1/topology/?window=60s")
                for e in topology["edges"]:
                    if (e["source"], e["destination"]) == ("edge", "orders"):
                        subsets = e["subsets"]
                        got = sum(s["requests"] for s in subsets.values())
                        return subsets if got >= TOTAL else None  # report by report
                return None

            subsets = wait_until(per_subset, 30, what="the gateway's edge per subset")
            assert set(subsets) == {"v1", "v2"}, subsets
            assert subsets["v2"]["requests"] == seen.get("orders-v2", 0), subsets
            assert subsets["v1"]["requests"] == seen.get("orders-v1", 0), subsets
    except BaseException:
        print(f"----- gateway log -----\n{procs.log('gateway')[-6000:]}")
        raise
    finally:
        procs.stop_all()
