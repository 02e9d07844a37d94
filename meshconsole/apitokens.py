"""API tokens: created and shown once, stored hashed, listed by prefix, revoked.

`Authorization: Token <key>` keeps DRF's header so meshctl and other tooling are
unchanged; only the lookup differs (by hash, never by the key itself).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from journal.records import Actor, audit_record
from meshconsole.models import API_TOKEN_PREFIX_LENGTH, ApiToken, hash_key

KEY_PREFIX = "mesh-api-"
# last_used is for people reading a listing: minute precision spares a write
# per request.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenNotFound(Exception):
    pass


def api_token_state(token: ApiToken) -> dict[str, Any]:
    """What the audit trail keeps of a token: never its key (nor its hash)."""
    return {
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "name": token.name,
        "read_only": token.read_only,
    }


def _audit(by: Actor, state: dict[str, Any], *, created: bool) -> None:
    audit_record(
        user=by,
        action="create" if created else "revoke",
        object_type="api-token",
        object_id=state["prefix"],
        before=None if created else state,
        after=state if created else None,
    )


def api_token_create(
    *, user: User, name: str = "", read_only: bool = False, rotate: bool = False,
    by: Actor = None,
) -> str:
    """A new token for USER; the key is returned once and never stored.
    With ROTATE, the user's other tokens stop working in the same transaction.
    Audited as BY's write (the command line's); without BY (a test's fixture), not."""
    random_part = secrets.token_urlsafe(32)
    key = KEY_PREFIX + random_part
    with transaction.atomic():
        if rotate:
            for old in ApiToken.objects.select_for_update().filter(user=user):
                api_token_delete(old, by=by)
        token = ApiToken.objects.create(
            user=user,
            prefix=random_part[:API_TOKEN_PREFIX_LENGTH],
            key_hash=hash_key(key),
            name=name,
            read_only=read_only,
        )
        if by is not None:
            _audit(by, api_token_state(token), created=True)
    return key


def api_token_revoke(*, prefix: str, by: Actor = None) -> ApiToken:
    """Delete the one token whose prefix is PREFIX (as listed, `…` allowed); audited
    as BY's write when BY is given."""
    prefix = prefix.removeprefix(KEY_PREFIX).rstrip("…")
    with transaction.atomic():
        matches = list(ApiToken.objects.select_for_update().filter(prefix=prefix)[:2])
        if not matches:
            raise TokenNotFound(f"no API token with prefix {prefix!r}")
        if len(matches) > 1:
            raise TokenNotFound(f"several API tokens have prefix {prefix!r}; revoke in the admin")
        api_token_delete(matches[0], by=by)
    return matches[0]


def api_token_delete(token: ApiToken, *, by: Actor) -> None:
    """Delete TOKEN (revoke it), audited as BY's write when BY is given (the command
    line's, or the admin's user deleting it in the Django admin)."""
    with transaction.atomic():
        state = api_token_state(token) if by is not None else None
        token.delete()
        if state is not None:
            _audit(by, state, created=False)


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` against the hashed ApiToken rows."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        result = super().authenticate(request)
        if result is not None and result[1].read_only and request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied("this API token is read-only")
        return result

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        if token.last_used is None or token.last_used < now - LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
            token.last_used = now
        return token.user, token
