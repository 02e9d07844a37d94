"""What the API and the console show of the certificates agents hold.

A leaf is renewed at about half its lifetime (`agents/runtime/renewal.py`), so
one with less than a third of its lifetime left has missed its renewal: the
console warns about it (``expiring``), and earlier than the hour it dies in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from identity.models import IssuedCertificate

# Below this share of its lifetime left, a leaf has missed a renewal.
WARN_FRACTION = 1 / 3


def expiring(cert: IssuedCertificate, now: datetime) -> bool:
    lifetime = (cert.not_after - cert.not_before).total_seconds()
    left = (cert.not_after - now).total_seconds()
    return left < lifetime * WARN_FRACTION


def certificate_payload(cert: IssuedCertificate, now: datetime) -> dict[str, Any]:
    return {
        "serial": cert.serial,
        "service": cert.service,
        "identity": cert.identity,
        "not_after": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds_to_expiry": max(0, int((cert.not_after - now).total_seconds())),
        "revoked": cert.revoked_at is not None,
        "expiring": cert.revoked_at is None and expiring(cert, now),
    }


def certificates_by_agent(agent_ids: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Each agent's unexpired certificates, newest first (one query for a page)."""
    now = timezone.now()
    found: dict[str, list[dict[str, Any]]] = {str(a): [] for a in agent_ids}
    for cert in IssuedCertificate.objects.filter(agent_id__in=agent_ids, not_after__gt=now):
        found[str(cert.agent_id)].append(certificate_payload(cert, now))
    return found


def current_certificates(agent_ids: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The leaf each agent serves per identity: its newest unrevoked one (a renewal leaves
    the older leaf valid until it expires; that one is not what the host presents)."""
    current: dict[str, list[dict[str, Any]]] = {}
    for agent, certs in certificates_by_agent(agent_ids).items():
        seen: set[str] = set()
        current[agent] = []
        for cert in certs:
            if not cert["revoked"] and cert["service"] not in seen:
                seen.add(cert["service"])
                current[agent].append(cert)
        current[agent].sort(key=lambda c: c["service"])
    return current
