"""Which instance addresses the mesh never contacts: health checks refuse them
(monitoring.checks) and agents' snapshots leave them out (agents.snapshot).

The rule itself is agents.runtime.addresses.address_refusal; this adds the
setting (MESH_CHECK_ALLOW_LINK_LOCAL; metadata endpoints stay refused).
"""

from __future__ import annotations

from django.conf import settings

from agents.runtime.addresses import literal_refusal


def target_refusal(address: str) -> str | None:
    """Why nothing of the mesh may contact ADDRESS (an IP literal), or None."""
    return literal_refusal(
        address, allow_link_local=bool(getattr(settings, "MESH_CHECK_ALLOW_LINK_LOCAL", False))
    )
