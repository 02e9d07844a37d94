"""Console pages. Each view renders a first picture server-side; the page's
script keeps it current (websocket for topology and services, periodic
re-fetch for agents and events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from agents.models import Agent
from agents.runtime.vocabulary import RETRY_CONDITIONS
from identity.certview import current_certificates
from journal.models import Event, EventKind
from meshconsole.console.routes import routes_panel, routes_vocabulary
from monitoring.models import EdgeWindow
from monitoring.topology import page_states, service_state_payload
from policies.models import BALANCER_CHOICES, HASH_CHOICES
from registry.managed import managed_warning
from registry.models import Instance, Service
from registry.pacing import heartbeat_ttl_s
from registry.services import failover_referrers

EVENTS_LIMIT = 200
PAGE_SIZE = 100  # as the API's lists (meshconsole.api.MeshPagination)
# Callers named in a delete/bulk confirmation: whoever sent traffic this recently.
CALLERS_WINDOW = timedelta(hours=1)


def page_of(request: HttpRequest, queryset: QuerySet[Any]) -> Page[Any]:
    """The ?page= of a console list (out of range: the last page)."""
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    # The page fetches the topology from the API after it loads (and then
    # follows the websocket): a 500-service graph is not embedded in the HTML.
    return render(request, "console/overview.html", {"window_seconds": 60})


@require_GET
@login_required
def service_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    services = Service.objects.all()
    # Name, description and tags, like the page's as-you-type filter, in the
    # database (tags: their JSON text).
    for term in query.split():
        services = services.filter(
            Q(name__icontains=term) | Q(description__icontains=term) | Q(tags__icontains=term)
        )
    page = page_of(request, services.order_by("name"))
    page.object_list = list(page.object_list)
    # The label the overview draws (operator states, failover), one rule for
    # both pages, for this page's rows only.
    states = page_states(page.object_list)
    rows: list[dict[str, Any]] = []
    for service in page.object_list:
        text = " ".join([service.name, service.description, *map(str, service.tags or [])])
        passing = int(getattr(service, "passing_instances", 0))
        total = int(getattr(service, "total_instances", 0))
        state = states.get(service.name, "empty")
        rows.append(
            {
                "service": service,
                "passing": passing,
                "total": total,
                "health": state,
                "search_text": text.lower(),
            }
        )
    return render(
        request, "console/services.html", {"rows": rows, "query": query, "page": page}
    )


@require_GET
@login_required
def service_detail(request: HttpRequest, name: str) -> HttpResponse:
    data = service_state_payload(name)
    if data is None:
        return not_found(request, f"There is no service named “{name}”.")
    service = Service.objects.get(name=name)
    context = {
        "name": name,
        "service": data,
        "managed": managed_warning("Service", name),
        "routes": routes_panel(service),
        "routes_managed": managed_warning("Routes", name),
        "routes_vocabulary": routes_vocabulary(),
    }
    return render(request, "console/service.html", context)


def not_found(request: HttpRequest, message: str) -> HttpResponse:
    """The console's styled 404 (templates/404.html, also Django's handler404 page)."""
    return render(request, "404.html", {"message": message}, status=404)


@require_GET
@login_required
def service_policy(request: HttpRequest, name: str) -> HttpResponse:
    """The traffic policy editor; its script reads and writes /api/v1/.../policy/."""
    if not Service.objects.filter(name=name).exists():
        return not_found(request, f"There is no service named “{name}”.")
    context = {
        "managed": managed_warning("TrafficPolicy", name),
        "name": name,
        "balancers": BALANCER_CHOICES,
        "hash_kinds": HASH_CHOICES,
        "retry_conditions": RETRY_CONDITIONS,
    }
    return render(request, "console/policy.html", context)


def service_dependents(name: str) -> dict[str, Any]:
    """What a confirmation must name before a destructive change to service NAME:
    its callers (traffic in the last CALLERS_WINDOW) and the services whose
    policy fails over to it."""
    since = timezone.now() - CALLERS_WINDOW
    callers = sorted(
        set(
            EdgeWindow.objects.filter(destination=name, window_end__gt=since)
            .exclude(source=name)
            .values_list("source", flat=True)
        )
    )
    return {"service": name, "callers": callers, "failover_referrers": failover_referrers(name)}


@require_GET
@login_required
def service_dependents_json(request: HttpRequest, name: str) -> HttpResponse:
    if not Service.objects.filter(name=name).exists():
        return JsonResponse({"detail": f"no service named {name!r}"}, status=404)
    return JsonResponse(service_dependents(name))


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    status: str  # ok | silent | nack
    instances: list[Instance] = field(default_factory=list)  # what the host runs
    # The leaf it serves per identity (identity.certview.current_certificates).
    certificates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def upstreams(self) -> list[dict[str, str]]:
        """What the host calls through its agent (as it enrolled / last reported)."""
        return [
            {"service": str(u.get("service", "")), "listen": str(u.get("listen", "")),
             "protocol": str(u.get("protocol", "http"))}
            for u in (self.agent.upstreams or []) if isinstance(u, dict)
        ]


def short_duration(seconds: int) -> str:
    """`2d 3h`, `23h 5m`, `4m 10s`: the two largest units."""
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def agent_status(agent: Agent, *, now: datetime, ttl: timedelta) -> str:
    if agent.silent or agent.last_seen is None or agent.last_seen < now - ttl:
        return "silent"
    if agent.nack_reason:
        return "nack"
    return "ok"


@require_GET
@login_required
def agent_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    ttl = timedelta(seconds=heartbeat_ttl_s())
    page = page_of(request, Agent.objects.select_related("node").order_by("node__name"))
    agents = list(page)
    # One query for the page's hosts: the instances each runs.
    by_node: dict[int, list[Instance]] = {}
    for instance in (
        Instance.objects.filter(node_id__in=[a.node_id for a in agents])
        .select_related("service").order_by("service__name", "port")
    ):
        if instance.node_id is not None:
            by_node.setdefault(instance.node_id, []).append(instance)
    certificates = current_certificates([a.pk for a in agents])
    for certs in certificates.values():
        for c in certs:
            c["expires_in"] = short_duration(c["seconds_to_expiry"])
            c["not_after_text"] = c["not_after"].replace("T", " ").rstrip("Z")  # one date format
    rows = [
        AgentRow(agent=a, status=agent_status(a, now=now, ttl=ttl),
                 instances=by_node.get(a.node_id, []),
                 certificates=certificates.get(str(a.pk), []))
        for a in agents
    ]
    expiring = sum(1 for r in rows for c in r.certificates if c["expiring"])
    return render(request, "console/agents.html",
                  {"rows": rows, "page": page, "expiring": expiring})


@require_GET
@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "")
    service = request.GET.get("service", "").strip()
    events = Event.objects.all()
    if kind in EventKind.values:
        events = events.filter(kind=kind)
    else:
        kind = ""
    if service:
        events = events.filter(service=service)
    context: dict[str, Any] = {
        "events": events[:EVENTS_LIMIT],
        "kinds": EventKind.choices,
        "kind": kind,
        "service": service,
        "limit": EVENTS_LIMIT,
    }
    return render(request, "console/events.html", context)
