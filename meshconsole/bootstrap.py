"""`meshconsole up`'s first start: migrate, the admin user, the first
enrollment token, and the text that tells a newcomer what to do with them."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN_USERNAME = "admin"


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class Credentials:
    password: str | None  # None: it came from MESH_ADMIN_PASSWORD
    enrollment_token: str


def prepare_database() -> tuple[int, Credentials | None]:
    """Migrate; create the admin user and an enrollment token if there is no admin yet."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections["default"])
    pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    call_command("migrate", interactive=False, verbosity=0)

    from agents.enrollment import enrollment_token_create

    user_model = get_user_model()
    credentials = None
    if not user_model.objects.filter(username=ADMIN_USERNAME).exists():
        from_env = os.environ.get("MESH_ADMIN_PASSWORD", "")
        password = from_env or generate_password()
        admin = user_model.objects.create_superuser(ADMIN_USERNAME, "", password)
        token = enrollment_token_create(user=admin, description="created by meshconsole up")
        credentials = Credentials(password=None if from_env else password, enrollment_token=token)
    connections.close_all()
    return pending, credentials


def sqlite_path() -> Path | None:
    """The SQLite database file, when the database is one (after django.setup())."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    return Path(db["NAME"]) if db["ENGINE"].endswith("sqlite3") else None


def database_label() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or 'localhost'}/{db['NAME']}"


def credentials_text(url: str, credentials: Credentials, data_dir_hint: str) -> str:
    password = credentials.password or "(the one in MESH_ADMIN_PASSWORD)"
    return f"""
  First start: an admin account and an agent enrollment token were created.
  They are shown only this once — keep them somewhere safe.

      console:           {url}
      username:          {ADMIN_USERNAME}
      password:          {password}
      enrollment token:  {credentials.enrollment_token}

  Lost the password?  meshconsole{data_dir_hint} resetpassword  (prints a new one)

  To add a host, write an agent.yaml there:

      control_plane: {url.rstrip("/")}
      token: {credentials.enrollment_token}
      node: host-a
      zone: zone-1
      data_dir: /var/lib/meshagent
      services: [{{name: orders, address: 127.0.0.1, port: 8081}}]

  and run:  meshagent run -c agent.yaml
  New tokens: meshconsole{data_dir_hint} enrolltoken
"""


def returning_text(url: str, data_dir_hint: str) -> str:
    return f"""
  Log in at {url} as {ADMIN_USERNAME} with the password printed at first start.
  Forgot it?  meshconsole{data_dir_hint} resetpassword  (prints a new one)
  New agent enrollment token:  meshconsole{data_dir_hint} enrolltoken
"""
