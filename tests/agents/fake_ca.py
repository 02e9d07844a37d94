"""FakeControlPlane plus the zero-trust contract's CSR endpoint and `security` section.

For the agent runtime's tests only (docs/agent.md says so): it signs what it is asked
with a test CA; the real control plane's CA is tested on its side and end to end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from cryptography import x509

from agents.runtime.security import node_identity, service_identity
from tests.agents.backends import FakeControlPlane, Request
from tests.agents.testca import TD, TestCA


class FakeCAControlPlane(FakeControlPlane):
    def __init__(self, ca: TestCA, node: str, *, ttl_s: float = 3600) -> None:
        super().__init__()
        self.ca = ca  # the current signing root
        self.node = node
        self.ttl_s = ttl_s
        self.security: dict[str, Any] = {"trust_domain": TD, "roots": [ca.pem],
                                         "revoked_serials": [], "default_action": "allow",
                                         "intentions": [], "inbound": {}}
        self.issued: list[tuple[str, int]] = []  # (service, serial)

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        if self.override is None:
            snap = {**snap, "node": self.node, "security": self.security}
        return snap

    async def set_security(self, **changes: Any) -> int:
        self.security = {**self.security, **changes}
        return await self.publish()

    async def _route(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        if req.path == f"/api/v1/agents/{self.agent_id}/certificates/" and req.method == "POST":
            auth = (req.header("authorization") or "").split()
            if len(auth) != 2 or auth[1] not in self.agent_tokens:
                return await self._reply(writer, 401, {"detail": "Invalid agent token."})
            data = json.loads(req.body)
            service = data["service"]
            uri = service_identity(TD, service) if service else node_identity(TD, self.node)
            pem = self.ca.sign_csr(data["csr"], uri, self.ttl_s)
            cert = x509.load_pem_x509_certificate(pem.encode())
            self.issued.append((service, cert.serial_number))
            return await self._reply(writer, 200, {
                "certificate": pem, "chain": [], "serial": f"{cert.serial_number:x}",
                "not_before": _iso(cert.not_valid_before_utc),
                "not_after": _iso(cert.not_valid_after_utc),
                "identity": uri, "roots": self.security["roots"]})
        return await super()._route(req, writer)


def _iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
