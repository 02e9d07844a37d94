"""Login lockout on every password login (/login/, /admin/login/).

Each failed login is a LoginFailure row and a log line. An account is locked
after MESH_LOGIN_FAILURES failures within MESH_LOGIN_LOCKOUT_SECONDS (counted
since its last successful login), a client address after
MESH_LOGIN_ADDRESS_FAILURES (never reset by a success, or an attacker's own
account would reset it); the lock lifts as the failures age out of the window.
A locked attempt is refused before the password is checked, answered 429 with
a Retry-After, logged, and not counted (a lock does not extend itself).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone

from journal.records import audit_record
from meshconsole.clientaddr import client_address
from meshconsole.models import LoginFailure

log = logging.getLogger(__name__)
LOCKED_ATTR = "mesh_login_locked"


@dataclass(frozen=True)
class Lock:
    what: str  # "account" or "address"
    until: datetime


def _window() -> timedelta:
    return timedelta(seconds=settings.MESH_LOGIN_LOCKOUT_SECONDS)


def _lock_from(failures: Any, limit: int, what: str) -> Lock | None:
    """Locked while LIMIT failures are in the window: until the LIMIT-th most
    recent one leaves it."""
    if limit <= 0:
        return None
    times = list(failures.order_by("-ts").values_list("ts", flat=True)[:limit])
    if len(times) < limit:
        return None
    return Lock(what, times[-1] + _window())


def login_lock(*, username: str, address: str, now: datetime | None = None) -> Lock | None:
    """The lock that refuses a login of USERNAME from ADDRESS now, if any."""
    since = (now or timezone.now()) - _window()
    user_model = get_user_model()
    last_login = (
        user_model.objects.filter(**{user_model.USERNAME_FIELD: username})
        .values_list("last_login", flat=True)
        .first()
    )
    account_since = max(since, last_login) if last_login else since
    account = LoginFailure.objects.filter(username=username, ts__gt=account_since)
    by_address = LoginFailure.objects.filter(address=address, ts__gt=since)
    locks = [
        _lock_from(account, settings.MESH_LOGIN_FAILURES, "account"),
        _lock_from(by_address, settings.MESH_LOGIN_ADDRESS_FAILURES, "address"),
    ]
    found = [lock for lock in locks if lock is not None]
    return max(found, key=lambda lock: lock.until) if found else None


def _address(request: HttpRequest) -> str:
    # As stored (LoginFailure.address); only a peer that is no IP can be longer.
    return client_address(request)[:45]


class LockoutModelBackend(ModelBackend):
    """ModelBackend that refuses a locked account or address before the password."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is not None and username is not None:
            lock = login_lock(username=username, address=_address(request))
            if lock is not None:
                setattr(request, LOCKED_ATTR, lock)
                # Stops authenticate() here: no other backend, no password check.
                raise PermissionDenied("login locked")
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed, dispatch_uid="meshconsole.lockout.record")
def login_failure_record(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is None:
        return
    username = str(credentials.get("username", ""))[:150]
    address = _address(request)
    lock = getattr(request, LOCKED_ATTR, None)
    if lock is not None:
        log.warning(
            "login refused for %r from %s: %s locked until %s",
            username, address, lock.what, lock.until.isoformat(timespec="seconds"),
        )
        return
    LoginFailure.objects.create(username=username, address=address, path=request.path[:200])
    # On the audit page too (bounded: once locked, refused attempts are only logged).
    audit_record(
        user=None,
        action="login_failed",
        object_type="login",
        object_id=username,
        before=None,
        after={"address": address, "path": request.path[:200]},
    )
    log.warning("login failed for %r from %s on %s", username, address, request.path)
    now_locked = login_lock(username=username, address=address)
    if now_locked is not None:
        audit_record(
            user=None,
            action="login_locked",
            object_type=now_locked.what,
            object_id=username if now_locked.what == "account" else address,
            before=None,
            after={"username": username, "address": address, "until": now_locked.until.isoformat()},
        )
        log.warning("login locked: %s %s until %s", now_locked.what,
                    username if now_locked.what == "account" else address,
                    now_locked.until.isoformat(timespec="seconds"))


class LockoutMiddleware:
    """Answers a refused locked-out login 429 with a message, whatever the page.
    Sync and async capable, so the long-poll path stays async (no thread per
    pending poll: meshconsole.staticfiles says why)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        return self._locked(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if getattr(request, LOCKED_ATTR, None) is None:
            return response  # nothing to render: no thread needed
        return await sync_to_async(self._locked)(request, response)

    def _locked(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        lock: Lock | None = getattr(request, LOCKED_ATTR, None)
        if lock is None:
            return response
        seconds = max(1, math.ceil((lock.until - timezone.now()).total_seconds()))
        minutes = math.ceil(seconds / 60)
        message = (
            f"Too many failed logins for this {lock.what}. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        body = render_to_string("registration/locked_out.html", {"message": message}, request)
        locked = HttpResponse(body, status=429)
        locked["Retry-After"] = str(seconds)
        return locked
