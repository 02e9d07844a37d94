"""The gateway page: each gateway with its route table in match order, the
consumers with their key prefixes, the JWT providers without their secrets.
An unscoped admin also gets the editors (static/console/gateway.js: routes,
gateways, consumers and their keys; gateway-providers.js: JWT providers), which
write through the gateway API; the page embeds the documents they start from
(`gateway-data`), never a key or a secret."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.models import Agent
from gateway import vocabulary
from gateway.api.serializers import JWTProviderSerializer
from gateway.documents import route_document
from gateway.models import Consumer, Gateway, GatewayRoute, JWTProvider
from gateway.snapshot import match_order
from meshconsole.roles import ADMIN, grant_of
from registry.models import Service


def _path_text(path: dict[str, str]) -> str:
    ((kind, value),) = path.items()
    return {"exact": f"= {value}", "prefix": f"{value}*", "regex": f"~ {value}"}.get(kind, value)


def _route_row(route: GatewayRoute) -> dict[str, Any]:
    auth = route.auth or {}
    return {
        "name": route.name,
        "hosts": route.hosts,
        "path": _path_text(route.path),
        "methods": route.methods,
        "service": route.service,
        "subset": route.subset,
        "auth": auth.get("type", "none"),
        "provider": (auth.get("jwt") or {}).get("provider", ""),
        "consumers": auth.get("consumers", []),
        "limits": [
            f"{r['requests']}/{r['per']} +{r['burst']} {r['mode']} per {r['scope']}"
            for r in route.rate_limits
        ],
        "cors": bool(route.cors),
    }


def _editor_data(
    gateways: list[Gateway], consumers: list[Consumer], providers: list[JWTProvider]
) -> dict[str, Any]:
    """What the editors start from: each table as the API shows it (in table
    order, with its version), the consumers with key prefixes only, the
    providers as a GET shows them (`secret_set`, never the secret)."""
    return {
        "gateways": {
            g.name: {
                "version": g.version,
                "routes": [
                    route_document(r) for r in sorted(g.routes.all(), key=lambda r: r.position)
                ],
            }
            for g in gateways
        },
        "consumers": {
            c.name: {
                "name": c.name,
                "description": c.description,
                "tags": list(c.tags),
                "jwt_subjects": list(c.jwt_subjects),
                "keys": [k.prefix for k in c.keys.all()],
            }
            for c in consumers
        },
        "providers": [p.name for p in providers],
        "provider_docs": {p.name: JWTProviderSerializer(p).data for p in providers},
        "services": list(Service.objects.order_by("name").values_list("name", flat=True)),
    }


@require_GET
@login_required
def gateway_page(request: HttpRequest) -> HttpResponse:
    gateways = Gateway.objects.order_by("name").prefetch_related(
        Prefetch("routes", queryset=GatewayRoute.objects.order_by("position"))
    )
    nodes: dict[str, list[str]] = {}
    for name, node in Agent.objects.exclude(gateway="").values_list("gateway", "node__name"):
        nodes.setdefault(name, []).append(node)
    consumers = list(Consumer.objects.prefetch_related("keys").order_by("name"))
    providers = list(JWTProvider.objects.order_by("name"))
    context = {
        "gateways": [
            {
                "gateway": g,
                "agents": sorted(nodes.get(g.name, [])),
                "routes": [_route_row(r) for r in sorted(g.routes.all(), key=match_order)],
            }
            for g in gateways
        ],
        "consumers": consumers,
        "providers": providers,
        "hmac_algorithms": vocabulary.HMAC_ALGORITHMS,
        "asymmetric_algorithms": vocabulary.ASYMMETRIC_ALGORITHMS,
        "hmac_secret_min_bytes": vocabulary.HMAC_SECRET_MIN_BYTES,
        "leeway_max_s": vocabulary.LEEWAY_MAX_S,
        "default_leeway_s": vocabulary.DEFAULT_LEEWAY_S,
    }
    grant = grant_of(request.user)
    if grant is not None and grant.allows(ADMIN):  # the API's rule: an unscoped admin
        context["editor_data"] = _editor_data(list(gateways), consumers, providers)
    return render(request, "console/gateways.html", context)
