"""meshconsole.client against a real control plane (web, worker and beat processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshconsole.client import AsyncServiceMesh, Service, ServiceMesh
from tests.e2e.controlplane import ControlPlane, control_plane
from tests.e2e.procs import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("sdk")) as plane:
        yield plane


def addresses(discovery) -> set[str]:
    return {e.host_port for e in discovery}


def test_the_sdk_never_imports_django() -> None:
    code = ("import sys, meshconsole.client; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('django', 'rest_framework', 'registry', 'policies', 'monitoring', 'celery')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(ROOT), timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_register_discover_then_a_killed_instance_leaves_discovery(cp: ControlPlane) -> None:
    script = (
        "import time; from meshconsole.client import ServiceMesh, Service; "
        f"sm = ServiceMesh({cp.url!r}, {cp.token!r}); "
        "sm.register(Service('service1', '127.0.0.1:8081', ttl='2s')); "
        "print('registered', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=str(ROOT),
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "registered"
        with ServiceMesh(cp.url, cp.token) as sm:
            with sm.register(Service("service1", "127.0.0.1:8082", ttl="2s")) as mine:
                found = sm.discover("service1")
                assert addresses(found) == {"127.0.0.1:8081", "127.0.0.1:8082"}
                assert not found.stale
                # Heartbeats keep both passing for several TTLs.
                changed = sm.wait_for_change("service1", found.revision, timeout=5)
                assert addresses(changed) == {"127.0.0.1:8081", "127.0.0.1:8082"}
                child.kill()  # no atexit, no deregistration: only its heartbeats stop
                child.wait()
                wait_until(lambda: addresses(sm.discover("service1")) == {"127.0.0.1:8082"},
                           20, what="the killed instance leaves discovery")
                assert mine.id
            # Leaving the with block deregistered ours: the watch sees it go.
            wait_until(lambda: len(sm.discover("service1")) == 0, 5, what="deregistration")
    finally:
        child.kill()
        child.wait()


def test_stopped_heartbeats_take_an_instance_out_of_discovery(cp: ControlPlane) -> None:
    with ServiceMesh(cp.url, cp.token) as sm:
        quiet = sm.register(Service("quiet", "127.0.0.1:8201", ttl="1s"))
        sm.register(Service("quiet", "127.0.0.1:8202", ttl="1s"))
        assert addresses(sm.discover("quiet")) == {"127.0.0.1:8201", "127.0.0.1:8202"}
        quiet.stop_heartbeats()
        wait_until(lambda: addresses(sm.discover("quiet")) == {"127.0.0.1:8202"}, 20,
                   what="the silent instance leaves discovery")
        _, body = cp.api("GET", f"/api/v1/services/quiet/instances/{quiet.id}/")
        assert body["status"] == "critical"


def test_a_refused_service_document_is_reported(cp: ControlPlane) -> None:
    from meshconsole.client import MeshHTTPError

    with ServiceMesh(cp.url, cp.token) as sm, pytest.raises(MeshHTTPError) as refused:
        sm.register(Service("Not_A_Label", "127.0.0.1:8301"))
    assert refused.value.status == 400 and "name" in str(refused.value.body)


def test_close_deregisters_and_exit_deregisters(cp: ControlPlane) -> None:
    sm = ServiceMesh(cp.url, cp.token)
    registration = sm.register(Service("closing", "127.0.0.1:9001", ttl="5s"))
    path = f"/api/v1/services/closing/instances/{registration.id}/"
    assert cp.api("GET", path)[0] == 200
    sm.close()
    assert cp.api("GET", path)[0] == 404
    script = ("from meshconsole.client import ServiceMesh, Service; "
              f"sm = ServiceMesh({cp.url!r}, {cp.token!r}); "
              "print(sm.register(Service('closing', '127.0.0.1:9002', ttl='5s')).id)")
    out = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                         text=True, timeout=60)
    instance = out.stdout.strip()
    assert instance, out.stderr
    assert cp.api("GET", f"/api/v1/services/closing/instances/{instance}/")[0] == 404


def test_load_balancer_and_fault_tolerance_eject_a_failing_endpoint(cp: ControlPlane) -> None:
    with ServiceMesh(cp.url, cp.token) as sm:
        for port in (7001, 7002, 7003):
            sm.register(Service("payments-sdk", f"127.0.0.1:{port}", ttl="10s"))
        lb = sm.load_balancer("payments-sdk", policy="least_request")
        assert lb.name == "least_request"
        picked = {lb.pick().port for _ in range(60)}
        assert picked == {7001, 7002, 7003}

        ft = sm.fault_tolerance("payments-sdk")
        assert ft.attempts == 2  # the service's policy (defaults: 2 retries)
        calls: list[int] = []

        def call(ep):
            calls.append(ep.port)
            if ep.port == 7001:
                raise ConnectionError("refused")
            return ep.port

        for _ in range(30):
            assert ft.run(call) in (7002, 7003)
        # consecutive_gateway (3 by default) failures ejected 7001: no more tries on it.
        assert [e.port for e in ft.lb.ejected()] == [7001]
        assert calls.count(7001) == 3
        with pytest.raises(ConnectionError), ft.call() as ep:
            raise ConnectionError(f"{ep.port} failed")


def test_control_plane_down_serves_cached_answers_marked_stale(tmp_path: Path) -> None:
    with control_plane(tmp_path, workers=False) as plane, \
            ServiceMesh(plane.url, plane.token, wait_s=2) as sm:
        sm.register(Service("cached", "127.0.0.1:8101", ttl="30s"))
        assert addresses(sm.discover("cached")) == {"127.0.0.1:8101"}
        lb = sm.load_balancer("cached")
        plane.procs.kill("web")
        stale = wait_until(lambda: sm.discover("cached").stale, 15, what="stale flag")
        assert stale
        found = sm.discover("cached")
        assert addresses(found) == {"127.0.0.1:8101"}
        assert lb.pick().port == 8101


async def test_async_variant(cp: ControlPlane) -> None:
    async with AsyncServiceMesh(cp.url, cp.token) as sm:
        await sm.register(Service("async-svc", "127.0.0.1:7101", ttl="10s"))
        found = await sm.discover("async-svc")
        assert addresses(found) == {"127.0.0.1:7101"}

        async def call(ep):
            await asyncio.sleep(0)
            return ep.port

        assert await sm.call("async-svc", call) == 7101
        ft = await sm.fault_tolerance("async-svc")
        async with ft.call() as ep:
            assert ep.port == 7101
    assert cp.api("GET", "/api/v1/services/async-svc/instances/")[1]["results"] == []
