"""View-only admin of API tokens (by prefix; deleting one revokes it) and failed logins."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from journal.admin import ReadOnlyAdmin
from meshconsole.apitokens import api_token_delete
from meshconsole.models import ApiToken, LoginFailure


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    # Made with `meshconsole apitoken` (the key is shown once there).
    list_display = ("prefix", "user", "name", "read_only", "created_at", "last_used")
    exclude = ("key_hash",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    # A deletion here revokes the token: audited like `meshconsole apitoken --revoke`.
    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        api_token_delete(obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        with transaction.atomic():
            for token in queryset.select_related("user"):
                api_token_delete(token, by=request.user)


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ("ts", "username", "address", "path")
    list_filter = ("path",)
    search_fields = ("username", "address")
