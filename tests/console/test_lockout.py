"""Login lockout on /login/ and /admin/login/: per account, per client address."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from journal.models import AuditEntry
from meshconsole.models import LoginFailure

PAGES = ["/login/", "/admin/login/"]
RIGHT = "alice-password-1"


def attempt(client: Client, page: str, password: str, username: str = "alice", **extra: Any) -> Any:
    return client.post(page, {"username": username, "password": password}, **extra)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("page", PAGES)
def test_right_password_after_the_failure_limit_is_locked_out(
    client: Client, admin_user: User, page: str
) -> None:
    for _ in range(5):
        assert attempt(client, page, "wrong").status_code == 200  # the form again
    response = attempt(client, page, RIGHT)
    assert response.status_code == 429
    assert "Too many failed logins for this account" in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 900
    assert not logged_in(client)


@pytest.mark.parametrize("page", PAGES)
def test_fewer_failures_than_the_limit_do_not_lock(client: Client, admin_user: User, page: str) -> None:
    for _ in range(4):
        attempt(client, page, "wrong")
    assert attempt(client, page, RIGHT).status_code == 302
    assert logged_in(client)


def test_a_success_starts_the_account_count_over(client: Client, admin_user: User) -> None:
    for _ in range(4):
        attempt(client, "/login/", "wrong")
    assert attempt(client, "/login/", RIGHT).status_code == 302
    client.logout()
    for _ in range(4):
        attempt(client, "/login/", "wrong")
    assert attempt(client, "/login/", RIGHT).status_code == 302


def test_the_lock_lifts_when_the_failures_leave_the_window(
    client: Client, admin_user: User, settings: Any
) -> None:
    for _ in range(5):
        attempt(client, "/login/", "wrong")
    assert attempt(client, "/login/", RIGHT).status_code == 429
    LoginFailure.objects.update(ts=LoginFailure.objects.first().ts - timedelta(seconds=901))
    assert attempt(client, "/login/", RIGHT).status_code == 302


def test_locked_attempts_are_not_counted(client: Client, admin_user: User) -> None:
    for _ in range(5):
        attempt(client, "/login/", "wrong")
    for _ in range(3):
        assert attempt(client, "/login/", "wrong").status_code == 429
    assert LoginFailure.objects.count() == 5


@pytest.mark.parametrize("page", PAGES)
def test_an_address_is_locked_across_accounts(
    client: Client, admin_user: User, settings: Any, page: str
) -> None:
    settings.MESH_LOGIN_ADDRESS_FAILURES = 3
    for name in ("bob", "carol", "dave"):
        attempt(client, page, "wrong", username=name, REMOTE_ADDR="198.51.100.7")
    locked = attempt(client, page, RIGHT, REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429
    assert "for this address" in locked.content.decode()
    # The account itself is not locked: from elsewhere it logs in.
    assert attempt(client, page, RIGHT, REMOTE_ADDR="198.51.100.8").status_code == 302


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_address_lock(
    client: Client, admin_user: User, settings: Any
) -> None:
    settings.MESH_LOGIN_ADDRESS_FAILURES = 3
    for i, name in enumerate(("bob", "carol", "dave")):
        attempt(client, "/login/", "wrong", username=name, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    assert attempt(client, "/login/", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_every_failure_is_logged_and_recorded(
    client: Client, admin_user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meshconsole.lockout")
    for _ in range(5):
        attempt(client, "/admin/login/", "wrong", REMOTE_ADDR="198.51.100.9")
    attempt(client, "/admin/login/", RIGHT, REMOTE_ADDR="198.51.100.9")
    rows = list(LoginFailure.objects.values_list("username", "address", "path"))
    assert rows == [("alice", "198.51.100.9", "/admin/login/")] * 5
    failed = [r for r in caplog.records if r.getMessage().startswith("login failed for 'alice'")]
    assert len(failed) == 5
    assert any(r.getMessage().startswith("login refused for 'alice'") for r in caplog.records)
    audit = AuditEntry.objects.get(action="login_locked")
    assert (audit.object_type, audit.object_id) == ("account", "alice")
    # Each failure is on the audit page, the refused attempt after the lock is not.
    failures = AuditEntry.objects.filter(action="login_failed", object_id="alice")
    assert [f.after for f in failures] == [{"address": "198.51.100.9", "path": "/admin/login/"}] * 5


def test_admin_lists_failures_and_token_prefixes_but_never_a_hash(
    client: Client, admin_user: User
) -> None:
    from meshconsole.apitokens import api_token_create
    from meshconsole.models import ApiToken

    attempt(client, "/login/", "wrong", username="mallory")
    key = api_token_create(user=admin_user)
    token = ApiToken.objects.get()
    client.force_login(admin_user)
    failures = client.get("/admin/meshconsole/loginfailure/")
    assert failures.status_code == 200 and "mallory" in failures.content.decode()
    for path in ("/admin/meshconsole/apitoken/", f"/admin/meshconsole/apitoken/{token.pk}/change/"):
        page = client.get(path).content.decode()
        assert token.prefix in page
        assert token.key_hash not in page and key not in page


def test_a_spoofed_hop_behind_a_trusted_proxy_does_not_dodge_the_address_lock(
    client: Client, admin_user: User, settings: Any
) -> None:
    # The proxy appends the address it saw; what the client wrote before it is
    # the client's own claim and must not become the locked address.
    from ipaddress import ip_network

    settings.MESH_TRUSTED_PROXIES = [ip_network("10.0.0.1/32")]
    settings.MESH_LOGIN_ADDRESS_FAILURES = 3
    for i, name in enumerate(("bob", "carol", "dave")):
        attempt(
            client,
            "/login/",
            "wrong",
            username=name,
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}, 198.51.100.7",
        )
    again = attempt(
        client,
        "/login/",
        RIGHT,
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.99, 198.51.100.7",
    )
    assert again.status_code == 429
    assert set(LoginFailure.objects.values_list("address", flat=True)) == {"198.51.100.7"}
