"""Certificates the CA issues work for mutual TLS with the stdlib ssl module (the
agent's data path): both sides verify against the root, strict X.509 checks on."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.identity.helpers import ask, csr_pem, enrolled_agent

pytestmark = pytest.mark.django_db


def _leaf(tmp_path: Path, service: str) -> tuple[str, str, list[str]]:
    client, agent_id = enrolled_agent(
        node=f"host-{service}", services=[{"name": service, "address": "127.0.0.1", "port": 8080}]
    )
    key = ec.generate_private_key(ec.SECP256R1())
    body = ask(client, agent_id, service, csr_pem(key)).json()
    cert_file, key_file = tmp_path / f"{service}.pem", tmp_path / f"{service}.key"
    cert_file.write_text(body["certificate"])
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_file), str(key_file), body["roots"]


def _context(purpose: ssl.Purpose, cert: str, key: str, roots: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cadata="".join(roots))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # identities are URI SANs, checked by the agent itself
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(cert, key)
    return ctx


def test_issued_leaves_complete_a_mutual_tls_handshake(tmp_path: Path) -> None:
    server_cert, server_key, roots = _leaf(tmp_path, "payments")
    client_cert, client_key, _ = _leaf(tmp_path, "orders")
    server_ctx = _context(ssl.Purpose.CLIENT_AUTH, server_cert, server_key, roots)
    client_ctx = _context(ssl.Purpose.SERVER_AUTH, client_cert, client_key, roots)
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(a, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(b, server_hostname="8080.payments.inbound.mesh") as tls:
        assert tls.recv(2) == b"ok"
        server_peer = tls.getpeercert()
    thread.join(5)
    assert ("URI", "spiffe://mesh.local/ns/default/svc/payments") in server_peer["subjectAltName"]  # type: ignore[index]
    assert ("URI", "spiffe://mesh.local/ns/default/svc/orders") in seen["peer"]["subjectAltName"]  # type: ignore[index]


def test_a_client_from_another_ca_is_refused(tmp_path: Path) -> None:
    server_cert, server_key, roots = _leaf(tmp_path, "payments")
    server_ctx = _context(ssl.Purpose.CLIENT_AUTH, server_cert, server_key, roots)
    # A self-signed stranger: not chained to the mesh's roots.
    from tests.identity.test_certificates import _operator_ca

    other_cert, other_key, _ = _operator_ca(tmp_path)
    client_ctx = _context(ssl.Purpose.SERVER_AUTH, other_cert, other_key, roots)
    a, b = socket.socketpair()
    errors: list[Exception] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True):
                pass
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    with pytest.raises((ssl.SSLError, OSError)), client_ctx.wrap_socket(b, server_hostname="x") as tls:
        tls.recv(1)
        tls.recv(1)
    thread.join(5)
    assert errors, "the server accepted a client certificate from another CA"
