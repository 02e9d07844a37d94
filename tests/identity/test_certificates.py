"""The CSR endpoint (zero-trust contract): who gets which identity, and what it gets."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from agents.models import Agent
from agents.snapshot import agent_snapshot
from identity.models import CARoot, IssuedCertificate
from tests.identity.helpers import ask, csr_pem, enrolled_agent

pytestmark = pytest.mark.django_db

PAYMENTS = [{"name": "payments", "address": "127.0.0.1", "port": 8080}]


def _verify(leaf: x509.Certificate, root_pem: str) -> None:
    root = x509.load_pem_x509_certificate(root_pem.encode())
    leaf.verify_directly_issued_by(root)  # raises if the signature or issuer is wrong


def test_a_valid_csr_gets_a_leaf_the_root_verifies_with_only_the_service_identity() -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    key = ec.generate_private_key(ec.SECP256R1())
    before = datetime.now(UTC)
    response = ask(client, agent_id, "payments", csr_pem(key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "certificate",
        "chain",
        "serial",
        "not_before",
        "not_after",
        "identity",
        "roots",
    }
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert len(body["roots"]) == 1
    _verify(leaf, body["roots"][0])
    # The CSR's own SAN (spiffe://evil/...) is ignored: exactly the one identity.
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(u) for u in sans.get_values_for_type(x509.UniformResourceIdentifier)] == [
        "spiffe://mesh.local/ns/default/svc/payments"
    ]
    assert len(list(sans)) == 1
    assert body["identity"] == "spiffe://mesh.local/ns/default/svc/payments"
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert body["serial"] == format(leaf.serial_number, "x")
    ttl = leaf.not_valid_after_utc - before
    assert timedelta(hours=24) - timedelta(seconds=5) <= ttl <= timedelta(hours=24, seconds=5)
    assert body["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["not_after"].endswith("Z") and body["not_before"].endswith("Z")
    record = IssuedCertificate.objects.get(serial=body["serial"])
    assert (str(record.agent_id), record.service) == (agent_id, "payments")
    assert record.root_fingerprint == CARoot.objects.get().fingerprint


@override_settings(MESH_CERT_TTL_MS=3_600_000, MESH_TRUST_DOMAIN="prod.example")
def test_ttl_and_trust_domain_come_from_the_settings() -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    body = ask(client, agent_id, "payments").json()
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert leaf.not_valid_after_utc - datetime.now(UTC) <= timedelta(hours=1)
    assert leaf.not_valid_after_utc - datetime.now(UTC) > timedelta(minutes=59)
    assert body["identity"] == "spiffe://prod.example/ns/default/svc/payments"


def test_an_agent_running_no_service_gets_its_node_identity() -> None:
    client, agent_id = enrolled_agent(node="edge-1")
    body = ask(client, agent_id, "").json()
    assert body["identity"] == "spiffe://mesh.local/ns/default/node/edge-1"


def test_a_service_the_node_does_not_run_is_403_and_issues_nothing() -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    enrolled_agent(node="host-c", services=[{"name": "ledger", "address": "127.0.0.2", "port": 9}])
    for service in ("orders", "ledger"):
        response = ask(client, agent_id, service)
        assert response.status_code == 403, response.content
    assert not IssuedCertificate.objects.exists()


@pytest.mark.parametrize(
    "csr",
    [
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "",
    ],
)
def test_garbage_is_400_and_issues_nothing(csr: str) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    response = ask(client, agent_id, "payments", csr)
    assert response.status_code == 400, response.content
    assert not IssuedCertificate.objects.exists()


def test_anything_but_one_csr_block_is_400_and_issues_nothing() -> None:
    """The first of two CSRs was signed, and text around it (a private key pasted in
    by mistake) passed unseen: the field holds exactly one PEM CSR."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    one = csr_pem(key)
    client, agent_id = enrolled_agent(services=PAYMENTS)
    for csr in (one + one, key_pem + one, one + key_pem, "note\n" + one):
        response = ask(client, agent_id, "payments", csr)
        assert response.status_code == 400, response.content
        assert response.json() == {"csr": ["csr: exactly one PEM certificate signing request"]}
    assert not IssuedCertificate.objects.exists()
    assert ask(client, agent_id, "payments", "\n" + one + "\n").status_code == 200


def test_a_csr_with_a_broken_signature_is_400() -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    good = csr_pem()
    csr = x509.load_pem_x509_csr(good.encode())
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(csr.public_bytes(Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    import base64

    broken = (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der)).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )
    response = ask(client, agent_id, "payments", broken)
    assert response.status_code == 400, response.content


def test_an_rsa_or_p384_key_is_400() -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    for key in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        response = ask(client, agent_id, "payments", csr_pem(key))
        assert response.status_code == 400, response.content
        assert "P-256" in str(response.json())


def test_another_agents_token_is_403() -> None:
    _, agent_id = enrolled_agent(services=PAYMENTS)
    other, _ = enrolled_agent(node="host-c", services=PAYMENTS[:0])
    assert ask(other, agent_id, "payments").status_code == 403
    assert ask(APIClient(), agent_id, "payments").status_code in (401, 403)


def test_a_removed_agent_is_refused_and_its_serials_are_revoked(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    watcher, watcher_id = enrolled_agent(node="host-c")
    serial = ask(client, agent_id, "payments").json()["serial"]
    watcher_agent = Agent.objects.get(pk=watcher_id)
    before = agent_snapshot(agent=watcher_agent)
    assert serial not in before["security"]["revoked_serials"]
    assert api.delete(f"/api/v1/agents/{agent_id}/").status_code == 204
    assert ask(client, agent_id, "payments").status_code == 401
    after = agent_snapshot(agent=watcher_agent)
    assert after["security"]["revoked_serials"] == [serial]
    assert after["revision"] > before["revision"]  # its long-poll wakes at once


def test_a_disabled_agent_gets_no_renewal_and_its_certs_are_revoked(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    serial = ask(client, agent_id, "payments").json()["serial"]
    assert api.post(f"/api/v1/agents/{agent_id}/disable/").status_code == 204
    response = ask(client, agent_id, "payments")
    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]
    snapshot = agent_snapshot(agent=Agent.objects.get(pk=agent_id))
    assert serial in snapshot["security"]["revoked_serials"]
    assert api.post(f"/api/v1/agents/{agent_id}/enable/").status_code == 204
    fresh = ask(client, agent_id, "payments").json()["serial"]
    snapshot = agent_snapshot(agent=Agent.objects.get(pk=agent_id))
    assert serial in snapshot["security"]["revoked_serials"]  # still revoked until it expires
    assert fresh not in snapshot["security"]["revoked_serials"]


def test_only_staff_disable_agents(viewer: User) -> None:
    _, agent_id = enrolled_agent(services=PAYMENTS)
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.post(f"/api/v1/agents/{agent_id}/disable/").status_code == 403
    assert not Agent.objects.get(pk=agent_id).disabled


def test_the_root_key_is_a_0600_file_in_the_data_dir_and_never_served(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    body = ask(client, agent_id, "payments").json()
    root = CARoot.objects.get()
    key = Path(root.key_file)
    assert key.parent == Path(settings.MESH_CA_DIR)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    assert "PRIVATE KEY" not in str(body)
    roots = api.get("/api/v1/ca/roots/").json()
    assert "PRIVATE KEY" not in str(roots)


def test_the_agents_list_shows_certificates_with_seconds_to_expiry(api: APIClient) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    serial = ask(client, agent_id, "payments").json()["serial"]
    rows = api.get("/api/v1/agents/").json()["results"]
    (row,) = [r for r in rows if r["id"] == agent_id]
    (cert,) = row["certificates"]
    assert cert["serial"] == serial
    assert cert["identity"] == "spiffe://mesh.local/ns/default/svc/payments"
    assert 86_000 < cert["seconds_to_expiry"] <= 86_400


def _operator_ca(tmp_path: Path, *, ca: bool = True) -> tuple[str, str, x509.Certificate]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator root")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file), cert


def test_a_root_supplied_from_files_signs_and_is_not_copied(tmp_path: Path) -> None:
    cert_file, key_file, cert = _operator_ca(tmp_path)
    with override_settings(MESH_CA_CERT_FILE=cert_file, MESH_CA_KEY_FILE=key_file):
        client, agent_id = enrolled_agent(services=PAYMENTS)
        body = ask(client, agent_id, "payments").json()
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    leaf.verify_directly_issued_by(cert)
    root = CARoot.objects.get()
    assert (root.supplied, root.key_file) == (True, key_file)


def test_a_supplied_certificate_that_is_not_a_ca_is_refused(tmp_path: Path) -> None:
    from identity.ca import CAFileError
    from identity.services import signing_root

    cert_file, key_file, _ = _operator_ca(tmp_path, ca=False)
    with (
        override_settings(MESH_CA_CERT_FILE=cert_file, MESH_CA_KEY_FILE=key_file),
        pytest.raises(CAFileError, match="not a CA"),
    ):
        signing_root()
    assert not CARoot.objects.exists()


def test_records_expired_for_a_day_are_pruned() -> None:
    from identity.services import certificates_prune

    client, agent_id = enrolled_agent(services=PAYMENTS)
    ask(client, agent_id, "payments")
    ask(client, agent_id, "payments")
    old = IssuedCertificate.objects.first()
    assert old is not None
    IssuedCertificate.objects.filter(pk=old.pk).update(
        not_after=datetime.now(UTC) - timedelta(days=2)
    )
    assert certificates_prune() == 1
    assert IssuedCertificate.objects.count() == 1


def test_services_listed_at_enrollment_get_certificates_before_the_first_report() -> None:
    from agents.enrollment import enrollment_token_create

    client = APIClient()
    body = {"token": enrollment_token_create(), "node": "host-e", "services": [{"name": "payments", "port": 1}]}
    answer = client.post("/api/v1/agents/enroll/", body, format="json").json()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {answer['agent_token']}")
    assert ask(client, answer["agent_id"], "payments").status_code == 200
    assert ask(client, answer["agent_id"], "orders").status_code == 403
    bad = {"token": enrollment_token_create(), "node": "host-f", "services": [{"name": "Bad Name"}]}
    assert APIClient().post("/api/v1/agents/enroll/", bad, format="json").status_code == 400


def test_the_agents_page_shows_the_leaf_each_identity_serves_and_warns_when_renewal_is_overdue(
    admin_client: Any,
) -> None:
    client, agent_id = enrolled_agent(services=PAYMENTS)
    old = ask(client, agent_id, "payments").json()["serial"]
    new = ask(client, agent_id, "payments").json()["serial"]  # a renewal: the old one stays valid
    page = admin_client.get("/agents/").content.decode()
    assert f'data-cert="{new}"' in page and f'data-cert="{old}"' not in page
    assert 'id="cert-warning"' not in page and "expiring" not in page.split('data-cert="')[1][:400]
    # The renewal has not happened and two thirds of the lifetime are gone.
    cert = IssuedCertificate.objects.get(serial=new)
    lifetime = cert.not_after - cert.not_before
    IssuedCertificate.objects.filter(serial=new).update(
        not_before=cert.not_before - lifetime * 0.7, not_after=cert.not_after - lifetime * 0.7)
    page = admin_client.get("/agents/").content.decode()
    assert 'id="cert-warning"' in page
    assert "expiring" in page.split(f'data-cert="{new}"')[1][:400]
    api_row = next(r for r in admin_client.get("/api/v1/agents/").json()["results"]
                   if r["id"] == agent_id)
    assert {c["serial"]: c["expiring"] for c in api_row["certificates"]} == {new: True, old: False}


def _gateway_agent(gateway: str, allowed: list[str]) -> tuple[APIClient, str]:
    from agents.enrollment import agent_enroll, enrollment_token_create

    enrollment = agent_enroll(
        token=enrollment_token_create(gateways=allowed), node="edge-1", zone="zone-1",
        version="0.1.0", upstreams=[], address="127.0.0.1", gateway=gateway,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {enrollment.agent_token}")
    return client, str(enrollment.agent.id)


def _ask_gateway(client: APIClient, agent_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/agents/{agent_id}/certificates/",
                       {"service": "", "csr": csr_pem(), **body}, format="json")


def test_a_gateway_agent_gets_the_gateways_identity() -> None:
    client, agent_id = _gateway_agent("edge", ["edge"])
    response = _ask_gateway(client, agent_id, {"gateway": "edge"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["identity"] == "spiffe://mesh.local/ns/default/gateway/edge"
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [body["identity"]]
    record = IssuedCertificate.objects.get(serial=body["serial"])
    assert (str(record.agent_id), record.service, record.identity) == (
        agent_id, "", body["identity"])


def test_no_gateway_identity_for_an_agent_that_does_not_serve_as_it() -> None:
    client, agent_id = _gateway_agent("edge", ["edge"])
    other = _ask_gateway(client, agent_id, {"gateway": "other"})
    assert other.status_code == 403 and "gateway 'other'" in other.json()["detail"]
    plain, plain_id = enrolled_agent(services=PAYMENTS)
    assert _ask_gateway(plain, plain_id, {"gateway": "edge"}).status_code == 403
    both = _ask_gateway(client, agent_id, {"gateway": "edge", "service": "payments"})
    assert both.status_code == 400 and "gateway" in both.json()
    assert _ask_gateway(client, agent_id, {"gateway": "Edge"}).status_code == 400
    assert not IssuedCertificate.objects.exists()
