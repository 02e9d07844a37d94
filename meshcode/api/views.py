"""The mesh as code over HTTP: schema, diff, apply, export, versions, rollback.
Each command validates its body with a serializer and calls meshcode.apply."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshcode.api.serializers import (
    MeshApplySerializer,
    MeshDiffSerializer,
    MeshRollbackSerializer,
    MeshVersionSerializer,
)
from meshcode.apply import mesh_apply, mesh_export, mesh_rollback
from meshcode.models import MeshVersion
from meshcode.plan import ApplyResult, InvalidDocuments, UnknownVersion
from meshcode.schema import mesh_schema
from meshconsole.roles import ADMIN, READ, VIEWER

TAGS = ["mesh as code"]


def _invalid(exc: InvalidDocuments) -> Response:
    # One line per error: where it is (document index, kind/name, field) and why.
    return Response(
        {"errors": [e.as_dict() for e in exc.errors]}, status=status.HTTP_400_BAD_REQUEST
    )


def _answer(result: ApplyResult) -> Response:
    return Response(result.as_dict())


class SchemaView(APIView):
    roles = READ
    """The JSON Schema of one mesh document (also docs/mesh.schema.json)."""

    @extend_schema(tags=TAGS, responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(mesh_schema())


class DiffView(APIView):
    # A diff writes nothing: whoever may read the mesh may compare a file with it.
    roles = {"POST": VIEWER}

    @extend_schema(tags=TAGS, request=MeshDiffSerializer, responses={200: dict})
    def post(self, request: Request) -> Response:
        """What an apply of the documents would change (nothing is written)."""
        body = MeshDiffSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data: dict[str, Any] = body.validated_data
        try:
            result = mesh_apply(
                user=request.user, documents=data["documents"], prune=data["prune"], dry_run=True
            )
        except InvalidDocuments as exc:
            return _invalid(exc)
        return _answer(result)


class ApplyView(APIView):
    roles = {"POST": ADMIN}

    @extend_schema(tags=TAGS, request=MeshApplySerializer, responses={200: dict})
    def post(self, request: Request) -> Response:
        """Apply all documents as one transaction and one mesh revision."""
        body = MeshApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data: dict[str, Any] = body.validated_data
        try:
            result = mesh_apply(
                user=request.user,
                documents=data["documents"],
                prune=data["prune"],
                dry_run=data["dry_run"],
                message=data["message"],
            )
        except InvalidDocuments as exc:
            return _invalid(exc)
        return _answer(result)


class ExportView(APIView):
    roles = READ

    @extend_schema(tags=TAGS, responses={200: dict})
    def get(self, request: Request) -> Response:
        """The current mesh as documents (an apply of them changes nothing)."""
        return Response({"documents": mesh_export()})


class VersionsView(APIView):
    roles = READ

    @extend_schema(tags=TAGS, responses=MeshVersionSerializer(many=True))
    def get(self, request: Request) -> Response:
        versions = MeshVersion.objects.order_by("-number")
        return Response(MeshVersionSerializer(versions, many=True).data)


class RollbackView(APIView):
    roles = {"POST": ADMIN}

    @extend_schema(tags=TAGS, request=MeshRollbackSerializer, responses={200: dict})
    def post(self, request: Request) -> Response:
        """Restore what version N managed, exactly, as a new version."""
        body = MeshRollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = mesh_rollback(
                user=request.user,
                number=body.validated_data["version"],
                dry_run=body.validated_data["dry_run"],
            )
        except UnknownVersion as exc:
            return Response({"version": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        except InvalidDocuments as exc:
            return _invalid(exc)
        return _answer(result)
