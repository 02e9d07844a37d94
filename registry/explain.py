"""Why an instance is in its state, and whether traffic reaches it: a one-line
reason for people, and the timeline of what led there (check result changes,
health transitions, operator actions, agent ejections, panic of its service)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from journal.models import CheckResult, Event, EventKind
from registry.models import ROUTABLE_HEALTH, AdminState, CheckType, Health, Instance
from registry.panic import PanicState, panic_state

TIMELINE_LIMIT = 100
TIMELINE_KINDS = {
    EventKind.HEALTH: "health",
    EventKind.CONFIG: "admin",
    EventKind.REGISTRY: "registry",
    EventKind.EJECTION: "ejection",
}


class TimelineEntry(TypedDict):
    ts: str
    kind: str  # check | health | admin | registry | ejection | panic | ...
    message: str
    actor: str


class Explanation(TypedDict):
    reason: str
    receives_traffic: bool
    timeline: list[TimelineEntry]


def clock(ts: datetime) -> str:
    local = timezone.localtime(ts)
    if local.date() == timezone.localtime().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_detail(instance: Instance) -> str:
    """What the checks say, from the live counters; the stored reason otherwise."""
    check_type = instance.service.check_type
    if check_type in (CheckType.HTTP, CheckType.TCP):
        label = check_type.upper()
        output = instance.last_check_output
        if instance.health == Health.CRITICAL and instance.consecutive_fail:
            return f"{_plural(instance.consecutive_fail, f'failed {label} check')}: {output}"
        if instance.health in ROUTABLE_HEALTH and instance.consecutive_ok:
            return f"{_plural(instance.consecutive_ok, f'passing {label} check')}: {output}"
        if instance.health in ROUTABLE_HEALTH and instance.consecutive_fail:
            return (
                f"{_plural(instance.consecutive_fail, f'failed {label} check')} of "
                f"{instance.service.check_fall} before critical: {output}"
            )
    return instance.status_reason


def _ejection(instance: Instance, now: datetime) -> str:
    """A note when an agent reported this instance ejected until a future time."""
    # By service too: Event is indexed by service, not by instance.
    event = Event.objects.filter(
        service=instance.service.name, kind=EventKind.EJECTION, instance=instance.id
    ).first()
    if event is None:
        return ""
    until = parse_datetime(str(event.data.get("until", "")))
    if until is None or until <= now:
        return ""
    who = event.actor or "an agent"
    return f"; ejected by {who} until {clock(until)}"


def instance_reason(instance: Instance, panic: PanicState | None = None) -> tuple[str, bool]:
    """The one line, and whether traffic (new requests) still reaches INSTANCE."""
    since = clock(instance.status_since)
    by = f" by {instance.admin_actor}" if instance.admin_actor else ""
    if instance.admin_state == AdminState.MAINTENANCE:
        return f"maintenance since {since}{by}; receives no traffic", False
    if instance.admin_state == AdminState.DISABLED:
        return f"disabled since {since}{by}; receives no traffic and is not checked", False
    if instance.admin_state == AdminState.DRAINING:
        started = instance.drain_started_at or instance.status_since
        done = started + timedelta(milliseconds=instance.service.drain_timeout_ms)
        return (
            f"draining since {since}{by} (maintenance at {clock(done)}); "
            "in-flight requests finish, receives no new traffic",
            False,
        )
    head = f"{instance.health} since {since} ({_check_detail(instance)})"
    now = timezone.now()
    if instance.weight == 0:
        return f"{head}; receives no traffic: weight 0", False
    if instance.routable:
        return f"{head}; receives traffic{_ejection(instance, now)}", True
    panic = panic or panic_state(instance.service)
    if panic.in_panic:
        return f"{head}; still receives traffic: {panic.describe(instance.service.name)}", True
    return f"{head}; receives no traffic", False


def _entry(ts: datetime, kind: str, message: str, actor: str = "") -> TimelineEntry:
    return {"ts": ts.isoformat(), "kind": kind, "message": message, "actor": actor}


def instance_timeline(instance: Instance, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Oldest first, the last LIMIT entries."""
    entries: list[tuple[datetime, TimelineEntry]] = []
    for row in CheckResult.objects.filter(instance=instance.id)[:limit]:
        state = "passing" if row.ok else "failing"
        message = f"{row.check_type.upper()} check {state}: {row.output}"
        entries.append((row.ts, _entry(row.ts, "check", message)))
    events = Event.objects.filter(service=instance.service.name, instance=instance.id)
    for event in events[:limit]:
        kind = TIMELINE_KINDS.get(EventKind(event.kind), str(event.kind))
        entries.append((event.ts, _entry(event.ts, kind, event.message, event.actor)))
    panics = Event.objects.filter(
        service=instance.service.name,
        instance="",
        kind=EventKind.HEALTH,
        data__has_key="panic",
        ts__gte=instance.created_at,
    )
    for event in panics[:limit]:
        entries.append((event.ts, _entry(event.ts, "panic", event.message, event.actor)))
    entries.sort(key=lambda pair: pair[0])
    return [entry for _, entry in entries[-limit:]]


def instance_explain(instance: Instance) -> Explanation:
    reason, receives = instance_reason(instance)
    return {"reason": reason, "receives_traffic": receives, "timeline": instance_timeline(instance)}
