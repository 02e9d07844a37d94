"""Gateway workflows: every write is one transaction that writes its rows, an
audit entry (secrets redacted) and a mesh change whose index key wakes exactly
the agents that show it: `gateway:<name>` for one gateway's route table,
`gateway-auth` (read by every gateway agent) for consumers and JWT providers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from gateway.documents import consumer_document, provider_document, route_document, route_normal
from gateway.models import (
    AUTH_KEY,
    Consumer,
    ConsumerKey,
    Gateway,
    GatewayRoute,
    JWTProvider,
    gateway_key,
    key_hash,
)
from journal.models import EventKind
from journal.records import Actor, AuditNote, EventNote, actor_name
from policies.services import subsets_of
from registry.revision import mesh_change

KEY_PREFIX_LEN = 8

Table = list[dict[str, Any]]


class StaleVersion(Exception):
    """The writer read a route table version that is no longer current (HTTP 409)."""

    def __init__(self, *, current: int, expected: int) -> None:
        super().__init__(f"the route table is at version {current}, not {expected}; re-read it")
        self.current = current


class InUse(Exception):
    """A consumer or JWT provider still named by routes (HTTP 409)."""


class NotFound(Exception):
    """The route or key named does not exist (HTTP 404)."""


def _change(
    *, key: str, user: Actor, action: str, kind: str, name: str,
    before: dict[str, Any] | None, after: dict[str, Any] | None, message: str,
) -> int:  # fmt: skip
    return mesh_change(
        keys=[key],
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=message,
                actor=actor_name(user),
                data={"object": kind, "name": name},
            )
        ],
        audit=[AuditNote(user, action, kind, name, before, after)],
    )


def _delete(
    *, user: Actor, row: Gateway | Consumer | JWTProvider, key: str, kind: str, label: str,
    before: dict[str, Any], named_by: Callable[[GatewayRoute], bool] | None = None,
) -> None:  # fmt: skip
    """Delete ROW (BEFORE is its document; KIND names it in the audit, LABEL in the
    messages), refused with InUse (409) while a route is NAMED_BY it."""
    if named_by is not None and (users := _routes_naming(named_by)):
        raise InUse(f"{label} {row.name} is named by routes {', '.join(users)}")
    row.delete()
    _change(
        key=key,
        user=user,
        action="delete",
        kind=kind,
        name=row.name,
        before=before,
        after=None,
        message=f"{label} {row.name} deleted",
    )


def gateway_ensure(name: str) -> Gateway:
    """The gateway an agent declares (enroll, report): created empty on first
    sight. Inside the caller's transaction; an empty table changes no snapshot."""
    gateway, _ = Gateway.objects.get_or_create(name=name, defaults={"created_by": "agent"})
    return gateway


@transaction.atomic
def gateway_create(*, user: Actor, name: str, description: str = "") -> Gateway:
    gateway = Gateway.objects.create(
        name=name, description=description, created_by=actor_name(user)
    )
    _change(
        key=gateway_key(name),
        user=user,
        action="create",
        kind="gateway",
        name=name,
        before=None,
        after={"name": name, "description": description, "routes": []},
        message=f"gateway {name} created",
    )
    return gateway


@transaction.atomic
def gateway_delete(*, user: Actor, gateway: Gateway) -> None:
    gateway = Gateway.objects.select_for_update().get(pk=gateway.pk)
    before = {"name": gateway.name, "version": gateway.version, "routes": table_of(gateway)}
    _delete(
        user=user,
        row=gateway,
        key=gateway_key(gateway.name),
        kind="gateway",
        label="gateway",
        before=before,
    )


def table_of(gateway: Gateway) -> Table:
    return [
        route_document(r) for r in GatewayRoute.objects.filter(gateway=gateway).order_by("position")
    ]


@transaction.atomic
def routes_write(
    *,
    user: Actor,
    gateway: Gateway,
    edit: Callable[[Table], Table],
    expected_version: int | None = None,
    note: str = "",
) -> Gateway:
    """Replace GATEWAY's route table by EDIT(current table), read under the
    gateway's row lock, with EXPECTED_VERSION (when given) checked under the same
    lock: two writers that read one version cannot both write. Routes are
    validated documents (gateway.api.serializers.RouteSerializer). A write that
    changes nothing makes no version."""
    locked = Gateway.objects.select_for_update().get(pk=gateway.pk)
    if expected_version is not None and expected_version != locked.version:
        raise StaleVersion(current=locked.version, expected=expected_version)
    before = table_of(locked)
    after = [route_normal(r) for r in edit([dict(r) for r in before])]
    if after == before:
        return locked
    names = [r["name"] for r in after]
    _check_subsets([r for r in after if r not in before])
    elsewhere = GatewayRoute.objects.filter(name__in=names).exclude(gateway=locked)
    taken = sorted(f"{r.gateway.name}/{r.name}" for r in elsewhere.select_related("gateway"))
    if taken:
        # One name, one route across gateways (as Kong's): a mesh document names it.
        raise InUse(f"route names are unique across gateways: {', '.join(taken)} exists")
    GatewayRoute.objects.filter(gateway=locked).delete()
    GatewayRoute.objects.bulk_create(
        [GatewayRoute(gateway=locked, position=i, **route) for i, route in enumerate(after)]
    )
    locked.version += 1
    locked.save(update_fields=["version"])
    _change(
        key=gateway_key(locked.name),
        user=user,
        action="update",
        kind="gateway-routes",
        name=locked.name,
        before={"version": locked.version - 1, "routes": before},
        after={"version": locked.version, "routes": after},
        message=(
            f"routes of gateway {locked.name} v{locked.version}"
            f"{f' ({note})' if note else ''}: {', '.join(names) or 'none'}"
        ),
    )
    return locked


def _check_subsets(routes: Table) -> None:
    """The subsets ROUTES send to, checked again under their routes documents' row
    locks (the serializer checked them before the transaction): a concurrent
    policies.services.routes_update cannot drop one between the check and the commit."""
    for route in routes:
        subset, service = route.get("subset"), route["service"]
        if subset and subset not in subsets_of(service, lock=True):
            raise InUse(f"route {route['name']}: service {service} has no subset {subset!r} now")


def route_replaced(name: str, route: dict[str, Any]) -> Callable[[Table], Table]:
    """An edit that replaces route NAME in place (NotFound if absent)."""

    def edit(table: Table) -> Table:
        at = [i for i, r in enumerate(table) if r["name"] == name]
        if not at:
            raise NotFound(f"no route {name!r}")
        table[at[0]] = route
        return table

    return edit


def route_removed(name: str) -> Callable[[Table], Table]:
    def edit(table: Table) -> Table:
        kept = [r for r in table if r["name"] != name]
        if len(kept) == len(table):
            raise NotFound(f"no route {name!r}")
        return kept

    return edit


def route_appended(route: dict[str, Any]) -> Callable[[Table], Table]:
    def edit(table: Table) -> Table:
        if any(r["name"] == route["name"] for r in table):
            raise InUse(f"a route {route['name']!r} exists; PUT it to change it")
        return [*table, route]

    return edit


def service_referrers(name: str) -> list[str]:
    """The gateway routes (`<gateway>/<route>`) that send traffic to service NAME."""
    rows = GatewayRoute.objects.filter(service=name).values_list("gateway__name", "name")
    return sorted(f"{gateway}/{route}" for gateway, route in rows)


def subset_referrers(service: str) -> dict[str, list[str]]:
    """The gateway routes (`<gateway>/<route>`) that send to a subset of SERVICE, by subset."""
    rows = (
        GatewayRoute.objects.filter(service=service)
        .exclude(subset="")
        .values_list("subset", "gateway__name", "name")
    )
    out: dict[str, list[str]] = {}
    for subset, gateway, route in rows:
        out.setdefault(subset, []).append(f"{gateway}/{route}")
    return {subset: sorted(names) for subset, names in out.items()}


def _routes_naming(predicate: Callable[[GatewayRoute], bool]) -> list[str]:
    return [
        f"{r.gateway.name}/{r.name}"
        for r in GatewayRoute.objects.select_related("gateway")
        if predicate(r)
    ]


# Consumers -------------------------------------------------------------------


def _consumer_doc(consumer: Consumer) -> dict[str, Any]:
    return consumer_document(consumer, list(consumer.keys.values_list("prefix", flat=True)))


@transaction.atomic
def consumer_create(*, user: Actor, data: dict[str, Any]) -> Consumer:
    consumer = Consumer.objects.create(**data)
    _change(
        key=AUTH_KEY,
        user=user,
        action="create",
        kind="consumer",
        name=consumer.name,
        before=None,
        after=_consumer_doc(consumer),
        message=f"consumer {consumer.name} created",
    )
    return consumer


@transaction.atomic
def consumer_update(*, user: Actor, consumer: Consumer, data: dict[str, Any]) -> Consumer:
    consumer = Consumer.objects.select_for_update().get(pk=consumer.pk)
    before = _consumer_doc(consumer)
    for field, value in data.items():
        if field != "name":  # the name is the consumer's identity in routes
            setattr(consumer, field, value)
    after = _consumer_doc(consumer)
    if after != before:
        consumer.save()
        _change(
            key=AUTH_KEY,
            user=user,
            action="update",
            kind="consumer",
            name=consumer.name,
            before=before,
            after=after,
            message=f"consumer {consumer.name} changed",
        )
    return consumer


@transaction.atomic
def consumer_delete(*, user: Actor, consumer: Consumer) -> None:
    _delete(
        user=user,
        row=consumer,
        key=AUTH_KEY,
        kind="consumer",
        label="consumer",
        before=_consumer_doc(consumer),
        named_by=lambda r: consumer.name in (r.auth or {}).get("consumers", []),
    )


@dataclass(frozen=True)
class NewKey:
    row: ConsumerKey
    key: str  # the clear key: returned once, never stored


@transaction.atomic
def consumer_key_create(*, user: Actor, consumer: Consumer, description: str = "") -> NewKey:
    """A new API key for CONSUMER; only its sha256 is stored."""
    consumer = Consumer.objects.select_for_update().get(pk=consumer.pk)
    taken = set(consumer.keys.values_list("prefix", flat=True))
    raw = secrets.token_urlsafe(32)
    while raw[:KEY_PREFIX_LEN] in taken or raw.startswith("-"):
        raw = secrets.token_urlsafe(32)
    before = _consumer_doc(consumer)
    row = ConsumerKey.objects.create(
        consumer=consumer,
        key_hash=key_hash(raw),
        prefix=raw[:KEY_PREFIX_LEN],
        description=description,
    )
    _change(
        key=AUTH_KEY,
        user=user,
        action="create-key",
        kind="consumer",
        name=consumer.name,
        before=before,
        after=_consumer_doc(consumer),
        message=f"key {row.prefix}… of consumer {consumer.name} created",
    )
    return NewKey(row=row, key=raw)


@transaction.atomic
def consumer_key_delete(*, user: Actor, consumer: Consumer, prefix: str) -> None:
    consumer = Consumer.objects.select_for_update().get(pk=consumer.pk)
    row = consumer.keys.filter(prefix=prefix).first()
    if row is None:
        raise NotFound(f"consumer {consumer.name} has no key {prefix}…")
    before = _consumer_doc(consumer)
    row.delete()
    _change(
        key=AUTH_KEY,
        user=user,
        action="delete-key",
        kind="consumer",
        name=consumer.name,
        before=before,
        after=_consumer_doc(consumer),
        message=f"key {prefix}… of consumer {consumer.name} revoked",
    )


def consumer_keys_used(*, key_hashes: list[str], at: datetime) -> int:
    """A gateway agent used these keys (its report's `gateway.keys_used`): their
    `last_used_at` becomes AT's minute. Coarse on purpose, as API tokens' `last_used`:
    one UPDATE per report, and none for a key already marked in that minute. Not
    audited and no mesh change: a use is nobody's write and no snapshot shows it."""
    if not key_hashes:
        return 0
    minute = at.replace(second=0, microsecond=0)
    return (
        ConsumerKey.objects.filter(key_hash__in=key_hashes)
        .exclude(last_used_at__gte=minute)
        .update(last_used_at=minute)
    )


# JWT providers -----------------------------------------------------------------


@transaction.atomic
def provider_write(*, user: Actor, name: str, data: dict[str, Any]) -> JWTProvider:
    """Create or replace provider NAME with validated DATA (JWTProviderSerializer)."""
    provider = JWTProvider.objects.select_for_update().filter(name=name).first()
    before = provider_document(provider) if provider else None
    old_secret = provider.secret if provider else ""
    target = provider or JWTProvider(name=name)
    for field, value in data.items():
        if field != "name":
            setattr(target, field, value)
    after = provider_document(target)
    secret_changed = provider is not None and target.secret != old_secret
    if provider is not None and after == before and not secret_changed:
        return provider
    target.save()
    if secret_changed and after == before:
        after = {**after, "secret": "<redacted, changed>"}
    _change(
        key=AUTH_KEY,
        user=user,
        action="update" if provider else "create",
        kind="jwt-provider",
        name=name,
        before=before,
        after=after,
        message=f"JWT provider {name} {'changed' if provider else 'created'}",
    )
    return target


@transaction.atomic
def provider_delete(*, user: Actor, provider: JWTProvider) -> None:
    _delete(
        user=user,
        row=provider,
        key=AUTH_KEY,
        kind="jwt-provider",
        label="JWT provider",
        before=provider_document(provider),
        named_by=lambda r: ((r.auth or {}).get("jwt") or {}).get("provider") == provider.name,
    )
