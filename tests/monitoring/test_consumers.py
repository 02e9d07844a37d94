"""The live websocket (ws/live/) through the real ASGI app, session auth and
the Redis channel layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from meshconsole.asgi import application
from registry import services
from registry.models import Instance, Service

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def session_key(transactional_db: None) -> str:
    user = User.objects.create_user("victor", "victor@example.com", "victor-password-1")
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def connect(
    session: str | None = None,
    origin: str | None = ORIGIN,
    host: str = "127.0.0.1:8000",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> WebsocketCommunicator:
    headers = [(b"host", host.encode()), *extra]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if session is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


async def receive_until(
    ws: WebsocketCommunicator, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching message in time")
        message = await ws.receive_json_from(timeout=remaining)
        if match(message):
            return message


def topology_names(message: dict[str, Any]) -> set[str]:
    return {node["name"] for node in message["data"]["nodes"]}


@database_sync_to_async
def create_service(name: str) -> Service:
    user = User.objects.get(username="victor")
    return services.service_create(user=user, data={"name": name})


@database_sync_to_async
def register_instance(service: Service, port: int) -> Instance:
    user = User.objects.get(username="victor")
    return services.instance_register(
        user=user, service=service, data={"address": "10.0.0.9", "port": port, "zone": "zone-1"}
    )


@database_sync_to_async
def set_maintenance(instance: Instance, on: bool) -> None:
    user = User.objects.get(username="victor")
    services.instance_update(user=user, instance=instance, data={"maintenance": on})


async def test_anonymous_socket_is_refused(transactional_db: None) -> None:
    ws = connect(session=None)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4401


async def test_socket_with_bogus_session_is_refused(transactional_db: None) -> None:
    ws = connect(session="not-a-session")
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4401)


async def test_foreign_origin_is_refused(session_key: str) -> None:
    ws = connect(session=session_key, origin="http://evil.example.com")
    connected, _ = await ws.connect()
    assert not connected


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9000",  # another port of the same host
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1",  # port 80
        "http://localhost:8000",  # an allowed host, but not this origin
        "null",
        "ws://127.0.0.1:8000",
    ],
)
async def test_another_origin_of_the_same_host_is_refused(session_key: str, origin: str) -> None:
    ws = connect(session=session_key, origin=origin)
    connected, _ = await ws.connect()
    assert not connected


async def test_same_origin_is_accepted(session_key: str) -> None:
    ws = connect(session=session_key, origin="http://127.0.0.1:8000")
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


async def test_host_outside_allowed_hosts_is_refused(session_key: str) -> None:
    ws = connect(session=session_key, origin="http://rebound.example:8000", host="rebound.example:8000")
    connected, _ = await ws.connect()
    assert not connected


async def test_https_behind_a_tls_proxy_is_its_own_origin(session_key: str, settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proto = ((b"x-forwarded-proto", b"https"),)
    ws = connect(session=session_key, origin="https://127.0.0.1:8000", extra=proto)
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()
    ws = connect(session=session_key, origin="http://127.0.0.1:8000", extra=proto)
    connected, _ = await ws.connect()
    assert not connected


@pytest.mark.parametrize(
    ("trusted", "origin", "accepted"),
    [
        ("https://console.example.com", "https://console.example.com", True),
        ("https://console.example.com", "https://console.example.com:443", True),
        ("https://console.example.com", "https://console.example.com:8443", False),
        ("https://console.example.com", "http://console.example.com", False),
        ("https://*.example.com", "https://a.example.com", True),
        ("https://*.example.com", "http://a.example.com", False),
        ("https://*.example.com", "https://a.example.org", False),
    ],
)
async def test_csrf_trusted_origins_are_matched_whole(
    session_key: str, settings: Any, trusted: str, origin: str, accepted: bool
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [trusted]
    ws = connect(session=session_key, origin=origin)
    connected, _ = await ws.connect()
    assert connected is accepted
    if connected:
        await ws.disconnect()


async def test_missing_origin_is_refused(session_key: str) -> None:
    ws = connect(session=session_key, origin=None)
    connected, _ = await ws.connect()
    assert not connected


async def test_subscribe_topology_sends_snapshot(session_key: str) -> None:
    await create_service("payments")
    ws = connect(session_key)
    connected, _ = await ws.connect()
    assert connected
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "topology"
    assert message["data"]["window_seconds"] == 60
    assert topology_names(message) == {"payments"}
    assert message["data"]["nodes"][0]["health"] == "empty"
    assert message["data"]["edges"] == []
    await ws.disconnect()


async def test_new_service_is_pushed_to_topology_subscribers(session_key: str) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    first = await ws.receive_json_from(timeout=5)
    assert "orders" not in topology_names(first)
    await create_service("orders")
    pushed = await receive_until(ws, lambda m: "orders" in topology_names(m))
    assert pushed["type"] == "topology"
    await ws.disconnect()


async def test_burst_of_changes_is_coalesced(session_key: str) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    await ws.receive_json_from(timeout=5)
    started = time.monotonic()
    for i in range(10):
        await create_service(f"burst-{i}")
    await receive_until(ws, lambda m: len(topology_names(m)) == 10)
    elapsed = time.monotonic() - started
    # Ten commits, yet pushes are spaced by at least TOPOLOGY_MIN_INTERVAL_S: few messages.
    sent = 1
    # receive_nothing peeks; a receive that times out would cancel the app.
    while not await ws.receive_nothing(timeout=0.3):
        await ws.receive_json_from()
        sent += 1
    assert sent <= 2 + int(elapsed / 1.0)
    await ws.disconnect()


async def test_topology_is_refreshed_periodically(session_key: str) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=4)
    assert second["type"] == "topology"
    assert second["data"]["generated_at"] > first["data"]["generated_at"]
    await ws.disconnect()


async def test_disconnect_cancels_the_topology_task(session_key: str) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    await ws.receive_json_from(timeout=5)

    def loops() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "_topology_loop" in repr(t.get_coro())]

    assert len(loops()) == 1
    await ws.disconnect()
    await asyncio.sleep(0)
    assert loops() == []


async def test_subscribe_service_sends_service_with_instances(session_key: str) -> None:
    service = await create_service("payments")
    instance = await register_instance(service, 8080)
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "service", "name": "payments"})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "service"
    data = message["data"]
    assert data["name"] == "payments"
    assert data["health"] == {"passing": 0, "total": 1}
    assert data["check"]["type"] == "tcp"
    assert [i["id"] for i in data["instances"]] == [instance.id]
    assert data["instances"][0]["address"] == "10.0.0.9"
    assert data["instances"][0]["status"] == "critical"
    await ws.disconnect()


async def test_service_change_is_pushed_to_its_subscribers(session_key: str) -> None:
    service = await create_service("payments")
    instance = await register_instance(service, 8080)
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "service", "name": "payments"})
    await ws.receive_json_from(timeout=5)
    await set_maintenance(instance, True)
    message = await receive_until(
        ws,
        lambda m: m["type"] == "service" and m["data"]["instances"][0]["status"] == "maintenance",
    )
    assert message["data"]["name"] == "payments"
    await ws.disconnect()


async def test_other_services_changes_are_not_sent(session_key: str) -> None:
    await create_service("payments")
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "service", "name": "payments"})
    await ws.receive_json_from(timeout=5)
    await create_service("orders")
    assert await ws.receive_nothing(timeout=1)
    await ws.disconnect()


async def test_deleted_service_is_announced(session_key: str) -> None:
    service = await create_service("payments")
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "service", "name": "payments"})
    await ws.receive_json_from(timeout=5)
    user = await database_sync_to_async(User.objects.get)(username="victor")
    await database_sync_to_async(services.service_delete)(user=user, service=service)
    message = await ws.receive_json_from(timeout=5)
    assert message == {"type": "service.removed", "name": "payments"}
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"type": "dance"}', "unknown message type"),
        ('{"type": "subscribe"}', "unknown topic"),
        ('{"type": "subscribe", "topic": "weather"}', "unknown topic"),
        ('{"type": "subscribe", "topic": "service"}', "expected a service name"),
        (
            '{"type": "subscribe", "topic": "service", "name": "Not A Name"}',
            "expected a service name",
        ),
        ('{"type": "subscribe", "topic": "service", "name": ["x"]}', "expected a service name"),
        ('{"type": "subscribe", "topic": "service", "name": "ghost"}', "unknown service"),
    ],
)
async def test_bad_client_message_gets_an_error_not_a_crash(
    session_key: str, frame: str, error: str
) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_to(text_data=frame)
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "error"
    assert error in message["message"]
    # The socket still works afterwards.
    await ws.send_json_to({"type": "subscribe", "topic": "topology"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "topology"
    await ws.disconnect()


async def test_binary_frame_gets_an_error(session_key: str) -> None:
    ws = connect(session_key)
    await ws.connect()
    await ws.send_to(bytes_data=b"\x00\x01")
    message = await ws.receive_json_from(timeout=5)
    assert message == {"type": "error", "message": "expected a JSON text frame"}
    await ws.disconnect()


async def test_an_idle_socket_stays_open_and_still_gets_changes(session_key: str) -> None:
    # The channel layer's receive blocks in Redis (BZPOPMIN); a client-side socket
    # timeout shorter than its wait (redis-py 8 defaults to 5 s) used to close
    # every quiet websocket after ~5 s.
    service = await create_service("payments")
    instance = await register_instance(service, 8080)
    ws = connect(session_key)
    await ws.connect()
    await ws.send_json_to({"type": "subscribe", "topic": "service", "name": "payments"})
    await ws.receive_json_from(timeout=5)
    assert await ws.receive_nothing(timeout=7)
    await set_maintenance(instance, True)
    message = await receive_until(
        ws,
        lambda m: m["type"] == "service" and m["data"]["instances"][0]["status"] == "maintenance",
    )
    assert message["data"]["name"] == "payments"
    await ws.disconnect()


async def test_consoles_share_one_topology_until_the_mesh_changes(session_key: str) -> None:
    from monitoring import topology

    await create_service("payments")
    first = await database_sync_to_async(topology.topology_shared)(60)
    again = await database_sync_to_async(topology.topology_shared)(60)
    assert again is first  # a second console within the second reuses it
    await create_service("orders")  # a new revision: recomputed at once
    changed = await database_sync_to_async(topology.topology_shared)(60)
    assert changed is not first
    assert {n["name"] for n in changed["nodes"]} == {"payments", "orders"}
