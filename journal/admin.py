from django.contrib import admin

from journal.models import AuditEntry, CheckResult, Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("ts", "kind", "severity", "service", "message", "actor")
    list_filter = ("kind", "severity")
    search_fields = ("message", "service", "instance")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("ts", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")

    def has_change_permission(self, request: object, obj: object = None) -> bool:  # type: ignore[override]
        return False


@admin.register(CheckResult)
class CheckResultAdmin(admin.ModelAdmin):
    list_display = ("ts", "service", "instance", "check_type", "ok", "output")
