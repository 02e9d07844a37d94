"""Everything the agent does with `cryptography`: keys, CSRs, reading certificates.

The agent's own process never imports this module (nor `cryptography`, whose
bindings alone are ~8 MB of resident memory in a process that otherwise needs
~30): `agents.runtime.pkicall` runs it as a short-lived child,
`python -m agents.runtime.pki`, one JSON request on stdin and one JSON answer
on stdout. That happens at start (the certificates on disk), at each renewal
(about every 12 h), and when the trust bundle drops a root. A process that
already carries `cryptography` (a test, a benchmark, a gateway with JWT keys)
calls it in place.

Operations (`run`):
- `csr {identity}` -> `{key, csr}`: a new P-256 private key (PKCS#8 PEM) and a CSR
  with IDENTITY as its one URI SAN. The key goes to the parent over the pipe and
  is written by it, 0600; it never leaves the host.
- `leaves {pems}` -> one entry per PEM (a private key, its leaf, the chain), each
  `{serial, not_before, not_after, uris, issuer}` or null when the certificate or
  the key does not load, or the key is not the certificate's.
- `subjects {pems}` -> the hex DER of each certificate's subject, null if unreadable.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> str:
    """A CSR carrying IDENTITY as its one URI SAN (the control plane decides what it signs)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity[-64:])]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(identity)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def leaf_facts(pem: str) -> dict[str, Any] | None:
    """What the agent keeps of a key + leaf (+ chain) file; None if it does not load."""
    data = pem.encode()
    try:
        cert = x509.load_pem_x509_certificate(data)  # the first certificate: the leaf
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        return None
    if _public(key.public_key()) != _public(cert.public_key()):
        return None  # another key's certificate: TLS would refuse the pair
    return {"serial": cert.serial_number,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "uris": uri_sans(cert),
            "issuer": cert.issuer.public_bytes().hex()}


def subject(pem: str) -> str | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode()).subject.public_bytes().hex()
    except ValueError:
        return None


def run(op: str, args: dict[str, Any]) -> Any:
    if op == "csr":
        key = new_key()
        return {"key": key_pem(key).decode(), "csr": make_csr(key, str(args["identity"]))}
    if op == "leaves":
        return [leaf_facts(str(p)) for p in args["pems"]]
    if op == "subjects":
        return [subject(str(p)) for p in args["pems"]]
    raise ValueError(f"unknown operation {op!r}")


def main() -> int:
    try:
        request = json.load(sys.stdin)
        answer = {"ok": run(str(request["op"]), dict(request.get("args") or {}))}
    except (ValueError, KeyError, TypeError) as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(answer, sys.stdout)
    return 0 if "ok" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
