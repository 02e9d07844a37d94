"""Shapes of the agent protocol (docs/agent-protocol.md)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from rest_framework import serializers

from agents.enrollment import token_is_plausible
from agents.gateways import GATEWAY_NAME_RE, RESERVED_GATEWAY_NAMES
from agents.models import Agent
from agents.runtime import histogram
from agents.runtime.addresses import address_error
from agents.runtime.config import (
    ENTRY_ID_RE,
    MAX_METADATA_VALUE,
    MAX_TAG,
    MAX_TAGS,
    MAX_ZONE,
    default_entry_id,
)
from agents.runtime.gateway.auth import KEY_DIGEST_RE
from agents.runtime.vocabulary import MAX_KEYS_USED
from identity.certview import certificates_by_agent
from meshconsole.api import StringListField
from registry.api.serializers import CheckSerializer, check_to_model
from registry.models import SERVICE_NAME_RE, Protocol


class UpstreamSerializer(serializers.Serializer):
    service = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.HTTP)
    listen = serializers.CharField(max_length=100, required=False, allow_blank=True)
    source = serializers.RegexField(  # type: ignore[assignment]
        SERVICE_NAME_RE, max_length=63, required=False
    )


class InboundSerializer(serializers.Serializer):
    """Where other agents reach this host's inbound (mTLS) listener."""

    address = serializers.CharField(max_length=253)
    port = serializers.IntegerField(min_value=1, max_value=65535)

    def validate_address(self, value: str) -> str:
        error = address_error(value)
        if error:
            raise serializers.ValidationError(error)
        return value


class GatewayDeclSerializer(serializers.Serializer):
    """`"gateway": {"name": "edge"}`: this agent serves as that gateway."""

    name = serializers.RegexField(GATEWAY_NAME_RE, max_length=63)
    # In a report: the keys that authenticated requests since the last one (their
    # `sha256:` digests, as the snapshot sent them); absent = none.
    keys_used = serializers.ListField(
        child=serializers.RegexField(KEY_DIGEST_RE), max_length=MAX_KEYS_USED, required=False
    )

    def validate_name(self, value: str) -> str:
        if value in RESERVED_GATEWAY_NAMES:
            raise serializers.ValidationError(f"{value!r} is reserved (a path of the gateway API)")
        return value


class EnrollSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    node = serializers.RegexField(
        r"^[A-Za-z0-9]([A-Za-z0-9.\-_]{0,251}[A-Za-z0-9])?$", max_length=253
    )
    zone = serializers.CharField(max_length=MAX_ZONE, allow_blank=True, default="")
    version = serializers.CharField(max_length=32, allow_blank=True, default="")
    upstreams = UpstreamSerializer(many=True, default=list)
    inbound = InboundSerializer(required=False, allow_null=True)
    # Absent (or null) = not a gateway.
    gateway = GatewayDeclSerializer(required=False, allow_null=True)
    # Optional: the local services (only their names are kept at enrollment: the
    # certificates an agent may ask for before its first report).
    services = serializers.ListField(
        child=serializers.DictField(), max_length=1000, required=False, default=list
    )
    # Optional: the agent token the agent generated and keeps (a retried
    # enrollment with the same one returns the same answer).
    agent_token = serializers.CharField(max_length=200, required=False)

    def validate_services(self, value: list[dict[str, Any]]) -> list[str]:
        names = []
        for entry in value:
            name = entry.get("name")
            if not isinstance(name, str) or not re.match(SERVICE_NAME_RE, name):
                raise serializers.ValidationError("each service needs a name (a DNS label)")
            names.append(name)
        return sorted(set(names))

    def validate_agent_token(self, value: str) -> str:
        if not token_is_plausible(value):
            raise serializers.ValidationError(
                "an agent token is 32-200 printable ASCII characters without spaces"
            )
        return value


class EnrollResponseSerializer(serializers.Serializer):
    agent_id = serializers.UUIDField()
    agent_token = serializers.CharField()
    revision = serializers.IntegerField()


class LocalServiceSerializer(serializers.Serializer):
    # The entry's id on this agent; the response's `instances` are keyed by it.
    id = serializers.RegexField(ENTRY_ID_RE, max_length=100, required=False)
    name = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.HTTP)
    address = serializers.CharField(max_length=253)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    weight = serializers.IntegerField(min_value=0, max_value=10_000, default=100)
    tags = StringListField(
        default=list, max_length=MAX_TAGS, child=serializers.CharField(max_length=MAX_TAG)
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=MAX_METADATA_VALUE), default=dict
    )
    check = CheckSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "check" in attrs:
            attrs["check"] = check_to_model(dict(attrs["check"]))
        return attrs


OPTIONAL_NAME_RE = r"^[a-z0-9-]{0,63}$"  # a subset, route or consumer name, or "" (none)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class WindowNameField(serializers.RegexField):
    """A subset, route or consumer name of a window, or "": a string, not a number made one."""

    def __init__(self) -> None:
        super().__init__(OPTIONAL_NAME_RE, max_length=63, allow_blank=True, default="")

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("expected a string")
        return str(super().to_internal_value(data))


class MetricsWindowSerializer(serializers.Serializer):
    source = serializers.RegexField(  # type: ignore[assignment]
        r"^[a-z0-9-]{1,63}$", max_length=63
    )
    destination = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    window_end = serializers.FloatField(min_value=0)
    seconds = serializers.FloatField(min_value=0.001, max_value=3600)
    requests = serializers.IntegerField(min_value=0, max_value=10**9)
    errors = serializers.IntegerField(min_value=0, max_value=10**9)  # type: ignore[assignment]
    denied = serializers.IntegerField(min_value=0, max_value=10**9, default=0)
    # The destination agent's own view of an mTLS edge (its inbound listener):
    # only its denials count, the caller's agent reports the requests.
    inbound = serializers.BooleanField(default=False)
    # A gateway's window: `source` is the gateway's name (the topology's entry node).
    gateway = serializers.BooleanField(default=False)
    latency_sum_ms = serializers.FloatField(min_value=0, default=0.0)
    buckets = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=10**12),
        max_length=histogram.NBUCKETS,
        default=list,
    )
    # L7 routes (docs/agent-protocol.md "Routes, subsets and the gateway"): "" = none.
    subset = WindowNameField()
    route = WindowNameField()
    consumer = WindowNameField()
    statuses = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=10**9),
        required=False,
        allow_null=True,
        default=None,
    )

    def validate_statuses(self, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(STATUS_CLASSES))
        if unknown:
            raise serializers.ValidationError(
                f"unknown status classes {unknown}; expected {', '.join(STATUS_CLASSES)}"
            )
        return {k: value[k] for k in STATUS_CLASSES if k in value}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["errors"] > attrs["requests"]:
            raise serializers.ValidationError({"errors": "cannot exceed requests"})
        return attrs


# Per report: edges x subsets x routes x (a gateway's) consumers with traffic in it.
MAX_EDGE_WINDOWS = 10_000  # (the 2.5 MB request body bound holds about 12,000)
MAX_INSTANCE_WINDOWS = 5000  # per report: an agent's upstream instances with traffic
INSTANCE_ID_RE = r"^[A-Za-z0-9_-]{1,32}$"  # an instance id as snapshots carry it


class InstanceIdField(serializers.RegexField):
    """An instance id: a string, not a number made one."""

    def __init__(self) -> None:
        super().__init__(INSTANCE_ID_RE, max_length=32)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("expected a string")
        return str(super().to_internal_value(data))


class InstanceWindowSerializer(serializers.Serializer):
    """One upstream instance's golden figures over a report window (`instances`)."""

    service = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    instance = InstanceIdField()
    window_end = serializers.FloatField(min_value=0)
    seconds = serializers.FloatField(min_value=0.001, max_value=3600)
    requests = serializers.IntegerField(min_value=0, max_value=10**9)
    errors = serializers.IntegerField(min_value=0, max_value=10**9)  # type: ignore[assignment]
    latency_sum_ms = serializers.FloatField(min_value=0, default=0.0)
    buckets = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=10**12),
        max_length=histogram.NBUCKETS,
        default=list,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["errors"] > attrs["requests"]:
            raise serializers.ValidationError({"errors": "cannot exceed requests"})
        return attrs


# Revisions are 64-bit signed in the database (BigIntegerField).
MAX_REVISION = 2**63 - 1


class NackSerializer(serializers.Serializer):
    revision = serializers.IntegerField(min_value=0, max_value=MAX_REVISION, allow_null=True)
    reason = serializers.CharField(max_length=1000)
    # The parts refused alone (path -> reason) while the rest applied.
    refused = serializers.DictField(
        child=serializers.CharField(max_length=500), required=False, default=dict
    )

    def validate_refused(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 200:
            raise serializers.ValidationError("at most 200 refused parts")
        return value


class EjectionSerializer(serializers.Serializer):
    """An outlier ejection or its end, seen by the agent (docs/policies.md)."""

    service = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    endpoint = serializers.RegexField(r"^[A-Za-z0-9_-]{1,32}$", max_length=32)
    address = serializers.CharField(max_length=253)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    event = serializers.ChoiceField(choices=["ejected", "returned"])
    reason = serializers.CharField(max_length=500, allow_blank=True, default="")
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, default=0)
    at = serializers.FloatField(min_value=0, required=False)


class ReportSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=32, required=False, allow_blank=True)
    applied_revision = serializers.IntegerField(
        min_value=0, max_value=MAX_REVISION, allow_null=True, required=False
    )
    nack = NackSerializer(allow_null=True, required=False)
    upstreams = serializers.ListField(child=UpstreamSerializer(), max_length=1000, required=False)
    services = serializers.ListField(
        child=LocalServiceSerializer(), max_length=1000, required=False
    )
    metrics = serializers.ListField(
        child=MetricsWindowSerializer(), max_length=MAX_EDGE_WINDOWS, required=False
    )
    # Per upstream instance (issue 13); absent from older agents.
    instances = serializers.ListField(
        child=InstanceWindowSerializer(), max_length=MAX_INSTANCE_WINDOWS, required=False
    )
    ejections = serializers.ListField(child=EjectionSerializer(), max_length=1000, required=False)
    # Absent (or null) = this host has no inbound listener.
    inbound = InboundSerializer(required=False, allow_null=True)
    # Absent (or null) = not a gateway (a gateway says so in every report).
    gateway = GatewayDeclSerializer(required=False, allow_null=True)

    def validate_services(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several instances of one service per agent: name+port unique; every entry
        gets its id (the agent's, else default_entry_id), unique too."""
        pairs = [(s["name"], s["port"]) for s in value]
        if len(pairs) != len(set(pairs)):
            raise serializers.ValidationError("a service is listed twice with the same port")
        counts = Counter(s["name"] for s in value)
        for s in value:
            s.setdefault("id", default_entry_id(s["name"], s["port"], shared=counts[s["name"]] > 1))
        if len({s["id"] for s in value}) != len(value):
            raise serializers.ValidationError("two services have the same id")
        return value


class AgentSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name")
    zone = serializers.CharField(source="node.zone")
    status = serializers.SerializerMethodField()
    inbound = serializers.SerializerMethodField()
    certificates = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            "id",
            "node",
            "zone",
            "version",
            "address",
            "upstreams",
            "enrolled_at",
            "last_seen",
            "applied_revision",
            "nack_revision",
            "nack_reason",
            "status",
            "disabled",
            "inbound",
            "gateway",
            "certificates",
        ]

    def get_inbound(self, agent: Agent) -> dict[str, Any] | None:
        if not agent.inbound_address or agent.inbound_port is None:
            return None
        return {"address": agent.inbound_address, "port": agent.inbound_port}

    def get_certificates(self, agent: Agent) -> list[dict[str, Any]]:
        """Unexpired certificates: serial, service, identity, not_after, seconds_to_expiry."""
        page = self.context.get("certificates")
        if page is None:
            page = certificates_by_agent([agent.pk])
        return list(page.get(str(agent.pk), []))

    def get_status(self, agent: Agent) -> str:
        if agent.silent:
            return "silent"
        if agent.nack_reason:
            return "nack"
        return "ok"
