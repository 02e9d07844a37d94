"""Policies in the admin are view-only (see registry.admin): a policy changes
through the REST API, meshctl or the console, which validate the whole document
and call policies.services.policy_update."""

from django.contrib import admin

from journal.admin import ReadOnlyAdmin
from policies.models import (
    FailoverState,
    PolicyVersion,
    RoutesVersion,
    ServiceRoutes,
    TrafficPolicy,
)


@admin.register(TrafficPolicy)
class TrafficPolicyAdmin(ReadOnlyAdmin):
    list_display = (
        "service",
        "version",
        "load_balancer",
        "connect_timeout_ms",
        "request_timeout_ms",
        "updated_at",
        "updated_by",
    )
    search_fields = ("service__name",)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ("service_name", "version", "created_at", "created_by")
    search_fields = ("service_name",)


@admin.register(FailoverState)
class FailoverStateAdmin(ReadOnlyAdmin):
    list_display = ("service", "active_target", "activated_at", "healthy_since", "reason")
    search_fields = ("service__name", "active_target")


@admin.register(ServiceRoutes)
class ServiceRoutesAdmin(ReadOnlyAdmin):
    list_display = ("service", "version", "updated_at", "updated_by")
    search_fields = ("service__name",)


@admin.register(RoutesVersion)
class RoutesVersionAdmin(ReadOnlyAdmin):
    list_display = ("service_name", "version", "created_at", "created_by")
    search_fields = ("service_name",)
