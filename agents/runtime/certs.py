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
from typing import Any, cast

from agents.runtime import pkicall

log = logging.getLogger("meshagent.certs")

CERTS_DIR = "certs"
NODE = ""  # the store name of the node identity
GATEWAY = "gateway:"  # the store name of a gateway's identity: GATEWAY + its name
RENEW_AT = (0.45, 0.55)  # of the lifetime: about half, jittered so a fleet does not renew in step


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


def _leaf(name: str, path: Path, facts: dict[str, Any] | None) -> Leaf | None:
    if facts is None:
        return None
    uris = facts["uris"]
    return Leaf(name, path, int(facts["serial"]), dt.datetime.fromisoformat(facts["not_before"]),
                dt.datetime.fromisoformat(facts["not_after"]), uris[0] if uris else "",
                bytes.fromhex(facts["issuer"]))


def _read_leaves(paths: dict[str, Path]) -> dict[str, Leaf]:
    """The leaves of the files in PATHS (by store name) that load: one call of the
    certificate tool for all of them."""
    texts: dict[str, str] = {}
    for name, path in paths.items():
        try:
            texts[name] = path.read_text(encoding="ascii")
        except (OSError, ValueError):
            continue
    if not texts:
        return {}
    facts = pkicall.leaf_facts(list(texts.values()))
    leaves = {name: _leaf(name, paths[name], f) for name, f in zip(texts, facts, strict=True)}
    return {name: leaf for name, leaf in leaves.items() if leaf is not None}


def leaf_body(key_pem: bytes, certificate: str, chain: Sequence[str] = ()) -> str:
    """What a store file holds: the private key, the leaf, its chain."""
    return key_pem.decode("ascii") + "".join(p.strip() + "\n" for p in [certificate, *chain])


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
        renewal replaces them; TLS refuses them meanwhile). A failing certificate
        tool leaves the store empty: the renewal asks for new ones."""
        try:
            self.leaves.update(_read_leaves({n: self.path_of(n) for n in self.names}))
        except ValueError as exc:
            log.error("cannot read the certificates on disk: %s", exc)
        try:
            self.set_roots(_split_pem((self.dir / "roots.pem").read_text(encoding="ascii")))
        except (OSError, ValueError):
            pass

    def reload(self) -> None:
        """Read again the files another process (the supervising agent) rewrote."""
        changed: dict[str, Path] = {}
        mtimes: dict[str, int] = {}
        for name in self.names:
            path = self.path_of(name)
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if self._mtimes.get(name) != mtime:
                changed[name], mtimes[name] = path, mtime
        if not changed:
            return
        try:
            leaves = _read_leaves(changed)
        except ValueError as exc:
            log.error("cannot read the renewed certificates: %s", exc)
            return
        for name, leaf in leaves.items():
            self._mtimes[name] = mtimes[name]
            self.leaves[name] = leaf
            self.revision += 1

    def install(self, name: str, key_pem: bytes, certificate: str,
                chain: Sequence[str] = ()) -> Leaf:
        """Persist the key (PEM) with its new CERTIFICATE and make it the one new
        connections use (ValueError if they do not load together)."""
        body = leaf_body(key_pem, certificate, chain)
        return self.put(name, body, pkicall.leaf_facts([body])[0])

    def put(self, name: str, body: str, facts: dict[str, Any] | None) -> Leaf:
        """install's second half, for a caller that read BODY's FACTS (pkicall.leaf_facts)
        off the event loop."""
        path = self.path_of(name)
        leaf = _leaf(name, path, facts)
        if leaf is None:
            raise ValueError("the certificate does not load with its key")
        _write_private(path, body.encode("ascii"))
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
        """The DER subjects of the bundle's roots (a child process: see pkicall)."""
        return {bytes.fromhex(s) for s in pkicall.subjects(list(self.roots)) if s is not None}

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
