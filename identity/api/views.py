"""Intentions (CRUD with versions), the default action, the explain endpoint,
and the CA's trust bundle and rotation (docs/api.md)."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.api.serializers import (
    CheckQuerySerializer,
    DefaultActionSerializer,
    IntentionSerializer,
    RetireSerializer,
    RotateSerializer,
)
from identity.intentions import (
    Request as AccessRequest,
)
from identity.intentions import (
    VersionConflict,
    decide,
    default_action_set,
    intention_create,
    intention_delete,
    intention_update,
    intentions_for,
)
from identity.models import CARoot, Intention, SecuritySettings
from identity.services import (
    RootInUse,
    RootNotFound,
    ca_retire,
    ca_rotate,
    root_live_leaves,
    signing_root,
)
from meshconsole.api import Conflict
from meshconsole.roles import ADMIN, READ
from registry.managed import warn_if_managed

TAGS = ["intentions"]


# Any role reads who may call whom; only an unscoped admin changes it (intentions
# are mesh-wide: a scoped admin's tag does not reach them).
READ_OR_ADMIN = {**READ, "POST": ADMIN, "PUT": ADMIN, "PATCH": ADMIN, "DELETE": ADMIN}


def _expected_version(request: Request, body: Any) -> int | None:
    """The version the writer read: `version` in the body, else If-Match."""
    if isinstance(body, dict) and body.get("version") is not None:
        version = body["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValidationError({"version": ["an integer"]})
        return version
    header = request.headers.get("If-Match", "").strip().strip('"').removeprefix("W/").strip('"')
    if not header:
        return None
    if not (header.isascii() and header.isdigit()):  # "²".isdigit(), and int() refuses it
        raise ValidationError({"If-Match": ["the intention's version, an integer"]})
    return int(header)


def _with_etag(response: Response, version: int) -> Response:
    response["ETag"] = f'"{version}"'
    return response


def _managed(response: Response, destination: str) -> Response:
    """The rules into DESTINATION are one `Intentions` document of the mesh as code."""
    return warn_if_managed(response, "Intentions", destination)


class IntentionListView(generics.ListAPIView):
    roles = READ_OR_ADMIN
    serializer_class = IntentionSerializer
    queryset = Intention.objects.all()

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=IntentionSerializer, responses={201: IntentionSerializer})
    def post(self, request: Request) -> Response:
        body = IntentionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        data.pop("version", None)
        intention = intention_create(user=request.user, data=data)
        answer = Response(IntentionSerializer(intention).data, status=status.HTTP_201_CREATED)
        return _managed(_with_etag(answer, intention.version), intention.destination)


class IntentionDetailView(APIView):
    roles = READ_OR_ADMIN

    def _get(self, pk: str) -> Intention:
        if not (pk.isascii() and pk.isdigit()):  # "²" and "١" are digits to isdigit()
            raise NotFound(f"no intention {pk[:40]!r}")
        return get_object_or_404(Intention, pk=int(pk))

    @extend_schema(tags=TAGS, responses={200: IntentionSerializer})
    def get(self, request: Request, pk: str) -> Response:
        intention = self._get(pk)
        return _with_etag(Response(IntentionSerializer(intention).data), intention.version)

    @extend_schema(tags=TAGS, request=IntentionSerializer, responses={200: IntentionSerializer})
    def patch(self, request: Request, pk: str) -> Response:
        intention = self._get(pk)
        body = IntentionSerializer(intention, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        data.pop("version", None)
        try:
            intention = intention_update(
                user=request.user,
                intention=intention,
                data=data,
                expected_version=_expected_version(request, request.data),
            )
        except VersionConflict as exc:
            raise Conflict(str(exc)) from None
        answer = _with_etag(Response(IntentionSerializer(intention).data), intention.version)
        return _managed(answer, intention.destination)

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        intention = self._get(pk)
        try:
            intention_delete(
                user=request.user,
                intention=intention,
                expected_version=_expected_version(request, None),
            )
        except VersionConflict as exc:
            raise Conflict(str(exc)) from None
        return _managed(Response(status=status.HTTP_204_NO_CONTENT), intention.destination)


class DefaultActionView(APIView):
    roles = READ_OR_ADMIN

    def _answer(self, row: SecuritySettings) -> Response:
        body = {"default_action": row.default_action, "version": row.version}
        return _with_etag(Response(body), row.version)

    @extend_schema(tags=TAGS, responses={200: DefaultActionSerializer})
    def get(self, request: Request) -> Response:
        return self._answer(SecuritySettings.current())

    @extend_schema(
        tags=TAGS, request=DefaultActionSerializer, responses={200: DefaultActionSerializer}
    )
    def put(self, request: Request) -> Response:
        body = DefaultActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            row = default_action_set(
                user=request.user,
                action=body.validated_data["default_action"],
                expected_version=_expected_version(request, request.data),
            )
        except VersionConflict as exc:
            raise Conflict(str(exc)) from None
        return self._answer(row)


class IntentionCheckView(APIView):
    roles = READ
    """Would SOURCE be allowed to call DESTINATION (METHOD PATH), and by which rule?"""

    @extend_schema(
        tags=TAGS,
        parameters=[
            OpenApiParameter("source", str, required=True),
            OpenApiParameter("destination", str, required=True),
            OpenApiParameter("method", str, description="omit for a TCP connection"),
            OpenApiParameter("path", str),
            OpenApiParameter("header", str, many=True, description="name:value, repeatable"),
        ],
        responses=OpenApiResponse(OpenApiTypes.OBJECT, description="{allowed, rule, reason}"),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params.dict()
        params.pop("header", None)
        query = CheckQuerySerializer(data=params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        headers: dict[str, str] = {}
        for item in request.query_params.getlist("header"):
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ValidationError({"header": [f"{item[:60]!r}: use header=name:value"]})
            headers[name.strip().lower()] = value.strip()
        decision = decide(
            intentions_for([q["destination"]]),
            SecuritySettings.current().default_action,
            AccessRequest(
                source=q["source"],
                destination=q["destination"],
                method=q.get("method"),
                path=q["path"],
                headers=headers,
            ),
        )
        return Response(
            {"allowed": decision.allowed, "rule": decision.rule, "reason": decision.reason}
        )


def _root_payload(root: CARoot, signer: CARoot) -> dict[str, Any]:
    return {
        "fingerprint": root.fingerprint,
        "certificate": root.certificate,
        "not_after": root.not_after,
        "created_at": root.created_at,
        "signing": root.pk == signer.pk,
        "supplied": root.supplied,
        "live_certificates": root_live_leaves(root),
    }


class CARootsView(APIView):
    roles = READ
    """GET: the trust bundle (roots not retired), the signer marked."""

    @extend_schema(tags=["ca"], responses=OpenApiResponse(OpenApiTypes.OBJECT))
    def get(self, request: Request) -> Response:
        signer = signing_root()
        roots = CARoot.objects.filter(retired_at__isnull=True)
        return Response({"roots": [_root_payload(r, signer) for r in roots]})


class CARotateView(APIView):
    roles = {"POST": ADMIN}  # unscoped admins: the CA is mesh-wide

    @extend_schema(
        tags=["ca"], request=RotateSerializer, responses={201: OpenApiResponse(OpenApiTypes.OBJECT)}
    )
    def post(self, request: Request) -> Response:
        """Add a new root: it signs from now on; the old ones stay trusted. No options:
        an empty body or `{}`."""
        RotateSerializer(data=request.data).is_valid(raise_exception=True)
        root = ca_rotate(user=request.user)
        return Response(_root_payload(root, root), status=status.HTTP_201_CREATED)


class CARetireView(APIView):
    roles = {"POST": ADMIN}  # unscoped admins: the CA is mesh-wide

    @extend_schema(tags=["ca"], request=RetireSerializer, responses={204: None})
    def post(self, request: Request, fingerprint: str) -> Response:
        """Remove a root from the trust bundle; 409 while live leaves chain to it."""
        body = RetireSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            ca_retire(
                user=request.user, fingerprint=fingerprint, force=body.validated_data["force"]
            )
        except RootNotFound as exc:
            raise NotFound(str(exc)) from None
        except RootInUse as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
