"""Services and instances: CRUD over the registry's services layer."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from meshconsole.api import Conflict
from meshconsole.roles import ADMIN, OPERATOR, READ_ACTIONS, VIEWER
from registry import services
from registry.api.control import InstanceControlMixin
from registry.api.scoping import ServiceScoped
from registry.api.serializers import (
    InstanceSerializer,
    InstanceUpdateSerializer,
    ServiceSerializer,
    ServiceUpdateSerializer,
    attach_health,
)
from registry.filtersets import ServiceFilterSet
from registry.managed import warn_if_managed
from registry.models import Instance, Service


class ServiceViewSet(ServiceScoped, viewsets.ModelViewSet):
    roles = {**READ_ACTIONS, "create": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}
    body_tags_are_the_services = True
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filterset_class = ServiceFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_class(self) -> type[ServiceSerializer]:
        return ServiceUpdateSerializer if self.action == "partial_update" else ServiceSerializer

    def get_queryset(self) -> QuerySet[Service]:
        queryset = Service.objects.all()
        if self.action != "list":
            # One row: its health by annotation; a list page gets it by attach_health.
            queryset = queryset.annotate_health()
        return queryset.order_by("name")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Counting and paging run on the bare (filtered) table; the health of
        # the page's rows is one grouped query (attach_health), not a GROUP BY
        # over every instance of the mesh.
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # the API always paginates (MeshPagination)
        attach_health(page)
        return self.get_paginated_response(ServiceSerializer(page, many=True).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ServiceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if Service.objects.filter(name=serializer.validated_data["name"]).exists():
            raise Conflict(f"service {serializer.validated_data['name']!r} already exists")
        service = services.service_create(user=request.user, data=serializer.validated_data)
        out = ServiceSerializer(Service.objects.annotate_health().get(pk=service.pk))
        return Response(out.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ServiceUpdateSerializer, responses=ServiceSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        service = self.get_object()
        serializer = ServiceUpdateSerializer(service, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.service_update(user=request.user, service=service, data=serializer.validated_data)
        response = Response(ServiceSerializer(self.get_queryset().get(pk=service.pk)).data)
        return warn_if_managed(response, "Service", service.name)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        service = self.get_object()
        try:
            services.service_delete(user=request.user, service=service)
        except services.ServiceInUse as exc:
            raise Conflict({"detail": str(exc), f"{exc.kind}_referrers": exc.referrers}) from None
        response = Response(status=status.HTTP_204_NO_CONTENT)
        return warn_if_managed(response, "Service", service.name)


class InstanceViewSet(
    InstanceControlMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    ServiceScoped,
    viewsets.GenericViewSet,
):
    # Instances are the operator's: registration (the SDK's), weight, zone,
    # tags, maintenance and the commands; services and policies are the admin's.
    roles = {
        **READ_ACTIONS,
        "explain": VIEWER,
        **{
            action: OPERATOR
            for action in (
                "create",
                "partial_update",
                "destroy",
                "maintenance",
                "drain",
                "enable",
                "disable",
                "weight",
                "bulk",
                "heartbeat",
            )
        },
    }
    service_kwarg = "service_name"
    # No UpdateModelMixin: a full replace (PUT) of an instance is not offered, so
    # the router maps (and the schema shows) no PUT on an instance.
    lookup_value_regex = "[^/]+"

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

    # The answer is the whole instance (node may be null), not the update's shape.
    @extend_schema(request=InstanceUpdateSerializer, responses=InstanceSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        serializer = InstanceUpdateSerializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        instance = services.instance_update(
            user=request.user, instance=instance, data=serializer.validated_data
        )
        return Response(InstanceSerializer(instance).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.instance_deregister(user=request.user, instance=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
