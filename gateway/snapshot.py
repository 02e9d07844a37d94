"""The `gateway` section of a gateway agent's snapshot (docs/agent-protocol.md,
"Gateway agents"): its ordered routes, every consumer with its key hashes, every
JWT provider with its secret. Only agents that declared the gateway get it
(agents.snapshot asks through agents.gateways)."""

from __future__ import annotations

from typing import Any, TypedDict

from gateway.documents import provider_document, route_document
from gateway.models import (
    AUTH_KEY,
    Consumer,
    ConsumerKey,
    GatewayRoute,
    JWTProvider,
    gateway_key,
    key_hash,
)

__all__ = ["GatewaySnapshot", "gateway_keys", "gateway_section", "gateway_targets", "key_hash"]

_PATH_RANK = {"exact": 0, "prefix": 1, "regex": 2}


class ConsumerSnapshot(TypedDict):
    name: str
    key_hashes: list[str]
    jwt_subjects: list[str]


class GatewaySnapshot(TypedDict):
    name: str
    routes: list[dict[str, Any]]
    consumers: list[ConsumerSnapshot]
    jwt_providers: dict[str, dict[str, Any]]


def _host_rank(hosts: list[str]) -> int:
    if not hosts:
        return 2  # any Host
    return 0 if any(not h.startswith("*.") for h in hosts) else 1


def match_order(route: GatewayRoute) -> tuple[int, int, int, int]:
    """The contract's order: exact hosts before wildcards before any host; then
    the longer path first (exact before prefix before regex at one length); then
    the table's own order."""
    ((kind, value),) = route.path.items()
    return (_host_rank(route.hosts), -len(value), _PATH_RANK.get(kind, 3), route.position)


def _routes(name: str) -> list[GatewayRoute]:
    return list(GatewayRoute.objects.filter(gateway__name=name))


def gateway_targets(name: str) -> list[str]:
    """The mesh services gateway NAME's routes send to."""
    return sorted(set(
        GatewayRoute.objects.filter(gateway__name=name).values_list("service", flat=True)
    ))  # fmt: skip


def gateway_keys(name: str) -> list[str]:
    """The index keys the section depends on (its targets' are the upstreams')."""
    return [gateway_key(name), AUTH_KEY]


def gateway_section(name: str) -> GatewaySnapshot:
    """Call inside the snapshot's read transaction."""
    hashes: dict[int, list[str]] = {}
    for consumer_id, digest in ConsumerKey.objects.order_by("key_hash").values_list(
        "consumer_id", "key_hash"
    ):
        hashes.setdefault(consumer_id, []).append(digest)
    return {
        "name": name,
        "routes": [route_document(r) for r in sorted(_routes(name), key=match_order)],
        "consumers": [
            {
                "name": c.name,
                "key_hashes": hashes.get(c.pk, []),
                "jwt_subjects": list(c.jwt_subjects),
            }
            for c in Consumer.objects.order_by("name")
        ],
        "jwt_providers": {
            p.name: provider_document(p, secrets=True) for p in JWTProvider.objects.order_by("name")
        },
    }
