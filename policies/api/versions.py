"""What the policy and the routes endpoints share: the version a write names
(optimistic concurrency) and the list of a service's saved versions."""

from __future__ import annotations

from typing import Any, ClassVar

from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.response import Response

from policies.models import DocumentVersion
from registry.models import Service


def expected_version(body: dict[str, Any]) -> int | None:
    """The version a written document names, if any: it must be the current one,
    which policy_update / routes_update check under the row lock (409 if not)."""
    version = body.get("version")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise serializers.ValidationError({"version": ["expected an integer"]})
    return version


# One saved version in a history list; subclasses name the model. (No docstring:
# drf-spectacular would publish it as the description of both schema components.)
class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        fields: ClassVar = ["version", "created_at", "created_by", "document"]


def versions_answer(
    model: type[DocumentVersion], serializer: type[VersionSerializer], name: str
) -> Response:
    """Service NAME's saved versions of one document, newest first (404: no service)."""
    service = get_object_or_404(Service, name=name)
    return Response(serializer(model.history(service.name), many=True).data)
