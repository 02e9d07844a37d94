"""`meshconsole apitoken USERNAME`, `enrolltoken`, `resetpassword`, and the audit trail
every write of these (and of `user` and `ca`) leaves, as `cli:<os user>`."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pwd
from io import StringIO
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import EnrollmentToken, hash_token
from identity.models import CARoot
from journal.models import AuditEntry
from meshconsole.models import ApiToken


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_apitoken_prints_a_token_that_authenticates(admin_user: User) -> None:
    key = run("apitoken", "alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/services/").status_code == 200


def test_apitoken_rotates_the_old_token(admin_user: User) -> None:
    first = run("apitoken", "alice")
    second = run("apitoken", "alice")
    assert first != second
    assert ApiToken.objects.filter(user=admin_user).count() == 1
    assert status_with(first) == 401
    assert status_with(second) == 200


def status_with(key: str, method: str = "get") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    if method == "post":
        return client.post("/api/v1/services/", {"name": "zzz"}, format="json").status_code
    return client.get("/api/v1/services/").status_code


def test_apitoken_stores_only_a_hash(admin_user: User) -> None:
    key = run("apitoken", "alice")
    stored = ApiToken.objects.get(user=admin_user)
    assert key not in repr(list(ApiToken.objects.values()))
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(f"mesh-api-{stored.prefix}")


def test_apitoken_add_keeps_other_tokens_and_list_shows_prefixes(admin_user: User) -> None:
    first = run("apitoken", "alice")
    second = run("apitoken", "alice", "--add", "--name", "ci")
    assert status_with(first) == status_with(second) == 200
    listing = run("apitoken", "--list")
    assert first not in listing and second not in listing
    lines = listing.splitlines()
    assert lines[0].split("\t") == ["PREFIX", "USER", "CREATED", "LAST USED", "ACCESS", "NAME"]
    prefixes = {line.split("\t")[0] for line in lines[1:]}
    assert prefixes == {first[:17] + "…", second[:17] + "…"}
    assert any(line.endswith("\tread-write\tci") for line in lines)
    assert "never" not in listing  # both were used above


def test_apitoken_revoke_by_prefix(admin_user: User) -> None:
    first = run("apitoken", "alice")
    second = run("apitoken", "alice", "--add")
    assert run("apitoken", "--revoke", first[:17]).startswith(f"revoked {first[:17]}… of alice")
    assert status_with(first) == 401
    assert status_with(second) == 200
    with pytest.raises(CommandError, match="no API token with prefix"):
        run("apitoken", "--revoke", first[:17])


def test_read_only_token_may_read_but_not_write(admin_user: User) -> None:
    key = run("apitoken", "alice", "--read-only")
    assert status_with(key) == 200
    assert status_with(key, "post") == 403
    assert "read-only" in run("apitoken", "--list", "alice")


def test_inactive_users_token_stops_working(admin_user: User) -> None:
    key = run("apitoken", "alice")
    User.objects.filter(pk=admin_user.pk).update(is_active=False)
    assert status_with(key) == 401


@pytest.mark.django_db
def test_apitoken_for_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("apitoken", "nobody")


@pytest.mark.django_db
def test_apitoken_for_unknown_user_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from meshconsole.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["apitoken", "nobody"])
    assert exit_info.value.code == 1
    assert "no user named 'nobody'" in capsys.readouterr().err


@pytest.mark.django_db
def test_enrolltoken_prints_a_new_usable_token() -> None:
    first = run("enrolltoken")
    second = run("enrolltoken", "--description", "rack 4")
    assert first.startswith("mesh-enroll-") and first != second
    stored = EnrollmentToken.objects.get(token_hash=hash_token(second))
    assert stored.description == "rack 4" and not stored.revoked
    response = APIClient().post(
        "/api/v1/agents/enroll/",
        {"token": first, "node": "host-z", "zone": "zone-1", "version": "0.1.0", "upstreams": []},
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_resetpassword_prints_a_new_password_for_admin_by_default() -> None:
    from django.contrib.auth import authenticate

    User.objects.create_superuser("admin", "", "the-old-password-1")
    password = run("resetpassword")
    assert len(password) >= 16
    assert authenticate(username="admin", password=password) is not None
    assert authenticate(username="admin", password="the-old-password-1") is None
    assert run("resetpassword") != password  # generated afresh each time


def test_resetpassword_ends_the_users_sessions(admin_user: User) -> None:
    client = APIClient()
    client.force_login(admin_user)
    assert client.get("/api/v1/services/").status_code == 200
    run("resetpassword", "alice")
    assert client.get("/api/v1/services/").status_code == 401


@pytest.mark.django_db
def test_resetpassword_for_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("resetpassword", "nobody")


def test_existing_authtoken_keys_are_migrated_hashed_and_deleted(admin_user: User) -> None:
    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("meshconsole.migrations.0002_api_tokens_from_authtoken")
    old_key = "0123456789abcdef0123456789abcdef01234567"  # DRF's 40-hex shape
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
            if connection.vendor == "postgresql"
            else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created datetime NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [old_key, "2025-01-02 03:04:05+00:00", admin_user.pk],
        )
    # RunPython hands the function a schema editor; it only uses its connection.
    migration.copy_authtoken_keys(apps, SimpleNamespace(connection=connection))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)
    assert status_with(old_key) == 200
    token = ApiToken.objects.get(user=admin_user)
    assert (token.prefix, token.created_at.year) == ("01234567", 2025)


# Whoever runs the command on the host, by the effective uid (not $USER, which anyone sets).
CLI_ACTOR = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def audit(**match: str) -> list[tuple[str, str, str, str]]:
    return [
        (e.actor, e.action, e.object_type, e.object_id)
        for e in AuditEntry.objects.filter(**match).order_by("id")
    ]


def no_secret_in_audit(secret: str) -> None:
    for entry in AuditEntry.objects.all():
        assert secret not in json.dumps([entry.before, entry.after]), entry


def test_apitoken_creation_rotation_and_revocation_are_audited_as_the_cli(
        admin_user: User) -> None:
    first = run("apitoken", "alice", "--name", "ci")
    first_prefix = ApiToken.objects.get().prefix
    entry = AuditEntry.objects.get(object_type="api-token")
    assert (entry.actor, entry.action, entry.object_id) == (CLI_ACTOR, "create", first_prefix)
    assert entry.user is None  # no account behind a command line
    assert entry.before is None
    assert entry.after == {"prefix": first_prefix, "user": "alice", "name": "ci",
                           "read_only": False}
    second = run("apitoken", "alice", "--read-only")  # rotates: the first one is deleted
    second_prefix = ApiToken.objects.get().prefix
    third = run("apitoken", "alice", "--add")
    third_prefix = ApiToken.objects.exclude(prefix=second_prefix).get().prefix
    run("apitoken", "--revoke", third[:17])
    assert audit(object_type="api-token") == [
        (CLI_ACTOR, "create", "api-token", first_prefix),
        (CLI_ACTOR, "revoke", "api-token", first_prefix),
        (CLI_ACTOR, "create", "api-token", second_prefix),
        (CLI_ACTOR, "create", "api-token", third_prefix),
        (CLI_ACTOR, "revoke", "api-token", third_prefix),
    ]
    revoked = AuditEntry.objects.filter(action="revoke").order_by("id").first()
    assert revoked is not None and revoked.after is None
    assert revoked.before == {"prefix": first_prefix, "user": "alice", "name": "ci",
                              "read_only": False}
    for key in (first, second, third):
        no_secret_in_audit(key)
        no_secret_in_audit(key.removeprefix("mesh-api-"))


def test_a_refused_apitoken_command_audits_nothing(admin_user: User) -> None:
    with pytest.raises(CommandError):
        run("apitoken", "nobody")
    with pytest.raises(CommandError):
        run("apitoken", "--revoke", "nosuchprefix")
    assert not AuditEntry.objects.exists()


def test_a_token_made_for_a_test_fixture_leaves_no_entry(api: APIClient) -> None:
    assert not AuditEntry.objects.filter(object_type="api-token").exists()


@pytest.mark.django_db
def test_enrolltoken_creation_and_revocation_are_audited_as_the_cli() -> None:
    raw = run("enrolltoken", "--description", "rack 4", "--uses", "2")
    prefix = EnrollmentToken.objects.get().prefix
    run("enrolltoken", "--revoke", prefix)
    assert audit(object_type="enrollment-token") == [
        (CLI_ACTOR, "create", "enrollment-token", prefix),
        (CLI_ACTOR, "revoke", "enrollment-token", prefix),
    ]
    created = AuditEntry.objects.get(action="create")
    assert created.after is not None and created.after["description"] == "rack 4"
    no_secret_in_audit(raw)
    no_secret_in_audit(raw.removeprefix("mesh-enroll-"))


def test_resetpassword_is_audited_as_the_cli_without_the_password(admin_user: User) -> None:
    password = run("resetpassword", "alice")
    assert audit(object_type="user") == [(CLI_ACTOR, "reset-password", "user", "alice")]
    no_secret_in_audit(password)
    with pytest.raises(CommandError):
        run("resetpassword", "nobody")
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db
def test_user_add_and_set_role_are_audited_as_the_cli() -> None:
    out = run("user", "add", "olga", "--role", "viewer")
    run("user", "set-role", "olga", "--role", "operator", "--scope", "team=payments")
    assert audit(object_type="role") == [
        (CLI_ACTOR, "create", "role", "olga"),
        (CLI_ACTOR, "update", "role", "olga"),
    ]
    no_secret_in_audit(out.rsplit("password: ", 1)[1])


@pytest.mark.django_db
def test_ca_rotate_and_retire_are_audited_as_the_cli() -> None:
    run("ca", "list")  # the first root: the system's, at first use
    old = CARoot.objects.get()
    run("ca", "rotate")
    new = CARoot.objects.exclude(pk=old.pk).get()
    run("ca", "retire", old.fingerprint)
    assert audit(object_type="ca-root", actor=CLI_ACTOR) == [
        (CLI_ACTOR, "rotate", "ca-root", new.fingerprint),
        (CLI_ACTOR, "retire", "ca-root", old.fingerprint),
    ]


def test_deleting_a_token_in_the_django_admin_is_audited_as_that_user(admin_user: User) -> None:
    from django.test import Client

    run("apitoken", "alice")
    run("apitoken", "alice", "--add")
    first, second = ApiToken.objects.order_by("id")
    client = Client()
    client.force_login(admin_user)
    response = client.post(f"/admin/meshconsole/apitoken/{first.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:300]
    response = client.post("/admin/meshconsole/apitoken/", {
        "action": "delete_selected", "_selected_action": [second.pk], "post": "yes"})
    assert response.status_code == 302, response.content[:300]
    assert not ApiToken.objects.exists()
    assert audit(object_type="api-token", action="revoke") == [
        ("alice", "revoke", "api-token", first.prefix),
        ("alice", "revoke", "api-token", second.prefix),
    ]
