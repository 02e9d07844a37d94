"""The documents of gateway objects: what the API shows, what audit entries and
version comparisons hold (secrets redacted), and what a snapshot carries."""

from __future__ import annotations

from typing import Any

from gateway.models import Consumer, GatewayRoute, JWTProvider

REDACTED = "<redacted>"
ROUTE_FIELDS = (
    "name", "hosts", "path", "methods", "service", "subset", "strip_prefix",
    "auth", "rate_limits", "cors", "max_body_bytes", "timeout_ms",
)  # fmt: skip


OPTIONAL_FIELDS = ("cors", "max_body_bytes", "timeout_ms")


def route_normal(route: dict[str, Any]) -> dict[str, Any]:
    """A route document in the contract's shape: its fields in order, the
    optional ones absent when unset."""
    return {
        f: route[f] for f in ROUTE_FIELDS if not (f in OPTIONAL_FIELDS and route.get(f) is None)
    }


def route_document(route: GatewayRoute) -> dict[str, Any]:
    return route_normal({f: getattr(route, f) for f in ROUTE_FIELDS})


def consumer_document(consumer: Consumer, prefixes: list[str]) -> dict[str, Any]:
    """A consumer for audit and export: keys by prefix only, never a hash."""
    return {
        "name": consumer.name,
        "description": consumer.description,
        "tags": list(consumer.tags),
        "jwt_subjects": list(consumer.jwt_subjects),
        "keys": sorted(prefixes),
    }


def provider_document(provider: JWTProvider, *, secrets: bool = False) -> dict[str, Any]:
    """A JWT provider; its secret redacted unless SECRETS (a gateway's snapshot)."""
    doc: dict[str, Any] = {
        "algorithms": list(provider.algorithms),
        "issuer": provider.issuer,
        "audience": provider.audience,
        "leeway_s": provider.leeway_s,
        "consumer_claim": provider.consumer_claim,
    }
    if provider.jwks is not None:
        doc["jwks"] = provider.jwks
    if provider.jwks_url:
        doc["jwks_url"] = provider.jwks_url
    if provider.secret:
        doc["secret"] = provider.secret if secrets else REDACTED
    return doc
