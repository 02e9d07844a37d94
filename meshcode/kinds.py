"""The kinds of mesh documents: how each is validated, read, written and removed.

A kind is one object in KINDS, applied in order (services before the policies
that name them). A later kind (AccessPolicy, Route, GatewayRoute, Consumer)
is one more class here and one more entry in meshcode.schema; the workflow in
meshcode.apply does not change. Documents are plain JSON: `kind`, `name`, and
the kind's fields, spelled as in the REST API (durations "5s").
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from journal.records import Actor
from meshcode.base import Document, Kind, unknown_fields
from meshcode.gateway_kinds import ConsumerKind, GatewayRouteKind
from meshcode.intentions import IntentionsKind
from policies.document import (
    PolicyDocumentSerializer,
    document_merge,
    policy_defaults,
    policy_document,
)
from policies.models import ServiceRoutes, TrafficPolicy
from policies.routes import routes_validate
from policies.services import policy_reset, policy_update, routes_reset, routes_update
from registry import services as registry
from registry.api.serializers import CHECK_TO_MODEL, ServiceSerializer
from registry.models import Service


def service_document(service: Service) -> Document:
    out = ServiceSerializer()
    return {
        "kind": "Service",
        "name": service.name,
        "protocol": service.protocol,
        "description": service.description,
        "tags": list(service.tags or []),
        "check": out.get_check(service),
        "drain_timeout": out.fields["drain_timeout"].to_representation(service.drain_timeout_ms),
        "mtls_mode": service.mtls_mode,
    }


SERVICE_KEYS = {"name", "protocol", "description", "tags", "check", "drain_timeout", "mtls_mode"}


class ServiceKind(Kind):
    """A service and its health check (instances are not documents: agents and
    operators register them)."""

    name = "Service"

    def documents(self) -> dict[str, Document]:
        return {s.name: service_document(s) for s in Service.objects.order_by("name")}

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        errors: dict[str, Any] = unknown_fields(body, SERVICE_KEYS)
        check = body.get("check")
        if isinstance(check, dict):
            inner = unknown_fields(check, set(CHECK_TO_MODEL))
            if inner:
                errors["check"] = inner
        if errors:
            raise serializers.ValidationError(errors)
        serializer = ServiceSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        service = Service(name=name)
        for field in registry.SERVICE_FIELDS:
            if field in serializer.validated_data:
                setattr(service, field, serializer.validated_data[field])
        # A document is the whole desired state: what it omits takes the defaults.
        data = {field: getattr(service, field) for field in registry.SERVICE_FIELDS}
        return service_document(service), data

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        service = Service.objects.filter(name=name).first()
        if service is None:
            registry.service_create(user=user, data={"name": name, **data})
        else:
            registry.service_update(user=user, service=service, data=data)

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        service = Service.objects.filter(name=name).first()
        if service is not None:
            # The plan already refused a prune that leaves a failover target dangling.
            registry.service_delete(user=user, service=service, check_referrers=False)


def traffic_policy_document(policy: TrafficPolicy) -> Document:
    return {"kind": "TrafficPolicy", "name": policy.service.name, **policy_document(policy)}


class TrafficPolicyKind(Kind):
    """The traffic and failover policy of the service NAME (docs/policies.md);
    what a document omits takes the defaults, as a PUT does."""

    name = "TrafficPolicy"

    def documents(self) -> dict[str, Document]:
        rows = TrafficPolicy.objects.select_related("service").order_by("service__name")
        return {p.service.name: traffic_policy_document(p) for p in rows}

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        service = Service.objects.filter(name=name).first()
        if service is None:
            raise serializers.ValidationError(
                {"name": [f"no service {name} (in the mesh or in these documents)"]}
            )
        body = {k: v for k, v in body.items() if k != "name"}
        for key in ("service", "version", "updated_at", "updated_by"):
            if key in body:
                raise serializers.ValidationError({key: ["unknown field"]})
        defaults = policy_document(policy_defaults())
        serializer = PolicyDocumentSerializer(
            data=document_merge(defaults, body), context={"service": service}
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        target = TrafficPolicy(service=service, retry_on=[])
        for field, value in data.items():
            setattr(target, field, value)
        return traffic_policy_document(target), data

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        policy_update(user=user, service=Service.objects.get(name=name), data=data, note=note)

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        # A service always has a policy: removing the document restores the defaults.
        service = Service.objects.filter(name=name).first()
        if service is not None:
            policy_reset(user=user, service=service, note=note)

    def depends_on(self, name: str) -> tuple[str, str] | None:
        return ("Service", name)


class RoutesKind(Kind):
    """The subsets and ordered L7 routes of the service NAME (docs/policies.md
    "Routes and subsets"), the document of PUT services/NAME/routes/ without
    its version. Applied after the services: a split may name a service the
    same apply creates."""

    name = "Routes"

    def documents(self) -> dict[str, Document]:
        rows = ServiceRoutes.objects.select_related("service").order_by("service__name")
        return {
            r.service.name: {"kind": "Routes", "name": r.service.name, **r.document} for r in rows
        }

    def validate(self, name: str, body: dict[str, Any]) -> tuple[Document, dict[str, Any]]:
        service = Service.objects.filter(name=name).first()
        if service is None:
            raise serializers.ValidationError(
                {"name": [f"no service {name} (in the mesh or in these documents)"]}
            )
        document = routes_validate(service, {k: v for k, v in body.items() if k != "name"})
        return {"kind": "Routes", "name": name, **document}, dict(document)

    def write(self, *, user: Actor, name: str, data: dict[str, Any], note: str) -> None:
        routes_update(
            user=user,
            service=Service.objects.get(name=name),
            document={"subsets": data["subsets"], "routes": data["routes"]},
            note=note,
            check_referrers=False,  # the apply checks subsets in use once all is written
        )

    def remove(self, *, user: Actor, name: str, note: str) -> None:
        service = Service.objects.filter(name=name).first()
        if service is not None:
            routes_reset(user=user, service=service, note=note, check_referrers=False)

    def depends_on(self, name: str) -> tuple[str, str] | None:
        return ("Service", name)


# In apply order (services before what names them). Removal (prune) runs in the
# reverse order.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        ServiceKind(),
        TrafficPolicyKind(),
        RoutesKind(),
        IntentionsKind(),
        ConsumerKind(),
        GatewayRouteKind(),
    )
}
