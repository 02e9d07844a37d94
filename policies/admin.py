from django.contrib import admin

from policies.models import TrafficPolicy


@admin.register(TrafficPolicy)
class TrafficPolicyAdmin(admin.ModelAdmin):
    list_display = ("service", "load_balancer", "connect_timeout_ms", "request_timeout_ms")
