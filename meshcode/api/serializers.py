"""Shapes of the mesh-as-code endpoints (the documents themselves: meshcode.kinds).
Strict: a misspelt `dry_run` must be a 400, not a real apply."""

from __future__ import annotations

from rest_framework import serializers

from meshcode.apply import MAX_DOCUMENTS
from meshcode.models import MeshVersion
from meshconsole.api import StrictSerializer


class MeshApplySerializer(StrictSerializer):
    documents = serializers.ListField(
        child=serializers.JSONField(), max_length=MAX_DOCUMENTS, allow_empty=True
    )
    prune = serializers.BooleanField(default=False)
    dry_run = serializers.BooleanField(default=False)
    message = serializers.CharField(max_length=1000, allow_blank=True, default="")


class MeshDiffSerializer(StrictSerializer):
    documents = serializers.ListField(
        child=serializers.JSONField(), max_length=MAX_DOCUMENTS, allow_empty=True
    )
    prune = serializers.BooleanField(default=False)


class MeshRollbackSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)
    dry_run = serializers.BooleanField(default=False)


class MeshVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MeshVersion
        fields = [
            "number",
            "author",
            "message",
            "created_at",
            "revision",
            "prune",
            "rollback_of",
            "summary",
            "documents",
        ]
