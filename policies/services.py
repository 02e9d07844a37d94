"""Policy workflows: every write is one transaction with its version row, audit
entry, config event and mesh revision (docs/policies.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import Max

from monitoring.models import EventKind
from monitoring.notify import mesh_changed
from monitoring.services import actor_name, audit_record, event_record
from policies.document import policy_defaults, policy_document
from policies.models import PolicyVersion, TrafficPolicy
from registry.models import MeshRevision, Service

Actor = AbstractBaseUser | AnonymousUser | None


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


def _next_version(service: Service, policy: TrafficPolicy | None) -> int:
    # Versions are keyed by name and outlive a deleted service: a re-created
    # service continues the numbering rather than colliding with old rows.
    last = PolicyVersion.objects.filter(service_name=service.name).aggregate(v=Max("version"))["v"]
    return max(policy.version if policy else 0, last or 0) + 1


@transaction.atomic
def policy_update(
    *, user: Actor, service: Service, data: dict[str, Any], note: str = ""
) -> TrafficPolicy:
    """Apply DATA (validated model fields, e.g. from PolicyDocumentSerializer) to
    SERVICE's policy. A write that changes nothing creates no version."""
    policy = TrafficPolicy.objects.select_for_update().filter(service=service).first()
    before = policy_document(policy or policy_defaults())
    target = policy or TrafficPolicy(service=service, retry_on=[])
    for field, value in data.items():
        setattr(target, field, value)
    after = policy_document(target)
    if policy is not None and after == before:
        return policy
    target.version = _next_version(service, policy)
    target.updated_by = user if isinstance(user, User) else None
    target.full_clean()
    target.save()
    who = actor_name(user)
    PolicyVersion.objects.create(
        service_name=service.name, version=target.version, document=after, created_by=who
    )
    revision = MeshRevision.bump()
    audit_record(
        user=user,
        action="update",
        object_type="policy",
        object_id=service.name,
        before=before,
        after=after,
    )
    changed = sorted(k for k in after if after[k] != before.get(k))
    event_record(
        kind=EventKind.CONFIG,
        message=(
            f"policy of {service.name} v{target.version}"
            f"{f' ({note})' if note else ''}: {', '.join(changed) or 'saved'}"
        ),
        service=service.name,
        actor=who,
        data={"version": target.version, "before": before, "after": after},
        revision=revision,
    )
    mesh_changed(revision=revision, services={service.name})
    return target
