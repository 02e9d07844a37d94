"""Topology and events."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBase
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.runtime.durations import format_duration_ms, parse_duration_ms
from journal.models import Event, EventKind
from meshconsole.api import MeshPagination
from meshconsole.roles import READ
from monitoring.timeseries import DIRECTIONS, service_series
from monitoring.timeseries import MAX_WINDOW_S as SERIES_MAX_WINDOW_S
from monitoring.topology import topology_shared, topology_shared_json
from registry.models import Service

MAX_WINDOW_S = 24 * 3600


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = [
            "id",
            "ts",
            "kind",
            "severity",
            "service",
            "instance",
            "message",
            "actor",
            "data",
            "revision",
        ]


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 time, compared in UTC: PostgreSQL refuses offsets past ±15:59
    that Python accepts (-22:26), and a time that leaves the calendar once in UTC
    is bad input, not a server error."""

    def filter(self, qs: QuerySet[Event], value: datetime | None) -> QuerySet[Event]:
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise ValidationError({self.field_name: "out of range"}) from None
        return super().filter(qs, value)


class EventFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=EventKind.choices)
    service = filters.CharFilter()
    instance = filters.CharFilter()
    since = UTCDateTimeFilter(field_name="ts", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ["kind", "service", "instance", "since"]


class EventPagination(MeshPagination):
    # `?limit=` is the page size here (v1 had it before pages); EventListView
    # checks its bounds, so a bad value is a 400, not a silent clamp.
    page_size = 200
    page_size_query_param = "limit"


class EventListView(generics.ListAPIView):
    roles = READ
    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = EventPagination

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="at most 1000; 200 by default")]
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Event]:
        return Event.objects.all()

    def filter_queryset(self, queryset: QuerySet[Event]) -> QuerySet[Event]:  # type: ignore[override]
        queryset = super().filter_queryset(queryset)
        raw = self.request.query_params.get("limit", "200")
        try:
            limit = int(raw)
        except ValueError:
            raise ValidationError({"limit": "must be an integer"}) from None
        if not 1 <= limit <= 1000:
            raise ValidationError({"limit": "must be between 1 and 1000"})
        return queryset


def window_seconds(request: Request, default: int = 60, maximum: int = MAX_WINDOW_S) -> int:
    raw = request.query_params.get("window")
    if not raw:
        return default
    try:
        seconds = parse_duration_ms(raw) // 1000
    except ValueError as exc:
        raise ValidationError({"window": str(exc)}) from None
    if not 1 <= seconds <= maximum:
        longest = {SERIES_MAX_WINDOW_S: "168h (7 days)", MAX_WINDOW_S: "24h"}.get(
            maximum, format_duration_ms(maximum * 1000))
        raise ValidationError({"window": f"must be between 1s and {longest}"})
    return int(seconds)


class TopologyView(APIView):
    roles = READ
    @extend_schema(
        parameters=[OpenApiParameter("window", str, description="e.g. 60s, 5m (default 60s)")],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="{window_seconds, generated_at, nodes, edges} (monitoring.topology)",
        ),
    )
    def get(self, request: Request) -> HttpResponseBase:
        # Shared per (window, revision) for a second: a thousand readers cost
        # one aggregation of the metrics windows and one JSON encoding.
        seconds = window_seconds(request)
        if isinstance(request.accepted_renderer, JSONRenderer):
            return HttpResponse(topology_shared_json(seconds), content_type="application/json")
        return Response(topology_shared(seconds))  # the browsable API


class ServiceMetricsView(APIView):
    roles = READ
    """Rps, error rate and latency percentiles of one service over time, inbound
    (its callers') or outbound (its own calls)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("window", str, description="e.g. 15m (default), 24h, 168h"),
            OpenApiParameter(
                "direction", str, enum=list(DIRECTIONS), description="in (default) | out"
            ),
        ],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description="points over the window (monitoring.timeseries)"
        ),
    )
    def get(self, request: Request, name: str) -> Response:
        if not Service.objects.filter(name=name).exists():
            raise NotFound(f"no service named {name!r}")
        direction = request.query_params.get("direction", "in")
        if direction not in DIRECTIONS:
            raise ValidationError({"direction": "in or out"})
        seconds = window_seconds(request, default=900, maximum=SERIES_MAX_WINDOW_S)
        return Response(service_series(name, seconds, direction=direction))
