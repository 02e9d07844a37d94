"""Live streams for the console: the topology, one service at a time, and
"something of this kind changed" for the pages that re-read themselves.

One socket per page at ws/live/. The client subscribes to what it shows; the
consumer joins one group per thing watched (never broadcast-then-filter) and
answers each subscription with a full snapshot, then with fresh snapshots
whenever registry.notify says something changed. A `changes` subscription
(kind `security`, `gateway`, `gateway-auth`: the index keys' kinds) carries no
data: it is answered `subscribed`, then `changed` (at most one per kind every
CHANGES_MIN_INTERVAL_S), and the page re-reads what it shows through the
views, which apply the reader's role as for any read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Literal, TypedDict

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from meshconsole.roles import grant_of
from monitoring.topology import Topology, service_state_payload, topology_shared
from registry.models import SERVICE_NAME_RE
from registry.notify import TOPOLOGY_GROUP, changes_group, service_group

log = logging.getLogger(__name__)

TOPOLOGY_WINDOW_S = 60
# Metrics move continuously: push a fresh topology this often while subscribed.
TOPOLOGY_PERIOD_S = 2.0
# A burst of registry changes costs each console at most one topology message
# per this interval (issue 10: at most one a second per console).
TOPOLOGY_MIN_INTERVAL_S = 1.0
CLOSE_UNAUTHENTICATED = 4401
MAX_SERVICE_SUBSCRIPTIONS = 20
MAX_CHANGE_KINDS = 8
CHANGES_MIN_INTERVAL_S = 0.5
CHANGE_KIND_RE = r"[a-z][a-z0-9-]{0,31}"


# Server -> client payloads.
class TopologyMessage(TypedDict):
    type: Literal["topology"]
    data: Topology


class ServiceMessage(TypedDict):
    type: Literal["service"]
    data: dict[str, Any]  # ServiceSerializer's shape plus "instances"


class ServiceRemovedMessage(TypedDict):
    type: Literal["service.removed"]
    name: str


class SubscribedMessage(TypedDict):
    type: Literal["subscribed"]
    topic: Literal["changes"]
    kind: str


class ChangedMessage(TypedDict):
    type: Literal["changed"]
    kind: str
    revision: int


class ErrorMessage(TypedDict):
    type: Literal["error"]
    message: str


# Group messages (sent by registry.notify).
class TopologyChanged(TypedDict, total=False):
    type: Literal["topology.changed"]
    revision: int


class ServiceChanged(TypedDict):
    type: Literal["service.changed"]
    service: str


class ResourceChanged(TypedDict):
    type: Literal["resource.changed"]
    kind: str
    revision: int


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """ws/live/: subscribe to "topology" and/or "service" (by name)."""

    async def connect(self) -> None:
        self.watched_groups: set[str] = set()
        self.topology_task: asyncio.Task[None] | None = None
        self.topology_dirty = asyncio.Event()
        # kind -> the newest revision not sent yet, while a send is scheduled.
        self.changes_due: dict[str, int] = {}
        self.changes_sent: dict[str, float] = {}
        self.change_tasks: dict[str, asyncio.Task[None]] = {}
        user = self.scope.get("user")
        # Viewer and up (meshconsole.roles): every role reads the live mesh.
        if await database_sync_to_async(grant_of)(user) is None:
            # Refused at the handshake: nothing is streamed to anonymous sockets.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "topology_task", None)
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for pending in list(getattr(self, "change_tasks", {}).values()):
            pending.cancel()
        for group in getattr(self, "watched_groups", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    # Client messages.

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Overridden so that a malformed frame gets an error back, not a crash.
        if text_data is None:
            await self.send_error("expected a JSON text frame")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid JSON")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_error("expected a JSON object")
            return
        kind = content.get("type")
        if kind == "subscribe":
            await self.subscribe(content)
        elif kind == "unsubscribe":
            await self.unsubscribe(content)
        else:
            await self.send_error(f"unknown message type {kind!r}; expected subscribe")

    async def subscribe(self, content: dict[str, Any]) -> None:
        topic = content.get("topic")
        if topic == "topology":
            await self.subscribe_topology()
        elif topic == "service":
            name = content.get("name")
            if not isinstance(name, str) or not _is_service_name(name):
                await self.send_error("subscribe service: expected a service name")
                return
            await self.subscribe_service(name)
        elif topic == "changes":
            kind = content.get("kind")
            if not isinstance(kind, str) or re.fullmatch(CHANGE_KIND_RE, kind) is None:
                await self.send_error("subscribe changes: expected a kind (e.g. security, gateway)")
                return
            await self.subscribe_changes(kind)
        else:
            await self.send_error(
                f"unknown topic {topic!r}; expected topology, service or changes"
            )

    async def unsubscribe(self, content: dict[str, Any]) -> None:
        topic = content.get("topic")
        if topic == "topology":
            await self._leave(TOPOLOGY_GROUP)
            if self.topology_task is not None:
                self.topology_task.cancel()
                self.topology_task = None
        elif topic == "service" and isinstance(content.get("name"), str):
            await self._leave(service_group(content["name"]))
        elif topic == "changes" and isinstance(content.get("kind"), str):
            await self._leave(changes_group(content["kind"]))
        else:
            await self.send_error(
                "unsubscribe: expected topic topology, service with a name or changes with a kind"
            )

    async def subscribe_topology(self) -> None:
        await self._join(TOPOLOGY_GROUP)
        await self.send_topology()
        if self.topology_task is None:
            self.topology_task = asyncio.create_task(self._topology_loop())

    async def subscribe_service(self, name: str) -> None:
        data = await database_sync_to_async(service_state_payload)(name)
        if data is None:
            await self.send_error(f"unknown service {name!r}")
            return
        group = service_group(name)
        watched = sum(1 for g in self.watched_groups if g.startswith("service."))
        if group not in self.watched_groups and watched >= MAX_SERVICE_SUBSCRIPTIONS:
            await self.send_error(f"at most {MAX_SERVICE_SUBSCRIPTIONS} services per socket")
            return
        await self._join(group)
        await self.send_json(ServiceMessage(type="service", data=data))

    async def subscribe_changes(self, kind: str) -> None:
        group = changes_group(kind)
        watched = sum(1 for g in self.watched_groups if g.startswith("changes."))
        if group not in self.watched_groups and watched >= MAX_CHANGE_KINDS:
            await self.send_error(f"at most {MAX_CHANGE_KINDS} change kinds per socket")
            return
        await self._join(group)
        # Also after a reconnect: what changed while the socket was down is re-read.
        await self.send_json(SubscribedMessage(type="subscribed", topic="changes", kind=kind))

    # Group handlers, named after the message types of registry.notify.

    async def topology_changed(self, event: TopologyChanged) -> None:
        # Only mark: the loop recomputes, at most once per TOPOLOGY_MIN_INTERVAL_S.
        self.topology_dirty.set()

    async def service_changed(self, event: ServiceChanged) -> None:
        name = event.get("service", "")
        if service_group(name) not in self.watched_groups:
            return
        data = await database_sync_to_async(service_state_payload)(name)
        if data is None:
            await self.send_json(ServiceRemovedMessage(type="service.removed", name=name))
        else:
            await self.send_json(ServiceMessage(type="service", data=data))

    async def resource_changed(self, event: ResourceChanged) -> None:
        kind = event.get("kind", "")
        if changes_group(kind) not in self.watched_groups:
            return
        revision = int(event.get("revision", 0))
        if kind in self.changes_due:  # a send is scheduled: it will carry this one
            self.changes_due[kind] = max(revision, self.changes_due[kind])
            return
        loop = asyncio.get_running_loop()
        wait = self.changes_sent.get(kind, 0.0) + CHANGES_MIN_INTERVAL_S - loop.time()
        if wait <= 0:
            await self._send_changed(kind, revision)
            return
        self.changes_due[kind] = revision
        self.change_tasks[kind] = asyncio.create_task(self._send_changed_after(kind, wait))

    async def _send_changed_after(self, kind: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self.change_tasks.pop(kind, None)
        revision = self.changes_due.pop(kind, None)
        if revision is not None and changes_group(kind) in self.watched_groups:
            await self._send_changed(kind, revision)

    async def _send_changed(self, kind: str, revision: int) -> None:
        self.changes_sent[kind] = asyncio.get_running_loop().time()
        await self.send_json(ChangedMessage(type="changed", kind=kind, revision=revision))

    # Internals.

    async def send_topology(self) -> None:
        data = await database_sync_to_async(topology_shared)(TOPOLOGY_WINDOW_S)
        await self.send_json(TopologyMessage(type="topology", data=data))

    async def send_error(self, message: str) -> None:
        await self.send_json(ErrorMessage(type="error", message=message))

    async def _topology_loop(self) -> None:
        while True:
            await asyncio.sleep(TOPOLOGY_MIN_INTERVAL_S)
            try:
                await asyncio.wait_for(
                    self.topology_dirty.wait(), TOPOLOGY_PERIOD_S - TOPOLOGY_MIN_INTERVAL_S
                )
            except TimeoutError:
                pass
            self.topology_dirty.clear()
            try:
                await self.send_topology()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed push must not end the stream; try again next tick
                log.exception("topology push failed")

    async def _join(self, group: str) -> None:
        if group not in self.watched_groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.watched_groups.add(group)

    async def _leave(self, group: str) -> None:
        if group in self.watched_groups:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.watched_groups.discard(group)


def _is_service_name(name: str) -> bool:
    return re.fullmatch(SERVICE_NAME_RE, name) is not None
