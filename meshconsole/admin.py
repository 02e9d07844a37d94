"""View-only admin of API tokens (by prefix; deleting one revokes it) and failed logins."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from journal.admin import ReadOnlyAdmin
from meshconsole.models import ApiToken, LoginFailure


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    # Made with `meshconsole apitoken` (the key is shown once there).
    list_display = ("prefix", "user", "name", "read_only", "created_at", "last_used")
    exclude = ("key_hash",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ("ts", "username", "address", "path")
    list_filter = ("path",)
    search_fields = ("username", "address")
