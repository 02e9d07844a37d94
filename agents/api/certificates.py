"""POST agents/{id}/certificates/: an agent's CSR for one of its local services
(docs/agent-protocol.md, "Certificates"; the CA is identity/)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.auth import AgentTokenAuthentication
from agents.api.views import _own_agent
from agents.gateways import GATEWAY_NAME_RE
from agents.models import Agent
from agents.snapshot import local_service_names
from identity.ca import CAFileError, CSRRefused
from identity.services import certificate_issue
from registry.models import SERVICE_NAME_RE

MAX_CSR = 16_000


class CAUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "the CA cannot sign (see MESH_CA_CERT_FILE / MESH_CA_KEY_FILE)"
    default_code = "ca-unavailable"


class CertificateRequestSerializer(serializers.Serializer):
    # "" asks for the node's identity (an agent running no service), or with `gateway`
    # for the identity of the gateway the agent serves as.
    service = serializers.RegexField(SERVICE_NAME_RE, max_length=63, allow_blank=True)
    gateway = serializers.RegexField(
        GATEWAY_NAME_RE, max_length=63, required=False, allow_blank=True, default=""
    )
    csr = serializers.CharField(max_length=MAX_CSR, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["service"] and attrs["gateway"]:
            raise ValidationError({"gateway": ["a certificate is for a service or a gateway"]})
        return attrs


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def may_hold_gateway(agent: Agent, gateway: str) -> bool:
    """A gateway's identity only to an agent that serves as it (declared at enroll or
    in a report, which its enrollment token must allow: docs/security.md)."""
    return agent.gateway == gateway and gateway in (agent.allowed_gateways or [])


def may_hold(agent: Agent, service: str) -> bool:
    """An agent gets a service's identity only if it runs that service and its
    enrollment token allows it to."""
    if service == "":
        return True
    return not agent.refused_services([service]) and service in local_service_names(agent)


class CertificateView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [AllowAny]  # _own_agent checks the agent credentials

    @extend_schema(
        request=CertificateRequestSerializer,
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="{certificate, chain, serial, not_before, not_after, identity, roots}",
        ),
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = _own_agent(request, agent_id)
        if agent.disabled:
            raise PermissionDenied("this agent is disabled: no certificates are issued to it")
        body = CertificateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        service = body.validated_data["service"]
        gateway = body.validated_data["gateway"]
        if gateway and not may_hold_gateway(agent, gateway):
            raise PermissionDenied(
                f"agent {agent.node.name} does not serve as gateway {gateway!r}: "
                "no certificate for that identity"
            )
        if not gateway and not may_hold(agent, service):
            raise PermissionDenied(
                f"node {agent.node.name} runs no instance of {service!r}: "
                "no certificate for that identity"
            )
        try:
            issued = certificate_issue(
                agent_id=agent.pk,
                node=agent.node.name,
                service=service,
                gateway=gateway,
                csr_pem=body.validated_data["csr"],
            )
        except CSRRefused as exc:
            raise ValidationError({"csr": [str(exc)]}) from None
        except CAFileError as exc:  # the operator's CA files: a server problem, said clearly
            raise CAUnavailable(str(exc)) from None
        record = issued.record
        return Response(
            {
                "certificate": issued.certificate,
                "chain": [],
                "serial": record.serial,
                "not_before": _iso(record.not_before),
                "not_after": _iso(record.not_after),
                "identity": record.identity,
                "roots": issued.roots,
            }
        )
