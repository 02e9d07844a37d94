"""Agents that enroll and report through the real API, and CSRs made like the agent makes them."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from rest_framework.test import APIClient

from agents.enrollment import agent_enroll, enrollment_token_create


def csr_pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    san: str = "spiffe://evil/ns/default/svc/admin",
) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), False)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return csr.public_bytes(Encoding.PEM).decode()


def enrolled_agent(
    node: str = "host-b",
    services: list[dict[str, Any]] | None = None,
    inbound: dict[str, Any] | None = None,
    upstreams: list[dict[str, Any]] | None = None,
) -> tuple[APIClient, str]:
    """An agent on NODE that enrolled (through agent_enroll, not the rate-limited
    HTTP route: the tests enroll more than 60 a minute) and reported SERVICES
    (and INBOUND) through the API."""
    enrollment = agent_enroll(
        token=enrollment_token_create(),
        node=node,
        zone="zone-1",
        version="0.1.0",
        upstreams=upstreams or [],
        address="127.0.0.1",
        inbound=inbound,
    )
    answer = {"agent_id": str(enrollment.agent.id), "agent_token": enrollment.agent_token}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {answer['agent_token']}")
    report: dict[str, Any] = {
        "services": services if services is not None else [],
        "upstreams": upstreams or [],
    }
    if inbound:
        report["inbound"] = inbound
    response = client.post(f"/api/v1/agents/{answer['agent_id']}/report/", report, format="json")
    assert response.status_code == 200, response.content
    return client, answer["agent_id"]


def ask(client: APIClient, agent_id: str, service: str, csr: str | None = None) -> Any:
    return client.post(
        f"/api/v1/agents/{agent_id}/certificates/",
        {"service": service, "csr": csr if csr is not None else csr_pem()},
        format="json",
    )
