"""The agent's zero-trust parts wired together: certificates, renewal, the inbound
listener, and what each snapshot's `security` changes (docs/agent.md, "Zero trust").

The Agent owns one ZeroTrust; this module keeps agent.py about the control loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents.runtime.certs import GATEWAY, NODE, CertStore
from agents.runtime.client import ControlPlaneClient
from agents.runtime.config import AgentConfig
from agents.runtime.dial import OutboundTls
from agents.runtime.inbound import InboundListener
from agents.runtime.metrics import render_certificates, render_inbound
from agents.runtime.renewal import Renewer
from agents.runtime.security import Security
from agents.runtime.upstream import UpstreamRuntime

DEFAULT_TRUST_DOMAIN = "mesh.local"


class ZeroTrust:
    def __init__(self, config: AgentConfig, client: ControlPlaneClient,
                 upstreams: Sequence[UpstreamRuntime], on_change: Callable[[], None]) -> None:
        self.config = config
        # One identity per local service, else the node's; and the gateway's, if it is one.
        names = sorted({s.name for s in config.services}) or [NODE]
        self.gateway = GATEWAY + config.gateway.name if config.gateway is not None else None
        self.certs = CertStore(config.data_dir, [*names, *filter(None, [self.gateway])])
        self.upstreams = list(upstreams)
        for runtime in self.upstreams:
            runtime.pool.tls = OutboundTls(self.certs, runtime.source)
        self.inbound = (InboundListener(config.inbound, config.services, self.certs)
                        if config.inbound is not None else None)
        self.security: Security | None = None
        self.renewer = Renewer(self.certs, client, config.node, self.trust_domain, on_change)

    def adopt(self, runtime: UpstreamRuntime, identity: str | None = None) -> None:
        """An upstream made after start (a route's split target, a gateway route's
        service): dialled like the others, with IDENTITY's certificate (a store name; by
        default its source's)."""
        runtime.pool.tls = OutboundTls(self.certs, identity or runtime.source)
        runtime.pool.tls.security = self.security
        self.upstreams.append(runtime)

    def forget(self, runtime: UpstreamRuntime) -> None:
        if runtime in self.upstreams:
            self.upstreams.remove(runtime)

    def load(self) -> None:
        """The certificates an earlier run left: mTLS serves with the control plane down."""
        self.certs.load()
        self.renewer.forget_unknown()

    def wanted(self) -> bool:
        """Certificates are asked for once the control plane speaks zero-trust (a snapshot
        with `security`); an older one has no certificates endpoint."""
        return self.security is not None

    def trust_domain(self) -> str:
        return self.security.trust_domain if self.security is not None else DEFAULT_TRUST_DOMAIN

    def apply(self, security: Security | None) -> None:
        """A snapshot's bundle, revocations and intentions; called before its upstreams
        apply (their endpoints are dialled with mTLS only when there is `security`)."""
        self.security = security
        for runtime in self.upstreams:
            assert runtime.pool.tls is not None
            runtime.pool.tls.security = security
        if security is not None:
            before = set(self.certs.roots)
            if self.certs.set_roots(security.roots):
                self.renewer.bundle_changed(added=bool(before)
                                            and bool(set(self.certs.roots) - before))
                if self.inbound is not None:
                    self.inbound.refresh()
            self.renewer.wake.set()  # (the first snapshot with security: get certificates)
        if self.inbound is not None:
            self.inbound.apply(security)

    def payload(self) -> dict[str, Any]:
        """`inbound` for enroll and report: absent when this host has no inbound listener."""
        inbound = self.config.inbound
        return {} if inbound is None else {"inbound": inbound.as_report()}

    def inbound_windows(self) -> list[dict[str, Any]]:
        """The inbound side's edges (from verified identities), marked so that the control
        plane does not count a request twice (the caller's agent reports it too). A node
        identity ("node:<name>") is no service name the report accepts: left out; so is a
        gateway's ("gateway:<name>": the gateway reports those requests as its own)."""
        if self.inbound is None:
            return []
        return [{**w, "inbound": True} for w in self.inbound.metrics.drain()
                if not w["source"].startswith(("node:", GATEWAY))]

    def certificates(self) -> list[dict[str, Any]]:
        expiry = self.certs.seconds_to_expiry()
        return [{"service": name, "identity": leaf.identity, "serial": f"{leaf.serial:x}",
                 "not_after": leaf.not_after.isoformat().replace("+00:00", "Z"),
                 "seconds_to_expiry": round(expiry[name], 1),
                 "renewal_error": self.renewer.errors.get(name, "")}
                for name, leaf in sorted(self.certs.leaves.items())]

    def prometheus(self) -> str:
        text = render_certificates(self.certs.leaves, self.certs.seconds_to_expiry())
        return text + (render_inbound(self.inbound.metrics) if self.inbound is not None else "")
