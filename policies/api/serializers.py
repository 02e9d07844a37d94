"""Shapes of the policy endpoints beyond the document itself (policies.document)."""

from __future__ import annotations

from rest_framework import serializers

from meshconsole.api import StrictSerializer
from policies.models import PolicyVersion


class PolicyVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVersion
        fields = ["version", "created_at", "created_by", "document"]


class RollbackSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)
