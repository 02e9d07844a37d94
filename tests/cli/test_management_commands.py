"""`meshconsole apitoken USERNAME` and `meshconsole enrolltoken`."""

from __future__ import annotations

import hashlib
import importlib
from io import StringIO
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import EnrollmentToken, hash_token
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
