"""Policy of one service: read, replace (PUT), change (PATCH), history, rollback."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.api import Conflict
from meshconsole.roles import ADMIN, READ
from policies.api.serializers import PolicyVersionSerializer, RollbackSerializer
from policies.api.versions import expected_version, versions_answer
from policies.document import (
    PolicyDocumentSerializer,
    document_merge,
    policy_defaults,
    policy_document,
)
from policies.models import PolicyVersion, TrafficPolicy
from policies.services import StaleVersion, policy_for, policy_update
from registry.api.scoping import ServiceScoped, refuse_out_of_scope
from registry.managed import warn_if_managed
from registry.models import Service

TAGS = ["policies"]


def _validated(service: Service, document: dict[str, Any]) -> dict[str, Any]:
    serializer = PolicyDocumentSerializer(data=document, context={"service": service})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _body(request: Request) -> dict[str, Any]:
    # No body at all is a mistake, not "every default" (a PUT of {} says that).
    if request.stream is None:
        raise serializers.ValidationError({"non_field_errors": ["a JSON object is required"]})
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
    return dict(request.data)


def _in_scope(request: Request, data: dict[str, Any], current: TrafficPolicy) -> dict[str, Any]:
    refuse_out_of_scope(
        request, "failover", set(data.get("failover_targets", [])), current.failover_targets
    )
    return data


def _update(request: Request, service: Service, body: dict[str, Any], data: Any) -> None:
    if callable(data):
        compute = data

        def data(current: TrafficPolicy) -> dict[str, Any]:
            return _in_scope(request, compute(current), current)
    else:
        _in_scope(request, data, policy_for(service))
    try:
        policy_update(
            user=request.user,
            service=service,
            data=data,
            expected_version=expected_version(body),
        )
    except StaleVersion as exc:
        raise Conflict(str(exc)) from exc


def _answer(service: Service) -> Response:
    return Response(PolicyDocumentSerializer(policy_for(service)).data)


def _written(service: Service) -> Response:
    """The answer to a write: the document, warning when YAML manages it."""
    return warn_if_managed(_answer(service), "TrafficPolicy", service.name)


class PolicyView(ServiceScoped, APIView):
    roles = {**READ, "PUT": ADMIN, "PATCH": ADMIN}
    """The service's traffic and failover policy (defaults, version 0, when never saved)."""

    @extend_schema(tags=TAGS, responses=PolicyDocumentSerializer)
    def get(self, request: Request, name: str) -> Response:
        return _answer(get_object_or_404(Service, name=name))

    @extend_schema(tags=TAGS, request=PolicyDocumentSerializer, responses=PolicyDocumentSerializer)
    def put(self, request: Request, name: str) -> Response:
        """Replace the whole document; omitted fields and groups take their defaults."""
        service = get_object_or_404(Service, name=name)
        body = _body(request)
        data = _validated(service, document_merge(policy_document(policy_defaults()), body))
        _update(request, service, body, data)
        return _written(service)

    @extend_schema(tags=TAGS, request=PolicyDocumentSerializer, responses=PolicyDocumentSerializer)
    def patch(self, request: Request, name: str) -> Response:
        """Change some fields; groups merge key by key (null replaces a group)."""
        service = get_object_or_404(Service, name=name)
        body = _body(request)

        def merged(current: TrafficPolicy) -> dict[str, Any]:
            # Read under policy_update's row lock: a concurrent PATCH cannot be lost.
            base = policy_document(current)
            if "load_balancer" in body and "hash_on" not in body:
                base["hash_on"] = None  # a new balancer does not inherit the old hash key
            return _validated(service, document_merge(base, body))

        _update(request, service, body, merged)
        return _written(service)


class PolicyVersionsView(APIView):
    roles = READ

    @extend_schema(tags=TAGS, responses=PolicyVersionSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        return versions_answer(PolicyVersion, PolicyVersionSerializer, name)


class PolicyRollbackView(ServiceScoped, APIView):
    roles = {**READ, "POST": ADMIN}

    @extend_schema(tags=TAGS, request=RollbackSerializer, responses=PolicyDocumentSerializer)
    def post(self, request: Request, name: str) -> Response:
        """Restore an earlier version's document as a new version (validated again:
        a failover target deleted since makes the rollback a 400)."""
        service = get_object_or_404(Service, name=name)
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        number = serializer.validated_data["version"]
        old = PolicyVersion.history(service.name).filter(version=number).first()
        if old is None:
            raise serializers.ValidationError({"version": [f"no version {number}"]})
        with transaction.atomic():
            data = _validated(
                service, document_merge(policy_document(policy_defaults()), old.document)
            )
            _in_scope(request, data, policy_for(service))
            policy_update(
                user=request.user, service=service, data=data, note=f"rollback to v{number}"
            )
        return _written(service)
