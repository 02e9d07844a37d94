"""`meshconsole user add NAME --role R [--scope TAG]`, `user set-role NAME --role R
[--scope TAG]`, `user list`: people and their roles (meshconsole.roles).

`add` prints a generated password once (change it with `resetpassword`). Role changes
are audited as `cli:<os user>`."""

from __future__ import annotations

import secrets
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from journal.records import command_line
from meshconsole.models import Role
from meshconsole.roles import grant_of, user_role_set

SCOPE_HELP = "act only on services carrying this tag, e.g. team=payments"


class Command(BaseCommand):
    help = "Add people, set their role (viewer, operator, admin), list them."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        add = sub.add_parser("add", help="a new user with a role; prints its password once")
        add.add_argument("name")
        add.add_argument("--role", choices=Role.values, required=True)
        add.add_argument("--scope", default="", help=SCOPE_HELP)
        set_role = sub.add_parser("set-role", help="change a user's role")
        set_role.add_argument("name")
        set_role.add_argument("--role", choices=Role.values, required=True)
        set_role.add_argument("--scope", default="", help=SCOPE_HELP)
        sub.add_parser("list", help="every user with its role")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["subcommand"]
        if command == "list":
            self._list()
            return
        name: str = options["name"]
        role, scope = Role(options["role"]), options["scope"].strip()
        if command == "add":
            if User.objects.filter(username=name).exists():
                raise CommandError(f"user {name!r} exists; use `user set-role`")
            password = secrets.token_urlsafe(12)
            with transaction.atomic():
                user = User.objects.create_user(name, password=password)
                user_role_set(user=user, role=role, scope=scope, by=command_line())
            self.stdout.write(f"user {name} ({self._describe(user)}), password: {password}")
            return
        existing = User.objects.filter(username=name).first()
        if existing is None:
            raise CommandError(f"no user named {name!r}; add one with `user add`")
        if existing.is_superuser:
            raise CommandError(f"{name!r} is a superuser, always an unscoped admin")
        user_role_set(user=existing, role=role, scope=scope, by=command_line())
        self.stdout.write(f"user {name} is now {self._describe(existing)}")

    @staticmethod
    def _describe(user: User) -> str:
        grant = grant_of(user)
        if grant is None:
            return "inactive"
        return grant.role + (f" of {grant.scope}" if grant.scope else "")

    def _list(self) -> None:
        self.stdout.write("USER\tROLE\tSCOPE\tACTIVE")
        for user in User.objects.order_by("username"):
            grant = grant_of(user) if user.is_active else None
            role = grant.role if grant else "-"
            scope = grant.scope if grant else ""
            active = "yes" if user.is_active else "no"
            self.stdout.write(f"{user.username}\t{role}\t{scope}\t{active}")
