"""The one hook through which a gateway agent's snapshot gets its `gateway`
section (docs/gateway.md). The gateway app sits above `agents` and registers
itself here at startup (gateway.apps); `agents` never imports it. With nothing
registered, a declared gateway name is still stored and the section is absent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

# What an agent may declare (`"gateway": {"name": …}`), the gateway API's rule too.
GATEWAY_NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# Names that would shadow the fixed paths under /api/v1/gateway/.
RESERVED_GATEWAY_NAMES = frozenset({"consumers", "jwt-providers"})


class GatewayHook(Protocol):
    def declared(self, name: str) -> None:
        """An agent declared gateway NAME (enroll, report): inside its transaction."""

    def targets(self, name: str) -> list[str]:
        """The services NAME's routes send to: `upstreams` entries (route_target)."""

    def keys(self, name: str) -> list[str]:
        """The index keys NAME's section depends on."""

    def section(self, name: str) -> Mapping[str, Any]:
        """The section itself (inside the snapshot's read transaction)."""

    def keys_used(self, key_hashes: list[str], at: datetime) -> None:
        """A gateway agent's report says these keys (`sha256:` digests) authenticated
        requests since its last one (inside the report's transaction)."""


_hook: GatewayHook | None = None


def register(hook: GatewayHook) -> None:
    global _hook
    _hook = hook


def hook() -> GatewayHook | None:
    return _hook
