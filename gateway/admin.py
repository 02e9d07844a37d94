"""Gateway objects in the admin are view-only (see registry.admin): writes go
through gateway.services from the API, meshctl or YAML. No secret is shown: a
provider's `secret` and a key's hash are left out."""

from django.contrib import admin

from gateway.models import Consumer, ConsumerKey, Gateway, GatewayRoute, JWTProvider
from journal.admin import ReadOnlyAdmin


@admin.register(Gateway)
class GatewayAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "created_at", "created_by")
    search_fields = ("name",)


@admin.register(GatewayRoute)
class GatewayRouteAdmin(ReadOnlyAdmin):
    list_display = ("gateway", "position", "name", "service", "subset")
    search_fields = ("name", "service", "gateway__name")


@admin.register(Consumer)
class ConsumerAdmin(ReadOnlyAdmin):
    list_display = ("name", "description", "created_at")
    search_fields = ("name",)


@admin.register(ConsumerKey)
class ConsumerKeyAdmin(ReadOnlyAdmin):
    list_display = ("consumer", "prefix", "description", "created_at", "last_used_at")
    exclude = ("key_hash",)


@admin.register(JWTProvider)
class JWTProviderAdmin(ReadOnlyAdmin):
    list_display = ("name", "issuer", "audience", "leeway_s", "updated_at")
    exclude = ("secret",)
