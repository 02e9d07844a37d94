"""CA workflows: the first root, rotation, retirement, issuing and revoking
leaves. Each change to the trust bundle or the revoked serials is a
`mesh_change` on SECURITY_KEY, which every agent's snapshot depends on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from identity import ca
from identity.models import CARoot, IssuedCertificate, SecuritySettings
from journal.models import EventKind, Severity
from journal.records import Actor, AuditNote, EventNote, actor_name
from registry.models import SECURITY_KEY
from registry.revision import mesh_change


class RootNotFound(LookupError):
    """No root (not retired) has that fingerprint (HTTP 404)."""


class RootInUse(Exception):
    """Unexpired leaves still chain to the root, or it is the only one (HTTP 409)."""


def _lock() -> SecuritySettings:
    """The singleton row, locked: root changes happen one at a time."""
    return SecuritySettings.current(lock=True)


def root_state(root: CARoot) -> dict[str, object]:
    return {
        "fingerprint": root.fingerprint,
        "not_after": root.not_after.isoformat(),
        "supplied": root.supplied,
        "retired_at": root.retired_at.isoformat() if root.retired_at else None,
    }


def _root_add(new: ca.NewRoot, *, user: Actor, action: str) -> CARoot:
    root = CARoot.objects.create(
        fingerprint=ca.fingerprint(new.certificate),
        certificate=ca.pem(new.certificate),
        key_file=str(new.key_file),
        supplied=new.supplied,
        not_after=new.certificate.not_valid_after_utc,
    )
    mesh_change(
        keys=[SECURITY_KEY],
        events=[
            EventNote(
                kind=EventKind.CONFIG,
                message=f"CA root {root.fingerprint[:16]} added ({action}); it signs new leaves",
                actor=actor_name(user),
            )
        ],
        audit=[AuditNote(user, action, "ca-root", root.fingerprint, None, root_state(root))],
    )
    return root


def live_roots() -> list[CARoot]:
    return list(CARoot.objects.filter(retired_at__isnull=True))


def signing_root() -> CARoot:
    """The newest root not retired; the first one is made (or loaded from
    MESH_CA_CERT_FILE/MESH_CA_KEY_FILE) here, at first use."""
    roots = live_roots()
    if roots:
        return roots[-1]
    with transaction.atomic():
        _lock()
        roots = live_roots()
        if roots:  # another process made it while we waited for the lock
            return roots[-1]
        if settings.MESH_CA_CERT_FILE or settings.MESH_CA_KEY_FILE:
            new = ca.root_from_files(settings.MESH_CA_CERT_FILE, settings.MESH_CA_KEY_FILE)
        else:
            new = ca.root_generate()
        return _root_add(new, user=None, action="create")


def ca_ready() -> None:
    """The trust bundle is never empty in a snapshot (agents refuse one without
    roots): make the first root if there is none. One indexed query once it exists;
    a write (call it outside read-only transactions)."""
    if not CARoot.objects.filter(retired_at__isnull=True).exists():
        signing_root()


def ca_rotate(*, user: Actor) -> CARoot:
    """Add a new generated root: it signs from now on; the old ones stay in the
    bundle until retired, so leaves they signed keep verifying."""
    signing_root()
    with transaction.atomic():
        _lock()
        return _root_add(ca.root_generate(), user=user, action="rotate")


def root_live_leaves(root: CARoot, now: datetime | None = None) -> int:
    """Unrevoked, unexpired leaves signed by ROOT."""
    return IssuedCertificate.objects.filter(
        root_fingerprint=root.fingerprint,
        revoked_at__isnull=True,
        not_after__gt=now or timezone.now(),
    ).count()


def ca_retire(*, user: Actor, fingerprint: str, force: bool = False) -> CARoot:
    """Take a root out of the trust bundle. Refused (RootInUse) while unexpired
    leaves chain to it (unless FORCE), and always for the last root."""
    with transaction.atomic():
        _lock()
        root = CARoot.objects.filter(
            fingerprint__startswith=fingerprint.lower(), retired_at__isnull=True
        ).first()
        if root is None or len(fingerprint) < 8:
            raise RootNotFound(f"no root in the trust bundle has fingerprint {fingerprint!r}")
        if CARoot.objects.filter(retired_at__isnull=True).count() == 1:
            raise RootInUse("it is the only root of the trust bundle: rotate first")
        live = root_live_leaves(root)
        if live and not force:
            raise RootInUse(
                f"{live} unexpired certificate(s) still chain to this root; wait until agents "
                "renew from the new root (or force)"
            )
        before = root_state(root)
        root.retired_at = timezone.now()
        root.save(update_fields=["retired_at"])
        mesh_change(
            keys=[SECURITY_KEY],
            events=[
                EventNote(
                    kind=EventKind.CONFIG,
                    severity=Severity.WARNING if live else Severity.INFO,
                    message=f"CA root {root.fingerprint[:16]} retired"
                    + (f" with {live} live certificate(s) (forced)" if live else ""),
                    actor=actor_name(user),
                )
            ],
            audit=[
                AuditNote(user, "retire", "ca-root", root.fingerprint, before, root_state(root))
            ],
        )
        return root


@dataclass(frozen=True)
class Issued:
    record: IssuedCertificate
    certificate: str
    roots: list[str]


def certificate_issue(
    *, agent_id: uuid.UUID, node: str, service: str, csr_pem: str, gateway: str = ""
) -> Issued:
    """Sign CSR_PEM for SERVICE ("" = the node's identity, or GATEWAY's when given)
    and record it. The caller has checked that the agent may hold that identity;
    CSRRefused on a bad CSR."""
    csr = ca.csr_parse(csr_pem)
    root = signing_root()
    if gateway:
        identity = ca.gateway_identity(gateway)
    else:
        identity = ca.service_identity(service) if service else ca.node_identity(node)
    cert = ca.leaf_sign(
        csr=csr,
        identity=identity,
        common_name=service or gateway or node,
        root_pem=root.certificate,
        key_file=root.key_file,
        ttl=timedelta(milliseconds=settings.MESH_CERT_TTL_MS),
    )
    record = IssuedCertificate.objects.create(
        serial=ca.serial_hex(cert),
        agent_id=agent_id,
        node=node,
        service=service,
        identity=identity,
        root_fingerprint=root.fingerprint,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )
    return Issued(
        record=record, certificate=ca.pem(cert), roots=[r.certificate for r in live_roots()]
    )


def certificates_revoke(*, agent_id: uuid.UUID, node: str, user: Actor, reason: str) -> int:
    """Revoke every unexpired certificate of the agent (inside the caller's
    transaction); every agent gets the serials in its next snapshot at once."""
    now = timezone.now()
    revoked = IssuedCertificate.objects.filter(
        agent_id=agent_id, revoked_at__isnull=True, not_after__gt=now
    ).update(revoked_at=now)
    if revoked:
        mesh_change(
            keys=[SECURITY_KEY],
            events=[
                EventNote(
                    kind=EventKind.AGENT,
                    severity=Severity.WARNING,
                    message=f"{revoked} certificate(s) of agent {node} revoked ({reason})",
                    actor=actor_name(user),
                )
            ],
        )
    return revoked


def revoked_serials(now: datetime | None = None) -> list[str]:
    """Serials revoked and not yet expired (an expired one is refused anyway)."""
    return sorted(
        IssuedCertificate.objects.filter(
            revoked_at__isnull=False, not_after__gt=now or timezone.now()
        ).values_list("serial", flat=True)
    )


# Expired records are kept this long (the console may still show a recent expiry).
EXPIRED_KEPT = timedelta(days=1)


def certificates_prune(now: datetime | None = None) -> int:
    """Delete records of certificates expired for EXPIRED_KEPT. Nothing a
    snapshot shows changes: a revoked serial leaves revoked_serials when it
    expires, before this runs."""
    cutoff = (now or timezone.now()) - EXPIRED_KEPT
    deleted, _ = IssuedCertificate.objects.filter(not_after__lt=cutoff).delete()
    return deleted
