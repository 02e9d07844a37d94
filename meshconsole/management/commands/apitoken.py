"""`meshconsole apitoken USERNAME`: print a new API token, revoking the old ones.

`--add` keeps the user's other tokens, `--read-only` limits the new one to safe
methods, `--list [USERNAME]` shows tokens by prefix and `--revoke PREFIX`
deletes one. Keys are shown once: only their hashes are stored. Every
creation and revocation is an audit entry by `cli:<os user>` (object `api-token PREFIX`).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from journal.records import command_line
from meshconsole.apitokens import KEY_PREFIX, TokenNotFound, api_token_create, api_token_revoke
from meshconsole.models import ApiToken


class Command(BaseCommand):
    help = (
        "Print a new API token for USERNAME (meshctl, tooling); the old ones stop working "
        "unless --add. --list shows tokens, --revoke PREFIX deletes one."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("--add", action="store_true", help="keep the user's other tokens")
        parser.add_argument("--read-only", action="store_true", help="GET/HEAD/OPTIONS only")
        parser.add_argument("--name", default="", help="what the token is for")
        parser.add_argument("--list", action="store_true", help="list tokens (of USERNAME)")
        parser.add_argument("--revoke", metavar="PREFIX", help="delete the token with PREFIX")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str | None = options["username"]
        if options["list"]:
            self._list(username)
        elif options["revoke"]:
            try:
                token = api_token_revoke(prefix=options["revoke"], by=command_line())
            except TokenNotFound as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"revoked {KEY_PREFIX}{token.prefix}… of {token.user}")
        elif username is None:
            raise CommandError("give a USERNAME, --list or --revoke PREFIX")
        else:
            key = api_token_create(
                user=self._user(username),
                name=options["name"],
                read_only=options["read_only"],
                rotate=not options["add"],
                by=command_line(),
            )
            self.stdout.write(key)

    def _user(self, username: str) -> User:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(
                f"no user named {username!r}; create one with `meshconsole createsuperuser`"
            ) from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        assert isinstance(user, User)  # AUTH_USER_MODEL is not swapped
        return user

    def _list(self, username: str | None) -> None:
        tokens = ApiToken.objects.select_related("user")
        if username is not None:
            tokens = tokens.filter(user=self._user(username))
        self.stdout.write("PREFIX\tUSER\tCREATED\tLAST USED\tACCESS\tNAME")
        for t in tokens:
            last_used = f"{t.last_used:%Y-%m-%d %H:%M}" if t.last_used else "never"
            access = "read-only" if t.read_only else "read-write"
            self.stdout.write(
                f"{KEY_PREFIX}{t.prefix}…\t{t.user}\t{t.created_at:%Y-%m-%d %H:%M}\t"
                f"{last_used}\t{access}\t{t.name}"
            )
