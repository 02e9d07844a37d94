"""The service page's read-only picture of a service's subsets and routes
(everyone sees it; admins of the service also get the editor,
static/console/routes-editor.js and its form routes-form.js, which write through
the routes API), and the vocabulary that form offers (kinds and bounds: the
agent's, as the API's validation reads them)."""

from __future__ import annotations

from typing import Any, TypedDict

from agents.runtime.vocabulary import (
    ROUTE_FALLBACKS,
    ROUTE_HEADER_KINDS,
    ROUTE_PATH_KINDS,
    ROUTE_QUERY_KINDS,
    ROUTE_REWRITE_KINDS,
    ROUTE_STICKY_TYPES,
)
from policies.routes import ATTEMPTS, MAX_SPLIT, MAX_WEIGHT, TIMEOUT_MS
from policies.services import routes_of
from registry.models import Service


class RouteRow(TypedDict):
    name: str
    match: str
    split: str
    options: str


class RoutesPanel(TypedDict):
    version: int
    subsets: list[dict[str, str]]
    routes: list[RouteRow]


class RoutesVocabulary(TypedDict):
    path_kinds: list[str]
    header_kinds: list[str]
    query_kinds: list[str]
    fallbacks: list[str]
    sticky_types: list[str]
    rewrite_kinds: list[str]
    split_max: int
    weight_max: int
    timeout_ms: list[int]  # [low, high], inclusive
    attempts: list[int]


def routes_vocabulary() -> RoutesVocabulary:
    """What the routes form offers: the kinds of each choice and the bounds of
    each number, from the one table the API's validation and the agent read."""
    return {
        "path_kinds": list(ROUTE_PATH_KINDS),
        "header_kinds": list(ROUTE_HEADER_KINDS),
        "query_kinds": list(ROUTE_QUERY_KINDS),
        "fallbacks": list(ROUTE_FALLBACKS),
        "sticky_types": list(ROUTE_STICKY_TYPES),
        "rewrite_kinds": list(ROUTE_REWRITE_KINDS),
        "split_max": MAX_SPLIT,
        "weight_max": MAX_WEIGHT,
        "timeout_ms": list(TIMEOUT_MS),
        "attempts": list(ATTEMPTS),
    }


def _match_text(match: dict[str, Any]) -> str:
    parts: list[str] = []
    for kind, value in (match.get("path") or {}).items():
        parts.append(f"path {kind} {value}")
    if match.get("methods"):
        parts.append(",".join(match["methods"]))
    for label, conditions in (("header", match.get("headers")), ("query", match.get("query"))):
        for c in conditions or []:
            kind = next(k for k in c if k != "name")
            value = "" if c[kind] is True else f" {c[kind]}"
            parts.append(f"{label} {c['name']} {kind}{value}")
    return " · ".join(parts) or "any request"


def _split_text(split: list[dict[str, Any]]) -> str:
    total = sum(int(t.get("weight", 0)) for t in split) or 1
    parts = []
    for t in split:
        target = t.get("subset") or f"→ {t.get('service')}"
        parts.append(f"{target} {100 * int(t.get('weight', 0)) / total:.4g}%")
    return " · ".join(parts)


def _options_text(route: dict[str, Any]) -> str:
    parts = [f"fallback {route.get('fallback', 'next')}"]
    for key, value in (route.get("sticky") or {}).items():
        parts.append(f"sticky {key} {value}")
    for key, value in (route.get("rewrite") or {}).items():
        parts.append(f"rewrite {key} {value}")
    for part in ("request_headers", "response_headers"):
        edits = route.get(part) or {}
        changed = [*edits.get("set", {}), *(f"-{h}" for h in edits.get("remove", []))]
        if changed:
            parts.append(f"{part.replace('_', ' ')} {', '.join(changed)}")
    if "timeout_ms" in route:
        parts.append(f"timeout {route['timeout_ms']}ms")
    if "retries" in route:
        parts.append(f"retries {route['retries'].get('attempts')}")
    return " · ".join(parts)


def routes_panel(service: Service) -> RoutesPanel:
    row = routes_of(service)
    document = row.document or {}
    return {
        "version": row.version,
        "subsets": [
            {
                "name": name,
                "tags": ", ".join(spec.get("tags") or []) or "-",
                "metadata": ", ".join(f"{k}={v}" for k, v in (spec.get("metadata") or {}).items())
                or "-",
            }
            for name, spec in sorted((document.get("subsets") or {}).items())
        ],
        "routes": [
            {
                "name": str(r.get("name", "")),
                "match": _match_text(r.get("match") or {}),
                "split": _split_text(r.get("split") or []),
                "options": _options_text(r),
            }
            for r in document.get("routes") or []
        ],
    }
