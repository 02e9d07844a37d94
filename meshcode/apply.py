"""Apply, diff, export and rollback of the mesh as documents (docs/mesh-as-code.md).

An apply is one transaction under the apply lock and one mesh revision
(`registry.revision.one_revision`): each document is validated against the
mesh as written so far (a policy may fail over to a service created three
documents earlier), written through the kinds' service functions, and any
error anywhere rolls everything back. A dry run (and `diff`) is the same
apply, rolled back at the end: the what-if runs the real rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from rest_framework import serializers

from gateway.models import GatewayRoute
from journal.models import EventKind
from journal.records import Actor, AuditNote, EventNote, actor_name, audits_record, events_record
from meshcode.kinds import KINDS, Document, Kind
from meshcode.models import ApplyLock, MeshVersion
from meshcode.plan import (
    ApplyResult,
    DocumentError,
    InvalidDocuments,
    Plan,
    UnknownVersion,
    field_diff,
    field_errors,
)
from monitoring.whatif import State, compare, state_of
from policies.models import ServiceRoutes, TrafficPolicy
from policies.routes import split_services
from policies.services import subsets_in_use, subsets_of
from registry import notify
from registry.models import ManagedResource, MeshRevision, Service
from registry.revision import one_revision

MAX_DOCUMENTS = 5000
Key = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Entry:
    index: int
    kind: Kind
    name: str
    body: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.kind.name, self.name)

    @property
    def label(self) -> str:
        return f"{self.kind.name}/{self.name}"


def _label(document: Any) -> str:
    if isinstance(document, dict):
        return f"{document.get('kind', '?')}/{document.get('name', '?')}"
    return ""


def entries_of(documents: Sequence[Any]) -> list[Entry]:
    """The envelope of every document (a mapping with a known kind, a name, no
    duplicate); InvalidDocuments naming each bad one."""
    errors: list[DocumentError] = []
    entries: list[Entry] = []
    seen: dict[Key, int] = {}
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidDocuments([DocumentError(None, "", "", f"at most {MAX_DOCUMENTS} documents")])
    for index, document in enumerate(documents):

        def error(field: str, message: str, index: int = index, document: Any = document) -> None:
            errors.append(DocumentError(index, _label(document), field, message))

        if not isinstance(document, dict):
            error("", "a document is a mapping with kind and name")
            continue
        kind_name = document.get("kind")
        kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
        name = document.get("name")
        if kind is None:
            known = ", ".join(KINDS)
            error("kind", f"unknown kind {kind_name!r} (known: {known})")
            continue
        if not isinstance(name, str) or not kind.accepts(name):
            what = " (or \"*\")" if kind.accepts("*") else ""
            error("name", f"a name is a DNS label{what}: 1-63 lowercase letters, digits, hyphens")
            continue
        key = (kind.name, name)
        if key in seen:
            error("name", f"{kind.name}/{name} is also document {seen[key]}")
            continue
        seen[key] = index
        body = {k: v for k, v in document.items() if k != "kind"}
        entries.append(Entry(index, kind, name, body))
    if errors:
        raise InvalidDocuments(errors)
    return entries


def apply_lock() -> None:
    """Lock the one ApplyLock row until the transaction ends (made by the
    migration; made here too if a test flushed it, a concurrent maker losing
    on the primary key)."""
    if ApplyLock.objects.select_for_update().filter(pk=1).exists():
        return
    try:
        with transaction.atomic():
            ApplyLock.objects.create(pk=1)
    except IntegrityError:
        pass
    ApplyLock.objects.select_for_update().get(pk=1)


class _Run:
    """One apply's state: the plan being built, the errors, what is now managed."""

    def __init__(self, *, user: Actor, note: str) -> None:
        self.user = user
        self.note = note
        self.plan = Plan()
        self.errors: list[DocumentError] = []
        self.applied: dict[Key, Document] = {}
        self.failed: set[Key] = set()
        self.index: dict[Key, int] = {}
        self.current = {name: kind.documents() for name, kind in KINDS.items()}
        self.managed = {(m.kind, m.name): m for m in ManagedResource.objects.all()}

    def fail(self, entry: Entry, exc: Exception) -> None:
        self.failed.add(entry.key)
        if isinstance(exc, serializers.ValidationError):
            pairs = field_errors(exc.detail)
        elif isinstance(exc, DjangoValidationError):
            pairs = field_errors(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        else:  # IntegrityError: its text is the database's, not for users
            pairs = [("", "conflicts with the current state of the mesh")]
        for path, message in pairs or [("", "invalid")]:
            self.errors.append(DocumentError(entry.index, entry.label, path, message))

    def put(self, entry: Entry) -> None:
        dependency = entry.kind.depends_on(entry.name)
        if dependency in self.failed:
            self.failed.add(entry.key)  # its dependency's error says why
            return
        try:
            document, data = entry.kind.validate(entry.name, entry.body)
            before = self.current[entry.kind.name].get(entry.name)
            self.applied[entry.key] = document
            self.index[entry.key] = entry.index
            if before == document:
                self.plan.unchanged += 1
                return
            entry.kind.write(user=self.user, name=entry.name, data=data, note=self.note)
        except (serializers.ValidationError, DjangoValidationError, IntegrityError) as exc:
            self.fail(entry, exc)
            return
        item: dict[str, Any] = {"kind": entry.kind.name, "name": entry.name}
        if before is None:
            # Managed yet absent: deleted outside YAML since its last apply.
            drift = entry.key in self.managed
            self.plan.added.append({**item, "document": document, "drift": drift})
        else:
            managed = self.managed.get(entry.key)
            drift = managed is not None and managed.document != before
            fields = field_diff(before, document)
            self.plan.changed.append({**item, "fields": fields, "drift": drift})

    def prune(self) -> None:
        """Remove the managed resources no document names (reverse kind order:
        a policy before its service; one removed with its service is not removed twice)."""
        doomed = {
            key
            for key in self.managed
            if key not in self.applied and key[1] in self.current.get(key[0], {})
        }
        for key in self.applied:
            needs = KINDS[key[0]].depends_on(key[1])
            if needs in doomed:
                self.errors.append(
                    DocumentError(
                        self.index[key],
                        f"{key[0]}/{key[1]}",
                        "name",
                        f"needs {needs[0]}/{needs[1]}, which prune deletes (no document names it)",
                    )
                )
        if self.errors:
            return
        for kind in reversed(list(KINDS.values())):
            for key in sorted(k for k in doomed if k[0] == kind.name):
                if kind.depends_on(key[1]) not in doomed:
                    kind.remove(user=self.user, name=key[1], note=self.note)
                self.plan.deleted.append({"kind": key[0], "name": key[1]})

    def check_dangling(self, entries: list[Entry]) -> None:
        """A policy left failing over to a pruned service, or routes left
        splitting to one, is an error."""
        gone = {name for kind, name in self.plan_deleted_keys() if kind == "Service"}
        if not gone:
            return
        index = {e.key: e.index for e in entries}
        for policy in TrafficPolicy.objects.select_related("service"):
            lost = sorted(gone & set(policy.failover_targets or []))
            if lost:
                key = ("TrafficPolicy", policy.service.name)
                self.errors.append(
                    DocumentError(
                        index.get(key),
                        f"{key[0]}/{key[1]}",
                        "failover.targets",
                        f"fails over to {', '.join(lost)}, which prune deletes",
                    )
                )
        for route in GatewayRoute.objects.filter(service__in=gone):
            key = ("GatewayRoute", route.name)
            self.errors.append(
                DocumentError(
                    index.get(key),
                    f"{key[0]}/{key[1]}",
                    "service",
                    f"sends traffic to {route.service}, which prune deletes",
                )
            )
        for routes in ServiceRoutes.objects.select_related("service"):
            lost = sorted(gone & split_services(routes.document))
            if lost:
                key = ("Routes", routes.service.name)
                self.errors.append(
                    DocumentError(
                        index.get(key),
                        f"{key[0]}/{key[1]}",
                        "routes",
                        f"splits traffic to {', '.join(lost)}, which prune deletes",
                    )
                )

    def check_subsets(self) -> None:
        """Routes documents written or pruned by this apply must keep every subset a
        gateway route still sends to once all documents are in (a route moved off a
        subset in the same apply is fine): policies.services.subsets_in_use."""
        touched = {name for kind, name in self.applied if kind == "Routes"}
        touched |= {name for kind, name in self.plan_deleted_keys() if kind == "Routes"}
        for name in sorted(touched):
            if in_use := subsets_in_use(name, subsets_of(name)):
                key = ("Routes", name)
                self.errors.append(
                    DocumentError(self.index.get(key), f"{key[0]}/{key[1]}", "subsets", str(in_use))
                )

    def plan_deleted_keys(self) -> list[Key]:
        return [(d["kind"], d["name"]) for d in self.plan.deleted]


def _next_number() -> int:
    return int(MeshVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1


def _managed_after(run: _Run, number: int) -> list[Document]:
    """Record what is managed now and return it (the state a rollback restores)."""
    for key, document in run.applied.items():
        ManagedResource.objects.update_or_create(
            kind=key[0], name=key[1], defaults={"version": number, "document": document}
        )
    for key in run.plan_deleted_keys():
        ManagedResource.objects.filter(kind=key[0], name=key[1]).delete()
    for kind_name, kind in KINDS.items():
        present = list(kind.documents())
        ManagedResource.objects.filter(kind=kind_name).exclude(name__in=present).delete()
    return [m.document for m in ManagedResource.objects.order_by("id")]


@transaction.atomic
def mesh_apply(
    *,
    user: Actor,
    documents: Sequence[Any],
    prune: bool = False,
    dry_run: bool = False,
    message: str = "",
    rollback_of: int | None = None,
) -> ApplyResult:
    """Make the mesh what DOCUMENTS say, all or nothing (InvalidDocuments)."""
    entries = entries_of(documents)
    apply_lock()
    number = _next_number()
    run = _Run(user=user, note=f"mesh version {number}")
    # A dry run also says what the change would do to traffic (the what-if).
    watched = _what_if_states(entries) if dry_run else {}
    # One revision, and one fan-out of it after the commit (not one per document).
    with notify.batch(), one_revision():
        for kind in KINDS.values():
            for entry in entries:
                if entry.kind is kind:
                    run.put(entry)
        if prune and not run.errors:
            run.prune()
            run.check_dangling(entries)
        run.check_subsets()
        if run.errors:
            errors = sorted(run.errors, key=lambda e: (e.index is None, e.index or 0))
            raise InvalidDocuments(errors)
        result = ApplyResult(plan=run.plan, dry_run=dry_run)
        if dry_run:
            result.what_if = _what_if(watched)
            transaction.set_rollback(True)
            return result
        owned = {key: m.document for key, m in run.managed.items()}
        if (
            run.plan.empty
            and rollback_of is None
            and all(owned.get(k) == d for k, d in run.applied.items())
        ):
            return result  # nothing changed, not even ownership: no version
        result.revision = None if run.plan.empty else MeshRevision.current()
        result.version = number
        _version_record(
            run,
            number=number,
            result=result,
            prune=prune,
            message=message,
            rollback_of=rollback_of,
            documents=list(run.applied.values()),
        )
    return result


def _what_if_states(entries: list[Entry]) -> dict[str, State]:
    """Routing state, before the apply, of the existing services it touches."""
    names = {e.key[1] for e in entries if e.key[0] in ("Service", "TrafficPolicy")}
    return {s.name: state_of(s) for s in Service.objects.filter(name__in=names)}


def _what_if(before: dict[str, State]) -> dict[str, Any]:
    """Per service whose routing the applied (not yet committed) change moves:
    the what-if between BEFORE and now."""
    out: dict[str, Any] = {}
    for service in Service.objects.filter(name__in=before):
        now = state_of(service)
        if now == before[service.name]:
            continue
        out[service.name] = compare(service, before[service.name], now)
    return out


def _version_record(
    run: _Run,
    *,
    number: int,
    result: ApplyResult,
    prune: bool,
    message: str,
    rollback_of: int | None,
    documents: list[Document],
) -> None:
    managed = _managed_after(run, number)
    who = actor_name(run.user)
    summary = run.plan.summary()
    MeshVersion.objects.create(
        number=number,
        author=who,
        message=message[:1000],
        documents=documents,
        prune=prune,
        revision=result.revision,
        rollback_of=rollback_of,
        summary=summary,
        managed=managed,
    )
    action = "rollback" if rollback_of is not None else "apply"
    counts = ", ".join(f"{n} {k}" for k, n in summary.items() if k != "unchanged")
    what = f"rollback to version {rollback_of}" if rollback_of is not None else "applied"
    events_record(
        [
            EventNote(
                kind=EventKind.CONFIG,
                message=f"mesh version {number} ({what}) by {who}: {counts}"
                + (f" — {message}" if message else ""),
                actor=who,
                data={"mesh_version": number, "rollback_of": rollback_of, **summary},
            )
        ],
        revision=result.revision,
    )
    audits_record(
        [
            AuditNote(
                run.user,
                action,
                "mesh",
                str(number),
                None,
                {"message": message, "prune": prune, "rollback_of": rollback_of, **summary},
            )
        ]
    )


def mesh_rollback(*, user: Actor, number: int, dry_run: bool = False) -> ApplyResult:
    """Restore what version NUMBER left managed, exactly (a new version; what
    it did not manage is pruned; unmanaged resources are left alone)."""
    version = MeshVersion.objects.filter(number=number).first()
    if version is None:
        raise UnknownVersion(f"no mesh version {number}")
    return mesh_apply(
        user=user,
        documents=list(version.managed),
        prune=True,
        dry_run=dry_run,
        message=f"rollback to version {number}",
        rollback_of=number,
    )


def mesh_export() -> list[Document]:
    """The current mesh as documents, kind by kind in apply order."""
    return [doc for kind in KINDS.values() for doc in kind.documents().values()]
