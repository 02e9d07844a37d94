"""`meshconsole resetpassword [USERNAME]`: set a new generated password and print it;
audited as `cli:<os user>` (action `reset-password`, never the password)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from journal.records import audit_record, command_line
from meshconsole.bootstrap import ADMIN_USERNAME, generate_password


class Command(BaseCommand):
    help = (
        f"Set a new generated password for USERNAME (default: {ADMIN_USERNAME}) and print it; "
        "the old password and the user's sessions stop working. "
        "To choose the password yourself: meshconsole changepassword USERNAME."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username", nargs="?", default=ADMIN_USERNAME)

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(
                f"no user named {username!r}; create one with `meshconsole createsuperuser`"
            ) from None
        password = generate_password()
        with transaction.atomic():
            user.set_password(password)  # changes the session hash: logged-in sessions end
            user.save(update_fields=["password"])
            audit_record(
                user=command_line(),
                action="reset-password",
                object_type="user",
                object_id=username,
                before=None,
                after={"password": "generated", "sessions": "ended"},
            )
        self.stdout.write(password)
