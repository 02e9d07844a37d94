"""Panic mode: when too few of a service's enabled instances are healthy, agents
spread traffic over all of them rather than overload the few (Envoy's panic
threshold). The state is a flag on the service, and each change is an event."""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.models import EventKind, Severity
from monitoring.services import event_record
from registry.models import ROUTABLE_HEALTH, AdminState, Service

DEFAULT_PANIC_THRESHOLD = 50


@dataclass(frozen=True)
class PanicState:
    healthy: int
    enabled: int
    threshold: int

    @property
    def in_panic(self) -> bool:
        return self.enabled > 0 and self.healthy * 100 < self.threshold * self.enabled

    def describe(self, service: str) -> str:
        return (
            f"{service} is in panic mode ({self.healthy} of {self.enabled} healthy "
            f"< {self.threshold}%)"
        )


def panic_threshold(service: Service) -> int:
    from policies.models import TrafficPolicy

    value = (
        TrafficPolicy.objects.filter(service=service)
        .values_list("panic_threshold_percent", flat=True)
        .first()
    )
    return DEFAULT_PANIC_THRESHOLD if value is None else int(value)


def panic_state(service: Service) -> PanicState:
    # As agents count it (agents.snapshot): enabled instances with a weight.
    enabled = service.instances.filter(admin_state=AdminState.ENABLED, weight__gt=0)
    return PanicState(
        healthy=enabled.filter(health__in=ROUTABLE_HEALTH).count(),
        enabled=enabled.count(),
        threshold=panic_threshold(service),
    )


def service_panic_refresh(*, service: Service, actor: str, revision: int | None = None) -> bool:
    """Record a change of the service's panic state (call inside the transaction
    of the change that may cause it); returns whether it changed."""
    state = panic_flip(service)
    if state is None:
        return False
    panic_event_record(service=service, state=state, actor=actor, revision=revision)
    return True


def panic_flip(service: Service) -> PanicState | None:
    """Store the service's panic state; returns it if that changed it, else None."""
    state = panic_state(service)
    if not Service.objects.filter(pk=service.pk, in_panic=not state.in_panic).update(
        in_panic=state.in_panic
    ):
        return None
    return state


def panic_event_record(
    *, service: Service, state: PanicState, actor: str, revision: int | None
) -> None:
    if state.in_panic:
        message = f"{state.describe(service.name)}: traffic goes to every enabled instance"
    else:
        message = f"{service.name} left panic mode ({state.healthy} of {state.enabled} healthy)"
    event_record(
        kind=EventKind.HEALTH,
        severity=Severity.WARNING if state.in_panic else Severity.INFO,
        message=message,
        service=service.name,
        actor=actor,
        data={
            "panic": state.in_panic,
            "healthy": state.healthy,
            "enabled": state.enabled,
            "threshold": state.threshold,
        },
        revision=revision,
    )
