"""Health from active checks: claim the checks that are due, record their results,
and turn runs of results into transitions with the service's rise/fall thresholds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count as models_count
from django.db.models import F, Q

from journal.models import CheckResult as CheckResultRow
from journal.records import check_result_record
from monitoring.checks import CheckResult, CheckSpec
from registry import notify
from registry.models import (
    AdminState,
    CheckType,
    Health,
    HealthCause,
    Instance,
    Service,
    parse_status_range,
)
from registry.services import instance_transition, service_panic_settle

CHECKED_TYPES = (CheckType.HTTP, CheckType.TCP)
ACTOR = "health-check"
# Checks of one service spread over up to 10% of the interval instead of aligning.
# Only ever earlier: a check never runs later than its interval, so detection
# stays within interval x fall (plus the check timeout).
JITTER = 0.1
# Check-result rows kept per instance (older ones go with prune_history).
RESULTS_KEPT = 50


def jitter_fraction(instance_id: str) -> float:
    """A fixed offset in [-JITTER, 0] per instance: deterministic, so an
    instance keeps its rhythm, and spread, so a service's instances do not."""
    digest = hashlib.blake2b(instance_id.encode(), digest_size=4).digest()
    return -(int.from_bytes(digest, "big") / 0xFFFFFFFF) * JITTER


def check_lease(instance_id: str, *, interval_ms: int, timeout_ms: int) -> timedelta:
    """When a claimed check is due again: the jittered interval, and never before
    the check has timed out (so a dead worker's claims come back on their own)."""
    interval = interval_ms * (1 + jitter_fraction(instance_id))
    return timedelta(milliseconds=max(interval, timeout_ms))


@dataclass(frozen=True)
class Verdict:
    health: str
    reason: str


def checks_claim_due(*, now: datetime, limit: int) -> list[CheckSpec]:
    """Claim up to LIMIT due checks for this worker.

    Each claim is a conditional UPDATE on the next_check_at value read, so of two
    workers that read the same row only one moves it forward and runs the check.
    The new next_check_at is also a lease: a worker that dies mid-check costs one
    interval, and a check slower than its interval is not started twice at once.
    """
    due = (
        Instance.objects.filter(service__check_type__in=CHECKED_TYPES)
        .exclude(admin_state=AdminState.DISABLED)
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .order_by(F("next_check_at").asc(nulls_first=True), "pk")
        .values_list(
            "pk",
            "next_check_at",
            "address",
            "port",
            "service__check_type",
            "service__check_path",
            "service__check_interval_ms",
            "service__check_timeout_ms",
            "service__check_expect_status",
            "service__check_body",
            "service__check_headers",
        )[:limit]
    )
    claimed: list[CheckSpec] = []
    with transaction.atomic():
        for row_values in due:
            pk, next_at, interval_ms, timeout_ms = (
                row_values[0],
                row_values[1],
                row_values[6],
                row_values[7],
            )
            row = Instance.objects.filter(pk=pk)
            row = (
                row.filter(next_check_at__isnull=True)
                if next_at is None
                else row.filter(next_check_at=next_at)
            )
            lease = check_lease(pk, interval_ms=interval_ms, timeout_ms=timeout_ms)
            if row.update(next_check_at=now + lease):
                claimed.append(_spec(row_values))
    return claimed


def _spec(row: Sequence[Any]) -> CheckSpec:
    pk, _, address, port, check_type, path, _, timeout_ms, expect, body, headers = row
    return CheckSpec(
        instance_id=pk,
        check_type=check_type,
        address=address,
        port=port,
        path=path or "/",
        timeout_ms=timeout_ms,
        expect_status=parse_status_range(expect or "200-399"),
        body=body or "",
        headers=tuple((str(k), str(v)) for k, v in (headers or {}).items()),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def health_verdict(
    *,
    health: str,
    awaiting: bool,
    ok: bool,
    consecutive_ok: int,
    consecutive_fail: int,
    rise: int,
    fall: int,
    label: str,
    output: str,
    agent_silent: bool,
) -> Verdict | None:
    """The transition these counters call for, or None (counters already counted
    this result)."""
    if not ok:
        if health != Health.CRITICAL and consecutive_fail >= fall:
            checks = _plural(consecutive_fail, f"failed {label} check")
            return Verdict(Health.CRITICAL, f"{checks}: {output}")
        return None
    if health != Health.CRITICAL or agent_silent:
        # A silent agent's instances wait for the agent, not for our checks.
        return None
    # No verdict yet (first check, or its agent came back): one success is enough.
    if awaiting or consecutive_ok >= rise:
        checks = _plural(consecutive_ok, f"passing {label} check")
        return Verdict(Health.PASSING, f"{checks}: {output}")
    return None


def _agent_silent(*, agent_managed: bool, silent: bool | None, cause: str) -> bool:
    if agent_managed and silent:
        return True
    return cause == HealthCause.AGENT


def check_results_record(
    *, results: Sequence[tuple[CheckSpec, CheckResult]], now: datetime
) -> list[str]:
    """Store each result on its instance and apply rise/fall; returns the ids of
    instances whose health changed."""
    states = {
        row["pk"]: row
        for row in Instance.objects.filter(pk__in=[s.instance_id for s, _ in results]).values(
            "pk",
            "health",
            "health_cause",
            "consecutive_ok",
            "consecutive_fail",
            "agent_managed",
            "node__agent__silent",
            "service__check_type",
            "service__check_rise",
            "service__check_fall",
            "service__name",
            "service_id",
        )
    }
    moved: list[str] = []
    # Every instance of a zone may flip in one call: tell waiters and consoles
    # once, and count each service's panic state once, not per transition (it
    # counts the whole service). The service's last result counts it in its own
    # transaction, as a single result always did; if that one changes nothing,
    # the count comes after the loop.
    last_of = {
        states[spec.instance_id]["service_id"]: i
        for i, (spec, _) in enumerate(results)
        if spec.instance_id in states
    }
    unsettled: set[int] = set()
    with notify.batch():
        for i, (spec, result) in enumerate(results):
            state = states.get(spec.instance_id)
            if state is None or state["service__check_type"] != spec.check_type:
                continue  # deleted, or its check changed kind while this one ran
            last = last_of[state["service_id"]] == i
            if _result_apply(spec, result, state, now, panic_refresh=last):
                moved.append(spec.instance_id)
                if last:
                    unsettled.discard(state["service_id"])
                else:
                    unsettled.add(state["service_id"])
        for service in Service.objects.filter(pk__in=unsettled).order_by("pk"):
            service_panic_settle(service=service, actor=ACTOR)
    return moved


def _result_apply(
    spec: CheckSpec,
    result: CheckResult,
    state: Mapping[str, Any],
    now: datetime,
    *,
    panic_refresh: bool,
) -> bool:
    """Count one result on its instance; returns whether its health changed."""
    with transaction.atomic():
        counters = (
            {"consecutive_ok": F("consecutive_ok") + 1, "consecutive_fail": 0}
            if result.ok
            else {"consecutive_ok": 0, "consecutive_fail": F("consecutive_fail") + 1}
        )
        updated = Instance.objects.filter(pk=spec.instance_id).update(
            last_check_at=now, last_check_output=result.output[:500], **counters
        )
        if not updated:
            return False
        if result.ok != (state["consecutive_ok"] > 0) or not (
            state["consecutive_ok"] or state["consecutive_fail"]
        ):
            _result_row(state["service__name"], spec, result, now)
        verdict = health_verdict(
            health=state["health"],
            awaiting=state["health_cause"] == HealthCause.AWAITING,
            ok=result.ok,
            consecutive_ok=state["consecutive_ok"] + 1 if result.ok else 0,
            consecutive_fail=0 if result.ok else state["consecutive_fail"] + 1,
            rise=state["service__check_rise"],
            fall=state["service__check_fall"],
            label=spec.check_type.upper(),
            output=result.output,
            agent_silent=_agent_silent(
                agent_managed=state["agent_managed"],
                silent=state["node__agent__silent"],
                cause=state["health_cause"],
            ),
        )
        return verdict is not None and instance_transition(
            instance_id=spec.instance_id,
            expected=state["health"],
            health=verdict.health,
            cause=HealthCause.CHECK,
            reason=verdict.reason,
            actor=ACTOR,
            now=now,
            panic_refresh=panic_refresh,
        )


def _result_row(service: str, spec: CheckSpec, result: CheckResult, now: datetime) -> None:
    check_result_record(
        ts=now,
        service=service,
        instance=spec.instance_id,
        check_type=spec.check_type,
        ok=result.ok,
        output=result.output,
    )


def check_results_prune(*, before: datetime) -> int:
    """Delete result rows older than BEFORE, and all but the last RESULTS_KEPT of
    any instance (a flapping check must not grow the table without bound)."""
    deleted, _ = CheckResultRow.objects.filter(ts__lt=before).delete()
    crowded = (
        CheckResultRow.objects.values_list("instance", flat=True)
        .order_by()
        .annotate(n=models_count("id"))
        .filter(n__gt=RESULTS_KEPT)
    )
    for instance in list(crowded):
        keep = CheckResultRow.objects.filter(instance=instance).values_list("pk", flat=True)[
            :RESULTS_KEPT
        ]
        more, _ = (
            CheckResultRow.objects.filter(instance=instance).exclude(pk__in=list(keep)).delete()
        )
        deleted += more
    return deleted
