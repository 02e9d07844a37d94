"""Subsets and routes of one service: read, replace (PUT), history, rollback
(docs/api.md "Routes"; the document is policies.routes')."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.api import Conflict
from meshconsole.roles import ADMIN, READ
from policies.api.serializers import RoutesVersionSerializer
from policies.api.versions import expected_version, versions_answer
from policies.models import RoutesVersion, ServiceRoutes
from policies.routes import routes_validate
from policies.services import StaleVersion, SubsetInUse, routes_of, routes_update
from registry.api.scoping import ServiceScoped, refuse_out_of_scope, split_services
from registry.managed import warn_if_managed
from registry.models import Service

TAGS = ["routes"]
KIND = "Routes"  # the meshcode kind: an edit of a YAML-managed document warns


def routes_payload(row: ServiceRoutes) -> dict[str, Any]:
    """The API's answer: the document with its version and who saved it."""
    return {
        "service": row.service.name,
        "version": row.version,
        "subsets": row.document.get("subsets", {}),
        "routes": row.document.get("routes", []),
        "updated_at": row.updated_at.isoformat() if row.pk and row.updated_at else None,
        "updated_by": row.updated_by.username if row.updated_by else None,
    }


def _in_use(exc: SubsetInUse) -> Conflict:
    """The 409 of a subset a gateway route still sends to, naming the referrers as a
    service's deletion does (`gateway_referrers`)."""
    return Conflict(
        {"detail": str(exc), f"{exc.kind}_referrers": exc.referrers, "subsets": exc.subsets}
    )


def _in_scope(request: Request, service: Service, document: dict[str, Any]) -> None:
    already = split_services(routes_of(service).document)
    refuse_out_of_scope(request, "routes", split_services(document), already)


def _written(service: Service) -> Response:
    return warn_if_managed(Response(routes_payload(routes_of(service))), KIND, service.name)


class RoutesView(ServiceScoped, APIView):
    """The service's subsets and ordered routes (empty, version 0, when never saved)."""

    roles = {**READ, "PUT": ADMIN}

    @extend_schema(tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        return Response(routes_payload(routes_of(get_object_or_404(Service, name=name))))

    @extend_schema(tags=TAGS, request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, name: str) -> Response:
        """Replace the whole document; `version`, when given, must be the current one (409)."""
        service = get_object_or_404(Service, name=name)
        if request.stream is None or not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        body = dict(request.data)
        expected = expected_version(body)
        for key in ("version", "service", "updated_at", "updated_by"):
            body.pop(key, None)  # read-only: what a GET answered may be PUT back
        document = routes_validate(service, body)
        _in_scope(request, service, dict(document))
        try:
            routes_update(
                user=request.user, service=service, document=document, expected_version=expected
            )
        except StaleVersion as exc:
            raise Conflict(str(exc)) from exc
        except SubsetInUse as exc:
            raise _in_use(exc) from exc
        return _written(service)


class RoutesVersionsView(APIView):
    roles = READ

    @extend_schema(tags=TAGS, responses=RoutesVersionSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        return versions_answer(RoutesVersion, RoutesVersionSerializer, name)


class RoutesRollbackView(ServiceScoped, APIView):
    roles = {**READ, "POST": ADMIN}

    @extend_schema(tags=TAGS, request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, name: str, version: int) -> Response:
        """Restore version VERSION's document as a new version, validated again
        (a subset or split service gone since makes the rollback a 400)."""
        service = get_object_or_404(Service, name=name)
        old = RoutesVersion.history(service.name).filter(version=version).first()
        if old is None:
            raise Http404(f"no routes version {version} of {service.name}")
        with transaction.atomic():
            document = routes_validate(service, old.document)
            _in_scope(request, service, dict(document))
            try:
                routes_update(
                    user=request.user, service=service, document=document,
                    note=f"rollback to v{version}",
                )
            except SubsetInUse as exc:
                raise _in_use(exc) from exc
        return _written(service)
