"""Blocking queries wake only for what they read: a change names its index keys
(service:<name>, agent:<id>) and the long-poll of an agent that does not consume
that service neither wakes nor sees its answer's index move."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from agents.models import Agent
from agents.snapshot import agent_snapshot, snapshot_index
from meshconsole import longpoll
from policies.models import FailoverState
from registry.models import MeshIndex, Node
from registry.revision import mesh_change
from tests.policies.helpers import instance, service


def change(name: str) -> int:
    with transaction.atomic():
        return mesh_change(services={name})


@pytest.mark.django_db(transaction=True)
async def test_a_change_wakes_only_the_watchers_of_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 30.0)  # only a message can wake early
    watcher = longpoll.RevisionWatcher()

    async def wait(key: str) -> int:
        return await watcher.wait_for(0, 4.0, keys=[key], read=lambda: MeshIndex.of([key]))

    payments = asyncio.create_task(wait("service:payments"))
    users = asyncio.create_task(wait("service:users"))
    await asyncio.sleep(0.5)  # subscribed
    revision = await sync_to_async(change)("payments")
    assert await asyncio.wait_for(payments, 2.0) == revision
    await asyncio.sleep(0.3)
    assert not users.done()  # not woken: it reads nothing that changed
    assert await users == 0  # its own timeout, its own (unchanged) index
    assert watcher._by_key == {}  # waiters leave no trace


@pytest.mark.django_db
def test_an_agents_index_follows_its_upstreams_and_failover_target_only() -> None:
    payments = service("payments")
    service("payments-dr")
    service("users")
    instance(payments, 1)
    node = Node.objects.create(name="host-a")
    agent = Agent.objects.create(node=node, token_hash="x", upstreams=[{"service": "payments"}])
    start = agent_snapshot(agent=agent)["revision"]
    assert start == snapshot_index(agent) > 0
    change("users")
    assert snapshot_index(agent) == start  # not its business
    change("payments-dr")
    assert snapshot_index(agent) == start  # not served from there (yet)
    FailoverState.objects.create(service=payments, active_target="payments-dr")
    failed_over = change("payments")
    assert snapshot_index(agent) == failed_over
    moved = change("payments-dr")
    assert agent_snapshot(agent=agent)["revision"] == moved  # now it is


@pytest.mark.django_db
def test_cached_snapshots_follow_every_change_agents_must_see(admin_user: object) -> None:
    from policies.services import policy_update
    from registry.control import instances_control
    from registry.models import Health, HealthCause
    from registry.services import instance_transition

    payments = service("payments")
    first = instance(payments, 1)
    instance(payments, 2)
    node = Node.objects.create(name="host-a")
    agent = Agent.objects.create(node=node, token_hash="x", upstreams=[{"service": "payments"}])
    other = Agent.objects.create(
        node=Node.objects.create(name="host-b"), token_hash="y",
        upstreams=[{"service": "payments"}],
    )

    def endpoints(a: Agent) -> list[tuple[int, str]]:
        snap = agent_snapshot(agent=a)["upstreams"]["payments"]
        return [(e["port"], e["status"]) for e in snap["endpoints"]]

    assert endpoints(agent) == endpoints(other) == [(1, "passing"), (2, "passing")]
    instances_control(user=admin_user, service=payments, action="maintenance", ids=[first.pk])  # type: ignore[arg-type]
    assert endpoints(agent) == endpoints(other) == [(2, "passing")]
    second = payments.instances.get(port=2)
    instance_transition(instance_id=second.pk, expected=Health.PASSING, health=Health.CRITICAL,
                        cause=HealthCause.CHECK, reason="refused", actor="t")
    assert endpoints(agent) == [(2, "critical")]
    policy_update(user=None, service=payments, data={"load_balancer": "maglev",
                                                     "retry_on": ["5xx"]})
    assert agent_snapshot(agent=agent)["upstreams"]["payments"]["policy"]["load_balancer"] == "maglev"


def counted(key: str) -> tuple[list[int], object]:
    """A read of KEY's index that counts its calls."""
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        return MeshIndex.of([key])

    return calls, read


async def subscribed(watcher: longpoll.RevisionWatcher) -> None:
    for _ in range(100):
        if watcher.subscribed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the watcher never subscribed")


@pytest.mark.django_db(transaction=True)
async def test_a_message_answers_its_waiters_without_a_read_and_nothing_polls_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscribed, a waiter reads its index once, then only a message wakes it; the
    message's revision is the answer (1,000 polls must not cost 500 queries a second)."""
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 0.1)  # (only while unsubscribed)
    watcher = longpoll.RevisionWatcher()
    calls, read = counted("service:payments")
    waiting = asyncio.create_task(
        watcher.wait_for(0, 10.0, keys=["service:payments"], read=read))  # type: ignore[arg-type]
    await subscribed(watcher)
    await asyncio.sleep(1.0)
    assert not waiting.done()
    reads_before = len(calls)
    assert reads_before <= 2  # its first read (and one after subscribing), no polling
    revision = await sync_to_async(change)("payments")
    assert await asyncio.wait_for(waiting, 2.0) == revision
    assert len(calls) == reads_before  # answered from the message


@pytest.mark.django_db(transaction=True)
async def test_a_change_whose_publish_was_lost_is_still_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticker sees a revision no message told and wakes everyone to read again."""
    from registry import notify

    monkeypatch.setattr(longpoll, "TICK_SECONDS", 0.2)
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 30.0)  # no re-read of its own could
    watcher = longpoll.RevisionWatcher()
    calls, read = counted("service:payments")
    waiting = asyncio.create_task(
        watcher.wait_for(0, 10.0, keys=["service:payments"], read=read))  # type: ignore[arg-type]
    await subscribed(watcher)
    await asyncio.sleep(0.3)
    monkeypatch.setattr(notify, "publish_revision", lambda value, keys=None: None)  # lost
    revision = await sync_to_async(change)("payments")
    assert await asyncio.wait_for(waiting, 3.0) == revision
    unrelated = asyncio.create_task(
        watcher.wait_for(revision, 1.5, keys=["service:users"],
                         read=lambda: MeshIndex.of(["service:users"])))
    assert await unrelated == 0  # woken to read, but its own index did not move


@pytest.mark.django_db(transaction=True)
async def test_without_redis_the_waiters_read_on_their_own(
        monkeypatch: pytest.MonkeyPatch, settings: object) -> None:
    from tests.e2e.procs import free_port

    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 0.2)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # type: ignore[attr-defined]
    watcher = longpoll.RevisionWatcher()
    waiting = asyncio.create_task(watcher.wait_for(
        0, 10.0, keys=["service:payments"], read=lambda: MeshIndex.of(["service:payments"])))
    await asyncio.sleep(0.5)
    assert not watcher.subscribed
    revision = await sync_to_async(change)("payments")
    assert await asyncio.wait_for(waiting, 2.0) == revision


@pytest.mark.django_db(transaction=True)
async def test_an_agent_removed_while_its_poll_waits_is_told_401_not_500() -> None:
    from django.db import connection
    from django.test import AsyncClient

    from agents.enrollment import agent_remove
    from tests.agents.test_api_agents import enroll

    def setup() -> tuple[str, str, int]:
        service("payments")
        _, body = enroll()
        agent = Agent.objects.get(pk=body["agent_id"])
        return body["agent_id"], body["agent_token"], snapshot_index(agent)

    agent_id, token, index = await sync_to_async(setup)()

    def remove() -> None:
        try:
            agent_remove(user=None, agent=Agent.objects.get(pk=agent_id))
        finally:
            connection.close()

    waiter = asyncio.ensure_future(AsyncClient().get(
        f"/api/v1/agents/{agent_id}/config/?revision={index}&wait=3s",
        headers={"Authorization": f"Agent {token}"}))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(remove)
    response = await asyncio.wait_for(waiter, 10)
    assert response.status_code == 401, response.content
    assert "removed" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
async def test_a_change_between_the_callers_read_and_its_wait_is_not_missed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The config poll reads its index before it waits (one database step): a change
    whose message came in between answers it at once, from the log of wake-ups."""
    monkeypatch.setattr(longpoll, "RECHECK_SECONDS", 30.0)
    watcher = longpoll.RevisionWatcher()
    warm = asyncio.create_task(watcher.wait_for(
        10**9, 5.0, keys=["service:other"], read=lambda: 0))  # subscribes the watcher
    await subscribed(watcher)
    key = "service:payments"
    since = watcher.generation
    index = await sync_to_async(MeshIndex.of)([key])
    revision = await sync_to_async(change)("payments")
    for _ in range(100):  # its message arrives before the caller waits
        if watcher.generation > since:
            break
        await asyncio.sleep(0.02)
    calls, read = counted(key)
    answer = await asyncio.wait_for(watcher.wait_for(
        index, 10.0, keys=[key], read=read, current=index, since=since),  # type: ignore[arg-type]
        2.0)
    assert answer == revision and calls == []  # from the log, no read
    # A wake-up of everyone in between (the subscription came back): it reads again.
    since = watcher.generation
    index = revision
    revision = await sync_to_async(change)("payments")
    watcher._wake(None)
    for _ in range(100):
        if watcher.announced >= revision:
            break
        await asyncio.sleep(0.02)
    answer = await asyncio.wait_for(watcher.wait_for(
        index, 10.0, keys=[key], read=read, current=index, since=since),  # type: ignore[arg-type]
        2.0)
    assert answer == revision and len(calls) == 1  # read again
    warm.cancel()
