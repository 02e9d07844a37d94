"""The gateway's mesh-document kinds (docs/gateway.md, docs/mesh-as-code.md):
`Consumer` (exported without keys: keys are made by the API and shown once)
and `GatewayRoute` (one route; `gateway` names its gateway, created on apply
when new). A route's name is unique across gateways, so a document can name it
(as Kong's are)."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from gateway import services as gateway_services
from gateway.api.serializers import ConsumerSerializer, GatewaySerializer, RouteSerializer
from gateway.documents import route_document, route_normal
from gateway.models import Consumer, Gateway, GatewayRoute
from journal.records import Actor
from meshcode.base import Document, Kind

CONSUMER_KEYS = {"name", "description", "tags", "jwt_subjects"}


def consumer_document(consumer: Consumer) -> Document:
    return {
        "kind": "Consumer",
        "name": consumer.name,
        "description": consumer.description,
        "tags": list(consumer.tags),
        "jwt_subjects": list(consumer.jwt_subjects),
    }


class ConsumerKind(Kind):
    name: ClassVar[str] = "Consumer"

    def documents(self) -> dict[str, Document]:
        return {c.name: consumer_document(c) for c in Consumer.objects.order_by("name")}

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        serializer = ConsumerSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if k != "name"}
        return consumer_document(Consumer(name=name, **data)), data

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        consumer = Consumer.objects.filter(name=name).first()
        if consumer is None:
            gateway_services.consumer_create(user=user, data={"name": name, **data})
        else:
            gateway_services.consumer_update(user=user, consumer=consumer, data=data)

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        consumer = Consumer.objects.filter(name=name).first()
        if consumer is not None:
            try:
                gateway_services.consumer_delete(user=user, consumer=consumer)
            except gateway_services.InUse as exc:
                raise serializers.ValidationError({"name": [str(exc)]}) from exc


def gateway_route_document(gateway: str, route: dict[str, Any]) -> Document:
    doc = route_normal(route)
    return {"kind": "GatewayRoute", "name": doc.pop("name"), "gateway": gateway, **doc}


class GatewayRouteKind(Kind):
    name: ClassVar[str] = "GatewayRoute"

    def documents(self) -> dict[str, Document]:
        rows = GatewayRoute.objects.select_related("gateway").order_by("gateway__name", "position")
        return {r.name: gateway_route_document(r.gateway.name, route_document(r)) for r in rows}

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        body = dict(body)
        gateway = body.pop("gateway", None)
        checked = GatewaySerializer(data={"name": gateway})
        if not checked.is_valid():
            raise serializers.ValidationError({"gateway": checked.errors["name"]})
        serializer = RouteSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = {"gateway": gateway, "route": dict(serializer.validated_data)}
        return gateway_route_document(str(gateway), data["route"]), data

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        route: dict[str, Any] = data["route"]
        gateway = Gateway.objects.filter(name=data["gateway"]).first()
        if gateway is None:
            gateway = gateway_services.gateway_create(user=user, name=data["gateway"])
        old = GatewayRoute.objects.filter(name=name).exclude(gateway=gateway).first()
        if old is not None:  # the route moved to another gateway
            gateway_services.routes_write(
                user=user, gateway=old.gateway, edit=gateway_services.route_removed(name), note=note
            )

        def upsert(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
            at = [i for i, r in enumerate(table) if r["name"] == name]
            if at:
                table[at[0]] = route
                return table
            return [*table, route]

        try:
            gateway_services.routes_write(user=user, gateway=gateway, edit=upsert, note=note)
        except gateway_services.InUse as exc:
            raise serializers.ValidationError({"name": [str(exc)]}) from exc

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        row = GatewayRoute.objects.select_related("gateway").filter(name=name).first()
        if row is not None:
            gateway_services.routes_write(
                user=user, gateway=row.gateway, edit=gateway_services.route_removed(name), note=note
            )
