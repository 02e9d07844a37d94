"""This host's workload certificates: keys made here, CSRs, renewal, SSL contexts.

One identity per local service (`spiffe://<td>/ns/default/svc/<name>`), or the node
identity when the host runs none (store name ""), plus the gateway's
(`spiffe://<td>/ns/default/gateway/<name>`, store name "gateway:<name>") on an agent
in gateway mode. Each lives in
`data_dir/certs/<name>.pem` (0600): the private key, the leaf and its chain, written
atomically together so a key never sits beside another key's certificate. A restart
with the control plane down serves on these files until they expire.

SSL contexts are built once per (identity's leaf, trust bundle) and swapped whole when
either changes: connections already open keep the context they were made with, new
ones get the new one (the renewal without a dropped request).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("meshagent.certs")

CERTS_DIR = "certs"
NODE = ""  # the store name of the node identity
GATEWAY = "gateway:"  # the store name of a gateway's identity: GATEWAY + its name
RENEW_AT = (0.45, 0.55)  # of the lifetime: about half, jittered so a fleet does not renew in step


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


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


@dataclass(frozen=True)
class Leaf:
    """A certificate in hand: its file (key + leaf + chain) and what we read from it."""

    name: str
    path: Path
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    identity: str
    issuer: bytes  # DER of the issuer name: which root (or intermediate) signed it

    @property
    def lifetime_s(self) -> float:
        return (self.not_after - self.not_before).total_seconds()

    def renew_at(self, rng: random.Random) -> dt.datetime:
        share = rng.uniform(*RENEW_AT)
        return self.not_before + dt.timedelta(seconds=self.lifetime_s * share)

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after


def _read_leaf(name: str, path: Path) -> Leaf | None:
    try:
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)  # the first certificate: the leaf
        serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError):
        return None
    sans = uri_sans(cert)
    return Leaf(name, path, cert.serial_number, cert.not_valid_before_utc,
                cert.not_valid_after_utc, sans[0] if sans else "",
                cert.issuer.public_bytes())


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, mode 0600 from the first byte (a key is never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CertStore:
    """The certificates of this host's identities and the SSL contexts made of them."""

    def __init__(self, data_dir: Path, names: Sequence[str]) -> None:
        self.dir = data_dir / CERTS_DIR
        self.names = tuple(names)  # services this host runs, or (NODE,)
        self.leaves: dict[str, Leaf] = {}
        self.roots: tuple[str, ...] = ()
        self.revision = 0  # bumped on every leaf or bundle change: contexts are rebuilt
        self._client: dict[str, tuple[int, ssl.SSLContext]] = {}
        self._server: dict[str, tuple[int, ssl.SSLContext]] = {}
        self._mtimes: dict[str, int] = {}  # (reload)

    def path_of(self, name: str) -> Path:
        if name.startswith(GATEWAY):  # "_" is in no service name: no file is shared
            return self.dir / f"_gateway-{name[len(GATEWAY):]}.pem"
        return self.dir / f"{name or '_node'}.pem"

    def load(self) -> None:
        """The certificates persisted by an earlier run (expired ones too: the
        renewal replaces them; TLS refuses them meanwhile)."""
        for name in self.names:
            leaf = _read_leaf(name, self.path_of(name))
            if leaf is not None:
                self.leaves[name] = leaf
        try:
            self.set_roots(_split_pem((self.dir / "roots.pem").read_text(encoding="ascii")))
        except (OSError, ValueError):
            pass

    def reload(self) -> None:
        """Read again the files another process (the supervising agent) rewrote."""
        for name in self.names:
            path = self.path_of(name)
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if self._mtimes.get(name) == mtime:
                continue
            leaf = _read_leaf(name, path)
            if leaf is not None:
                self._mtimes[name] = mtime
                self.leaves[name] = leaf
                self.revision += 1

    def install(self, name: str, key: ec.EllipticCurvePrivateKey, certificate: str,
                chain: Sequence[str] = ()) -> Leaf:
        """Persist KEY with its new CERTIFICATE and make it the one new connections use."""
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        body = key_pem + b"".join(p.strip().encode() + b"\n" for p in [certificate, *chain])
        path = self.path_of(name)
        _write_private(path, body)
        leaf = _read_leaf(name, path)
        if leaf is None:
            raise ValueError("the certificate does not load")
        self.leaves[name] = leaf
        self.revision += 1
        return leaf

    def set_roots(self, roots: Sequence[str]) -> bool:
        """The trust bundle (the snapshot's, else the CSR answer's); True if it changed."""
        roots = tuple(r.strip() + "\n" for r in roots)
        if roots == self.roots or not roots:
            return False
        self.roots = roots
        self.revision += 1
        try:
            _write_private(self.dir / "roots.pem", "".join(roots).encode())
        except OSError as exc:
            log.error("cannot persist the trust bundle: %s", exc)
        return True

    def root_names(self) -> set[bytes]:
        names: set[bytes] = set()
        for pem in self.roots:
            try:
                names.add(x509.load_pem_x509_certificate(pem.encode()).subject.public_bytes())
            except ValueError:
                continue
        return names

    def ready(self, name: str) -> bool:
        return name in self.leaves and bool(self.roots)

    def client_context(self, name: str) -> ssl.SSLContext | None:
        """The context for dialling a peer's inbound as NAME (None: no cert or no bundle)."""
        cached = self._client.get(name)
        if cached is not None and cached[0] == self.revision:
            return cached[1]
        leaf = self.leaves.get(name)
        if leaf is None or not self.roots:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False  # the peer is checked by its URI SAN (check_peer)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata="".join(self.roots))
        ctx.load_cert_chain(leaf.path)
        self._client[name] = (self.revision, ctx)
        return ctx

    def server_context(self, name: str) -> ssl.SSLContext | None:
        """The inbound listener's context for SNI naming NAME (client cert required)."""
        cached = self._server.get(name)
        if cached is not None and cached[0] == self.revision:
            return cached[1]
        leaf = self.leaves.get(name)
        if leaf is None or not self.roots:
            return None
        ctx = server_base_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata="".join(self.roots))
        ctx.load_cert_chain(leaf.path)
        self._server[name] = (self.revision, ctx)
        return ctx

    def seconds_to_expiry(self, now: dt.datetime | None = None) -> dict[str, float]:
        now = now or dt.datetime.now(dt.UTC)
        return {name: (leaf.not_after - now).total_seconds()
                for name, leaf in self.leaves.items()}


def server_base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _split_pem(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + end for part in text.split(end) if part.strip()]


def peer_uri(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str, int] | None:
    """(first URI SAN, serial) of the verified peer certificate, or None."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    sans = cast(tuple[tuple[str, str], ...], cert.get("subjectAltName", ()))
    uris = [value for kind, value in sans if kind == "URI"]
    serial = cert.get("serialNumber")
    if not uris or not isinstance(serial, str):
        return None
    return str(uris[0]), int(serial, 16)
