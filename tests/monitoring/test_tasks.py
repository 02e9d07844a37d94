"""The periodic tasks, called directly, against real backends on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from agents import tasks as agent_tasks
from agents.models import Agent
from journal.models import Event, EventKind
from monitoring import checks, tasks
from monitoring.models import EdgeWindow, InstanceWindow
from registry import tasks as registry_tasks
from registry.models import Health, Instance, MeshRevision, Node, Service
from registry.notify import REVISION_CHANNEL
from registry.services import instance_register, service_create

pytestmark = pytest.mark.django_db(transaction=True)


class Backend:
    """A real HTTP server in a thread; stop() kills it like a crashed service."""

    def __init__(self, status: int = 200) -> None:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.hits += 1
                self.send_response(backend.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.status = status
        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.stop()


def make_instance(port: int, **check: Any) -> Instance:
    data = {"name": "payments", "check_type": "http", "check_path": "/health", **check}
    service = Service.objects.filter(name=data["name"]).first() or service_create(
        user=None, data=data
    )
    return instance_register(
        user=None, service=service, data={"address": "127.0.0.1", "port": port}
    )


def make_due() -> None:
    Instance.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))


def test_beat_schedule_names_registered_tasks() -> None:
    from meshconsole.celery import app

    app.loader.import_default_modules()  # what a worker does at start (autodiscovery)
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks


def test_dispatch_with_nothing_due_runs_nothing() -> None:
    assert tasks.dispatch_due_checks() == 0


def test_dispatch_checks_a_real_backend_and_publishes_the_revision(backend: Backend) -> None:
    instance = make_instance(backend.port, check_rise=3)
    listener = redis.Redis.from_url(django_settings.REDIS_URL).pubsub()
    listener.subscribe(REVISION_CHANNEL)
    try:
        assert tasks.dispatch_due_checks() == 1
        instance.refresh_from_db()
        assert backend.hits == 1
        assert instance.health == Health.PASSING
        assert instance.last_check_output.startswith("HTTP 200 in ")
        # Not due again until its interval has passed.
        assert tasks.dispatch_due_checks() == 0
        published: list[bytes] = []
        deadline = time.monotonic() + 5
        current = f'"revision":{MeshRevision.current()},'.encode()
        while time.monotonic() < deadline and not any(current in m for m in published):
            message = listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message:
                published.append(message["data"])
        assert any(current in m for m in published)
    finally:
        listener.close()


def test_killed_backend_goes_critical_after_fall_rounds(backend: Backend) -> None:
    instance = make_instance(backend.port, check_fall=3, check_timeout_ms=500)
    tasks.dispatch_due_checks()
    backend.stop()
    for round_ in range(1, 4):
        make_due()
        instance.refresh_from_db()
        assert instance.health == Health.PASSING, f"went critical before round {round_}"
        assert tasks.dispatch_due_checks() == 1
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason == "3 failed HTTP checks: connection refused"
    transitions = Event.objects.filter(kind=EventKind.HEALTH, instance=instance.pk)
    assert [e.data["to"] for e in transitions.order_by("id")] == ["passing", "critical"]


def test_backend_answering_503_goes_critical(backend: Backend) -> None:
    instance = make_instance(backend.port, check_fall=1)
    tasks.dispatch_due_checks()
    backend.status = 503
    make_due()
    tasks.dispatch_due_checks()
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason == "1 failed HTTP check: HTTP 503"


def test_tcp_checks_run_too(backend: Backend) -> None:
    instance = make_instance(backend.port, name="db", check_type="tcp")
    assert tasks.dispatch_due_checks() == 1
    instance.refresh_from_db()
    assert instance.health == Health.PASSING
    assert instance.status_reason.startswith("1 passing TCP check")


def test_a_check_that_raises_is_a_failed_check_not_a_crashed_batch(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = make_instance(backend.port)
    healthy = make_instance(backend.port, name="db", check_type="tcp")

    async def explode(*args: Any, **kwargs: Any) -> checks.CheckResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(checks, "http_check", explode)
    assert tasks.dispatch_due_checks() == 2
    broken.refresh_from_db()
    healthy.refresh_from_db()
    assert broken.last_check_output == "check error: RuntimeError: boom"
    assert broken.consecutive_fail == 1
    assert healthy.health == Health.PASSING


def test_link_local_instance_is_refused_not_contacted() -> None:
    instance = make_instance(80, check_fall=1)
    Instance.objects.filter(pk=instance.pk).update(address="169.254.169.254")
    tasks.dispatch_due_checks()
    instance.refresh_from_db()
    assert instance.last_check_output == "refused: cloud metadata address"
    assert instance.health == Health.CRITICAL


def test_prune_deletes_old_rows_only(settings: Any) -> None:
    settings.MESH_METRICS_RETENTION = 3600
    settings.MESH_EVENTS_RETENTION = 86400
    now = timezone.now()
    window = {"seconds": 2.0, "node": "n", "source": "a", "destination": "b"}
    old_window = EdgeWindow.objects.create(window_end=now - timedelta(seconds=3700), **window)
    new_window = EdgeWindow.objects.create(window_end=now - timedelta(seconds=3500), **window)
    of_instance = {"seconds": 2.0, "node": "n", "service": "b", "instance": "i1"}
    InstanceWindow.objects.create(window_end=now - timedelta(seconds=3700), **of_instance)
    kept = InstanceWindow.objects.create(window_end=now - timedelta(seconds=3500), **of_instance)
    old_event = Event.objects.create(kind=EventKind.CONFIG, message="old")
    new_event = Event.objects.create(kind=EventKind.CONFIG, message="new")
    Event.objects.filter(pk=old_event.pk).update(ts=now - timedelta(days=2))
    Event.objects.filter(pk=new_event.pk).update(ts=now - timedelta(hours=23))

    assert tasks.prune_history() == {
        "edge_windows": 1, "instance_windows": 1, "events": 1, "check_results": 0,
        "topology_frames": 0, "rollups": 0}
    assert list(InstanceWindow.objects.values_list("pk", flat=True)) == [kept.pk]
    assert list(EdgeWindow.objects.values_list("pk", flat=True)) == [new_window.pk]
    assert not EdgeWindow.objects.filter(pk=old_window.pk).exists()
    assert list(
        Event.objects.filter(message__in=["old", "new"]).values_list("message", flat=True)
    ) == ["new"]


def test_expire_agents_marks_a_silent_agents_instances_critical(
    backend: Backend, settings: Any
) -> None:
    settings.MESH_HEARTBEAT_TTL = 15
    node = Node.objects.create(name="host-a")
    Agent.objects.create(
        node=node, token_hash="t" * 64, last_seen=timezone.now() - timedelta(seconds=60)
    )
    instance = make_instance(backend.port, check_rise=1)
    Instance.objects.filter(pk=instance.pk).update(node=node, agent_managed=True)
    tasks.dispatch_due_checks()
    instance.refresh_from_db()
    assert instance.health == Health.PASSING

    assert agent_tasks.expire_agents() == ["host-a"]
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason.startswith("agent host-a silent")
    assert agent_tasks.expire_agents() == []

    # Its backend still answers, but only the agent's return may revive it.
    make_due()
    assert tasks.dispatch_due_checks() == 1
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.last_check_output.startswith("HTTP 200")


def test_expire_ttl_and_finish_drains() -> None:
    from registry.control import instances_control
    from registry.heartbeats import ttl_heartbeat_record

    ttl = service_create(user=None, data={"name": "cron", "check_type": "ttl",
                                          "check_interval_ms": 200, "check_timeout_ms": 100})
    beating = instance_register(user=None, service=ttl, data={"address": "127.0.0.1", "port": 1})
    ttl_heartbeat_record(instance=beating, status="passing", output="", actor="t",
                         now=timezone.now())
    plain = service_create(user=None, data={"name": "web", "check_type": "none",
                                            "drain_timeout_ms": 200})
    drained = instance_register(user=None, service=plain, data={"address": "127.0.0.1", "port": 2})
    instances_control(user=None, service=plain, action="drain", ids=[drained.pk])
    assert registry_tasks.expire_ttl() == []
    assert registry_tasks.finish_drains() == []
    assert Instance.objects.get(pk=beating.pk).health == Health.PASSING
    time.sleep(0.3)
    assert registry_tasks.expire_ttl() == [beating.pk]
    assert registry_tasks.finish_drains() == [drained.pk]
    assert Instance.objects.get(pk=beating.pk).health == Health.CRITICAL
    assert Instance.objects.get(pk=drained.pk).admin_state == "maintenance"


def test_dispatch_applies_expected_status_and_body(backend: Backend) -> None:
    backend.status = 204
    instance = make_instance(backend.port, check_expect_status="200", check_rise=1)
    make_due()
    tasks.dispatch_due_checks()
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.last_check_output == "HTTP 204 (expected 200)"
    Service.objects.filter(name="payments").update(check_expect_status="200-299")
    make_due()
    tasks.dispatch_due_checks()
    assert Instance.objects.get(pk=instance.pk).health == Health.PASSING


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_worker_killed_mid_batch_loses_no_check(tmp_path: Any) -> None:
    """kill -9 the Celery worker while it runs a batch of slow checks: its claims
    are leases (next_check_at = claim + max(interval, timeout)), so a new worker
    checks every instance again within the interval plus a bound."""
    from tests.e2e.controlplane import control_plane
    from tests.e2e.procs import Processes, free_port, http, python, wait_until

    interval_s, health_delay_s = 3.0, 1.5
    procs = Processes(tmp_path)
    try:
        with control_plane(tmp_path) as cp:
            ports = [free_port() for _ in range(8)]
            procs.start("slow", [python(), "-m", "tests.registry.slow_backend", "slow",
                                 "--health-delay", str(health_delay_s), *map(str, ports)], cp.env)
            wait_until(lambda: http("GET", f"http://127.0.0.1:{ports[-1]}/x", timeout=2)[0] == 200,
                       30, what="slow backend")
            status, body = cp.api("POST", "/api/v1/services/", {
                "name": "slowpoke",
                "check": {"type": "http", "interval": f"{interval_s}s", "timeout": "2500ms",
                          "rise": 1, "fall": 5},
            })
            assert status == 201, body
            for port in ports:
                assert cp.api("POST", "/api/v1/services/slowpoke/instances/",
                              {"address": "127.0.0.1", "port": port})[0] == 201

            def stats() -> dict[str, Any]:
                return http("GET", f"http://127.0.0.1:{ports[0]}/stats", timeout=2)[1]  # type: ignore[return-value]

            def all_passing() -> bool:
                _, instances = cp.api("GET", "/api/v1/services/slowpoke/instances/")
                return all(i["status"] == "passing" for i in instances["results"])  # type: ignore[index]

            wait_until(all_passing, 30, what="every instance passing")
            # Wait for a batch in flight (checks wait health_delay_s in the backend), kill it.
            wait_until(lambda: sum(s["in_flight"] for s in stats().values()) >= 3, 10,
                       interval=0.02, what="a batch of checks in flight")
            stranded = [int(p) for p, s in stats().items() if s["in_flight"]]
            cp.procs.kill("worker")
            killed_at = time.time()
            assert cp.procs.procs["worker"].poll() is not None
            time.sleep(health_delay_s + 0.5)  # the killed checks' connections are gone
            cp.procs.procs.pop("worker")
            cp.procs.start("worker", [
                python(), "-m", "celery", "-A", "meshconsole", "worker", "-l", "warning",
                "--concurrency", "2", "--without-gossip", "--without-mingle",
                "--without-heartbeat"], cp.env)

            # Every instance, stranded ones included, is checked again within one
            # (jittered) interval plus a bound for the new worker's start.
            bound = interval_s * 1.1 + 10

            def checked_again() -> bool:
                current = stats()
                return all(any(t > killed_at + health_delay_s for t in current[str(p)]["health_hits"])
                           for p in ports)

            wait_until(checked_again, bound, interval=0.2, what="every instance checked again")
            assert stranded, "no check was in flight when the worker died"
            time.sleep(interval_s)
            assert all_passing()  # the lost checks cost no verdict
            _, events = cp.api("GET", "/api/v1/events/?service=slowpoke&kind=health")
            assert not any("-> critical" in e["message"] for e in events["results"])  # type: ignore[index]
    except BaseException:
        print(f"----- slow backend log -----\n{procs.log('slow')[-3000:]}")
        raise
    finally:
        procs.stop_all()
