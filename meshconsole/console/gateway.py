"""The gateway page (read-only): each gateway with its route table in match
order, the consumers with their key prefixes, the JWT providers without their
secrets. Changes go through the API or `meshctl gateway`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.models import Agent
from gateway.models import Consumer, Gateway, GatewayRoute, JWTProvider
from gateway.snapshot import match_order


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


@require_GET
@login_required
def gateway_page(request: HttpRequest) -> HttpResponse:
    gateways = Gateway.objects.order_by("name").prefetch_related(
        Prefetch("routes", queryset=GatewayRoute.objects.order_by("position"))
    )
    nodes: dict[str, list[str]] = {}
    for name, node in Agent.objects.exclude(gateway="").values_list("gateway", "node__name"):
        nodes.setdefault(name, []).append(node)
    context = {
        "gateways": [
            {
                "gateway": g,
                "agents": sorted(nodes.get(g.name, [])),
                "routes": [_route_row(r) for r in sorted(g.routes.all(), key=match_order)],
            }
            for g in gateways
        ],
        "consumers": Consumer.objects.prefetch_related("keys").order_by("name"),
        "providers": JWTProvider.objects.order_by("name"),
    }
    return render(request, "console/gateways.html", context)
