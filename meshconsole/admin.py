"""Read-only admin views of API tokens (by prefix) and failed logins."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from meshconsole.models import ApiToken, LoginFailure


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Tokens are made with `meshconsole apitoken` (the key is shown once there);
    # failures are written by the lockout. Deleting a token here revokes it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "user", "name", "read_only", "created_at", "last_used")
    exclude = ("key_hash",)


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ("ts", "username", "address", "path")
    list_filter = ("path",)
    search_fields = ("username", "address")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
