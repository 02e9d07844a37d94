"""The Django admin shows mesh objects and never writes them: a write there
would skip the service functions (validation, the revision agents wait on,
events and audit). Writes go through the API, meshctl and the console, which
all call the same service functions."""

from django.contrib import admin

from journal.admin import ReadOnlyAdmin, ReadOnlyInline
from registry.models import Instance, MeshRevision, Node, Service


class InstanceInline(ReadOnlyInline):
    model = Instance
    extra = 0
    fields = ("address", "port", "zone", "weight", "health", "admin_state", "status_reason")
    readonly_fields = ("health", "status_reason")


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    list_display = ("name", "protocol", "check_type", "check_interval_ms", "updated_at")
    search_fields = ("name", "description")
    inlines = (InstanceInline,)


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "service",
        "address",
        "port",
        "zone",
        "weight",
        "health",
        "admin_state",
        "node",
    )
    list_filter = ("health", "admin_state", "zone")
    search_fields = ("id", "address", "service__name")
    readonly_fields = (
        "health",
        "status_reason",
        "status_since",
        "last_heartbeat",
        "last_check_at",
        "last_check_output",
    )


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ("name", "zone", "created_at")


@admin.register(MeshRevision)
class MeshRevisionAdmin(ReadOnlyAdmin):
    list_display = ("id", "value")
