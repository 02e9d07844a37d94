"""`meshconsole enrolltoken`: print a new agent enrollment token; list or revoke them.
Creations and revocations are audited as `cli:<os user>`."""

from __future__ import annotations

import re
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agents.enrollment import enrollment_token_create, enrollment_token_revoke
from agents.gateways import GATEWAY_NAME_RE
from agents.models import EnrollmentToken
from agents.runtime.durations import parse_duration_ms
from journal.records import command_line
from registry.models import SERVICE_NAME_RE


class Command(BaseCommand):
    help = (
        "Print a new enrollment token (put it in agent.yaml as token:). It expires after "
        "--ttl (default MESH_ENROLL_TOKEN_TTL, 24h) and may be limited to --uses enrollments; "
        "only its hash is kept. --list shows the tokens, --revoke PREFIX revokes one."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--description", default="", help="a note shown with the token")
        parser.add_argument("--ttl", help='lifetime, e.g. "24h", "30m"; "0" = never expires')
        parser.add_argument("--uses", type=int, help="how many enrollments it allows")
        parser.add_argument(
            "--services",
            help="comma-separated: the only services agents enrolled with it may run "
            "(register, report, get certificates for); default: any",
        )
        parser.add_argument(
            "--gateways",
            help="comma-separated: the gateways agents enrolled with it may serve as "
            "(a gateway agent gets JWT secrets and key hashes); default: none",
        )
        parser.add_argument("--list", action="store_true", help="list the tokens (no secrets)")
        parser.add_argument("--revoke", metavar="PREFIX", help="revoke the token with PREFIX")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list()
            return
        if options["revoke"]:
            if not enrollment_token_revoke(user=command_line(), prefix=options["revoke"]):
                raise CommandError(f"no active enrollment token with prefix {options['revoke']!r}")
            self.stdout.write(f"revoked {options['revoke']}")
            return
        ttl = None
        if options["ttl"] is not None:
            try:
                ttl = timedelta(milliseconds=parse_duration_ms(options["ttl"]))
            except ValueError as exc:
                raise CommandError(f"--ttl: {exc}") from None
        if options["uses"] is not None and options["uses"] < 1:
            raise CommandError("--uses must be at least 1")
        services = None
        if options["services"] is not None:
            services = [n.strip() for n in options["services"].split(",") if n.strip()]
            bad = [n for n in services if not re.fullmatch(SERVICE_NAME_RE, n)]
            if bad or not services:
                raise CommandError(f"--services: not service names: {', '.join(bad) or '(none)'}")
        gateways: list[str] = []
        if options["gateways"] is not None:
            gateways = [n.strip() for n in options["gateways"].split(",") if n.strip()]
            bad = [n for n in gateways if not re.fullmatch(GATEWAY_NAME_RE, n)]
            if bad or not gateways:
                raise CommandError(f"--gateways: not gateway names: {', '.join(bad) or '(none)'}")
        self.stdout.write(
            enrollment_token_create(
                user=command_line(),
                description=options["description"],
                ttl=ttl,
                max_uses=options["uses"],
                services=services,
                gateways=gateways,
            )
        )

    def _list(self) -> None:
        now = timezone.now()
        self.stdout.write(
            "PREFIX  STATE    USES   EXPIRES                    SERVICES     DESCRIPTION"
        )
        for t in EnrollmentToken.objects.all():
            state = t.state(now)
            uses = f"{t.uses}/{t.max_uses}" if t.max_uses else str(t.uses)
            expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
            services = ",".join(t.services) if t.services is not None else "any"
            self.stdout.write(
                f"{t.prefix:7} {state:8} {uses:6} {expires:26} {services:12} {t.description}"
            )
