"""Services and instances: CRUD over the registry's services layer."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from meshconsole.api import Conflict
from registry import services
from registry.api.control import InstanceControlMixin
from registry.api.serializers import (
    InstanceSerializer,
    InstanceUpdateSerializer,
    ServiceSerializer,
    ServiceUpdateSerializer,
    annotate_health,
    attach_health,
)
from registry.models import ROUTABLE_HEALTH, AdminState, Instance, Service

HEALTH_FILTERS = ("passing", "warning", "critical", "empty")
# The same counts as registry.api.serializers.annotate_health, asked as EXISTS
# probes on the instance index per service: no GROUP BY over every instance of
# the mesh, and the page's LIMIT can stop early.
_ROUTABLE = Q(admin_state=AdminState.ENABLED, health__in=ROUTABLE_HEALTH)
_ANY = Exists(Instance.objects.filter(service=OuterRef("pk")))
_SOME_ROUTABLE = Exists(Instance.objects.filter(_ROUTABLE, service=OuterRef("pk")))
_SOME_NOT_ROUTABLE = Exists(Instance.objects.filter(~_ROUTABLE, service=OuterRef("pk")))
HEALTH_QUERIES = {
    "passing": Q(_ANY) & ~Q(_SOME_NOT_ROUTABLE),
    "critical": Q(_ANY) & ~Q(_SOME_ROUTABLE),
    "warning": Q(_SOME_ROUTABLE) & Q(_SOME_NOT_ROUTABLE),
    "empty": ~Q(_ANY),
}


@extend_schema(
    parameters=[
        OpenApiParameter("tag", str, description="only services carrying this tag"),
        OpenApiParameter("health", str, enum=HEALTH_FILTERS),
        OpenApiParameter("search", str, description="substring of name or description"),
    ]
)
class ServiceViewSet(viewsets.ModelViewSet):
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_class(self) -> type[ServiceSerializer]:
        return ServiceUpdateSerializer if self.action == "partial_update" else ServiceSerializer

    def get_queryset(self) -> QuerySet[Service]:
        queryset = Service.objects.all()
        params = self.request.query_params
        search = params.get("search", "").strip()
        if search:
            queryset = queryset.filter(Q(name__icontains=search) | Q(description__icontains=search))
        health = params.get("health")
        if health:
            if health not in HEALTH_FILTERS:
                raise ValidationError({"health": f"one of {', '.join(HEALTH_FILTERS)}"})
            queryset = queryset.filter(HEALTH_QUERIES[health])
        if self.action != "list":
            queryset = annotate_health(queryset)
        tag = params.get("tag")
        if tag:
            queryset = tagged(queryset, tag)
        return queryset.order_by("name")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Counting and paging run on the bare (filtered) table; the health of
        # the page's rows is one grouped query (attach_health), not a GROUP BY
        # over every instance of the mesh.
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the API always paginates (MeshPagination)
        attach_health(page)
        return self.get_paginated_response(ServiceSerializer(page, many=True).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ServiceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if Service.objects.filter(name=serializer.validated_data["name"]).exists():
            raise Conflict(f"service {serializer.validated_data['name']!r} already exists")
        service = services.service_create(user=request.user, data=serializer.validated_data)
        out = ServiceSerializer(annotate_health(Service.objects.filter(pk=service.pk)).get())
        return Response(out.data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        service = self.get_object()
        serializer = ServiceUpdateSerializer(service, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.service_update(user=request.user, service=service, data=serializer.validated_data)
        return Response(ServiceSerializer(self.get_queryset().get(pk=service.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.service_delete(user=request.user, service=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def tagged(queryset: QuerySet[Service], tag: str) -> QuerySet[Service]:
    """Services carrying `tag`, filtered by the database: JSON containment on
    PostgreSQL, json_each on SQLite (which has no containment lookup)."""
    if connection.vendor == "postgresql":
        return queryset.filter(tags__contains=[tag])
    table = connection.ops.quote_name(Service._meta.db_table)
    carries = RawSQL(
        f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE json_each.value = %s)",
        [tag],
        output_field=BooleanField(),
    )
    return queryset.alias(carries_tag=carries).filter(carries_tag=True)


class InstanceViewSet(InstanceControlMixin, viewsets.ModelViewSet):
    lookup_value_regex = "[^/]+"
    # PUT only for heartbeats: a full replace of an instance is not offered.
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def _service(self) -> Service:
        return get_object_or_404(Service, name=self.kwargs["service_name"])

    def get_serializer_class(self) -> type[InstanceSerializer]:
        return InstanceUpdateSerializer if self.action == "partial_update" else InstanceSerializer

    def get_queryset(self) -> QuerySet[Instance]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL kwargs
            return Instance.objects.none()
        return Instance.objects.filter(service=self._service()).select_related("service", "node")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        service = self._service()
        serializer = InstanceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if Instance.objects.filter(
            service=service, address=data["address"], port=data["port"]
        ).exists():
            raise Conflict(
                f"{service.name} already has an instance at {data['address']}:{data['port']}"
            )
        instance = services.instance_register(user=request.user, service=service, data=data)
        instance = Instance.objects.select_related("service", "node").get(pk=instance.pk)
        return Response(InstanceSerializer(instance).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        serializer = InstanceUpdateSerializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        instance = services.instance_update(
            user=request.user, instance=instance, data=serializer.validated_data
        )
        return Response(InstanceSerializer(instance).data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise MethodNotAllowed("PUT")

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.instance_deregister(user=request.user, instance=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
