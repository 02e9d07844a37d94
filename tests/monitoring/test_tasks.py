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

from agents.models import Agent
from monitoring import checks, tasks
from monitoring.models import EdgeWindow, Event, EventKind
from monitoring.notify import REVISION_CHANNEL
from registry.models import Health, Instance, MeshRevision, Node, Service
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
        while time.monotonic() < deadline and str(MeshRevision.current()).encode() not in published:
            message = listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message:
                published.append(message["data"])
        assert str(MeshRevision.current()).encode() in published
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
    old_event = Event.objects.create(kind=EventKind.CONFIG, message="old")
    new_event = Event.objects.create(kind=EventKind.CONFIG, message="new")
    Event.objects.filter(pk=old_event.pk).update(ts=now - timedelta(days=2))
    Event.objects.filter(pk=new_event.pk).update(ts=now - timedelta(hours=23))

    assert tasks.prune_history() == {"edge_windows": 1, "events": 1}
    assert list(EdgeWindow.objects.values_list("pk", flat=True)) == [new_window.pk]
    assert not EdgeWindow.objects.filter(pk=old_window.pk).exists()
    assert list(
        Event.objects.filter(message__in=["old", "new"]).values_list("message", flat=True)
    ) == ["new"]


def test_expire_heartbeats_marks_a_silent_agents_instances_critical(
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

    assert tasks.expire_heartbeats() == ["host-a"]
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.status_reason.startswith("agent host-a silent")
    assert tasks.expire_heartbeats() == []

    # Its backend still answers, but only the agent's return may revive it.
    make_due()
    assert tasks.dispatch_due_checks() == 1
    instance.refresh_from_db()
    assert instance.health == Health.CRITICAL
    assert instance.last_check_output.startswith("HTTP 200")
