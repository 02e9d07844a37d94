"""Policy workflows: every write is one transaction with its version row, audit
entry, config event and mesh revision (docs/policies.md)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from journal.models import EventKind
from journal.records import Actor, AuditNote, EventNote, actor_name
from policies.document import policy_defaults, policy_document
from policies.models import PolicyVersion, RoutesVersion, ServiceRoutes, TrafficPolicy
from policies.routes import RoutesDocument, empty_document
from registry.models import Service
from registry.panic import service_panic_refresh
from registry.revision import mesh_change


class StaleVersion(Exception):
    """The writer named a version that is no longer the current one (HTTP 409)."""

    def __init__(self, *, current: int, expected: int, what: str = "policy") -> None:
        super().__init__(f"the {what} is at version {current}, not {expected}; re-read it")
        self.current = current
        self.expected = expected


def policy_for(service: Service) -> TrafficPolicy:
    """The saved policy of SERVICE, or the (unsaved) defaults."""
    policy = (
        TrafficPolicy.objects.select_related("service", "updated_by")
        .filter(service=service)
        .first()
    )
    if policy is None:
        policy = policy_defaults()
        policy.service = service
    return policy


@transaction.atomic
def policy_update(
    *,
    user: Actor,
    service: Service,
    data: dict[str, Any] | Callable[[TrafficPolicy], dict[str, Any]],
    expected_version: int | None = None,
    note: str = "",
) -> TrafficPolicy:
    """Apply DATA (validated model fields, e.g. from PolicyDocumentSerializer) to
    SERVICE's policy. DATA may be a function of the current policy (read under the
    row lock), for a PATCH that merges into it. EXPECTED_VERSION, when given, must
    be the current version, checked under the same lock (else StaleVersion): two
    writers that read one version cannot both write. A write that changes nothing
    creates no version."""
    policy = TrafficPolicy.objects.select_for_update().filter(service=service).first()
    current = policy or policy_for(service)
    if expected_version is not None and expected_version != current.version:
        raise StaleVersion(current=current.version, expected=expected_version)
    if callable(data):
        data = data(current)
    before = policy_document(policy or policy_defaults())
    target = policy or TrafficPolicy(service=service, retry_on=[])
    for field, value in data.items():
        setattr(target, field, value)
    after = policy_document(target)
    if policy is not None and after == before:
        return policy
    target.version = PolicyVersion.next_number(service.name, policy.version if policy else 0)
    target.updated_by = user if isinstance(user, User) else None
    target.full_clean()
    target.save()
    who = actor_name(user)
    PolicyVersion.objects.create(
        service_name=service.name, version=target.version, document=after, created_by=who
    )
    changed = sorted(k for k in after if after[k] != before.get(k))
    revision = mesh_change(
        services={service.name},
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=(
                    f"policy of {service.name} v{target.version}"
                    f"{f' ({note})' if note else ''}: {', '.join(changed) or 'saved'}"
                ),
                service=service.name,
                actor=who,
                data={"version": target.version, "before": before, "after": after},
            )
        ],
        audit=[AuditNote(user, "update", "policy", service.name, before, after)],
    )
    # The threshold is part of the policy: the stored panic flag follows it now,
    # not at the next health change.
    service_panic_refresh(service=service, actor=who, revision=revision)
    return target


@transaction.atomic
def policy_reset(*, user: Actor, service: Service, note: str = "") -> bool:
    """Delete SERVICE's saved policy: it gets the defaults again, as if never
    saved (the removal of a TrafficPolicy document by a mesh apply with prune).
    The version numbering continues from PolicyVersion. Returns whether a row went."""
    policy = TrafficPolicy.objects.select_for_update().filter(service=service).first()
    if policy is None:
        return False
    before = policy_document(policy)
    policy.delete()
    who = actor_name(user)
    revision = mesh_change(
        services={service.name},
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=(
                    f"policy of {service.name} reset to the defaults"
                    f"{f' ({note})' if note else ''}"
                ),
                service=service.name,
                actor=who,
                data={"before": before, "after": None},
            )
        ],
        audit=[AuditNote(user, "delete", "policy", service.name, before, None)],
    )
    service_panic_refresh(service=service, actor=who, revision=revision)
    return True


class SubsetInUse(Exception):
    """A subset that something above policies (a gateway route) sends to cannot be
    removed or renamed from under it (HTTP 409 with `<kind>_referrers`)."""

    def __init__(self, service: str, lost: dict[str, list[str]], kind: str) -> None:
        self.referrers = sorted({r for names in lost.values() for r in names})
        self.kind = kind  # gateway
        uses = "; ".join(f"{subset}: {', '.join(names)}" for subset, names in sorted(lost.items()))
        super().__init__(
            f"{kind} routes send traffic to subsets of {service} this change removes ({uses}): "
            "change or remove them first"
        )
        self.subsets = sorted(lost)


# Apps above policies that name a service's subsets (the gateway's routes) register
# a function SERVICE -> {subset: [who names it]} here at startup (gateway.apps), as
# registry.services.referrer_hooks does for whole services; policies imports none.
subset_referrer_hooks: dict[str, Callable[[str], dict[str, list[str]]]] = {}


def subsets_in_use(service: str, kept: Collection[str]) -> SubsetInUse | None:
    """What refuses a routes document of SERVICE that keeps only the subsets KEPT."""
    for kind, referrers_of in subset_referrer_hooks.items():
        lost = {s: names for s, names in referrers_of(service).items() if s not in kept}
        if lost:
            return SubsetInUse(service, lost, kind)
    return None


def subsets_of(service: str, *, lock: bool = False) -> set[str]:
    """The subset names SERVICE's saved routes document defines (under its row lock
    with LOCK, so that routes_update cannot drop one until the caller commits)."""
    rows = ServiceRoutes.objects.filter(service__name=service)
    if lock:
        rows = rows.select_for_update()
    document = rows.values_list("document", flat=True).first()
    return set((document or {}).get("subsets", {}))


def routes_of(service: Service) -> ServiceRoutes:
    """The saved routes of SERVICE, or an unsaved empty document at version 0."""
    row = ServiceRoutes.objects.select_related("service").filter(service=service).first()
    return row or ServiceRoutes(service=service, version=0, document=empty_document())


def _routes_summary(before: dict[str, Any], after: dict[str, Any]) -> str:
    return (
        f"{len(after.get('subsets', {}))} subsets, {len(after.get('routes', []))} routes"
        f" (was {len(before.get('subsets', {}))}, {len(before.get('routes', []))})"
    )


@transaction.atomic
def routes_update(
    *,
    user: Actor,
    service: Service,
    document: RoutesDocument,
    expected_version: int | None = None,
    note: str = "",
    check_referrers: bool = True,
) -> ServiceRoutes:
    """Store DOCUMENT (validated by policies.routes.routes_validate) as SERVICE's
    routes. EXPECTED_VERSION, when given, must be the current version, checked
    under the row lock (else StaleVersion, nothing written). A document that drops
    a subset a gateway route sends to is refused (SubsetInUse), unless the caller
    checks that itself (a mesh apply, once every document is written). A write that
    changes nothing creates no version; any other is a version row, an audit
    entry, a config event and one mesh revision."""
    row = ServiceRoutes.objects.select_for_update().filter(service=service).first()
    current = row.version if row else 0
    if expected_version is not None and expected_version != current:
        raise StaleVersion(current=current, expected=expected_version, what="routes document")
    if check_referrers and (in_use := subsets_in_use(service.name, document["subsets"])):
        raise in_use
    before: dict[str, Any] = dict(row.document) if row else dict(empty_document())
    after: dict[str, Any] = dict(document)
    if row is not None and after == before:
        return row
    target = row or ServiceRoutes(service=service)
    target.version = RoutesVersion.next_number(service.name, current)
    target.document = after
    target.updated_by = user if isinstance(user, User) else None
    target.save()
    who = actor_name(user)
    RoutesVersion.objects.create(
        service_name=service.name, version=target.version, document=after, created_by=who
    )
    mesh_change(
        services={service.name},
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=(
                    f"routes of {service.name} v{target.version}"
                    f"{f' ({note})' if note else ''}: {_routes_summary(before, after)}"
                ),
                service=service.name,
                actor=who,
                data={"version": target.version, "before": before, "after": after},
            )
        ],
        audit=[AuditNote(user, "update", "routes", service.name, before, after)],
    )
    return target


@transaction.atomic
def routes_reset(
    *, user: Actor, service: Service, note: str = "", check_referrers: bool = True
) -> bool:
    """Delete SERVICE's routes (a mesh apply's prune of its Routes document): the
    service gets no subsets and no routes (SubsetInUse while a gateway route sends
    to one, unless the caller checks that itself). Returns whether a row went."""
    row = ServiceRoutes.objects.select_for_update().filter(service=service).first()
    if row is None:
        return False
    if check_referrers and (in_use := subsets_in_use(service.name, ())):
        raise in_use
    before = dict(row.document)
    row.delete()
    who = actor_name(user)
    mesh_change(
        services={service.name},
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=f"routes of {service.name} removed{f' ({note})' if note else ''}",
                service=service.name,
                actor=who,
                data={"before": before, "after": None},
            )
        ],
        audit=[AuditNote(user, "delete", "routes", service.name, before, None)],
    )
    return True
