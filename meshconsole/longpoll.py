"""Blocking queries: wait, without holding a thread, until the index of what a
request reads passes the index it already has (Consul-style: the index of the
result, not of the world). One Redis subscription per event loop receives each
change's revision and index keys (registry.notify) and wakes only the waiters
reading one of those keys; a waiter a message names at a newer revision answers
without reading the database again.

A lost message delays an answer but never loses it:
- while the subscription is down, every waiter re-reads its index every
  RECHECK_SECONDS (jittered), and all re-read once it is back;
- while it is up, a ticker reads the mesh revision (one row) every TICK_SECONDS;
  a revision that no message announced two ticks later (its publish failed)
  makes every waiter re-read;
- and every wait ends at its deadline with a read (the client polls again).
So 1,000 pending polls cost one query a second per process, not 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated
from rest_framework.request import Request

from agents.runtime.durations import parse_duration_ms
from meshconsole.db import release_connections
from registry.notify import REVISION_CHANNEL

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0  # a waiter's re-read while the subscription is down
TICK_SECONDS = 1.0  # the subscribed watcher's check for a change no message told
RECENT = 4096  # wake-ups remembered (wait_for's SINCE)

T = TypeVar("T")


def _changed_keys(data: Any) -> tuple[int, list[str] | None]:
    """(revision, index keys) of a revision message; keys None (wake everyone)
    when the message names none or cannot be read, revision 0 when it has none."""
    try:
        message = json.loads(data)
    except (TypeError, ValueError):
        return 0, None
    if not isinstance(message, dict):
        return 0, None
    revision = message.get("revision")
    revision = revision if isinstance(revision, int) and not isinstance(revision, bool) else 0
    keys = message.get("keys")
    if not isinstance(keys, list) or not keys:
        return revision, None
    return revision, [str(k) for k in keys]


def _released(read: Callable[[], T]) -> Callable[[], T]:
    """READ, then give the connection back: the caller is about to wait."""

    def run() -> T:
        try:
            return read()
        finally:
            release_connections()

    return run


# At most this many of one process's long-poll database steps run at once (per
# event loop): the rest wait their turn without a connection.
DB_STEPS = 8
_gates: dict[int, asyncio.Semaphore] = {}


async def db_step(work: Callable[[], T], *, request_thread: bool = True) -> T:
    """WORK (a long poll's sync step: authentication, its index keys, its
    answer), its database connection given back after; at most DB_STEPS of
    them at once.

    Without the bound, 200 polls arriving at once opened 200 connections at
    once, and on SQLite a closed connection's file stays open while any other
    connection of the process holds a lock: ~200 descriptors stayed open for as
    long as the process ran. REQUEST_THREAD=False runs it in the loop's shared
    executor instead of the request's thread (the wait's re-reads: the
    request's thread is let go while it waits).
    """
    loop_id = id(asyncio.get_running_loop())
    gate = _gates.get(loop_id)
    if gate is None:
        gate = _gates[loop_id] = asyncio.Semaphore(DB_STEPS)
    async with gate:
        return await sync_to_async(_released(work), thread_sensitive=request_thread)()


async def release_for_wait() -> None:
    """Before a blocking wait: give back the request's database connection and
    its thread.

    Django runs a request's sync calls (middleware, authentication) in a
    single-thread executor of the request's own, kept until the request ends:
    a pending poll would park a thread (and its connection) for its whole
    wait. Here the connection is closed (returned to the pool) in that thread,
    and the executor let go; a sync call after the wait gets a fresh one,
    which Django shuts down at the end of the request as usual.
    """
    await sync_to_async(release_connections)()
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is not None:
        executor = SyncToAsync.context_to_thread_executor.pop(context, None)
        if executor is not None:
            executor.shutdown(wait=False)  # its thread is idle: it exits at once


class _Waiter:
    __slots__ = ("event", "told")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.told = 0  # the newest revision a message named one of its keys at


class RevisionWatcher:
    def __init__(self) -> None:
        self._by_key: dict[str, set[_Waiter]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.subscribed = False
        self.announced = 0  # the newest revision a message told
        # Every wake-up, numbered, and the last RECENT of them: a caller that read its
        # index before it could wait (wait_for's CURRENT) learns what it missed meanwhile.
        self.generation = 0
        self._recent: deque[tuple[int, int, frozenset[str] | None]] = deque(maxlen=RECENT)
        self._seen = [0, 0]  # what the last two ticks read, older first

    def _ensure_listening(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(REVISION_CHANNEL)
                    async for message in pubsub.listen():
                        kind = message.get("type")
                        if kind == "message":
                            revision, keys = _changed_keys(message.get("data"))
                            self.announced = max(self.announced, revision)
                            self._wake(keys, revision)
                        elif kind == "subscribe":
                            # From here on no change goes untold; what was committed
                            # before (or while we were away) is read again by all.
                            self.subscribed = True
                            self._wake(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("revision subscription lost (%s); retrying", exc)
            finally:
                if self.subscribed:  # the waiters go back to re-reading on their own
                    self.subscribed = False
                    self._wake(None)
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(1)

    async def _tick(self) -> None:
        """Subscribed, the waiters do not re-read on their own: a change whose
        publish failed would then wait for their deadlines. Once a second, the
        mesh revision; a revision read then that no message announced two ticks
        later (a publish follows its commit by milliseconds) wakes every waiter."""
        from registry.models import MeshRevision

        while True:
            await asyncio.sleep(TICK_SECONDS)
            if not self.subscribed or not self._by_key:
                self._seen = [0, 0]
                continue
            try:
                current = await db_step(MeshRevision.current, request_thread=False)
            except Exception as exc:  # the database is away: the waiters' own reads say so
                log.warning("revision tick failed: %s", exc)
                continue
            oldest = self._seen[0]
            if oldest > self.announced:
                log.info("revision %s was not announced; waking every waiter", oldest)
                self.announced = oldest
                self._wake(None)
            self._seen = [self._seen[1], current]

    def _missed(self, since: int, keys: list[str]) -> int | None:
        """The newest revision of the wake-ups after generation SINCE that named one
        of KEYS (0: none did); None when one woke everyone or SINCE is no longer
        in the log (read again)."""
        if since == self.generation:
            return 0
        if not self._recent or self._recent[0][0] > since + 1:
            return None
        wanted = set(keys)
        newest = 0
        for generation, revision, named in reversed(self._recent):
            if generation <= since:
                break
            if named is None:
                return None
            if not wanted.isdisjoint(named):
                newest = max(newest, revision)
        return newest

    def _wake(self, keys: list[str] | None = None, revision: int = 0) -> None:
        self.generation += 1
        self._recent.append((self.generation, revision,
                             None if keys is None else frozenset(keys)))
        if keys is None:  # everyone reads again
            for waiters in self._by_key.values():
                for waiter in waiters:
                    waiter.event.set()
            return
        for key in keys:
            for waiter in self._by_key.get(key, ()):
                waiter.told = max(waiter.told, revision)
                waiter.event.set()

    async def wait_for(
        self, index: int, timeout: float, *, keys: list[str], read: Callable[[], int],
        current: int | None = None, since: int | None = None,
    ) -> int:
        """READ() (the index of what the caller reads, over KEYS) once it is >
        INDEX; or, without reading, the revision of a message that named one of
        KEYS past INDEX; or, at TIMEOUT, the index last read (the caller reads
        its answer next anyway). CURRENT: READ() as the caller just did it, begun
        at this watcher's generation SINCE (a change committed between that read
        and this wait is in the log of wake-ups: not lost). Only changes to KEYS
        wake this waiter."""
        if current is not None and current > index:
            return current
        self._ensure_listening()
        await release_for_wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = _Waiter()
        for key in keys:
            self._by_key.setdefault(key, set()).add(waiter)
        if current is not None:  # what woke others since the caller's read began
            missed = None if since is None else self._missed(since, keys)
            if missed is None:
                current = None  # read again, now that we are registered
            else:
                waiter.told = missed
        try:
            while True:
                waiter.event.clear()  # before the read: a change in between still wakes us
                if waiter.told > index:
                    return waiter.told  # (a key's index is the revision of its last change)
                if current is None:
                    # In the loop's shared pool, not the request's thread (release_for_wait).
                    current = await db_step(read, request_thread=False)
                    if current > index:
                        return current
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return current
                # Subscribed: a message (or the ticker) wakes us. Not: re-read, jittered,
                # so that thousands of waiters do not all re-read at once.
                recheck = remaining if self.subscribed else (
                    RECHECK_SECONDS * random.uniform(0.75, 1.25))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.event.wait(), min(remaining, recheck))
                if loop.time() >= deadline and not waiter.event.is_set():
                    return current
                current = None  # woken, or a re-read is due
        finally:
            for key in keys:
                waiters = self._by_key.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._by_key[key]


_watchers: dict[int, RevisionWatcher] = {}


def watcher() -> RevisionWatcher:
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _watchers:
        _watchers[loop_id] = RevisionWatcher()
    return _watchers[loop_id]


class BadQuery(APIException):
    status_code = 400
    default_code = "invalid"


def blocking_params(request: HttpRequest) -> tuple[int | None, float]:
    """(index, wait seconds) from ?index=N|revision=N and ?wait=30s."""
    raw_index = request.GET.get("index", request.GET.get("revision"))
    index: int | None = None
    if raw_index not in (None, ""):
        try:
            index = int(raw_index)  # type: ignore[arg-type]
        except ValueError:
            raise BadQuery({"index": "must be a non-negative integer"}) from None
        if index < 0:
            raise BadQuery({"index": "must be a non-negative integer"})
    wait = 30.0
    raw_wait = request.GET.get("wait")
    if raw_wait:
        try:
            wait = parse_duration_ms(raw_wait) / 1000
        except ValueError as exc:
            raise BadQuery({"wait": str(exc)}) from None
    return index, min(wait, float(settings.MESH_MAX_WAIT))


def error_response(exc: APIException) -> JsonResponse:
    detail: Any = exc.detail
    if not isinstance(detail, dict | list):
        detail = {"detail": str(detail)}
    response = JsonResponse(detail, status=exc.status_code, safe=False)
    if isinstance(exc, NotAuthenticated | AuthenticationFailed):
        response["WWW-Authenticate"] = "Token"
    return response


def credentials(request: HttpRequest, authenticators: list[Any]) -> tuple[Any, Any]:
    """(user, auth) of REQUEST; AuthenticationFailed. Sync: run it in a db_step
    (which gives the connection back after)."""
    drf_request = Request(request, authenticators=authenticators)
    user = drf_request.user  # runs the authenticators; raises AuthenticationFailed
    return user, drf_request.auth


async def authenticate(request: HttpRequest, authenticators: list[Any]) -> tuple[Any, Any]:
    """(user, auth) of a long-poll request; the database connection is released after."""
    return await db_step(lambda: credentials(request, authenticators))
