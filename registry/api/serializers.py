"""Registry API shapes (see docs/architecture.md: service, instance)."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Count, Q
from rest_framework import serializers

from agents.runtime.addresses import address_error
from meshconsole.api import (
    DurationField,
    NumberOrTextRegexField,
    StrictFieldsMixin,
    StrictSerializer,
    StringListField,
)
from registry.explain import instance_reason
from registry.models import (
    ROUTABLE_HEALTH,
    SERVICE_NAME_RE,
    STATUS_RANGE_RE,
    AdminState,
    CheckType,
    Instance,
    MtlsMode,
    Protocol,
    Service,
)


class CheckSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=CheckType.choices, default=CheckType.TCP)
    path = serializers.RegexField(r"^/[^\s]*$", max_length=255, default="/health")
    interval = DurationField(min_ms=100, max_ms=3_600_000, default=5000)
    timeout = DurationField(min_ms=10, max_ms=600_000, default=2000)
    rise = serializers.IntegerField(min_value=1, max_value=100, default=2)
    fall = serializers.IntegerField(min_value=1, max_value=100, default=3)
    # HTTP only: passing status range, a substring the body must hold, headers.
    expect_status = NumberOrTextRegexField(  # 200 (a number in YAML) or "200-399"
        STATUS_RANGE_RE,
        max_length=7,
        default="200-399",
        error_messages={"invalid": 'expected a status or a range such as "200-399"'},
    )
    body = serializers.CharField(
        max_length=200, allow_blank=True, default="", trim_whitespace=False
    )
    headers = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True), default=dict
    )

    def validate_expect_status(self, value: str) -> str:
        low, _, high = value.partition("-")
        if high and int(high) < int(low):
            raise serializers.ValidationError("the range must go from low to high")
        return value

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise serializers.ValidationError("at most 20 headers")
        for name, text in value.items():
            if not HEADER_NAME_RE.fullmatch(name):
                raise serializers.ValidationError(f"{name!r} is not a valid header name")
            if name.lower() in ("connection", "content-length", "transfer-encoding"):
                raise serializers.ValidationError(f"{name} is set by the check itself")
            if any(c in text for c in "\r\n\0"):
                raise serializers.ValidationError(f"the value of {name} has a line break")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("timeout", 0) > attrs.get("interval", 0):
            raise serializers.ValidationError({"timeout": "must not exceed the interval"})
        return attrs


CHECK_TO_MODEL = {
    "type": "check_type",
    "path": "check_path",
    "interval": "check_interval_ms",
    "timeout": "check_timeout_ms",
    "rise": "check_rise",
    "fall": "check_fall",
    "expect_status": "check_expect_status",
    "body": "check_body",
    "headers": "check_headers",
}
HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


def check_to_model(check: dict[str, Any]) -> dict[str, Any]:
    return {CHECK_TO_MODEL[key]: value for key, value in check.items()}


def attach_health(services: list[Service]) -> None:
    """annotate_health for rows already loaded (a page): one grouped query for
    all of them, so a page costs the same number of queries at any size."""
    missing = [s for s in services if getattr(s, "total_instances", None) is None]
    if not missing:
        return
    routable = Q(admin_state=AdminState.ENABLED, health__in=ROUTABLE_HEALTH)
    rows = (
        Instance.objects.filter(service__in=missing)
        .order_by()
        .values("service_id")
        .annotate(total=Count("id"), passing=Count("id", filter=routable))
    )
    counts = {row["service_id"]: (row["total"], row["passing"]) for row in rows}
    for service in missing:
        total, passing = counts.get(service.pk, (0, 0))
        # The same attribute names annotate_health gives (get_health reads them).
        setattr(service, "total_instances", total)  # noqa: B010
        setattr(service, "passing_instances", passing)  # noqa: B010


class ServiceSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    name = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.HTTP)
    description = serializers.CharField(max_length=2000, allow_blank=True, default="")
    tags = StringListField(default=list)
    check = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()
    drain_timeout = DurationField(
        source="drain_timeout_ms", min_ms=0, max_ms=3_600_000, default=30_000
    )
    in_panic = serializers.BooleanField(read_only=True)
    mtls_mode = serializers.ChoiceField(
        choices=MtlsMode.choices,
        default=MtlsMode.DEFAULT,
        help_text='inbound mTLS: strict | permissive | off; "" = the mesh default',
    )
    mtls = serializers.CharField(source="effective_mtls", read_only=True)

    class Meta:
        model = Service
        fields = [
            "name",
            "protocol",
            "mtls_mode",
            "mtls",
            "description",
            "tags",
            "check",
            "health",
            "drain_timeout",
            "in_panic",
        ]

    def get_check(self, service: Service) -> dict[str, Any]:
        return {
            "type": service.check_type,
            "path": service.check_path,
            "interval": DurationField().to_representation(service.check_interval_ms),
            "timeout": DurationField().to_representation(service.check_timeout_ms),
            "rise": service.check_rise,
            "fall": service.check_fall,
            "expect_status": service.check_expect_status,
            "body": service.check_body,
            "headers": service.check_headers,
        }

    def get_health(self, service: Service) -> dict[str, int]:
        total = getattr(service, "total_instances", None)
        passing = getattr(service, "passing_instances", None)
        if total is None or passing is None:
            instances = list(service.instances.all())
            total = len(instances)
            passing = sum(
                1
                for i in instances
                if i.admin_state == AdminState.ENABLED and i.health in ROUTABLE_HEALTH
            )
        return {"passing": passing, "total": total}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        attrs = super().to_internal_value(data)
        if isinstance(data, dict) and "check" in data:
            check = CheckSerializer(data=data["check"], partial=self.partial)
            if not check.is_valid():
                raise serializers.ValidationError({"check": check.errors})
            attrs.update(check_to_model(dict(check.validated_data)))
        return attrs


class ServiceUpdateSerializer(ServiceSerializer):
    name = serializers.RegexField(SERVICE_NAME_RE, max_length=63, read_only=True)


class InstanceSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    service = serializers.CharField(source="service.name", read_only=True)
    address = serializers.CharField(max_length=253)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    zone = serializers.CharField(max_length=63, allow_blank=True, default="")
    weight = serializers.IntegerField(min_value=0, max_value=10_000, default=100)
    tags = StringListField(default=list)
    metadata = serializers.DictField(child=serializers.CharField(max_length=500), default=dict)
    status = serializers.CharField(read_only=True)
    maintenance = serializers.BooleanField(write_only=True, required=False)
    node = serializers.CharField(
        source="node.name", max_length=253, required=False, allow_null=True
    )
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = [
            "id",
            "service",
            "address",
            "port",
            "zone",
            "weight",
            "tags",
            "metadata",
            "status",
            "status_reason",
            "status_since",
            "node",
            "last_heartbeat",
            "maintenance",
            "explanation",
        ]
        read_only_fields = ["id", "status_reason", "status_since", "last_heartbeat"]

    def get_explanation(self, instance: Instance) -> str:
        """The one-line reason (registry.explain); a list shares one panic
        computation per service, cached on the root serializer."""
        from registry.panic import panic_state

        root: Any = self.root
        cache = getattr(root, "_panic_by_service", None)
        if cache is None:
            cache = root._panic_by_service = {}
        if instance.service_id not in cache:
            cache[instance.service_id] = panic_state(instance.service)
        return instance_reason(instance, cache[instance.service_id])[0]

    def validate_address(self, value: str) -> str:
        # The agents' own rule (agents.runtime.addresses): an address accepted
        # here is one every agent's snapshot parser accepts.
        error = address_error(value)
        if error:
            raise serializers.ValidationError(error)
        return value

    def validate_metadata(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64:
            raise serializers.ValidationError("at most 64 keys")
        return value

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        attrs = super().to_internal_value(data)
        node = attrs.pop("node", None)
        if node is not None:
            attrs["node"] = node.get("name")
        return attrs


class InstanceUpdateSerializer(InstanceSerializer):
    address = serializers.CharField(read_only=True)
    port = serializers.IntegerField(read_only=True)
    node = serializers.CharField(source="node.name", read_only=True)
