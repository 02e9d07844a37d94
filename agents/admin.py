"""Agents and enrollment tokens in the admin are view-only (see registry.admin):
enrollment tokens are made and revoked with `meshconsole enrolltoken` or the
API, agents removed or allowed to re-enroll through the API or meshctl."""

from django.contrib import admin

from agents.models import Agent, EnrollmentToken
from journal.admin import ReadOnlyAdmin


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdmin):
    list_display = ("node", "version", "last_seen", "applied_revision", "nack_reason", "silent")
    exclude = ("token_hash",)


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(ReadOnlyAdmin):
    list_display = (
        "prefix", "description", "created_at", "expires_at", "uses", "max_uses", "revoked"
    )
    exclude = ("token_hash",)
