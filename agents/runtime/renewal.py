"""Getting and renewing this host's certificates from the control plane.

Each identity is renewed at about half its lifetime (jittered); until the new
certificate is in hand the old one stays in use, and a failed attempt is retried
with backoff (the old certificate keeps serving until it expires). A trust bundle
that gains a root (rotation) or drops the one that signed a leaf renews that leaf
soon, so the old root can be retired with no certificate still chained to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Callable
from typing import Any

from agents.runtime import pkicall
from agents.runtime.certs import GATEWAY, NODE, CertStore, leaf_body
from agents.runtime.client import Backoff, ControlPlaneClient, ControlPlaneError
from agents.runtime.security import gateway_identity, node_identity, service_identity

log = logging.getLogger("meshagent.certs")

ROTATION_SPREAD_S = 2.0  # a new root: every leaf renewed within this, not all at once


class Renewer:
    def __init__(self, store: CertStore, client: ControlPlaneClient, node: str,
                 trust_domain: Callable[[], str], on_change: Callable[[], None],
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.client = client
        self.node = node
        self.trust_domain = trust_domain
        self.on_change = on_change  # new leaf or roots: the agent refreshes its listeners
        self.rng = rng or random.Random()
        self.due: dict[str, dt.datetime] = {}
        self.backoff = Backoff(base=1.0, cap=30.0)
        self.wake = asyncio.Event()
        self.errors: dict[str, str] = {}
        for name, leaf in store.leaves.items():
            self.due[name] = leaf.renew_at(self.rng)

    def renew_soon(self, names: list[str] | None = None) -> None:
        """Renew NAMES (all) within ROTATION_SPREAD_S (a root rotation)."""
        now = dt.datetime.now(dt.UTC)
        for name in names if names is not None else self.store.names:
            soon = now + dt.timedelta(seconds=self.rng.uniform(0, ROTATION_SPREAD_S))
            self.due[name] = min(self.due.get(name, soon), soon)
        self.wake.set()

    def bundle_changed(self, added: bool) -> None:
        """The trust bundle changed: ADDED a root (renew every leaf from the new one), or
        dropped one (renew the leaves whose issuer is gone)."""
        if added:
            self.renew_soon()
            return
        names = self.store.root_names()
        stale = [n for n, leaf in self.store.leaves.items() if leaf.issuer not in names]
        if stale:
            self.renew_soon(stale)

    def forget_unknown(self) -> None:
        """After CertStore.load: renewal times of the leaves found on disk."""
        for name, leaf in self.store.leaves.items():
            self.due.setdefault(name, leaf.renew_at(self.rng))

    async def run(self, agent_id: str, token: str,
                  enabled: Callable[[], bool] = lambda: True) -> None:
        while True:
            if not enabled():
                self.wake.clear()
                await self.wake.wait()
                continue
            now = dt.datetime.now(dt.UTC)
            due = [n for n in self.store.names
                   if n not in self.store.leaves or self.due.get(n, now) <= now]
            for name in due:
                try:
                    await self.renew(name, agent_id, token)
                    self.backoff.reset()
                    self.errors.pop(name, None)
                except (ControlPlaneError, OSError, ValueError) as exc:
                    if isinstance(exc, ControlPlaneError) and exc.status == 401:
                        raise
                    self.errors[name] = str(exc)
                    delay = self.backoff.next()
                    self.due[name] = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
                    log.warning("certificate for %s: %s; retrying in %.1fs",
                                name or "node", exc, delay)
            now = dt.datetime.now(dt.UTC)
            upcoming = [self.due.get(n, now) for n in self.store.names]
            wait = max(0.05, min(((t - now).total_seconds() for t in upcoming), default=60.0))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 3600.0)):
                    await self.wake.wait()

    async def renew(self, name: str, agent_id: str, token: str) -> None:
        td = self.trust_domain()
        gateway = name[len(GATEWAY):] if name.startswith(GATEWAY) else ""
        identity = (node_identity(td, self.node) if name == NODE else
                    gateway_identity(td, gateway) if gateway else service_identity(td, name))
        # Key, CSR and reading the answer run in the certificate tool (pkicall), off the loop.
        key_pem, csr = await asyncio.to_thread(pkicall.new_key_and_csr, identity)
        if gateway:
            answer = await self.client.certificate(agent_id, token, "", csr, gateway=gateway)
        else:
            answer = await self.client.certificate(agent_id, token, name, csr)
        certificate, chain, roots = _answer(answer)
        body = leaf_body(key_pem, certificate, chain)
        facts = (await asyncio.to_thread(pkicall.leaf_facts, [body]))[0]
        if facts is None:
            raise ValueError("certificates: the answer is not a certificate for our key")
        if gateway and identity not in facts["uris"]:
            # (a control plane that does not know gateway identities signs the node's)
            raise ValueError(f"certificates: the answer is not {identity}")
        leaf = self.store.put(name, body, facts)
        if roots and not self.store.roots:
            self.store.set_roots(roots)  # until a snapshot brings the bundle
        self.due[name] = leaf.renew_at(self.rng)
        log.info("certificate for %s: serial %x, valid until %s", leaf.identity, leaf.serial,
                 leaf.not_after.isoformat())
        self.on_change()


def _answer(answer: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    certificate = answer.get("certificate")
    chain = answer.get("chain") or []
    roots = answer.get("roots") or []
    if not isinstance(certificate, str):
        raise ValueError("certificates: answer lacks a certificate")
    if not all(isinstance(p, str) for p in [*chain, *roots]):
        raise ValueError("certificates: chain and roots must be PEM strings")
    return certificate, list(chain), list(roots)
