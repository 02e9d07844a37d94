"""Shapes of the intentions API (docs/api.md, docs/security.md)."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from agents.gateways import GATEWAY_NAME_RE
from identity.models import WILDCARD, Action, Intention
from meshconsole.api import StrictFieldsMixin, StrictSerializer
from registry.models import SERVICE_NAME_RE

# A service name or "*". Names of services not registered yet are accepted (as
# Consul does): an intention can be written before the service first starts.
NAME_OR_WILDCARD = rf"^(\*|{SERVICE_NAME_RE.strip('^$')})$"
# A source may also be a gateway (`gateway:<name>`: the identity every agent serving
# as that gateway holds); a destination is always a service or "*".
SOURCE_NAME = rf"^(\*|{SERVICE_NAME_RE.strip('^$')}|gateway:{GATEWAY_NAME_RE.strip('^$')})$"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # RFC 9110 token
MAX_HEADERS = 20


class HttpConditionsSerializer(StrictSerializer):
    methods = serializers.ListField(
        child=serializers.CharField(max_length=32), max_length=16, required=False
    )
    path_prefix = serializers.RegexField(r"^/[^\s]*$", max_length=500, required=False)
    headers = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True), required=False
    )

    def validate_methods(self, value: list[str]) -> list[str]:
        for method in value:
            if not _TOKEN.match(method):
                raise serializers.ValidationError(f"{method[:40]!r} is not an HTTP method")
        return sorted({m.upper() for m in value})

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise serializers.ValidationError(f"at most {MAX_HEADERS} headers")
        for name in value:
            if not _TOKEN.match(name):
                raise serializers.ValidationError(f"{name[:40]!r} is not a header name")
        return {k.lower(): v for k, v in value.items()}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(k) for k in ("methods", "path_prefix", "headers")):
            raise serializers.ValidationError(
                "give at least one condition (methods, path_prefix, headers), or http: null"
            )
        return {k: v for k, v in attrs.items() if v}


class IntentionSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    source = serializers.RegexField(SOURCE_NAME, max_length=71)  # type: ignore[assignment]
    destination = serializers.RegexField(NAME_OR_WILDCARD, max_length=63)
    action = serializers.ChoiceField(choices=Action.choices)
    http = HttpConditionsSerializer(allow_null=True, required=False, default=None)
    description = serializers.CharField(max_length=500, allow_blank=True, default="")
    # Optimistic concurrency on PATCH/DELETE (or If-Match); read-only in answers.
    version = serializers.IntegerField(min_value=1, required=False)

    class Meta:
        model = Intention
        fields = (
            "id",
            "source",
            "destination",
            "action",
            "http",
            "description",
            "version",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance if isinstance(self.instance, Intention) else None
        source = attrs.get("source", instance.source if instance else None)
        destination = attrs.get("destination", instance.destination if instance else None)
        if source is not None and source == destination and source != WILDCARD:
            raise serializers.ValidationError(
                {"destination": "a service calling itself never crosses the mesh"}
            )
        return attrs


class DefaultActionSerializer(StrictSerializer):
    default_action = serializers.ChoiceField(choices=Action.choices)
    version = serializers.IntegerField(min_value=1, required=False)


class CheckQuerySerializer(StrictSerializer):
    source = serializers.RegexField(  # type: ignore[assignment]
        rf"^({SERVICE_NAME_RE.strip('^$')}|node:[^\s]{{1,253}}|gateway:{GATEWAY_NAME_RE.strip('^$')})$"
    )
    destination = serializers.RegexField(SERVICE_NAME_RE, max_length=63)
    method = serializers.RegexField(_TOKEN.pattern, required=False)
    path = serializers.RegexField(r"^/[^\s]*$", max_length=2000, required=False, default="/")


class RotateSerializer(StrictSerializer):
    """`POST ca/rotate/` takes no options (as `meshconsole ca rotate`): an empty body or
    `{}`; any field is an unknown one (a 400 that rotates nothing)."""


class RetireSerializer(StrictSerializer):
    force = serializers.BooleanField(default=False)
