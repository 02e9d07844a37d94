"""Commands on instances: maintenance, drain, enable, disable, weight (one or in
bulk by selector), TTL heartbeats, and the explanation of an instance's state.
Mixed into the instances viewset so the router gives them their URLs."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from journal.records import actor_name
from meshconsole.api import StrictSerializer
from registry.api.serializers import InstanceSerializer
from registry.control import ACTIONS, Selector, instances_control
from registry.explain import instance_explain
from registry.heartbeats import TTL_STATUSES, ttl_heartbeat_record
from registry.models import CheckType, Instance, Service

MAX_WEIGHT = 10_000


class SelectorSerializer(StrictSerializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=100), default=list)
    metadata = serializers.DictField(child=serializers.CharField(max_length=500), default=dict)


class BulkSerializer(StrictSerializer):
    selector = SelectorSerializer(required=False)
    all = serializers.BooleanField(default=False)
    action = serializers.ChoiceField(choices=ACTIONS)
    weight = serializers.IntegerField(required=False, min_value=0, max_value=MAX_WEIGHT)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        selector = attrs.get("selector") or {}
        if not selector.get("tags") and not selector.get("metadata") and not attrs["all"]:
            raise serializers.ValidationError(
                {"selector": 'an empty selector matches every instance: say "all": true'}
            )
        if attrs["action"] == "weight" and "weight" not in attrs:
            raise serializers.ValidationError({"weight": "required for the weight action"})
        return attrs


class WeightSerializer(StrictSerializer):
    weight = serializers.IntegerField(min_value=0, max_value=MAX_WEIGHT)


class HeartbeatSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=[str(s) for s in TTL_STATUSES])
    output = serializers.CharField(max_length=400, allow_blank=True, default="")


class BulkResultSerializer(serializers.Serializer):
    affected = serializers.ListField(child=serializers.CharField())


class InstanceControlMixin:
    """Needs get_object() and _service() from the viewset."""

    get_object: Any
    _service: Any

    def _command(self, request: Request, name: str, weight: int | None = None) -> Response:
        instance: Instance = self.get_object()
        instances_control(
            user=request.user,
            service=instance.service,
            action=name,
            ids=[instance.pk],
            weight=weight,
        )
        fresh = Instance.objects.select_related("service", "node").get(pk=instance.pk)
        return Response(InstanceSerializer(fresh).data)

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def maintenance(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._command(request, "maintenance")

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def drain(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Out of new traffic now; maintenance after the service's drain timeout."""
        return self._command(request, "drain")

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._command(request, "enable")

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Out of rotation and not checked."""
        return self._command(request, "disable")

    @extend_schema(request=WeightSerializer, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def weight(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = WeightSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._command(request, "weight", body.validated_data["weight"])

    @extend_schema(request=BulkSerializer, responses=BulkResultSerializer)
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One action on every instance matching the selector, in one transaction."""
        service: Service = self._service()
        body = BulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        raw = data.get("selector") or {}
        selector = Selector(tags=list(raw.get("tags", [])), metadata=dict(raw.get("metadata", {})))
        affected = instances_control(
            user=request.user,
            service=service,
            action=data["action"],
            selector=None if selector.empty else selector,
            weight=data.get("weight"),
        )
        return Response({"affected": affected})

    @extend_schema(request=HeartbeatSerializer, responses=InstanceSerializer)
    @action(detail=True, methods=["put"])
    def heartbeat(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A TTL check's heartbeat: the instance reports its own status."""
        instance: Instance = self.get_object()
        if instance.service.check_type != CheckType.TTL:
            raise serializers.ValidationError(
                {
                    "status": f"{instance.service.name} uses {instance.service.check_type} checks, "
                    "not TTL heartbeats"
                }
            )
        body = HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ttl_heartbeat_record(
            instance=instance,
            status=body.validated_data["status"],
            output=body.validated_data["output"],
            actor=actor_name(request.user),
            now=timezone.now(),
        )
        fresh = Instance.objects.select_related("service", "node").get(pk=instance.pk)
        return Response(InstanceSerializer(fresh).data, status=status.HTTP_200_OK)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def explain(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """{"reason", "receives_traffic", "timeline"} for one instance."""
        return Response(instance_explain(self.get_object()))
