"""Operators' endpoints for agents and enrollment tokens (staff only): list,
create and revoke enrollment tokens; remove an agent; allow a re-enrollment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.enrollment import (
    agent_disable,
    agent_reenroll_allow,
    agent_remove,
    enrollment_token_create,
    enrollment_token_revoke,
)
from agents.gateways import GATEWAY_NAME_RE
from agents.models import Agent, EnrollmentToken, hash_token
from meshconsole.api import DurationField, StrictSerializer
from meshconsole.roles import ADMIN_ONLY
from registry.models import SERVICE_NAME_RE

TAGS = ["agents"]


class EnrollmentTokenSerializer(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = EnrollmentToken
        fields: tuple[str, ...] = (
            "prefix",
            "description",
            "created_at",
            "expires_at",
            "uses",
            "max_uses",
            "revoked",
            "active",
            "services",
            "gateways",
        )

    def get_active(self, token: EnrollmentToken) -> bool:
        return token.state() == "active"


MAX_TOKEN_TTL_MS = 366 * 24 * 3_600_000


class EnrollmentTokenCreateSerializer(StrictSerializer):
    description = serializers.CharField(max_length=200, allow_blank=True, default="")
    # Bounded: a larger value overflows the expiry's datetime (a 500 before).
    ttl = DurationField(
        required=False, max_ms=MAX_TOKEN_TTL_MS, help_text='e.g. "24h"; "0s" = never expires'
    )
    max_uses = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    services = serializers.ListField(
        child=serializers.RegexField(SERVICE_NAME_RE, max_length=63),
        max_length=200,
        allow_null=True,
        required=False,
        default=None,
        help_text="the only services agents enrolled with it may run; null = any",
    )
    gateways = serializers.ListField(
        child=serializers.RegexField(GATEWAY_NAME_RE, max_length=63),
        max_length=100,
        required=False,
        default=list,
        help_text="the gateways agents enrolled with it may serve as (none unless listed)",
    )


class EnrollmentTokenCreatedSerializer(EnrollmentTokenSerializer):
    token = serializers.CharField(help_text="shown once; only its hash is kept")

    class Meta(EnrollmentTokenSerializer.Meta):
        fields = (*EnrollmentTokenSerializer.Meta.fields, "token")


class EnrollmentTokensView(generics.ListAPIView):
    """GET: a page of tokens (MeshPagination, as every list); POST: a new token."""

    roles = ADMIN_ONLY
    serializer_class = EnrollmentTokenSerializer
    queryset = EnrollmentToken.objects.all()

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        request=EnrollmentTokenCreateSerializer,
        responses={201: EnrollmentTokenCreatedSerializer},
    )
    def post(self, request: Request) -> Response:
        body = EnrollmentTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ttl_ms = body.validated_data.get("ttl")
        raw = enrollment_token_create(
            user=request.user,
            description=body.validated_data["description"],
            ttl=None if ttl_ms is None else timedelta(milliseconds=ttl_ms),
            max_uses=body.validated_data.get("max_uses"),
            services=body.validated_data.get("services"),
            gateways=body.validated_data.get("gateways"),
        )
        token = EnrollmentToken.objects.get(token_hash=hash_token(raw))
        data = dict(EnrollmentTokenSerializer(token).data)
        data["token"] = raw
        return Response(data, status=status.HTTP_201_CREATED)


class EnrollmentTokenRevokeView(APIView):
    roles = ADMIN_ONLY

    @extend_schema(tags=TAGS, request=None, responses={200: dict})
    def post(self, request: Request, prefix: str) -> Response:
        if not EnrollmentToken.objects.filter(prefix=prefix).exists():
            return Response({"detail": f"no enrollment token {prefix!r}"}, status=404)
        return Response({"revoked": enrollment_token_revoke(user=request.user, prefix=prefix)})


class AgentDetailView(APIView):
    roles = ADMIN_ONLY

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request: Request, agent_id: str) -> Response:
        """Remove the agent: its token stops working, its instances are deregistered."""
        agent_remove(user=request.user, agent=get_object_or_404(Agent, pk=agent_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentAllowReenrollView(APIView):
    roles = ADMIN_ONLY

    @extend_schema(tags=TAGS, request=None, responses={204: None})
    def post(self, request: Request, agent_id: str) -> Response:
        """Let the next enrollment under this agent's node replace it."""
        agent = get_object_or_404(Agent.objects.select_related("node"), pk=agent_id)
        agent_reenroll_allow(user=request.user, agent=agent)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentDisableView(APIView):
    roles = ADMIN_ONLY
    disabled = True

    @extend_schema(tags=TAGS, request=None, responses={204: None})
    def post(self, request: Request, agent_id: str) -> Response:
        """Disable (revoke its certificates, issue it no more) or enable the agent."""
        agent = get_object_or_404(Agent.objects.select_related("node"), pk=agent_id)
        agent_disable(user=request.user, agent=agent, disabled=self.disabled)
        return Response(status=status.HTTP_204_NO_CONTENT)
