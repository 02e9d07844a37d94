"""Agent endpoints: enroll (anonymous, token in body), config (long-poll), report."""

from __future__ import annotations

from typing import Any

import redis
from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException, NotAuthenticated, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.auth import AgentTokenAuthentication
from agents.api.serializers import (
    AgentSerializer,
    EnrollResponseSerializer,
    EnrollSerializer,
    ReportSerializer,
)
from agents.enrollment import (
    EnrollmentRefused,
    GatewayNotAllowed,
    NodeTaken,
    ServiceNotAllowed,
    agent_enroll,
)
from agents.models import Agent
from agents.reports import agent_report
from agents.snapshot import AgentSnapshot, agent_snapshot, snapshot_index, snapshot_keys
from identity.certview import certificates_by_agent
from meshconsole.api import Conflict, SerializerPool, database_busy
from meshconsole.clientaddr import client_address
from meshconsole.longpoll import (
    blocking_params,
    credentials,
    db_step,
    error_response,
    watcher,
)
from meshconsole.roles import READ
from meshconsole.throttling import ClientAddressAnonThrottle
from registry.models import MeshIndex


class CacheUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "enrollment is briefly unavailable (the cache does not answer); retry shortly"
    default_code = "unavailable"


class EnrollThrottle(ClientAddressAnonThrottle):
    rate = "60/min"

    def allow_request(self, request: Request, view: APIView) -> bool:
        # The throttle is what stops token guessing: without its counts (Redis
        # down), refuse with a clear 503 rather than let every attempt through.
        try:
            return super().allow_request(request, view)
        except redis.RedisError:
            raise CacheUnavailable() from None


class AgentListView(generics.ListAPIView):
    roles = READ
    serializer_class = AgentSerializer
    queryset = Agent.objects.select_related("node").all()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        rows = list(page if page is not None else self.get_queryset())
        context = {
            **self.get_serializer_context(),
            "certificates": certificates_by_agent([a.pk for a in rows]),
        }
        data = AgentSerializer(rows, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)


# Built once, reused (meshconsole.api.SerializerPool): an enrollment storm, a fleet's reports.
ENROLLMENTS = SerializerPool(EnrollSerializer)
REPORTS = SerializerPool(ReportSerializer)


class EnrollView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [EnrollThrottle]

    @extend_schema(
        request=EnrollSerializer,
        responses={201: EnrollResponseSerializer, 200: EnrollResponseSerializer},
    )
    def post(self, request: Request) -> Response:
        """201 for a new enrollment; 200 when the same agent asks again with the
        agent token it proposed (a retry); 409 when another agent holds the node."""
        data = ENROLLMENTS.validate(request.data)
        try:
            enrollment = agent_enroll(
                token=data["token"],
                node=data["node"],
                zone=data["zone"],
                version=data["version"],
                upstreams=[dict(u) for u in data["upstreams"]],
                address=client_address(request),
                proposed_token=data.get("agent_token", ""),
                inbound=data.get("inbound"),
                gateway=(data.get("gateway") or {}).get("name", ""),
                services=data.get("services", []),
            )
        except EnrollmentRefused as exc:
            raise PermissionDenied(str(exc)) from None
        except NodeTaken as exc:
            raise Conflict(str(exc)) from None
        except (ServiceNotAllowed, GatewayNotAllowed) as exc:
            raise PermissionDenied(str(exc)) from None
        # The index of its snapshot, not the snapshot (the agent fetches it next): in an
        # enrollment storm every answer would otherwise build one, uncached.
        revision = snapshot_index(enrollment.agent)
        return Response(
            {
                "agent_id": str(enrollment.agent.id),
                "agent_token": enrollment.agent_token,
                "revision": revision,
            },
            status=status.HTTP_201_CREATED if enrollment.created else status.HTTP_200_OK,
        )


def _own_agent(request: Request, agent_id: str) -> Agent:
    agent = request.auth
    if not isinstance(agent, Agent):
        raise NotAuthenticated("agent credentials required")
    if str(agent.id) != str(agent_id):
        raise PermissionDenied("this token belongs to another agent")
    return agent


class ReportView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [AllowAny]  # _own_agent checks the agent credentials

    @extend_schema(
        request=ReportSerializer,
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description="{revision, instances} (docs/agent-protocol.md)"
        ),
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = _own_agent(request, agent_id)
        report = REPORTS.validate(request.data)
        try:
            return Response(agent_report(agent=agent, report=report))
        except (ServiceNotAllowed, GatewayNotAllowed) as exc:
            raise PermissionDenied(str(exc)) from None


def _agent_from(agent_or_none: Any, agent_id: str) -> Agent:
    if not isinstance(agent_or_none, Agent):
        raise NotAuthenticated("agent credentials required")
    if str(agent_or_none.id) != str(agent_id):
        raise PermissionDenied("this token belongs to another agent")
    return agent_or_none


def _fresh_snapshot(agent: Agent) -> AgentSnapshot:
    """The snapshot of AGENT as it is now (its row may have moved while its poll
    waited); NotAuthenticated if it was removed meanwhile (its token is gone)."""
    fresh = Agent.objects.select_related("node").filter(pk=agent.pk).first()
    if fresh is None:
        raise NotAuthenticated("this agent was removed")
    return agent_snapshot(agent=fresh)


@csrf_exempt
@require_GET
async def config_view(request: HttpRequest, agent_id: str) -> JsonResponse:
    """The agent's snapshot; with ?revision=N&wait=30s, blocks until it moves past N.
    Its database work is two steps (longpoll.db_step): credentials, keys and their
    index together; then the answer (none to wake it: longpoll.RevisionWatcher)."""

    def start() -> tuple[Agent, int | None, float, list[str], int]:
        _, auth = credentials(request, [AgentTokenAuthentication()])
        agent = _agent_from(auth, agent_id)
        index, wait = blocking_params(request)
        if index is None:
            return agent, None, wait, [], 0
        keys = snapshot_keys(agent)
        return agent, index, wait, keys, MeshIndex.of(keys)

    try:
        since = watcher().generation  # before the read: what wakes others meanwhile counts
        agent, index, wait, keys, current = await db_step(start)
        if index is not None:
            await watcher().wait_for(index, wait, keys=keys, read=lambda: MeshIndex.of(keys),
                                     current=current, since=since)
        snapshot = await db_step(lambda: _fresh_snapshot(agent))
    except APIException as exc:
        return error_response(exc)
    except OperationalError as exc:
        busy = database_busy(exc)
        if busy is None:
            raise
        response = error_response(busy)
        response["Retry-After"] = "1"
        return response
    response = JsonResponse(snapshot)
    response["X-Mesh-Index"] = str(snapshot["revision"])
    return response
