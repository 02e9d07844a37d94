"""A gateway on loopback for the tests: the real listener, backends and snapshot."""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.runtime.gateway.auth import key_digest
from agents.runtime.gateway.config import Certificate, GatewayConfig, GatewayListener
from agents.runtime.gateway.listener import Gateway
from agents.runtime.snapshot import parse_snapshot
from tests.agents.backends import HttpClient, Response, upstream_entry


def route(name: str, service: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "service": service, "hosts": [], "methods": [], **kw}


def consumer(name: str, key: str = "", subjects: Sequence[str] = ()) -> dict[str, Any]:
    return {"name": name, "key_hashes": [key_digest(key)] if key else [],
            "jwt_subjects": list(subjects)}


def snapshot(section: dict[str, Any], upstreams: dict[str, Any], revision: int = 1
             ) -> dict[str, Any]:
    return {"revision": revision, "upstreams": upstreams, "gateway": {"name": "edge", **section}}


@contextlib.asynccontextmanager
async def running_gateway(section: dict[str, Any], upstreams: dict[str, Any], *,
                          certificates: Sequence[Certificate] = (), **config: Any
                          ) -> AsyncIterator[tuple[Gateway, int]]:
    cfg = GatewayConfig(name="edge", listeners=(GatewayListener("127.0.0.1", 0,
                                                                tuple(certificates)),), **config)
    gateway = Gateway(cfg)
    error = gateway.offer(parse_snapshot(snapshot(section, upstreams)))
    assert error is None, error
    await gateway.start()
    port = gateway.servers[0].sockets[0].getsockname()[1]
    try:
        yield gateway, port
    finally:
        for conn in list(gateway.listener_ctx.connections):
            conn.close()
        await gateway.close()


def entry(*backends: Any, **policy: Any) -> dict[str, Any]:
    return {**upstream_entry(*backends, **policy), "route_target": True}


def request_bytes(method: str, path: str, host: str = "api.example.com",
                  headers: Sequence[tuple[str, str]] = (), body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{n}: {v}" for n, v in headers)]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def call(port: int, method: str, path: str, host: str = "api.example.com",
               headers: Sequence[tuple[str, str]] = (), body: bytes | None = None) -> Response:
    async with HttpClient(port) as client:
        await client.send(request_bytes(method, path, host, headers, body))
        return await client.read_response(head_only=method == "HEAD")


def make_cert(directory: Path, name: str) -> Certificate:
    """A self-signed certificate for NAME (a SAN DNS name) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


def client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
