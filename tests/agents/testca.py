"""A certificate authority made in the test with `cryptography` (no control plane),
and CertStore helpers, for the agent runtime's mTLS tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.runtime.certs import CertStore
from agents.runtime.pki import key_pem, new_key
from agents.runtime.security import service_identity

TD = "mesh.local"


class TestCA:
    __test__ = False

    def __init__(self, name: str = "test root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5))
                     .not_valid_after(now + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                  False, False), True)
                     .sign(self.key, hashes.SHA256()))
        self.serials: list[int] = []

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, public_key: Any, uri: str, *, valid_s: float = 3600,
              start: dt.datetime | None = None) -> str:
        start = start or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        serial = x509.random_serial_number()
        self.serials.append(serial)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uri[-64:])]))
                .issuer_name(self.cert.subject).public_key(public_key).serial_number(serial)
                .not_valid_before(start).not_valid_after(start + dt.timedelta(seconds=valid_s))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                               False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign_csr(self, csr_pem: str, uri: str, valid_s: float = 3600) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        return self.issue(csr.public_key(), uri, valid_s=valid_s, start=start)


def store_with(data_dir: Path, names: list[str], ca: TestCA, *, roots: list[str] | None = None,
               valid_s: float = 3600, start: dt.datetime | None = None) -> CertStore:
    """A CertStore holding a fresh leaf per name, signed by CA."""
    store = CertStore(data_dir, names)
    for name in names:
        key = new_key()
        store.install(name, key_pem(key), ca.issue(key.public_key(), service_identity(TD, name),
                                          valid_s=valid_s, start=start))
    store.set_roots(roots or [ca.pem])
    return store


def security_doc(roots: list[str], *, intentions: list[dict[str, Any]] | None = None,
                 default: str = "allow", revoked: list[int] | None = None,
                 inbound: dict[str, str] | None = None) -> dict[str, Any]:
    return {"trust_domain": TD, "roots": roots,
            "revoked_serials": [f"{s:x}" for s in revoked or []],
            "default_action": default, "intentions": intentions or [],
            "inbound": {k: {"mtls": v} for k, v in (inbound or {}).items()}}
