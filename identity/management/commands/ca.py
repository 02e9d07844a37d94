"""`meshconsole ca list|rotate|retire FINGERPRINT [--force]`: the built-in CA's roots.
Rotations and retirements are audited as `cli:<os user>`."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from identity.models import CARoot
from identity.services import (
    RootInUse,
    RootNotFound,
    ca_retire,
    ca_rotate,
    root_live_leaves,
    signing_root,
)
from journal.records import command_line


class Command(BaseCommand):
    help = (
        "The CA's trust bundle. list: the roots (the signer marked); rotate: add a new root "
        "that signs from now on (the old ones stay trusted); retire FINGERPRINT: take a root "
        "out of the bundle once no unexpired certificate chains to it (--force: anyway)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        sub.add_parser("rotate")
        retire = sub.add_parser("retire")
        retire.add_argument("fingerprint", help="the root's sha256 fingerprint (8+ hex digits)")
        retire.add_argument("--force", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "rotate":
            root = ca_rotate(user=command_line())
            self.stdout.write(f"new signing root {root.fingerprint}")
        elif action == "retire":
            try:
                root = ca_retire(
                    user=command_line(), fingerprint=options["fingerprint"], force=options["force"]
                )
            except (RootNotFound, RootInUse) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"retired root {root.fingerprint}")
        signer = signing_root()
        for root in CARoot.objects.filter(retired_at__isnull=True):
            mark = "signing" if root.pk == signer.pk else "trusted"
            self.stdout.write(
                f"{root.fingerprint}  {mark:8}  expires {root.not_after:%Y-%m-%d}  "
                f"live certificates {root_live_leaves(root)}"
            )
