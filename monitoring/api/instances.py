"""Golden metrics per instance: one instance's series, and the figures of all
instances of a service (the service page's table)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.roles import READ
from monitoring.api.views import window_seconds
from monitoring.instances import instance_figures, instance_series
from monitoring.timeseries import MAX_WINDOW_S as SERIES_MAX_WINDOW_S
from registry.models import Instance, Service

# The table reads raw windows (buckets merged per instance): "now", not history.
FIGURES_MAX_WINDOW_S = 3600


class InstanceMetricsView(APIView):
    """Rps, error rate and latency percentiles over time of the tries one instance
    served (its callers' agents report them); the service series' shape."""

    roles = READ

    @extend_schema(
        parameters=[OpenApiParameter("window", str, description="e.g. 15m (default), 24h, 168h")],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description="points over the window (monitoring.instances)"
        ),
    )
    def get(self, request: Request, name: str, id: str) -> Response:
        if not Instance.objects.filter(service__name=name, pk=id).exists():
            raise NotFound(f"no instance {id!r} of a service named {name!r}")
        seconds = window_seconds(request, default=900, maximum=SERIES_MAX_WINDOW_S)
        return Response(instance_series(name, id, seconds))


class ServiceInstancesMetricsView(APIView):
    """Each instance of a service over the last `window` (default 60s, at most 1h):
    requests, rps, error rate, p50/p95/p99."""

    roles = READ

    @extend_schema(
        parameters=[OpenApiParameter("window", str, description="e.g. 60s (default), 5m, 1h")],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description="{service, window_seconds, instances: [...]}"
        ),
    )
    def get(self, request: Request, name: str) -> Response:
        service = Service.objects.filter(name=name).first()
        if service is None:
            raise NotFound(f"no service named {name!r}")
        seconds = window_seconds(request, default=60, maximum=FIGURES_MAX_WINDOW_S)
        ids = list(service.instances.order_by("pk").values_list("pk", flat=True))
        return Response({"service": name, "window_seconds": seconds,
                         "instances": instance_figures(ids, seconds)})
