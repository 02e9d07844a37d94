"""The built-in CA's cryptography (`cryptography` only, nothing by hand): roots
generated or loaded from files, leaf certificates signed from CSRs.

Keys are ECDSA P-256. A generated root's key is written once to
MESH_CA_DIR (0700) as a 0600 file and never leaves the control plane; a
supplied root's key stays where MESH_CA_KEY_FILE points. The database holds
only the certificates (identity.models.CARoot).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

ROOT_LIFETIME = timedelta(days=3650)
# Leaves start a little in the past: a host whose clock is slightly behind must
# not refuse a certificate that was just issued.
BACKDATE = timedelta(seconds=30)


class CSRRefused(ValueError):
    """The CSR is not PEM, its signature does not verify, or its key is not P-256."""


class CAFileError(RuntimeError):
    """MESH_CA_CERT_FILE / MESH_CA_KEY_FILE cannot be used."""


def service_identity(service: str) -> str:
    return f"spiffe://{settings.MESH_TRUST_DOMAIN}/ns/default/svc/{service}"


def node_identity(node: str) -> str:
    return f"spiffe://{settings.MESH_TRUST_DOMAIN}/ns/default/node/{node}"


def gateway_identity(gateway: str) -> str:
    """A gateway's identity, held by every agent serving as it (intention source
    `gateway:<name>`; agents.runtime.security.gateway_identity on the agent's side)."""
    return f"spiffe://{settings.MESH_TRUST_DOMAIN}/ns/default/gateway/{gateway}"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class NewRoot:
    certificate: x509.Certificate
    key_file: Path
    supplied: bool


def _write_key(key: ec.EllipticCurvePrivateKey, directory: Path, name: str) -> Path:
    """Write KEY as DIRECTORY/NAME, created 0600 (O_EXCL: never over another key)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def root_generate(now: datetime | None = None) -> NewRoot:
    """A new self-signed P-256 root, its key written to MESH_CA_DIR."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshconsole"),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                f"meshconsole root {settings.MESH_TRUST_DOMAIN} {now:%Y-%m-%dT%H:%M:%S}",
            ),
        ]
    )
    spki = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(spki, critical=False)
        .sign(key, hashes.SHA256())
    )
    path = _write_key(key, Path(settings.MESH_CA_DIR), f"root-{fingerprint(cert)[:32]}.key")
    return NewRoot(certificate=cert, key_file=path, supplied=False)


def root_from_files(cert_file: str, key_file: str) -> NewRoot:
    """The operator's root (MESH_CA_CERT_FILE / MESH_CA_KEY_FILE), checked to be
    a CA certificate whose key is the one in KEY_FILE."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        key = _load_key(Path(key_file))
    except (OSError, ValueError) as exc:
        raise CAFileError(f"the CA files cannot be read: {exc}") from None
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise CAFileError(f"{cert_file} is not a CA certificate (basicConstraints ca=false)")
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CAFileError(f"{key_file} is not the key of {cert_file}")
    return NewRoot(certificate=cert, key_file=Path(key_file), supplied=True)


_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
_keys_lock = threading.Lock()


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an ECDSA key")
    return key


def signing_key(key_file: str) -> ec.EllipticCurvePrivateKey:
    with _keys_lock:
        key = _keys.get(key_file)
        if key is None:
            key = _keys[key_file] = _load_key(Path(key_file))
        return key


_CSR_BLOCK = re.compile(
    r"-----BEGIN (NEW )?CERTIFICATE REQUEST-----[A-Za-z0-9+/=\s]*"
    r"-----END (NEW )?CERTIFICATE REQUEST-----"
)


def csr_parse(text: str) -> x509.CertificateSigningRequest:
    """The CSR in TEXT (exactly one PEM block, nothing around it but whitespace: the
    first of two was signed, and a private key pasted beside it passed unseen), with a
    valid self-signature over a P-256 key."""
    if text.strip() and "-----BEGIN" in text and not _CSR_BLOCK.fullmatch(text.strip()):
        raise CSRRefused("csr: exactly one PEM certificate signing request")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except (ValueError, UnicodeError):
        raise CSRRefused("csr: not a PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise CSRRefused(f"csr: {exc}") from None
    if not valid:
        raise CSRRefused("csr: its signature does not verify")
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise CSRRefused("csr: the key must be ECDSA P-256")
    return csr


def leaf_sign(
    *,
    csr: x509.CertificateSigningRequest,
    identity: str,
    common_name: str,
    root_pem: str,
    key_file: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> x509.Certificate:
    """A leaf for CSR's key naming only IDENTITY (the CSR's own names are ignored)."""
    now = now or datetime.now(UTC)
    root = x509.load_pem_x509_certificate(root_pem.encode())
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)  # csr_parse checked it
    not_after = min(now + ttl, root.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(signing_key(key_file), hashes.SHA256())
    )


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")
