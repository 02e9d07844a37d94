"""Admin for policies. A save goes through policy_update (version row, audit,
event, revision); the document's cross-field rules are the REST API's
(policies.document), which is the supported way to change a policy."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from policies.models import FailoverState, PolicyVersion, TrafficPolicy
from policies.services import policy_update


@admin.register(TrafficPolicy)
class TrafficPolicyAdmin(admin.ModelAdmin):
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
    readonly_fields = ("version", "updated_at", "updated_by")

    def save_model(self, request: HttpRequest, obj: TrafficPolicy, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in form.changed_data if name != "service"}
        saved = policy_update(user=request.user, service=obj.service, data=data, note="admin")
        obj.pk, obj.version = saved.pk, saved.version


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("service_name", "version", "created_at", "created_by")
    search_fields = ("service_name",)
    readonly_fields = ("service_name", "version", "document", "created_at", "created_by")

    def has_add_permission(self, request: object) -> bool:  # history is written, not typed
        return False


@admin.register(FailoverState)
class FailoverStateAdmin(admin.ModelAdmin):
    list_display = ("service", "active_target", "activated_at", "healthy_since", "reason")
    search_fields = ("service__name", "active_target")
