"""Roles beyond the matrix: scoped creates, the upgrade migration, the `user`
command, read-only tokens from `apitoken --read-only`, the console's controls."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

from meshconsole.models import Role, UserRole
from meshconsole.roles import ADMIN, OPERATOR, VIEWER, Grant, grant_of, user_role_set
from registry import services
from registry.models import Service

pytestmark = pytest.mark.django_db


def _as(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_grants_rank_and_scope() -> None:
    scoped = Grant(ADMIN, "team=payments")
    assert scoped.allows(VIEWER)  # reads are global
    assert scoped.allows(ADMIN, ["team=payments", "pci"])
    assert not scoped.allows(OPERATOR, ["team=orders"])
    assert not scoped.allows(ADMIN)  # nothing service-specific: unscoped admins only
    assert not Grant(OPERATOR).allows(ADMIN, ["x"])
    assert Grant(OPERATOR).allows(OPERATOR)


def test_a_scoped_admin_creates_only_services_carrying_its_tag() -> None:
    sam = User.objects.create_user("sam")
    user_role_set(user=sam, role=Role.ADMIN, scope="team=payments")
    client = _as(sam)
    outside = client.post("/api/v1/services/", {"name": "orders"}, format="json")
    assert outside.status_code == 403
    inside = client.post(
        "/api/v1/services/", {"name": "payments", "tags": ["team=payments"]}, format="json"
    )
    assert inside.status_code == 201, inside.content
    # A change of tags keeps the service in scope, or is refused.
    moved = client.patch("/api/v1/services/payments/", {"tags": ["team=x"]}, format="json")
    assert moved.status_code == 403
    kept = client.patch(
        "/api/v1/services/payments/", {"tags": ["team=payments", "pci"]}, format="json"
    )
    assert kept.status_code == 200, kept.content


def test_superusers_are_admins_and_others_default_to_viewer(admin_user: User) -> None:
    assert grant_of(admin_user) == Grant(ADMIN)
    assert grant_of(User.objects.create_user("nobody")) == Grant(VIEWER)
    assert grant_of(None) is None


def test_the_upgrade_makes_staff_admins_and_everyone_else_viewers() -> None:
    from django.apps import apps as global_apps

    migration = importlib.import_module("meshconsole.migrations.0003_user_roles")

    staff = User.objects.create_user("old-staff", is_staff=True)
    plain = User.objects.create_user("old-plain")
    UserRole.objects.all().delete()
    migration.existing_users_get_roles(global_apps, None)
    assert UserRole.objects.get(user=staff).role == Role.ADMIN
    assert UserRole.objects.get(user=plain).role == Role.VIEWER


def test_user_command_adds_sets_and_lists() -> None:
    out = StringIO()
    call_command("user", "add", "olga", "--role", "operator", "--scope", "team=payments", stdout=out)
    assert "operator of team=payments" in out.getvalue()
    olga = User.objects.get(username="olga")
    assert olga.has_usable_password()
    call_command("user", "set-role", "olga", "--role", "admin", stdout=out)
    assert grant_of(User.objects.get(username="olga")) == Grant(ADMIN)
    listing = StringIO()
    call_command("user", "list", stdout=listing)
    assert "olga\tadmin\t\tyes" in listing.getvalue()
    with pytest.raises(CommandError):
        call_command("user", "add", "olga", "--role", "viewer")
    with pytest.raises(CommandError):
        call_command("user", "set-role", "ghost", "--role", "viewer")


def test_a_read_only_token_reads_but_never_writes(admin_user: User) -> None:
    out = StringIO()
    call_command("apitoken", "alice", "--read-only", "--add", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    assert client.get("/api/v1/services/").status_code == 200
    assert client.post("/api/v1/services/", {"name": "x"}, format="json").status_code == 403
    assert not Service.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("role", "operate", "admin"),
    [(Role.VIEWER, False, False), (Role.OPERATOR, True, False), (Role.ADMIN, True, True)],
)
def test_the_service_page_marks_what_the_role_may_do(
    admin_user: User, role: Role, operate: bool, admin: bool
) -> None:
    services.service_create(user=admin_user, data={"name": "payments"})
    person = User.objects.create_user("p")
    user_role_set(user=person, role=role)
    client = Client()
    client.force_login(person)
    body = client.get("/services/payments/").content.decode()
    tag = body[body.index("<body") : body.index(">", body.index("<body"))]
    assert ("data-can-operate" in tag) is operate
    assert ("data-can-admin" in tag) is admin


def test_users_api_creates_lists_and_changes_roles(admin_user: User) -> None:
    client = _as(admin_user)
    created = client.post(
        "/api/v1/users/",
        {"username": "olga", "password": "a long pass phrase 1", "role": "operator"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json() == {
        "username": "olga", "role": "operator", "scope": "", "superuser": False, "active": True
    }
    assert "password" not in created.json()
    again = client.post(
        "/api/v1/users/",
        {"username": "olga", "password": "a long pass phrase 1", "role": "viewer"},
        format="json",
    )
    assert again.status_code == 409
    weak = client.post(
        "/api/v1/users/", {"username": "w", "password": "1", "role": "viewer"}, format="json"
    )
    assert weak.status_code == 400 and "password" in weak.json()
    bad = client.post(
        "/api/v1/users/", {"username": "x", "password": "a long pass phrase 1", "role": "root"},
        format="json",
    )
    assert bad.status_code == 400 and not User.objects.filter(username="x").exists()
    changed = client.patch(
        "/api/v1/users/olga/", {"role": "admin", "scope": "team=payments"}, format="json"
    )
    assert changed.json()["role"] == "admin" and changed.json()["scope"] == "team=payments"
    assert grant_of(User.objects.get(username="olga")) == Grant(ADMIN, "team=payments")
    names = [u["username"] for u in client.get("/api/v1/users/").json()["results"]]
    assert names == ["alice", "olga"]
    assert client.patch("/api/v1/users/alice/", {"role": "viewer"}, format="json").status_code == 400
    # A scoped admin manages no users.
    scoped = _as(User.objects.get(username="olga"))
    assert scoped.get("/api/v1/users/").status_code == 403
