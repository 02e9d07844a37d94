from django.contrib import admin

from registry.models import Instance, MeshRevision, Node, Service


class InstanceInline(admin.TabularInline):
    model = Instance
    extra = 0
    fields = ("address", "port", "zone", "weight", "health", "admin_state", "status_reason")
    readonly_fields = ("health", "status_reason")


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "protocol", "check_type", "check_interval_ms", "updated_at")
    search_fields = ("name", "description")
    inlines = (InstanceInline,)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
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
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "zone", "created_at")


@admin.register(MeshRevision)
class MeshRevisionAdmin(admin.ModelAdmin):
    list_display = ("id", "value")

    def has_add_permission(self, request: object) -> bool:  # type: ignore[override]
        return False
