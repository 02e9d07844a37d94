"""Recording what happened: events and audit entries."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User

from monitoring.models import AuditEntry, Event, EventKind, Severity


def event_record(
    *,
    kind: EventKind | str,
    message: str,
    service: str = "",
    instance: str = "",
    severity: Severity | str = Severity.INFO,
    actor: str = "",
    data: dict[str, Any] | None = None,
    revision: int | None = None,
) -> Event:
    return Event.objects.create(
        kind=kind,
        message=message[:1000],
        service=service,
        instance=instance,
        severity=severity,
        actor=actor[:200],
        data=data or {},
        revision=revision,
    )


def actor_name(user: AbstractBaseUser | AnonymousUser | None) -> str:
    if user is None or not user.is_authenticated:
        return "system"
    return str(user.get_username())


def audit_record(
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    action: str,
    object_type: str,
    object_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        user=user if isinstance(user, User) else None,
        actor=actor_name(user),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=before,
        after=after,
    )
