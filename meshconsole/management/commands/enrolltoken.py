"""`meshconsole enrolltoken`: print a new agent enrollment token."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from agents.services import enrollment_token_create


class Command(BaseCommand):
    help = "Print a new enrollment token: put it in agent.yaml (token:) to enroll an agent."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--description", default="", help="a note shown with the token")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(enrollment_token_create(description=options["description"]))
