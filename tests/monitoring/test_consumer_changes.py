"""The live socket's `changes` topic: a page showing a kind of resource
(security, gateway, gateway-auth) is told after each commit that moved a key of
that kind, coalesced, and never about another kind or another page's data."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gateway import services as gateways
from identity import intentions
from monitoring.consumers import CHANGES_MIN_INTERVAL_S, MAX_CHANGE_KINDS
from registry.models import MeshRevision
from tests.monitoring.test_consumers import connect, receive_until, session_key

__all__ = ["session_key"]  # the fixture, shared with test_consumers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def subscribed(session: str, *kinds: str) -> Any:
    ws = connect(session=session)
    connected, _ = await ws.connect()
    assert connected
    for kind in kinds:
        await ws.send_json_to({"type": "subscribe", "topic": "changes", "kind": kind})
        assert await ws.receive_json_from(timeout=5) == {
            "type": "subscribed", "topic": "changes", "kind": kind}
    return ws


@database_sync_to_async
def create_gateway(name: str) -> None:
    gateways.gateway_create(user=User.objects.get(username="victor"), name=name)


@database_sync_to_async
def set_default(action: str) -> None:
    intentions.default_action_set(user=User.objects.get(username="victor"), action=action, expected_version=None)


@database_sync_to_async
def revision() -> int:
    return MeshRevision.current()


async def test_a_gateway_write_tells_gateway_pages_and_not_security_pages(session_key: str) -> None:
    gateway_page = await subscribed(session_key, "gateway", "gateway-auth")
    security_page = await subscribed(session_key, "security")
    await create_gateway("edge")
    message = await receive_until(gateway_page, lambda m: m["type"] == "changed")
    assert message == {"type": "changed", "kind": "gateway", "revision": await revision()}
    assert await security_page.receive_nothing(timeout=CHANGES_MIN_INTERVAL_S + 0.5)

    await set_default("deny")
    message = await receive_until(security_page, lambda m: m["type"] == "changed")
    assert message == {"type": "changed", "kind": "security", "revision": await revision()}
    assert await gateway_page.receive_nothing(timeout=CHANGES_MIN_INTERVAL_S + 0.5)
    await gateway_page.disconnect()
    await security_page.disconnect()


async def test_a_burst_of_changes_is_told_at_most_once_per_interval_ending_with_the_last(
    session_key: str,
) -> None:
    ws = await subscribed(session_key, "gateway")
    for i in range(6):
        await create_gateway(f"gw-{i}")
    last = await revision()
    told: list[dict[str, Any]] = []
    while not told or told[-1]["revision"] != last:
        told.append(await ws.receive_json_from(timeout=5))
    # The first is sent at once, the rest wait out the interval as one message.
    assert 1 <= len(told) <= 2, told
    assert await ws.receive_nothing(timeout=CHANGES_MIN_INTERVAL_S + 0.5)
    await ws.disconnect()


async def test_unsubscribed_kinds_are_not_told_and_bad_subscriptions_are_errors(
    session_key: str,
) -> None:
    ws = await subscribed(session_key, "gateway")
    await ws.send_json_to({"type": "unsubscribe", "topic": "changes", "kind": "gateway"})
    await create_gateway("quiet")
    assert await ws.receive_nothing(timeout=CHANGES_MIN_INTERVAL_S + 0.5)
    for bad in ({"kind": "Gateway!"}, {"kind": 3}, {}, {"kind": "x" * 40}):
        await ws.send_json_to({"type": "subscribe", "topic": "changes", **bad})
        message = await ws.receive_json_from(timeout=5)
        assert message["type"] == "error" and "kind" in message["message"]
    for i in range(MAX_CHANGE_KINDS):
        await ws.send_json_to({"type": "subscribe", "topic": "changes", "kind": f"k{i}"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    await ws.send_json_to({"type": "subscribe", "topic": "changes", "kind": "one-more"})
    message = await ws.receive_json_from(timeout=5)
    assert message == {"type": "error", "message": f"at most {MAX_CHANGE_KINDS} change kinds per socket"}
    await ws.disconnect()
