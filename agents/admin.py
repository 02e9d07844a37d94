from django.contrib import admin

from agents.models import Agent, EnrollmentToken


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("node", "version", "last_seen", "applied_revision", "nack_reason", "silent")
    readonly_fields = ("token_hash",)


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "description", "created_at", "uses", "revoked")
    readonly_fields = ("token_hash", "prefix", "uses")
