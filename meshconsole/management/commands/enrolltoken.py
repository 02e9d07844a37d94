"""`meshconsole enrolltoken`: print a new agent enrollment token; list or revoke them."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agents.enrollment import enrollment_token_create, enrollment_token_revoke
from agents.models import EnrollmentToken
from agents.runtime.durations import parse_duration_ms


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
        parser.add_argument("--list", action="store_true", help="list the tokens (no secrets)")
        parser.add_argument("--revoke", metavar="PREFIX", help="revoke the token with PREFIX")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list()
            return
        if options["revoke"]:
            if not enrollment_token_revoke(user=None, prefix=options["revoke"]):
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
        self.stdout.write(
            enrollment_token_create(
                description=options["description"], ttl=ttl, max_uses=options["uses"]
            )
        )

    def _list(self) -> None:
        now = timezone.now()
        self.stdout.write("PREFIX  STATE    USES   EXPIRES                    DESCRIPTION")
        for t in EnrollmentToken.objects.all():
            state = t.state(now)
            uses = f"{t.uses}/{t.max_uses}" if t.max_uses else str(t.uses)
            expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
            self.stdout.write(f"{t.prefix:7} {state:8} {uses:6} {expires:26} {t.description}")
