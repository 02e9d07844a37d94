"""`meshconsole apitoken USERNAME`: print a new API token, revoking the old one."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print a new API token for USERNAME (meshctl, tooling); the old one stops working."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(
                f"no user named {username!r}; create one with `meshconsole createsuperuser`"
            ) from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        # DRF keeps one token per user: rotating means delete + create.
        with transaction.atomic():
            Token.objects.filter(user=user).delete()
            token = Token.objects.create(user=user)
        self.stdout.write(token.key)
