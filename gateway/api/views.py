"""The gateway API under /api/v1/gateway/ (docs/api.md, docs/gateway.md):
gateways and their ordered route tables, consumers and their keys, JWT
providers. Any role reads (secrets are never shown); an unscoped admin writes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import services
from gateway.api.serializers import (
    ConsumerKeyOutSerializer,
    ConsumerOutSerializer,
    ConsumerSerializer,
    GatewayOutSerializer,
    GatewaySerializer,
    JWTProviderSerializer,
    KeyCreatedSerializer,
    KeyCreateSerializer,
    RouteSerializer,
    RouteTableOutSerializer,
    RouteTableSerializer,
)
from gateway.metrics import gateway_metrics
from gateway.models import Consumer, ConsumerKey, Gateway, JWTProvider
from meshconsole.api import Conflict
from meshconsole.roles import ADMIN, READ
from monitoring.api.views import window_seconds

TAGS = ["gateway"]
READ_OR_ADMIN = {**READ, "POST": ADMIN, "PUT": ADMIN, "PATCH": ADMIN, "DELETE": ADMIN}


def _valid(serializer: serializers.Serializer) -> dict[str, Any]:
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
    return dict(request.data)


def table_payload(gateway: Gateway) -> dict[str, Any]:
    return {
        "gateway": gateway.name,
        "version": gateway.version,
        "routes": services.table_of(gateway),
    }


def _write(request: Request, gateway: Gateway, edit: Any, version: Any = None) -> Gateway:
    try:
        return services.routes_write(
            user=request.user, gateway=gateway, edit=edit, expected_version=version
        )
    except services.StaleVersion as exc:
        raise Conflict(str(exc)) from exc
    except services.InUse as exc:
        raise Conflict(str(exc)) from exc
    except services.NotFound as exc:
        raise exceptions.NotFound(str(exc)) from exc


class GatewayListView(generics.ListAPIView):
    roles = READ_OR_ADMIN
    serializer_class = GatewayOutSerializer
    queryset = Gateway.objects.order_by("name")

    @extend_schema(tags=TAGS, operation_id="gateway_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=GatewaySerializer, responses={201: GatewayOutSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(GatewaySerializer(data=request.data))
        if Gateway.objects.filter(name=data["name"]).exists():
            raise Conflict(f"gateway {data['name']} exists")
        gateway = services.gateway_create(user=request.user, **data)
        return Response(GatewayOutSerializer(gateway).data, status=status.HTTP_201_CREATED)


class GatewayDetailView(APIView):
    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses=GatewayOutSerializer)
    def get(self, request: Request, gw: str) -> Response:
        return Response(GatewayOutSerializer(get_object_or_404(Gateway, name=gw)).data)

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, gw: str) -> Response:
        services.gateway_delete(user=request.user, gateway=get_object_or_404(Gateway, name=gw))
        return Response(status=status.HTTP_204_NO_CONTENT)


METRICS_MAX_WINDOW_S = 3600  # windows are merged in Python: an hour at most


class GatewayMetricsView(APIView):
    """A gateway's traffic per service (and per route and consumer once the
    windows carry them) over ?window= (default 60s, at most 1h)."""

    roles = READ

    @extend_schema(
        tags=TAGS,
        parameters=[OpenApiParameter("window", str, description="e.g. 60s, 15m (at most 1h)")],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description="{gateway, window_seconds, by_service, ...}"
        ),
    )
    def get(self, request: Request, gw: str) -> Response:
        gateway = get_object_or_404(Gateway, name=gw)
        seconds = window_seconds(request)
        if seconds > METRICS_MAX_WINDOW_S:
            raise serializers.ValidationError({"window": ["at most 1h for a gateway"]})
        return Response(gateway_metrics(gateway.name, seconds))


class RouteTableView(APIView):
    """The whole ordered table: GET, PUT (with the `version` read: 409 when
    stale), POST (append one route)."""

    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses=RouteTableOutSerializer, operation_id="gateway_routes_list")
    def get(self, request: Request, gw: str) -> Response:
        return Response(table_payload(get_object_or_404(Gateway, name=gw)))

    @extend_schema(
        tags=TAGS,
        request=RouteTableSerializer,
        responses=RouteTableOutSerializer,
        operation_id="gateway_routes_replace",
    )
    def put(self, request: Request, gw: str) -> Response:
        gateway = get_object_or_404(Gateway, name=gw)
        data = _valid(RouteTableSerializer(data=request.data))
        routes = data["routes"]
        gateway = _write(request, gateway, lambda _: routes, data.get("version"))
        return Response(table_payload(gateway))

    @extend_schema(tags=TAGS, request=RouteSerializer, responses={201: RouteSerializer})
    def post(self, request: Request, gw: str) -> Response:
        gateway = get_object_or_404(Gateway, name=gw)
        route = _valid(RouteSerializer(data=request.data))
        _write(request, gateway, services.route_appended(route))
        return Response(route_of(gateway, route["name"]), status=status.HTTP_201_CREATED)


def route_of(gateway: Gateway, name: str) -> dict[str, Any]:
    for route in services.table_of(gateway):
        if route["name"] == name:
            return route
    raise exceptions.NotFound(f"gateway {gateway.name} has no route {name!r}")


class RouteDetailView(APIView):
    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses=RouteSerializer)
    def get(self, request: Request, gw: str, route: str) -> Response:
        return Response(route_of(get_object_or_404(Gateway, name=gw), route))

    @extend_schema(tags=TAGS, request=RouteSerializer, responses=RouteSerializer)
    def put(self, request: Request, gw: str, route: str) -> Response:
        gateway = get_object_or_404(Gateway, name=gw)
        body = _body(request)
        if body.setdefault("name", route) != route:
            raise serializers.ValidationError(
                {"name": ["a route is renamed by a PUT of the table"]}
            )
        data = _valid(RouteSerializer(data=body))
        _write(request, gateway, services.route_replaced(route, data))
        return Response(route_of(gateway, route))

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, gw: str, route: str) -> Response:
        _write(request, get_object_or_404(Gateway, name=gw), services.route_removed(route))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConsumerListView(generics.ListAPIView):
    roles = READ_OR_ADMIN
    serializer_class = ConsumerOutSerializer
    queryset = Consumer.objects.prefetch_related("keys").order_by("name")

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=ConsumerSerializer, responses={201: ConsumerOutSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(ConsumerSerializer(data=request.data))
        if Consumer.objects.filter(name=data["name"]).exists():
            raise Conflict(f"consumer {data['name']} exists")
        consumer = services.consumer_create(user=request.user, data=data)
        return Response(ConsumerOutSerializer(consumer).data, status=status.HTTP_201_CREATED)


class ConsumerDetailView(APIView):
    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses=ConsumerOutSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(ConsumerOutSerializer(get_object_or_404(Consumer, name=name)).data)

    @extend_schema(tags=TAGS, request=ConsumerSerializer, responses=ConsumerOutSerializer)
    def patch(self, request: Request, name: str) -> Response:
        consumer = get_object_or_404(Consumer, name=name)
        data = _valid(ConsumerSerializer(data=request.data, partial=True))
        if data.get("name", name) != name:
            raise serializers.ValidationError({"name": ["a consumer cannot be renamed"]})
        consumer = services.consumer_update(user=request.user, consumer=consumer, data=data)
        return Response(ConsumerOutSerializer(consumer).data)

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        consumer = get_object_or_404(Consumer, name=name)
        try:
            services.consumer_delete(user=request.user, consumer=consumer)
        except services.InUse as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConsumerKeysView(generics.ListAPIView):
    roles = READ_OR_ADMIN
    serializer_class = ConsumerKeyOutSerializer

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # the schema generator
            return ConsumerKey.objects.none()
        consumer = get_object_or_404(Consumer, name=self.kwargs["name"])
        return consumer.keys.order_by("created_at", "prefix")

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=KeyCreateSerializer, responses={201: KeyCreatedSerializer})
    def post(self, request: Request, name: str) -> Response:
        """A new key: the answer is the only time the clear key is shown."""
        consumer = get_object_or_404(Consumer, name=name)
        data = _valid(KeyCreateSerializer(data=request.data))
        new = services.consumer_key_create(user=request.user, consumer=consumer, **data)
        response = Response(
            {
                "consumer": consumer.name,
                "prefix": new.row.prefix,
                "key": new.key,
                "key_hash": new.row.key_hash,
                "description": new.row.description,
                "created_at": new.row.created_at,
            },
            status=status.HTTP_201_CREATED,
        )
        response["Cache-Control"] = "no-store"
        return response


class ConsumerKeyView(APIView):
    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, name: str, prefix: str) -> Response:
        consumer = get_object_or_404(Consumer, name=name)
        try:
            services.consumer_key_delete(user=request.user, consumer=consumer, prefix=prefix)
        except services.NotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderListView(generics.ListAPIView):
    roles = READ_OR_ADMIN
    serializer_class = JWTProviderSerializer
    queryset = JWTProvider.objects.order_by("name")

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=JWTProviderSerializer, responses={201: JWTProviderSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(JWTProviderSerializer(data=request.data))
        with transaction.atomic():
            if JWTProvider.objects.filter(name=data["name"]).exists():
                raise Conflict(f"JWT provider {data['name']} exists; PUT it to change it")
            provider = services.provider_write(user=request.user, name=data["name"], data=data)
        return Response(JWTProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailView(APIView):
    roles = READ_OR_ADMIN

    @extend_schema(tags=TAGS, responses=JWTProviderSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(JWTProviderSerializer(get_object_or_404(JWTProvider, name=name)).data)

    @extend_schema(tags=TAGS, request=JWTProviderSerializer, responses=JWTProviderSerializer)
    def put(self, request: Request, name: str) -> Response:
        """Replace the provider; a body without `secret` keeps the stored one."""
        current = get_object_or_404(JWTProvider, name=name)
        body = _body(request)
        if body.setdefault("name", name) != name:
            raise serializers.ValidationError({"name": ["a provider cannot be renamed"]})
        data = _valid(JWTProviderSerializer(data=body, context={"current": current}))
        provider = services.provider_write(user=request.user, name=name, data=data)
        return Response(JWTProviderSerializer(provider).data)

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        provider = get_object_or_404(JWTProvider, name=name)
        try:
            services.provider_delete(user=request.user, provider=provider)
        except services.InUse as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)
