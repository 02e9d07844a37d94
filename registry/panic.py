"""Panic mode: when too few of a service's enabled instances are healthy, agents
spread traffic over all of them rather than overload the few (Envoy's panic
threshold). The state is a flag on the service, and each change is an event."""

from __future__ import annotations

from dataclasses import dataclass

from agents.runtime.policy import Policy
from journal.models import EventKind, Severity
from journal.records import event_record
from registry.models import Instance, Service

# The agents' default (the runtime's vocabulary), for a service with no saved policy.
DEFAULT_PANIC_THRESHOLD = Policy.panic_threshold_percent


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
    # Through the reverse relation of policies.TrafficPolicy (related_name
    # "policy"): the registry reads the threshold without importing policies.
    value = (
        Service.objects.filter(pk=service.pk)
        .values_list("policy__panic_threshold_percent", flat=True)
        .first()
    )
    return DEFAULT_PANIC_THRESHOLD if value is None else int(value)


def panic_state(service: Service) -> PanicState:
    # As agents count it (agents.snapshot): the enabled instances.
    instances = Instance.objects.filter(service=service)
    return PanicState(
        healthy=instances.routable().count(),
        enabled=instances.enabled().count(),
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
