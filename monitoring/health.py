"""Health from active checks: claim the checks that are due, record their results,
and turn runs of results into transitions with the service's rise/fall thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q

from monitoring.checks import CheckResult, CheckSpec
from registry.models import CheckType, Health, Instance
from registry.services import instance_transition

CHECKED_TYPES = (CheckType.HTTP, CheckType.TCP)
# Reasons under which an instance has no verdict yet: its first success is enough.
AWAITING_REASONS = frozenset({"awaiting first check", "agent back; awaiting check"})
ACTOR = "health-check"


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
        )[:limit]
    )
    claimed: list[CheckSpec] = []
    with transaction.atomic():
        for pk, next_at, address, port, check_type, path, interval_ms, timeout_ms in due:
            row = Instance.objects.filter(pk=pk)
            row = (
                row.filter(next_check_at__isnull=True)
                if next_at is None
                else row.filter(next_check_at=next_at)
            )
            lease = timedelta(milliseconds=max(interval_ms, timeout_ms))
            if row.update(next_check_at=now + lease):
                claimed.append(
                    CheckSpec(
                        instance_id=pk,
                        check_type=check_type,
                        address=address,
                        port=port,
                        path=path or "/",
                        timeout_ms=timeout_ms,
                    )
                )
    return claimed


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def health_verdict(
    *,
    health: str,
    reason: str,
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
    if reason in AWAITING_REASONS or consecutive_ok >= rise:
        checks = _plural(consecutive_ok, f"passing {label} check")
        return Verdict(Health.PASSING, f"{checks}: {output}")
    return None


def _agent_silent(*, agent_managed: bool, silent: bool | None, reason: str) -> bool:
    if agent_managed and silent:
        return True
    return reason.startswith("agent ") and reason not in AWAITING_REASONS


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
            "status_reason",
            "consecutive_ok",
            "consecutive_fail",
            "agent_managed",
            "node__agent__silent",
            "service__check_type",
            "service__check_rise",
            "service__check_fall",
        )
    }
    moved: list[str] = []
    for spec, result in results:
        state = states.get(spec.instance_id)
        if state is None or state["service__check_type"] != spec.check_type:
            continue  # deleted, or its check changed kind while this one ran
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
                continue
            verdict = health_verdict(
                health=state["health"],
                reason=state["status_reason"],
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
                    reason=state["status_reason"],
                ),
            )
            if verdict and instance_transition(
                instance_id=spec.instance_id,
                expected=state["health"],
                health=verdict.health,
                reason=verdict.reason,
                actor=ACTOR,
                now=now,
            ):
                moved.append(spec.instance_id)
    return moved
