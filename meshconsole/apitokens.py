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

from meshconsole.models import API_TOKEN_PREFIX_LENGTH, ApiToken, hash_key

KEY_PREFIX = "mesh-api-"
# last_used is for people reading a listing: minute precision spares a write
# per request.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenNotFound(Exception):
    pass


def api_token_create(
    *, user: User, name: str = "", read_only: bool = False, rotate: bool = False
) -> str:
    """A new token for USER; the key is returned once and never stored.
    With ROTATE, the user's other tokens stop working in the same transaction."""
    random_part = secrets.token_urlsafe(32)
    key = KEY_PREFIX + random_part
    with transaction.atomic():
        if rotate:
            ApiToken.objects.filter(user=user).delete()
        ApiToken.objects.create(
            user=user,
            prefix=random_part[:API_TOKEN_PREFIX_LENGTH],
            key_hash=hash_key(key),
            name=name,
            read_only=read_only,
        )
    return key


def api_token_revoke(*, prefix: str) -> ApiToken:
    """Delete the one token whose prefix is PREFIX (as listed, `…` allowed)."""
    prefix = prefix.removeprefix(KEY_PREFIX).rstrip("…")
    with transaction.atomic():
        matches = list(ApiToken.objects.select_for_update().filter(prefix=prefix)[:2])
        if not matches:
            raise TokenNotFound(f"no API token with prefix {prefix!r}")
        if len(matches) > 1:
            raise TokenNotFound(f"several API tokens have prefix {prefix!r}; revoke in the admin")
        matches[0].delete()
    return matches[0]


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
