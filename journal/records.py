"""Writing what happened: events, audit entries, check-result changes.

A change agents must see is recorded through `registry.revision.mesh_change`,
which calls these with the revision it bumped; what changes nothing an agent
consumes (an agent's silence, a self-preservation warning) calls them directly."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User

from journal.models import AuditEntry, CheckResult, Event, EventKind, Severity


@dataclass(frozen=True)
class CommandLine:
    """Who ran a `meshconsole` management command: no account, the host's user (by the
    effective uid, not $USER, which anyone sets). Audited as `cli:<os user>`."""

    os_user: str
    is_authenticated: ClassVar[bool] = True  # a person's write: audited (audits_record)

    def get_username(self) -> str:
        return f"cli:{self.os_user}"


def command_line() -> CommandLine:
    uid = os.geteuid()
    try:
        return CommandLine(pwd.getpwuid(uid).pw_name)
    except KeyError:  # a uid without a passwd entry (a container's)
        return CommandLine(f"uid {uid}")


Actor = AbstractBaseUser | AnonymousUser | CommandLine | None


def actor_name(user: Actor) -> str:
    if user is None or not user.is_authenticated:
        return "system"
    return str(user.get_username())


@dataclass(frozen=True)
class EventNote:
    """An event to record with a mesh change (it gets the change's revision)."""

    kind: EventKind | str
    message: str
    service: str = ""
    instance: str = ""
    severity: Severity | str = Severity.INFO
    actor: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditNote:
    """An audit entry to record with a mesh change: a person's or a token's write."""

    user: Actor
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _event(note: EventNote, revision: int | None) -> Event:
    return Event(
        kind=note.kind,
        message=note.message[:1000],
        service=note.service,
        instance=note.instance,
        severity=note.severity,
        actor=note.actor[:200],
        data=note.data,
        revision=revision,
    )


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
    note = EventNote(kind, message, service, instance, severity, actor, data or {})
    event = _event(note, revision)
    event.save()
    return event


def events_record(notes: list[EventNote], *, revision: int | None) -> None:
    Event.objects.bulk_create([_event(n, revision) for n in notes])


def audit_record(
    *,
    user: Actor,
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


def audits_record(notes: list[AuditNote]) -> None:
    for n in notes:
        # Writes by nobody (an agent's registration, a worker) are events only.
        if n.user is None or not getattr(n.user, "is_authenticated", False):
            continue
        audit_record(
            user=n.user,
            action=n.action,
            object_type=n.object_type,
            object_id=n.object_id,
            before=n.before,
            after=n.after,
        )


def check_result_record(
    *, ts: datetime, service: str, instance: str, check_type: str, ok: bool, output: str
) -> None:
    CheckResult.objects.create(
        ts=ts,
        service=service,
        instance=instance,
        check_type=check_type,
        ok=ok,
        output=output[:500],
    )
