"""Shapes of the policy endpoints beyond the document itself (policies.document)."""

from __future__ import annotations

from rest_framework import serializers

from meshconsole.api import StrictSerializer
from policies.api.versions import VersionSerializer
from policies.models import PolicyVersion, RoutesVersion


class PolicyVersionSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        model = PolicyVersion


class RoutesVersionSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        model = RoutesVersion


class RollbackSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)
