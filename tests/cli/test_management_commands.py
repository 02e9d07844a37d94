"""`meshconsole apitoken USERNAME` and `meshconsole enrolltoken`."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import EnrollmentToken, hash_token


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
    assert list(Token.objects.filter(user=admin_user).values_list("key", flat=True)) == [second]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get("/api/v1/services/").status_code == 401


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
