"""History rows are view-only; so is every mesh object (registry, policies and
agents use ReadOnlyAdmin): an admin write would skip the service functions
(validation, the mesh revision, events, audit)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from journal.models import AuditEntry, CheckResult, Event


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: no add, change or delete, whoever asks."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False



@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("ts", "kind", "severity", "service", "message", "actor")
    list_filter = ("kind", "severity")
    search_fields = ("message", "service", "instance")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("ts", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = ("ts", "service", "instance", "check_type", "ok", "output")
